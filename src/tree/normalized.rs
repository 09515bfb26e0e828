//! The normalized form's types: what a rendering and a snapshot's serde form are made of.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::model::{SpanKind, StatusCode, Value};

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
        Value::Empty => serializer.serialize_unit(),
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

/// A whole [`TraceSet`](super::TraceSet), normalized: serialize it for `insta::assert_yaml_snapshot!`.
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
