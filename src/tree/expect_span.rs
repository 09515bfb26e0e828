//! Span matchers and assertions that fail with the trees that did arrive.

use std::fmt;

use regex::Regex;

use super::{SpanRef, TraceSet};
use crate::model::{SpanKind, StatusCode, Value};

/// Entry points for building matchers, in the style of tracing-mock's `expect`.
pub mod expect {
    use super::SpanMatcher;

    /// A matcher that accepts any span; narrow it with its `named`, `with_*` methods.
    pub fn span() -> SpanMatcher {
        SpanMatcher::default()
    }
}

/// Matchers for one attribute value.
pub mod attr {
    use super::AttrMatcher;
    use crate::model::Value;

    /// Equal, type included (`3` does not equal `"3"` nor `3.0`).
    pub fn eq(value: impl Into<Value>) -> AttrMatcher {
        AttrMatcher::Equals(value.into())
    }

    /// Present, whatever its value.
    pub fn exists() -> AttrMatcher {
        AttrMatcher::Exists
    }

    /// Not present (on the span nor its resource).
    pub fn absent() -> AttrMatcher {
        AttrMatcher::Absent
    }

    /// Present and carrying something: non-empty string/array/bytes, non-zero number, or
    /// any boolean.
    pub fn non_empty() -> AttrMatcher {
        AttrMatcher::NonEmpty
    }

    /// A number (int or double) within `min..=max`.
    pub fn between(min: f64, max: f64) -> AttrMatcher {
        AttrMatcher::Between(min, max)
    }

    /// A string matching the regular expression. An invalid pattern makes the matcher
    /// fail with the pattern's error in the message.
    pub fn matches(pattern: &str) -> AttrMatcher {
        match regex::Regex::new(pattern) {
            Ok(re) => AttrMatcher::Regex(re),
            Err(error) => AttrMatcher::InvalidRegex(error.to_string()),
        }
    }
}

/// A condition on one attribute.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AttrMatcher {
    /// Equal, type included.
    Equals(Value),
    /// Present.
    Exists,
    /// Not present.
    Absent,
    /// Present and non-empty / non-zero.
    NonEmpty,
    /// A number within an inclusive range.
    Between(f64, f64),
    /// A string matching a regex.
    Regex(Regex),
    /// A regex that did not compile; never matches, and says why.
    InvalidRegex(String),
}

impl<T: Into<Value>> From<T> for AttrMatcher {
    fn from(value: T) -> Self {
        AttrMatcher::Equals(value.into())
    }
}

impl fmt::Display for AttrMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrMatcher::Equals(v) => write!(f, "== {v}"),
            AttrMatcher::Exists => f.write_str("present"),
            AttrMatcher::Absent => f.write_str("absent"),
            AttrMatcher::NonEmpty => f.write_str("non-empty"),
            AttrMatcher::Between(lo, hi) => write!(f, "in {lo:?}..={hi:?}"),
            AttrMatcher::Regex(re) => write!(f, "matching /{re}/"),
            AttrMatcher::InvalidRegex(e) => write!(f, "matching an invalid regex ({e})"),
        }
    }
}

impl AttrMatcher {
    /// `None` when `value` satisfies the matcher, else why not.
    fn check(&self, value: Option<&Value>) -> Option<String> {
        let describe = |v: Option<&Value>| match v {
            Some(v) => format!("was {v} ({})", v.type_name()),
            None => "was absent".to_owned(),
        };
        let ok = match (self, value) {
            (AttrMatcher::Absent, v) => v.is_none(),
            (_, None) => false,
            (AttrMatcher::Equals(expected), Some(v)) => v == expected,
            (AttrMatcher::Exists, Some(_)) => true,
            (AttrMatcher::NonEmpty, Some(v)) => v.is_non_empty(),
            (AttrMatcher::Between(lo, hi), Some(v)) => {
                v.as_f64().is_some_and(|n| *lo <= n && n <= *hi)
            }
            (AttrMatcher::Regex(re), Some(v)) => v.as_str().is_some_and(|s| re.is_match(s)),
            (AttrMatcher::InvalidRegex(_), Some(_)) => false,
        };
        (!ok).then(|| {
            let mut why = describe(value);
            // The same number, exported as text: say why and how to fix it.
            let as_text = value
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<f64>().ok());
            let same_number = match (self, as_text) {
                (AttrMatcher::Equals(expected), Some(n)) => expected.as_f64() == Some(n),
                (AttrMatcher::Between(lo, hi), Some(n)) => *lo <= n && n <= *hi,
                _ => false,
            };
            if same_number {
                why.push_str(
                    " — the number as text: tracing-opentelemetry 0.34 exports unsigned \
                     (u8..u64, usize) and 128-bit integer fields as text, and the capture \
                     shows what the wire carries; record it as i64 (`field = n as i64`) to \
                     export a number, or match the text",
                );
            }
            why
        })
    }
}

/// A description of a span: name, attributes, status, kind, and where it sits in its tree.
///
/// ```
/// use p2p_otel_testkit::tree::{attr, expect};
/// let publish = expect::span()
///     .named("p2p_publish")
///     .with_attr("package_id", "acme/tool")
///     .with_attr("dht_replication", attr::between(1.0, 20.0))
///     .with_child(expect::span().named("dht_put"))
///     .fully_recorded();
/// # let _ = publish;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a matcher does nothing until passed to TraceSet::expect or find"]
pub struct SpanMatcher {
    name: Option<String>,
    attrs: Vec<(String, AttrMatcher)>,
    status: Option<StatusCode>,
    status_message: Option<AttrMatcher>,
    kind: Option<SpanKind>,
    root: Option<bool>,
    fully_recorded: bool,
    events: Vec<String>,
    children: Vec<SpanMatcher>,
    descendants: Vec<SpanMatcher>,
    parent: Option<Box<SpanMatcher>>,
    ancestors: Vec<SpanMatcher>,
    remote_parent: Option<Option<Box<SpanMatcher>>>,
    node: Option<String>,
    same_trace: Vec<SpanMatcher>,
}

impl SpanMatcher {
    /// The span has this name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// An attribute (of the span, or of its resource) satisfies `matcher`; a plain value
    /// means "equals, type included".
    pub fn with_attr(mut self, key: impl Into<String>, matcher: impl Into<AttrMatcher>) -> Self {
        self.attrs.push((key.into(), matcher.into()));
        self
    }

    /// The status code is `code`.
    pub fn with_status(mut self, code: StatusCode) -> Self {
        self.status = Some(code);
        self
    }

    /// The status message satisfies `matcher`.
    pub fn with_status_message(mut self, matcher: impl Into<AttrMatcher>) -> Self {
        self.status_message = Some(matcher.into());
        self
    }

    /// The kind is `kind`.
    pub fn with_kind(mut self, kind: SpanKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The span has no parent.
    pub fn root(mut self) -> Self {
        self.root = Some(true);
        self
    }

    /// Every field the span declared was recorded.
    pub fn fully_recorded(mut self) -> Self {
        self.fully_recorded = true;
        self
    }

    /// The span recorded an event with this name.
    pub fn with_event(mut self, name: impl Into<String>) -> Self {
        self.events.push(name.into());
        self
    }

    /// Some direct child matches `child`.
    pub fn with_child(mut self, child: SpanMatcher) -> Self {
        self.children.push(child);
        self
    }

    /// Some span below this one matches `descendant`.
    pub fn with_descendant(mut self, descendant: SpanMatcher) -> Self {
        self.descendants.push(descendant);
        self
    }

    /// The parent matches `parent`.
    pub fn with_parent(mut self, parent: SpanMatcher) -> Self {
        self.parent = Some(Box::new(parent));
        self
    }

    /// Some ancestor matches `ancestor`.
    pub fn with_ancestor(mut self, ancestor: SpanMatcher) -> Self {
        self.ancestors.push(ancestor);
        self
    }

    /// The span's parent is remote: its context came from another node or process. With
    /// the caller's own spans in the set (a union of captures, or what a receiver got from
    /// every node), [`with_remote_parent_from`](Self::with_remote_parent_from) also says
    /// which span it was.
    pub fn with_remote_parent(mut self) -> Self {
        self.remote_parent = Some(None);
        self
    }

    /// The span's parent is remote and is a span in the set that matches `parent` — for
    /// example `expect::span().named("send_request").with_kind(SpanKind::Client)
    /// .on_node(caller)`: the edge's kinds and nodes in one condition.
    pub fn with_remote_parent_from(mut self, parent: SpanMatcher) -> Self {
        self.remote_parent = Some(Some(Box::new(parent)));
        self
    }

    /// The span ran on the node whose `service.instance.id` is `instance` (a mesh node's
    /// peer id, as `Mesh::peer_id` gives it).
    pub fn on_node(mut self, instance: impl ToString) -> Self {
        self.node = Some(instance.to_string());
        self
    }

    /// Another span of the same trace matches `other`.
    pub fn in_same_trace_as(mut self, other: SpanMatcher) -> Self {
        self.same_trace.push(other);
        self
    }

    /// Whether `span` satisfies every condition.
    pub fn matches(&self, span: SpanRef<'_>) -> bool {
        self.mismatches(span).is_empty()
    }

    /// Every condition `span` fails, described.
    pub fn mismatches(&self, span: SpanRef<'_>) -> Vec<String> {
        let record = span.record();
        let mut out = Vec::new();
        if let Some(name) = &self.name {
            if record.name != *name {
                out.push(format!("name was {:?}", record.name));
            }
        }
        for (key, matcher) in &self.attrs {
            if let Some(why) = matcher.check(span.attribute(key)) {
                out.push(format!("{key} {matcher}: {why}"));
            }
        }
        if let Some(code) = self.status {
            if record.status.code != code {
                out.push(format!("status was {}", record.status.code));
            }
        }
        if let Some(matcher) = &self.status_message {
            let message = Value::Str(record.status.message.clone());
            if let Some(why) = matcher.check(Some(&message)) {
                out.push(format!("status message {matcher}: {why}"));
            }
        }
        if let Some(kind) = self.kind {
            if record.kind != kind {
                out.push(format!("kind was {}", record.kind));
            }
        }
        if self.root == Some(true) && record.parent.is_some() {
            out.push("has a parent".to_owned());
        }
        if self.fully_recorded && !record.unrecorded_fields.is_empty() {
            let fields: Vec<&str> = record
                .unrecorded_fields
                .iter()
                .map(String::as_str)
                .collect();
            out.push(format!("never recorded: {}", fields.join(", ")));
        }
        for event in &self.events {
            if !record.events.iter().any(|e| e.name == *event) {
                out.push(format!("no event {event:?}"));
            }
        }
        for child in &self.children {
            if let Some(why) = missing("child", child, span.children()) {
                out.push(why);
            }
        }
        for descendant in &self.descendants {
            if let Some(why) = missing("descendant", descendant, span.descendants()) {
                out.push(why);
            }
        }
        if let Some(parent) = &self.parent {
            match span.parent() {
                Some(p) => {
                    let misses = parent.mismatches(p);
                    if !misses.is_empty() {
                        out.push(format!(
                            "parent {:?} is not {parent}: {}",
                            p.name(),
                            misses.join("; ")
                        ));
                    }
                }
                None => out.push(format!("no parent (wanted {parent})")),
            }
        }
        for ancestor in &self.ancestors {
            if let Some(why) = missing("ancestor", ancestor, span.ancestors().collect()) {
                out.push(why);
            }
        }
        if let Some(from) = &self.remote_parent {
            match (record.parent, span.parent()) {
                (Some(parent), _) if parent.remote != Some(true) => {
                    out.push("its parent is local, not remote".to_owned())
                }
                (None, _) => out.push("no parent (wanted a remote one)".to_owned()),
                (Some(_), None) if from.is_some() => out.push(
                    "its remote parent is not among the spans (export or capture it too)"
                        .to_owned(),
                ),
                (Some(_), Some(p)) => {
                    if let Some(from) = from {
                        let misses = from.mismatches(p);
                        if !misses.is_empty() {
                            out.push(format!(
                                "remote parent {:?} is not {from}: {}",
                                p.name(),
                                misses.join("; ")
                            ));
                        }
                    }
                }
                (Some(_), None) => {}
            }
        }
        if let Some(node) = &self.node {
            let instance = span.attribute("service.instance.id");
            if instance.and_then(Value::as_str) != Some(node.as_str()) {
                out.push(match instance {
                    Some(other) => format!(
                        "ran on node {}, not {node}",
                        other
                            .as_str()
                            .map_or_else(|| other.to_string(), str::to_owned)
                    ),
                    None => format!("has no service.instance.id (wanted node {node})"),
                });
            }
        }
        for other in &self.same_trace {
            let others: Vec<SpanRef<'_>> = span
                .trace()
                .spans()
                .filter(|s| s.record().span_id != record.span_id)
                .collect();
            if let Some(why) = missing("span in the same trace", other, others) {
                out.push(why);
            }
        }
        out
    }
}

/// `None` when some candidate matches `matcher`; else why not, with the closest
/// candidate's own misses, so a nested failure names the innermost condition that missed.
fn missing(what: &str, matcher: &SpanMatcher, candidates: Vec<SpanRef<'_>>) -> Option<String> {
    let mut closest: Option<(SpanRef<'_>, Vec<String>)> = None;
    for candidate in candidates {
        let misses = matcher.mismatches(candidate);
        if misses.is_empty() {
            return None;
        }
        if closest
            .as_ref()
            .is_none_or(|(_, best)| misses.len() < best.len())
        {
            closest = Some((candidate, misses));
        }
    }
    Some(match closest {
        Some((span, misses)) => format!(
            "no {what} {matcher} (closest, {:?}: {})",
            span.name(),
            misses.join("; ")
        ),
        None => format!("no {what} {matcher} (none at all)"),
    })
}

impl fmt::Display for SpanMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match &self.name {
            Some(name) => parts.push(format!("span {name:?}")),
            None => parts.push("span".to_owned()),
        }
        for (key, matcher) in &self.attrs {
            parts.push(format!("{key} {matcher}"));
        }
        if let Some(code) = self.status {
            parts.push(format!("status {code}"));
        }
        if let Some(matcher) = &self.status_message {
            parts.push(format!("status message {matcher}"));
        }
        if let Some(kind) = self.kind {
            parts.push(format!("kind {kind}"));
        }
        if self.root == Some(true) {
            parts.push("root".to_owned());
        }
        if self.fully_recorded {
            parts.push("fully recorded".to_owned());
        }
        for event in &self.events {
            parts.push(format!("event {event:?}"));
        }
        for child in &self.children {
            parts.push(format!("child ({child})"));
        }
        for descendant in &self.descendants {
            parts.push(format!("descendant ({descendant})"));
        }
        if let Some(parent) = &self.parent {
            parts.push(format!("parent ({parent})"));
        }
        for ancestor in &self.ancestors {
            parts.push(format!("ancestor ({ancestor})"));
        }
        match &self.remote_parent {
            Some(Some(parent)) => parts.push(format!("remote parent ({parent})")),
            Some(None) => parts.push("remote parent".to_owned()),
            None => {}
        }
        if let Some(node) = &self.node {
            parts.push(format!("on node {node}"));
        }
        for other in &self.same_trace {
            parts.push(format!("in the same trace as ({other})"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A failed expectation: what was wanted, the closest spans and why they missed, and every
/// trace that did arrive, rendered.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AssertionError {
    message: String,
}

// `unwrap()` and `?` in tests print `Debug`: make it the full readable message.
impl fmt::Debug for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl AssertionError {
    /// An error with this message.
    pub fn new(message: String) -> Self {
        AssertionError { message }
    }

    /// The full message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// How many candidates a failure lists.
const CANDIDATES: usize = 3;

impl TraceSet {
    /// Expects exactly one span to match; returns it.
    ///
    /// ```should_panic
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// use p2p_otel_testkit::tree::expect;
    /// let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("p2p_search", query_text = "serde").in_scope(|| {});
    /// });
    /// // Fails, printing:
    /// //   expected exactly one span "p2p_search", query_text == "tokio"; found none
    /// //   closest: p2p_search (trace 1): query_text == "tokio": was "serde" (string)
    /// //   and the rendered trees.
    /// handle.traces().expect(&expect::span().named("p2p_search").with_attr("query_text", "tokio")).unwrap();
    /// ```
    pub fn expect(&self, matcher: &SpanMatcher) -> Result<SpanRef<'_>, AssertionError> {
        let found = self.find(matcher);
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.failure(
                &format!("expected exactly one {matcher}; found none"),
                matcher,
            )),
            many => Err(self.failure(
                &format!("expected exactly one {matcher}; found {}", many.len()),
                matcher,
            )),
        }
    }

    /// Expects at least one span to match; returns them all.
    pub fn expect_some(&self, matcher: &SpanMatcher) -> Result<Vec<SpanRef<'_>>, AssertionError> {
        let found = self.find(matcher);
        if found.is_empty() {
            return Err(self.failure(
                &format!("expected at least one {matcher}; found none"),
                matcher,
            ));
        }
        Ok(found)
    }

    /// Expects exactly `count` spans to match.
    pub fn expect_count(
        &self,
        matcher: &SpanMatcher,
        count: usize,
    ) -> Result<Vec<SpanRef<'_>>, AssertionError> {
        let found = self.find(matcher);
        if found.len() != count {
            return Err(self.failure(
                &format!("expected {count} × {matcher}; found {}", found.len()),
                matcher,
            ));
        }
        Ok(found)
    }

    /// Expects no span to match.
    pub fn expect_none(&self, matcher: &SpanMatcher) -> Result<(), AssertionError> {
        let found = self.find(matcher);
        if found.is_empty() {
            return Ok(());
        }
        Err(self.failure(
            &format!("expected no {matcher}; found {}", found.len()),
            &SpanMatcher::default(),
        ))
    }

    /// Expects every trace to be complete: no span whose parent is missing.
    pub fn expect_no_orphans(&self) -> Result<(), AssertionError> {
        let orphans = self.orphans();
        if orphans.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = orphans.iter().map(|span| span.name()).collect();
        Err(self.failure(
            &format!(
                "expected no orphan spans; found {}: {}",
                orphans.len(),
                names.join(", ")
            ),
            &SpanMatcher::default(),
        ))
    }

    /// Expects every span, whatever its name, to be matched by one of `matchers` — the
    /// "nothing unexpected" check.
    pub fn expect_only(&self, matchers: &[SpanMatcher]) -> Result<(), AssertionError> {
        let unexpected: Vec<SpanRef<'_>> = self
            .spans()
            .filter(|span| !matchers.iter().any(|m| m.matches(*span)))
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = unexpected.iter().map(|span| span.name()).collect();
        Err(self.failure(
            &format!(
                "{} unexpected span(s): {}",
                unexpected.len(),
                names.join(", ")
            ),
            &SpanMatcher::default(),
        ))
    }

    fn failure(&self, headline: &str, matcher: &SpanMatcher) -> AssertionError {
        let mut message = format!("{headline}\n");
        let mut candidates: Vec<(usize, bool, SpanRef<'_>, Vec<String>)> = self
            .spans()
            .map(|span| {
                let misses = matcher.mismatches(span);
                let same_name = matcher.name.as_deref() == Some(span.name());
                (misses.len(), !same_name, span, misses)
            })
            .filter(|(count, ..)| *count > 0)
            .collect();
        candidates.sort_by(|a, b| (a.1, a.0, a.2.name()).cmp(&(b.1, b.0, b.2.name())));
        if !candidates.is_empty() && (matcher.name.is_some() || !matcher.attrs.is_empty()) {
            message.push_str("closest candidates:\n");
            for (_, _, span, misses) in candidates.iter().take(CANDIDATES) {
                message.push_str(&format!("  - {}: {}\n", span.name(), misses.join("; ")));
            }
        }
        // The headline and candidates name nodes as the trees below do.
        let mut message = self.alias_text(&message);
        message.push_str(&format!(
            "received {} trace(s), {} span(s):\n{}",
            self.traces().len(),
            self.span_count(),
            self.render()
        ));
        AssertionError { message }
    }
}
