//! A contract once loaded: attributes resolved, references followed, groups flattened.

use crate::model::{SpanKind, Value};

/// What values an attribute takes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttributeType {
    String,
    Int,
    Double,
    Boolean,
    Array(Box<AttributeType>),
    /// Members' values; `open` when other values are allowed (Weaver's enums are open
    /// unless `allow_custom_values: false`: an unknown value is information, not a
    /// violation).
    Enum {
        members: Vec<Value>,
        open: bool,
    },
    /// `template[T]`: the key is a prefix, `key.<anything>` carries a `T`.
    Template(Box<AttributeType>),
    Any,
}

impl AttributeType {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        if let Some(inner) = name
            .strip_prefix("template[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            return AttributeType::parse(inner).map(|t| AttributeType::Template(Box::new(t)));
        }
        if let Some(element) = name.strip_suffix("[]") {
            return match AttributeType::parse(element)? {
                AttributeType::Array(_) | AttributeType::Template(_) => None,
                element => Some(AttributeType::Array(Box::new(element))),
            };
        }
        Some(match name {
            "string" => AttributeType::String,
            "int" => AttributeType::Int,
            "double" => AttributeType::Double,
            "boolean" => AttributeType::Boolean,
            "any" => AttributeType::Any,
            _ => return None,
        })
    }

    /// Whether `value` has this type (an int passes for a double, as OTLP exporters may
    /// send a whole number either way).
    pub(crate) fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (AttributeType::Any, _)
            | (AttributeType::String, Value::Str(_))
            | (AttributeType::Int, Value::Int(_))
            | (AttributeType::Double, Value::Double(_) | Value::Int(_))
            | (AttributeType::Boolean, Value::Bool(_)) => true,
            (AttributeType::Array(element), Value::Array(items)) => {
                items.iter().all(|item| element.accepts(item))
            }
            (AttributeType::Template(inner), value) => inner.accepts(value),
            (AttributeType::Enum { members, .. }, value) => {
                // The members' type: all string, or all int.
                members.first().is_none_or(|first| {
                    std::mem::discriminant(first) == std::mem::discriminant(value)
                })
            }
            _ => false,
        }
    }

    /// The type as a registry writes it.
    pub(crate) fn name(&self) -> String {
        match self {
            AttributeType::String => "string".into(),
            AttributeType::Int => "int".into(),
            AttributeType::Double => "double".into(),
            AttributeType::Boolean => "boolean".into(),
            AttributeType::Array(element) => format!("{}[]", element.name()),
            AttributeType::Enum { members, .. } => match members.first() {
                Some(Value::Int(_)) => "enum of int".into(),
                _ => "enum of string".into(),
            },
            AttributeType::Template(inner) => format!("template[{}]", inner.name()),
            AttributeType::Any => "any".into(),
        }
    }
}

/// An attribute of the registry.
#[derive(Clone, Debug)]
pub(crate) struct AttributeDef {
    pub key: String,
    pub attribute_type: AttributeType,
    /// Why it is deprecated, if it is.
    pub deprecated: Option<String>,
    /// Its `stability` as written (`stable`, `development`, …), if given.
    pub stability: Option<String>,
    /// Where it was defined, for error messages.
    pub defined_at: String,
}

/// How strongly a group asks for an attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requirement {
    Required,
    ConditionallyRequired(String),
    Recommended,
    OptIn,
}

impl Requirement {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::ConditionallyRequired(_) => "conditionally_required",
            Requirement::Recommended => "recommended",
            Requirement::OptIn => "opt_in",
        }
    }
}

/// An attribute as a group uses it: the registry's definition, refined.
#[derive(Clone, Debug)]
pub(crate) struct AttributeUse {
    pub def: AttributeDef,
    pub requirement: Requirement,
}

/// The signal a group declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GroupKind {
    AttributeGroup,
    Span {
        kind: Option<SpanKind>,
    },
    Metric {
        instrument: Instrument,
        unit: String,
    },
    Event,
}

/// A metric instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Instrument {
    Counter,
    UpDownCounter,
    Gauge,
    Histogram,
}

impl Instrument {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "counter" => Instrument::Counter,
            "updowncounter" => Instrument::UpDownCounter,
            "gauge" => Instrument::Gauge,
            "histogram" => Instrument::Histogram,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Instrument::Counter => "counter",
            Instrument::UpDownCounter => "updowncounter",
            Instrument::Gauge => "gauge",
            Instrument::Histogram => "histogram",
        }
    }
}

/// A group after resolution: its own attributes, those of the group it extends and of
/// the attribute groups it includes.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedGroup {
    pub id: String,
    /// The span, metric or event name telemetry carries.
    pub name: String,
    pub kind: GroupKind,
    pub brief: String,
    pub deprecated: Option<String>,
    /// Its `stability` as written, if given.
    pub stability: Option<String>,
    pub attributes: Vec<AttributeUse>,
    /// Position in `attributes` by key.
    pub attribute_index: NameMap<usize>,
    pub structure: super::structure::Structure,
    pub alerts: Vec<super::structure::Alert>,
    /// `annotations.cardinality`: the most distinct values an attribute may take over a
    /// run, by key.
    pub cardinality: Vec<(String, usize)>,
    /// `file:line`.
    pub defined_at: String,
}

impl ResolvedGroup {
    pub(crate) fn signal_type(&self) -> &'static str {
        match self.kind {
            GroupKind::AttributeGroup => "attribute_group",
            GroupKind::Span { .. } => "span",
            GroupKind::Metric { .. } => "metric",
            GroupKind::Event => "event",
        }
    }
}

pub(crate) type NameMap<V> = crate::hash::IdMap<String, V>;
