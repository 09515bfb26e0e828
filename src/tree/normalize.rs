//! The normalized form of a [`TraceSet`]: ids replaced by aliases in render order,
//! volatile values redacted, instrumentation noise hidden, siblings in a deterministic
//! order. Both the text rendering and the serde form come from it, so they always agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use regex::Regex;

use super::normalized::{
    Normalized, NormalizedEvent, NormalizedOrphan, NormalizedResource, NormalizedScope,
    NormalizedSpan, NormalizedTrace, NormalizedValue,
};
use super::settings::{ChildOrder, RenderSettings};
use super::{SpanRef, Trace, TraceSet};
use crate::model::{Attributes, Resource, Scope, Value};

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
            // A value that is a peer id — a known node's, or any — is the node or peer
            // itself whatever its key (`peer_id`, the marketplace's `from_peer`, …): one
            // alias form, unquoted, as under an aliased key.
            Value::Str(s) if self.is_whole_peer_id(s) => {
                NormalizedValue::Placeholder(format!("[{}]", self.aliases.alias("peer", s)))
            }
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

    /// Whether `text` is, whole, a node's id or a peer id.
    fn is_whole_peer_id(&self, text: &str) -> bool {
        self.settings.node_ids.iter().any(|id| id == text)
            || self.settings.alias_patterns.iter().any(|(re, label)| {
                label == "peer" && re.find(text).is_some_and(|m| m.len() == text.len())
            })
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
