//! Typed attribute values and attribute maps.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An attribute value with its type kept, as OTLP's `AnyValue` carries it.
///
/// `Display` shows the type unambiguously: strings are quoted, doubles always carry a
/// decimal point or exponent, bytes are shown as hex.
///
/// ```
/// use p2p_otel_testkit::model::Value;
/// assert_eq!(Value::from("3").to_string(), "\"3\"");
/// assert_eq!(Value::from(3).to_string(), "3");
/// assert_eq!(Value::from(3.0).to_string(), "3.0");
/// assert_eq!(Value::Empty.to_string(), "(empty)");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A UTF-8 string.
    Str(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A homogeneous or mixed array.
    Array(Vec<Value>),
    /// A nested key/value list (OTLP `kvlist_value`).
    Map(BTreeMap<String, Value>),
    /// An empty value: an OTLP `AnyValue` with nothing set, which OTLP 1.9 made valid
    /// ("empty"), as an attribute's value or inside an array or map. Kept, never dropped.
    Empty,
}

impl Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean inside, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as a number, if it is an integer or a double.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // Precision loss above 2^53 is acceptable for range checks.
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// Whether the value carries something: a non-empty string, array, map or byte string,
    /// a non-zero number, or any boolean.
    pub fn is_non_empty(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Double(d) => *d != 0.0 && !d.is_nan(),
            Value::Bool(_) => true,
            Value::Bytes(b) => !b.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Empty => false,
        }
    }

    /// The name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Double(_) => "double",
            Value::Bool(_) => "bool",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Empty => "empty",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bytes(bytes) => {
                f.write_str("bytes(")?;
                for byte in bytes {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str(")")
            }
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {item}")?;
                }
                f.write_str("}")
            }
            Value::Empty => f.write_str("(empty)"),
        }
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

/// Attributes by key, sorted so that every rendering is deterministic.
pub type Attributes = BTreeMap<String, Value>;
