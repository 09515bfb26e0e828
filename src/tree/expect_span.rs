//! Span matchers: what a span must be, and where it must sit in its trace.

use std::fmt;

use super::attr_matcher::AttrMatcher;
use super::SpanRef;
use crate::model::{SpanKind, StatusCode, Value};

/// Entry points for building matchers, in the style of tracing-mock's `expect`.
pub mod expect {
    use super::SpanMatcher;

    /// A matcher that accepts any span; narrow it with its `named`, `with_*` methods.
    pub fn span() -> SpanMatcher {
        SpanMatcher::default()
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
    pub(super) name: Option<String>,
    pub(super) attrs: Vec<(String, AttrMatcher)>,
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
