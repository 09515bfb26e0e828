//! Turns tracing fields into typed attributes, and picks out the fields that carry span
//! metadata (`otel.name`, `otel.kind`, `otel.status_code`, `otel.status_description`).

use std::fmt;

use tracing::field::{Field, Visit};

use crate::model::{Attributes, SpanKind, StatusCode, Value};

/// Metadata a span's fields asked for, as opposed to plain attributes.
#[derive(Debug, Default)]
pub(super) struct SpanOverrides {
    pub(super) name: Option<String>,
    pub(super) kind: Option<SpanKind>,
    pub(super) status_code: Option<StatusCode>,
    pub(super) status_description: Option<String>,
}

/// Where visited fields go.
pub(super) trait FieldSink {
    /// Stores a value, replacing an earlier one for the same field.
    fn put(&mut self, name: &'static str, value: Value);

    /// Stores a value known to be the field's first.
    fn append(&mut self, name: &'static str, value: Value) {
        self.put(name, value);
    }
}

/// A span's fields while it is open: field names are `'static`, so nothing is allocated
/// for keys on the hot path. A later record of the same field replaces the value.
impl FieldSink for Vec<(&'static str, Value)> {
    fn put(&mut self, name: &'static str, value: Value) {
        match self.iter_mut().find(|(key, _)| *key == name) {
            Some((_, slot)) => *slot = value,
            None => self.push((name, value)),
        }
    }

    fn append(&mut self, name: &'static str, value: Value) {
        self.push((name, value));
    }
}

impl FieldSink for Attributes {
    fn put(&mut self, name: &'static str, value: Value) {
        self.insert(name.to_owned(), value);
    }
}

/// Records every field it visits into `sink`, except the `otel.*` fields that set span
/// metadata (tracing-opentelemetry's conventions), which go to `overrides`; and, for
/// events, the `message` field, which becomes the event name.
pub(super) struct FieldVisitor<'a, S> {
    pub(super) sink: &'a mut S,
    pub(super) overrides: Option<&'a mut SpanOverrides>,
    pub(super) message: Option<&'a mut Option<String>>,
    /// Bit `i` is set when the field with index `i` was visited.
    pub(super) visited: u64,
    /// At span creation each field arrives once, so values are appended without looking
    /// for an earlier one.
    pub(super) first_record: bool,
}

impl<'a, S: FieldSink> FieldVisitor<'a, S> {
    pub(super) fn new(sink: &'a mut S) -> Self {
        FieldVisitor {
            sink,
            overrides: None,
            message: None,
            visited: 0,
            first_record: false,
        }
    }

    fn record(&mut self, field: &Field, value: Value) {
        if let Some(bit) = 1u64.checked_shl(field.index() as u32) {
            self.visited |= bit;
        }
        let name = field.name();
        if name == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                *message = Some(into_text(value));
                return;
            }
        }
        if let Some(overrides) = self.overrides.as_deref_mut() {
            match name {
                "otel.name" => return overrides.name = Some(into_text(value)),
                "otel.kind" => return overrides.kind = SpanKind::parse(&into_text(value)),
                "otel.status_code" => {
                    return overrides.status_code = StatusCode::parse(&into_text(value))
                }
                "otel.status_description" | "otel.status_message" => {
                    return overrides.status_description = Some(into_text(value))
                }
                _ => {}
            }
        }
        if self.first_record {
            self.sink.append(name, value);
        } else {
            self.sink.put(name, value);
        }
    }
}

fn into_text(value: Value) -> String {
    match value {
        Value::Str(s) => s,
        other => other.to_string(),
    }
}

/// An unsigned or wide integer: an int when it fits in `i64`, else its decimal text
/// (never a silent wrap). Note that tracing-opentelemetry 0.34 exports *every* `u64`
/// field as text (it has no `record_u64`), so a `u64` field renders as `2` here and as
/// `"2"` after a trip through OTLP: record counts as `i64` to keep both the same.
fn wide_int(value: impl TryInto<i64> + ToString + Copy) -> Value {
    match value.try_into() {
        Ok(int) => Value::Int(int),
        Err(_) => Value::Str(value.to_string()),
    }
}

impl<S: FieldSink> Visit for FieldVisitor<'_, S> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, Value::Double(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, wide_int(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.record(field, wide_int(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.record(field, wide_int(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Value::Str(value.to_owned()));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.record(field, Value::Bytes(value.to_vec()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record(field, Value::Str(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::Str(format!("{value:?}")));
    }
}
