//! The normalized form of a [`TraceSet`]: ids replaced by aliases in render order,
//! volatile values redacted, instrumentation noise hidden, siblings in a deterministic
//! order. Both the text rendering and the serde form come from it, so they always agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use regex::Regex;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::{SpanRef, Trace, TraceSet};
use crate::model::{Attributes, Resource, Scope, SpanKind, StatusCode, Value};

/// How siblings are ordered in a rendering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildOrder {
    /// By start time, then name (the default). Right for sequential work.
    #[default]
    StartTime,
    /// By name (then content), ignoring time: for children that run concurrently, whose
    /// start order changes from run to run.
    Name,
}

/// What a rendering hides, redacts and aliases. [`Default`] holds:
///
/// - hidden keys (instrumentation noise that differs by machine or line number):
///   `busy_ns`, `idle_ns`, `thread.id`, `thread.name`, `code.file.path`,
///   `code.module.name`, `code.line.number`, `code.filepath`, `code.namespace`,
///   `code.lineno`;
/// - redacted keys (shown as `[redacted]`): any key ending in `_ms`, `_ns`, `_us`,
///   `_secs` or `_seconds`, and `dht_query_id`, `message_id`, `process.pid`, `host.name`;
/// - aliased values (shown as `[peer 1]`, `[instance 2]`…, numbered in render order, the
///   same value always getting the same alias): libp2p peer ids anywhere in a string,
///   and the values of `service.instance.id` and `peer_id`; trace and span ids inside
///   string values become the alias of that trace or span.
///
/// ```
/// use p2p_otel_testkit::tree::{ChildOrder, RenderSettings};
/// let settings = RenderSettings::default()
///     .redact_key("request_nonce")
///     .alias_key("node", "node")
///     .child_order(ChildOrder::Name);
/// # let _ = settings;
/// ```
#[derive(Clone, Debug)]
pub struct RenderSettings {
    hidden_keys: BTreeSet<String>,
    redacted_keys: BTreeSet<String>,
    redacted_suffixes: Vec<String>,
    aliased_keys: BTreeMap<String, String>,
    alias_patterns: Vec<(Regex, String)>,
    child_order: ChildOrder,
    unrecorded_fields: bool,
    /// Node `i`'s ids (peer id, instance id): rendered as `[node i]`.
    node_ids: Vec<String>,
}

const PEER_ID_PATTERN: &str =
    r"\b(?:12D3KooW|16Uiu2HA)[1-9A-HJ-NP-Za-km-z]{40,50}\b|\bQm[1-9A-HJ-NP-Za-km-z]{44}\b";

fn owned<C: FromIterator<String>>(items: &[&str]) -> C {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            hidden_keys: owned(&[
                "busy_ns",
                "idle_ns",
                "thread.id",
                "thread.name",
                "code.file.path",
                "code.module.name",
                "code.line.number",
                "code.filepath",
                "code.namespace",
                "code.lineno",
            ]),
            redacted_keys: owned(&["dht_query_id", "message_id", "process.pid", "host.name"]),
            redacted_suffixes: owned(&["_ms", "_ns", "_us", "_secs", "_seconds"]),
            aliased_keys: [("service.instance.id", "instance"), ("peer_id", "peer")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            alias_patterns: Regex::new(PEER_ID_PATTERN)
                .map(|re| vec![(re, "peer".to_owned())])
                .unwrap_or_default(),
            child_order: ChildOrder::StartTime,
            unrecorded_fields: true,
            node_ids: Vec::new(),
        }
    }
}

impl RenderSettings {
    /// Settings that hide, redact and alias nothing (ids are still aliased).
    pub fn raw() -> Self {
        RenderSettings {
            hidden_keys: BTreeSet::new(),
            redacted_keys: BTreeSet::new(),
            redacted_suffixes: Vec::new(),
            aliased_keys: BTreeMap::new(),
            alias_patterns: Vec::new(),
            child_order: ChildOrder::StartTime,
            unrecorded_fields: true,
            node_ids: Vec::new(),
        }
    }

    /// Leaves this attribute out of the rendering entirely.
    pub fn hide_key(mut self, key: impl Into<String>) -> Self {
        self.hidden_keys.insert(key.into());
        self
    }

    /// Shows this attribute again, if a default hid it.
    pub fn show_key(mut self, key: &str) -> Self {
        self.hidden_keys.remove(key);
        self
    }

    /// Shows this attribute's value as `[redacted]` (its presence still shows).
    pub fn redact_key(mut self, key: impl Into<String>) -> Self {
        self.redacted_keys.insert(key.into());
        self
    }

    /// Redacts every attribute whose key ends with `suffix`.
    pub fn redact_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.redacted_suffixes.push(suffix.into());
        self
    }

    /// Replaces each distinct value of this attribute by `[label N]`.
    pub fn alias_key(mut self, key: impl Into<String>, label: impl Into<String>) -> Self {
        self.aliased_keys.insert(key.into(), label.into());
        self
    }

    /// Replaces every match of `pattern` inside string values by `[label N]`.
    ///
    /// An invalid pattern is returned as the error, with the settings unchanged.
    pub fn alias_pattern(
        mut self,
        pattern: &str,
        label: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        self.alias_patterns
            .push((Regex::new(pattern)?, label.into()));
        Ok(self)
    }

    /// Names nodes by their ids, in node order: wherever node `i`'s id (its peer id or
    /// `service.instance.id`) appears — a resource, an attribute, text — it renders as
    /// `[node i]`, whatever order the spans come in. A mesh and per-node telemetry give
    /// these settings (`Mesh::render_settings`, `PerNode::render_settings`).
    ///
    /// ```
    /// use p2p_otel_testkit::tree::RenderSettings;
    /// let settings = RenderSettings::default().nodes(["12D3KooWA", "12D3KooWB"]);
    /// assert_eq!(settings.alias_text("12D3KooWB timed out"), "[node 1] timed out");
    /// ```
    pub fn nodes(mut self, ids: impl IntoIterator<Item = impl ToString>) -> Self {
        self.node_ids = ids.into_iter().map(|id| id.to_string()).collect();
        self
    }

    /// `text` with every node id these settings know replaced by `[node N]`.
    pub fn alias_text(&self, text: &str) -> String {
        let mut ids: Vec<(usize, &String)> = self.node_ids.iter().enumerate().collect();
        // Longer ids first, so that no id is replaced inside a longer one.
        ids.sort_by_key(|(_, id)| std::cmp::Reverse(id.len()));
        let mut out = text.to_owned();
        for (index, id) in ids {
            if !id.is_empty() {
                out = out.replace(id.as_str(), &format!("[node {index}]"));
            }
        }
        out
    }

    /// Whether to list declared fields that were never recorded (default yes). Only the
    /// in-process capture knows them: turn it off to compare a capture with what a receiver
    /// got.
    pub fn unrecorded_fields(mut self, show: bool) -> Self {
        self.unrecorded_fields = show;
        self
    }

    /// Sets how siblings are ordered.
    pub fn child_order(mut self, order: ChildOrder) -> Self {
        self.child_order = order;
        self
    }

    fn is_redacted(&self, key: &str) -> bool {
        self.redacted_keys.contains(key)
            || self
                .redacted_suffixes
                .iter()
                .any(|suffix| key.ends_with(suffix.as_str()))
    }
}

/// A value as a rendering shows it: the typed value, or a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NormalizedValue {
    /// The value itself, possibly with aliases substituted into strings.
    Value(Value),
    /// A placeholder such as `[redacted]` or `[peer 1]`.
    Placeholder(String),
}

impl fmt::Display for NormalizedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NormalizedValue::Value(value) => write!(f, "{value}"),
            NormalizedValue::Placeholder(text) => f.write_str(text),
        }
    }
}

impl Serialize for NormalizedValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            NormalizedValue::Value(value) => serialize_value(value, serializer),
            NormalizedValue::Placeholder(text) => serializer.serialize_str(text),
        }
    }
}

/// Values as plain YAML/JSON scalars, so snapshots read naturally.
fn serialize_value<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    struct Plain<'a>(&'a Value);
    impl Serialize for Plain<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize_value(self.0, serializer)
        }
    }
    match value {
        Value::Str(s) => serializer.serialize_str(s),
        Value::Int(i) => serializer.serialize_i64(*i),
        Value::Double(d) => serializer.serialize_f64(*d),
        Value::Bool(b) => serializer.serialize_bool(*b),
        Value::Bytes(_) => serializer.collect_str(value),
        Value::Array(items) => {
            let mut seq = serializer.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&Plain(item))?;
            }
            seq.end()
        }
        Value::Map(entries) => {
            let mut map = serializer.serialize_map(Some(entries.len()))?;
            for (key, item) in entries {
                map.serialize_entry(key, &Plain(item))?;
            }
            map.end()
        }
    }
}

/// A resource, listed once and referred to by alias.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedResource {
    /// `resource 1`, `resource 2`… in render order.
    pub(crate) alias: String,
    /// Its attributes, normalized.
    pub(crate) attributes: BTreeMap<String, NormalizedValue>,
}

/// An instrumentation scope, listed once and referred to by alias.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedScope {
    /// `scope 1`, `scope 2`… in render order.
    pub(crate) alias: String,
    /// The scope name.
    pub(crate) name: String,
    /// The scope version.
    pub(crate) version: String,
}

/// An event, normalized.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedEvent {
    /// The event name.
    pub(crate) name: String,
    /// Its attributes, normalized.
    pub(crate) attributes: BTreeMap<String, NormalizedValue>,
}

/// A span and its subtree, normalized.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedSpan {
    /// The span name.
    pub(crate) name: String,
    /// `span N`, present only when something refers to this span (a link, an attribute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) alias: Option<String>,
    /// The kind.
    pub(crate) kind: SpanKind,
    /// The status code.
    pub(crate) status: StatusCode,
    /// The status message, when there is one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) status_message: String,
    /// Alias of the span's resource.
    pub(crate) resource: String,
    /// Alias of the span's scope.
    pub(crate) scope: String,
    /// Whether the parent was in another process (propagated context).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) remote_parent: bool,
    /// Whether the span had not ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) open: bool,
    /// Attributes, normalized.
    pub(crate) attributes: BTreeMap<String, NormalizedValue>,
    /// Declared fields that were never recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unrecorded_fields: Vec<String>,
    /// Events in recorded order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) events: Vec<NormalizedEvent>,
    /// Links, as `trace N / span M` (or `trace N / [span outside the set]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) links: Vec<String>,
    /// Children, in the settings' order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) children: Vec<NormalizedSpan>,
}

/// A span whose parent is missing, with the alias of the missing parent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedOrphan {
    /// Alias of the parent that never arrived.
    pub(crate) missing_parent: String,
    /// The orphan and its subtree.
    pub(crate) span: NormalizedSpan,
}

/// One trace, normalized.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NormalizedTrace {
    /// `trace 1`, `trace 2`… in render order.
    pub(crate) alias: String,
    /// Root spans and their subtrees.
    pub(crate) roots: Vec<NormalizedSpan>,
    /// Subtrees whose parent is missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) orphans: Vec<NormalizedOrphan>,
}

/// A whole [`TraceSet`], normalized: serialize it for `insta::assert_yaml_snapshot!`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Normalized {
    /// Distinct resources, in render order.
    pub(crate) resources: Vec<NormalizedResource>,
    /// Distinct scopes, in render order.
    pub(crate) scopes: Vec<NormalizedScope>,
    /// Traces, in render order.
    pub(crate) traces: Vec<NormalizedTrace>,
    /// How many duplicate spans were dropped.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) duplicates: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Assigns `label N` aliases, one per distinct value, in first-use order.
#[derive(Default)]
struct Aliases {
    by_value: HashMap<String, String>,
    counters: HashMap<String, usize>,
}

impl Aliases {
    fn alias(&mut self, label: &str, value: &str) -> String {
        if let Some(alias) = self.by_value.get(value) {
            return alias.clone();
        }
        let counter = self.counters.entry(label.to_owned()).or_default();
        *counter += 1;
        let alias = format!("{label} {counter}");
        self.by_value.insert(value.to_owned(), alias.clone());
        alias
    }
}

struct Normalizer<'s> {
    settings: &'s RenderSettings,
    aliases: Aliases,
    /// Trace and span ids in hex, with their label, for substitution in strings.
    known_ids: HashMap<String, &'static str>,
    /// Span ids that something refers to, so they get a visible alias.
    referenced: BTreeSet<String>,
    resources: Vec<(Arc<Resource>, String)>,
    scopes: Vec<(Arc<Scope>, String)>,
    /// Finds hex runs as long as a span id or a trace id.
    hex_run: Option<Regex>,
}

pub(super) fn normalize(set: &TraceSet, settings: &RenderSettings) -> Normalized {
    let mut known_ids = HashMap::new();
    let mut referenced = BTreeSet::new();
    for span in set.spans() {
        let record = span.record();
        known_ids.insert(record.trace_id.to_string(), "trace");
        known_ids.insert(record.span_id.to_string(), "span");
        if let Some(parent) = record.parent {
            known_ids.insert(parent.span_id.to_string(), "span");
        }
        for link in &record.links {
            known_ids.insert(link.trace_id.to_string(), "trace");
            known_ids.insert(link.span_id.to_string(), "span");
            referenced.insert(link.span_id.to_string());
        }
    }
    let mut aliases = Aliases::default();
    for (index, id) in settings.node_ids.iter().enumerate() {
        aliases.by_value.insert(id.clone(), format!("node {index}"));
    }
    let mut normalizer = Normalizer {
        settings,
        aliases,
        known_ids,
        referenced,
        resources: Vec::new(),
        scopes: Vec::new(),
        hex_run: Regex::new(r"\b[0-9a-f]{16}(?:[0-9a-f]{16})?\b").ok(),
    };
    let mut traces: Vec<&Trace> = set.traces().iter().collect();
    if settings.child_order == ChildOrder::Name {
        traces.sort_by_cached_key(|trace| {
            trace
                .roots()
                .iter()
                .chain(trace.orphans().iter())
                .map(|span| normalizer.content_key(*span))
                .collect::<Vec<_>>()
        });
    }
    let traces = traces
        .into_iter()
        .map(|trace| normalizer.trace(trace))
        .collect();
    let resources = std::mem::take(&mut normalizer.resources)
        .into_iter()
        .map(|(resource, alias)| NormalizedResource {
            attributes: normalizer.attributes(&resource.attributes),
            alias,
        })
        .collect();
    let scopes = normalizer
        .scopes
        .iter()
        .map(|(scope, alias)| NormalizedScope {
            alias: alias.clone(),
            name: scope.name.clone(),
            version: scope.version.clone(),
        })
        .collect();
    Normalized {
        resources,
        scopes,
        traces,
        duplicates: set.duplicates(),
    }
}

impl Normalizer<'_> {
    fn trace(&mut self, trace: &Trace) -> NormalizedTrace {
        let alias = self.aliases.alias("trace", &trace.trace_id().to_string());
        let roots = self.ordered(trace.roots());
        let roots = roots.into_iter().map(|span| self.span(span)).collect();
        let orphans = self.ordered(trace.orphans());
        let orphans = orphans
            .into_iter()
            .map(|span| {
                let missing_parent = span
                    .record()
                    .parent
                    .map(|p| self.aliases.alias("span", &p.span_id.to_string()))
                    .unwrap_or_default();
                NormalizedOrphan {
                    missing_parent,
                    span: self.span(span),
                }
            })
            .collect();
        NormalizedTrace {
            alias,
            roots,
            orphans,
        }
    }

    fn ordered<'a>(&self, mut spans: Vec<SpanRef<'a>>) -> Vec<SpanRef<'a>> {
        match self.settings.child_order {
            ChildOrder::StartTime => spans.sort_by_cached_key(|span| {
                (
                    span.record().start_unix_nanos,
                    span.name().to_owned(),
                    self.content_key(*span),
                )
            }),
            ChildOrder::Name => {
                spans.sort_by_cached_key(|span| (span.name().to_owned(), self.content_key(*span)))
            }
        }
        spans
    }

    /// What a subtree shows once normalized, with every alias and id left generic: breaks
    /// ordering ties the same way in every run and for every arrival order. Subtrees
    /// equal under this key render identically in either order, since aliases are
    /// numbered as they are met.
    fn content_key(&self, span: SpanRef<'_>) -> String {
        let record = span.record();
        let mut key = format!(
            "{}\u{1}{}\u{1}{}\u{1}{}",
            record.name,
            record.kind,
            record.status.code,
            self.generic(&record.status.message)
        );
        let attributes = |key: &mut String, attributes: &Attributes| {
            for (k, v) in attributes {
                if self.settings.hidden_keys.contains(k) {
                    continue;
                }
                // Named nodes keep their names in the key, so that siblings which differ
                // only by node sort in node order; other aliased values are alike.
                let shown = if self.settings.is_redacted(k) {
                    "[]".to_owned()
                } else if self.settings.aliased_keys.contains_key(k) {
                    let named = self.settings.alias_text(&v.to_string());
                    if named.contains("[node ") {
                        named
                    } else {
                        "[]".to_owned()
                    }
                } else {
                    self.generic(&v.to_string())
                };
                key.push_str(&format!("\u{1}{k}={shown}"));
            }
        };
        attributes(&mut key, &record.attributes);
        for event in &record.events {
            key.push_str(&format!("\u{3}{}", event.name));
            attributes(&mut key, &event.attributes);
        }
        for field in &record.unrecorded_fields {
            key.push_str(&format!("\u{4}{field}"));
        }
        for child in span.children() {
            key.push('\u{2}');
            key.push_str(&self.content_key(child));
        }
        key
    }

    /// `text` with ids and alias-pattern matches replaced by a generic marker.
    fn generic(&self, text: &str) -> String {
        let mut out = self.settings.alias_text(text);
        if let Some(hex_run) = &self.hex_run {
            out = hex_run
                .replace_all(&out, |m: &regex::Captures<'_>| {
                    if self.known_ids.contains_key(&m[0]) {
                        "[id]".to_owned()
                    } else {
                        m[0].to_owned()
                    }
                })
                .into_owned();
        }
        for (re, _) in &self.settings.alias_patterns {
            out = re.replace_all(&out, "[alias]").into_owned();
        }
        out
    }

    fn span(&mut self, span: SpanRef<'_>) -> NormalizedSpan {
        let record = span.record();
        let span_hex = record.span_id.to_string();
        let alias = self
            .referenced
            .contains(&span_hex)
            .then(|| self.aliases.alias("span", &span_hex));
        let resource = self.resource_alias(&record.resource);
        let scope = self.scope_alias(&record.scope);
        let attributes = self.attributes(&record.attributes);
        let events = record
            .events
            .iter()
            .map(|event| NormalizedEvent {
                name: event.name.clone(),
                attributes: self.attributes(&event.attributes),
            })
            .collect();
        let links = record
            .links
            .iter()
            .map(|link| {
                let trace = self.aliases.alias("trace", &link.trace_id.to_string());
                let target = self.aliases.alias("span", &link.span_id.to_string());
                format!("{trace} / {target}")
            })
            .collect();
        let children = self.ordered(span.children());
        let children = children.into_iter().map(|child| self.span(child)).collect();
        NormalizedSpan {
            name: record.name.clone(),
            alias,
            kind: record.kind,
            status: record.status.code,
            status_message: self.substitute(&record.status.message),
            resource,
            scope,
            remote_parent: record.parent.and_then(|p| p.remote) == Some(true),
            open: record.end_unix_nanos.is_none(),
            attributes,
            unrecorded_fields: if self.settings.unrecorded_fields {
                record.unrecorded_fields.iter().cloned().collect()
            } else {
                Vec::new()
            },
            events,
            links,
            children,
        }
    }

    fn resource_alias(&mut self, resource: &Arc<Resource>) -> String {
        if let Some((_, alias)) = self.resources.iter().find(|(r, _)| **r == **resource) {
            return alias.clone();
        }
        let alias = format!("resource {}", self.resources.len() + 1);
        self.resources.push((Arc::clone(resource), alias.clone()));
        alias
    }

    fn scope_alias(&mut self, scope: &Arc<Scope>) -> String {
        if let Some((_, alias)) = self.scopes.iter().find(|(s, _)| **s == **scope) {
            return alias.clone();
        }
        let alias = format!("scope {}", self.scopes.len() + 1);
        self.scopes.push((Arc::clone(scope), alias.clone()));
        alias
    }

    fn attributes(&mut self, attributes: &Attributes) -> BTreeMap<String, NormalizedValue> {
        attributes
            .iter()
            .filter(|(key, _)| !self.settings.hidden_keys.contains(key.as_str()))
            .map(|(key, value)| (key.clone(), self.value(key, value)))
            .collect()
    }

    fn value(&mut self, key: &str, value: &Value) -> NormalizedValue {
        if self.settings.is_redacted(key) {
            return NormalizedValue::Placeholder("[redacted]".to_owned());
        }
        if let Some(label) = self.settings.aliased_keys.get(key) {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            let label = if self.matches_alias_pattern(&text) {
                "peer".to_owned()
            } else {
                label.clone()
            };
            return NormalizedValue::Placeholder(format!(
                "[{}]",
                self.aliases.alias(&label, &text)
            ));
        }
        match value {
            Value::Str(s) => NormalizedValue::Value(Value::Str(self.substitute(s))),
            Value::Array(items) => NormalizedValue::Value(Value::Array(
                items
                    .iter()
                    .map(|item| match self.value(key, item) {
                        NormalizedValue::Value(v) => v,
                        NormalizedValue::Placeholder(p) => Value::Str(p),
                    })
                    .collect(),
            )),
            other => NormalizedValue::Value(other.clone()),
        }
    }

    fn matches_alias_pattern(&self, text: &str) -> bool {
        self.settings
            .alias_patterns
            .iter()
            .any(|(re, label)| label == "peer" && re.is_match(text))
    }

    /// Replaces known ids and alias-pattern matches inside a string.
    fn substitute(&mut self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(hex_run) = self.hex_run.as_ref().filter(|_| out.len() >= 16) {
            let matches: Vec<String> = hex_run
                .find_iter(&out)
                .map(|m| m.as_str().to_owned())
                .collect();
            for found in matches {
                if let Some(label) = self.known_ids.get(&found).copied() {
                    let alias = format!("[{}]", self.aliases.alias(label, &found));
                    out = out.replace(&found, &alias);
                }
            }
        }
        for index in 0..self.settings.alias_patterns.len() {
            let (re, label) = &self.settings.alias_patterns[index];
            let (re, label) = (re.clone(), label.clone());
            let matches: Vec<String> = re.find_iter(&out).map(|m| m.as_str().to_owned()).collect();
            for found in matches {
                let alias = format!("[{}]", self.aliases.alias(&label, &found));
                out = out.replace(&found, &alias);
            }
        }
        out
    }
}
