//! Turns tracing fields into typed attributes, and picks out the fields that carry span
//! metadata (`otel.name`, `otel.kind`, `otel.status_code`, `otel.status_description`).

use std::fmt;

use tracing::field::{Field, Visit};

use crate::model::{Attributes, SpanKind, StatusCode, Value};

/// Metadata a span's fields asked for, as opposed to plain attributes.
#[derive(Debug, Default)]
pub(crate) struct SpanOverrides {
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) status_code: Option<StatusCode>,
    pub(crate) status_description: Option<String>,
}

/// Records every field it visits into `attributes`, except the `otel.*` fields that set
/// span metadata (tracing-opentelemetry's conventions), which go to `overrides`.
pub(crate) struct FieldVisitor<'a> {
    pub(crate) attributes: &'a mut Attributes,
    pub(crate) overrides: Option<&'a mut SpanOverrides>,
    /// For events: the `message` field becomes the event name instead of an attribute.
    pub(crate) message: Option<&'a mut Option<String>>,
}

impl FieldVisitor<'_> {
    fn record(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                *message = Some(match value {
                    Value::Str(s) => s,
                    other => other.to_string(),
                });
                return;
            }
        }
        if let Some(overrides) = self.overrides.as_deref_mut() {
            let text = || match &value {
                Value::Str(s) => s.clone(),
                other => other.to_string(),
            };
            match name {
                "otel.name" => return overrides.name = Some(text()),
                "otel.kind" => return overrides.kind = SpanKind::parse(&text()),
                "otel.status_code" => return overrides.status_code = StatusCode::parse(&text()),
                "otel.status_description" | "otel.status_message" => {
                    return overrides.status_description = Some(text())
                }
                _ => {}
            }
        }
        self.attributes.insert(name.to_owned(), value);
    }
}

/// An unsigned or wide integer as OpenTelemetry exports it: an int when it fits in
/// `i64`, else its decimal text (never a silent wrap).
fn wide_int(value: impl TryInto<i64> + ToString + Copy) -> Value {
    match value.try_into() {
        Ok(int) => Value::Int(int),
        Err(_) => Value::Str(value.to_string()),
    }
}

impl Visit for FieldVisitor<'_> {
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
