//! An attribute value in 24 bytes, for what the kit keeps in bulk (the receiver's store,
//! the capture's open and closed spans): short strings inline, longer ones without spare
//! capacity, anything nested boxed. A [`Value`] is rebuilt when somebody reads it.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};

use super::otlp::value_from_otlp_owned;
use super::{Attributes, Value};

/// The longest string kept inline, without an allocation of its own.
const INLINE: usize = 22;

/// A compact [`Value`].
#[derive(Clone, Debug)]
pub(crate) enum CompactValue {
    Short {
        len: u8,
        bytes: [u8; INLINE],
    },
    Str(Box<str>),
    Int(i64),
    Double(f64),
    Bool(bool),
    Nested(Box<Value>),
    /// An `AnyValue` with nothing set.
    Empty,
}

impl CompactValue {
    /// A string value, copied: inline when short, so most cost no allocation.
    pub(crate) fn text(text: &str) -> Self {
        match short(text) {
            Some(value) => value,
            None => CompactValue::Str(text.into()),
        }
    }

    /// Stores `text` in `slot`. A short text is copied straight into the slot's inline
    /// bytes, never into a temporary that is then moved: moving a value just written a byte
    /// at a time stalls the processor on every field.
    pub(crate) fn write_text(slot: &mut Option<CompactValue>, text: &str) {
        if text.len() > INLINE {
            *slot = Some(CompactValue::Str(text.into()));
            return;
        }
        let value = slot.insert(CompactValue::Short {
            len: text.len() as u8,
            bytes: [0; INLINE],
        });
        if let CompactValue::Short { bytes, .. } = value {
            bytes[..text.len()].copy_from_slice(text.as_bytes());
        }
    }

    /// From an OTLP value (an empty one stays empty); `None` for a string-table index,
    /// which the model leaves out.
    pub(crate) fn from_otlp(value: AnyValue) -> Option<Self> {
        let Some(value) = value.value else {
            return Some(CompactValue::Empty);
        };
        match value {
            any_value::Value::StringValue(text) => Some(CompactValue::from(Value::Str(text))),
            any_value::Value::IntValue(n) => Some(CompactValue::Int(n)),
            any_value::Value::DoubleValue(x) => Some(CompactValue::Double(x)),
            any_value::Value::BoolValue(b) => Some(CompactValue::Bool(b)),
            nested => value_from_otlp_owned(AnyValue {
                value: Some(nested),
            })
            .map(|value| CompactValue::Nested(Box::new(value))),
        }
    }

    /// The value as the model shows it.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            CompactValue::Short { len, bytes } => Value::Str(
                // Copied from a `str` cut at its length: always whole UTF-8.
                String::from_utf8_lossy(&bytes[..usize::from(*len)]).into_owned(),
            ),
            CompactValue::Str(text) => Value::Str(text.to_string()),
            CompactValue::Int(n) => Value::Int(*n),
            CompactValue::Double(x) => Value::Double(*x),
            CompactValue::Bool(b) => Value::Bool(*b),
            CompactValue::Nested(value) => (**value).clone(),
            CompactValue::Empty => Value::Empty,
        }
    }

    /// Heap bytes beyond the value itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            CompactValue::Str(text) => text.len(),
            CompactValue::Nested(value) => size_of::<Value>() + value_bytes(value),
            CompactValue::Short { .. }
            | CompactValue::Int(_)
            | CompactValue::Double(_)
            | CompactValue::Bool(_)
            | CompactValue::Empty => 0,
        }
    }
}

fn short(text: &str) -> Option<CompactValue> {
    (text.len() <= INLINE).then(|| {
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        CompactValue::Short {
            len: text.len() as u8,
            bytes,
        }
    })
}

impl From<Value> for CompactValue {
    fn from(value: Value) -> Self {
        match value {
            Value::Str(text) => short(&text).unwrap_or_else(|| CompactValue::Str(text.into())),
            Value::Int(n) => CompactValue::Int(n),
            Value::Double(x) => CompactValue::Double(x),
            Value::Bool(b) => CompactValue::Bool(b),
            Value::Empty => CompactValue::Empty,
            nested => CompactValue::Nested(Box::new(nested)),
        }
    }
}

/// Heap bytes of a model value beyond the value itself.
pub(crate) fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Str(text) => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        Value::Array(items) => items
            .iter()
            .map(|item| size_of::<Value>() + value_bytes(item))
            .sum(),
        Value::Map(map) => attributes_bytes(map),
        Value::Int(_) | Value::Double(_) | Value::Bool(_) | Value::Empty => 0,
    }
}

/// Heap bytes of model attributes (keys, values and a B-tree's per-entry share).
pub(crate) fn attributes_bytes(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(key, value)| {
            size_of::<String>() + key.len() + size_of::<Value>() + value_bytes(value)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_they_were_and_short_text_is_inline() {
        assert_eq!(size_of::<CompactValue>(), 24);
        let long = "x".repeat(INLINE + 1);
        for value in [
            Value::Str(String::new()),
            Value::Str("é".repeat(INLINE / 2)),
            Value::Str(long.clone()),
            Value::Int(-3),
            Value::Double(1.5),
            Value::Bool(true),
            Value::Array(vec![Value::Int(1)]),
        ] {
            assert_eq!(CompactValue::from(value.clone()).to_value(), value);
        }
        assert!(matches!(
            CompactValue::text("search"),
            CompactValue::Short { .. }
        ));
        assert_eq!(CompactValue::text(&long).heap_bytes(), long.len());
    }
}
