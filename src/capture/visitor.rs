//! Turns tracing fields into typed attributes, and picks out the fields that carry span
//! metadata (`otel.name`, `otel.kind`, `otel.status_code`, `otel.status_description`).

use std::fmt;

use tracing::field::{Field, Visit};

use super::captured::Extras;
use crate::model::compact_value::CompactValue;
use crate::model::{Attributes, SpanKind, Status, StatusCode, Value};

/// Metadata a span's fields asked for, as opposed to plain attributes.
#[derive(Debug, Default)]
pub(super) struct SpanOverrides {
    pub(super) name: Option<String>,
    pub(super) kind: Option<SpanKind>,
    /// The status as tracing-opentelemetry sets it, in the order fields were recorded:
    /// `otel.status_code` (`ok`, `error`, anything else unset) then
    /// `otel.status_description` (an error with that message).
    pub(super) status: Option<Status>,
}

impl SpanOverrides {
    /// Takes what a later record set, keeping what it did not.
    pub(super) fn update(&mut self, later: SpanOverrides) {
        if later.name.is_some() {
            self.name = later.name;
        }
        if later.kind.is_some() {
            self.kind = later.kind;
        }
        if later.status.is_some() {
            self.status = later.status;
        }
    }
}

/// Where visited fields go. A later value for the same field replaces the earlier one.
pub(super) trait FieldSink {
    /// Stores a value.
    fn put(&mut self, field: &Field, value: Value);

    /// Stores a scalar value already in compact form (an integer, a double, a bool): a
    /// sink that keeps compact values stores it without building a [`Value`].
    fn put_scalar(&mut self, field: &Field, value: CompactValue) {
        self.put(field, value.to_value());
    }

    /// Stores a string value, borrowed: a sink that can keep it without a `String` does.
    fn put_text(&mut self, field: &Field, text: &str) {
        self.put(field, Value::Str(text.to_owned()));
    }
}

/// A span's values while it is open, one slot per declared field: field names stay in the
/// span's metadata and short strings inline, so most fields allocate nothing on the hot
/// path.
impl FieldSink for [Option<CompactValue>] {
    fn put(&mut self, field: &Field, value: Value) {
        self.put_scalar(field, CompactValue::from(value));
    }

    fn put_text(&mut self, field: &Field, text: &str) {
        if let Some(slot) = self.get_mut(field.index()) {
            CompactValue::write_text(slot, text);
        }
    }

    #[inline]
    fn put_scalar(&mut self, field: &Field, value: CompactValue) {
        // A span's `Record` only carries fields of the span's own callsite, whose indices
        // are within its declared fields.
        if let Some(slot) = self.get_mut(field.index()) {
            *slot = Some(value);
        }
    }
}

impl FieldSink for Attributes {
    fn put(&mut self, field: &Field, value: Value) {
        self.insert(field.name().to_owned(), value);
    }
}

/// Records every field it visits into `sink`, except the `otel.*` fields that set span
/// metadata (tracing-opentelemetry's conventions), which go to `overrides`; and, for
/// events, the `message` field, which becomes the event name.
pub(super) struct FieldVisitor<'a, S: ?Sized> {
    pub(super) sink: &'a mut S,
    /// Where `otel.*` fields go (created on the first); `None` for events.
    pub(super) overrides: Option<&'a mut Option<Box<Extras>>>,
    pub(super) message: Option<&'a mut Option<String>>,
}

impl<'a, S: FieldSink + ?Sized> FieldVisitor<'a, S> {
    pub(super) fn new(sink: &'a mut S) -> Self {
        FieldVisitor {
            sink,
            overrides: None,
            message: None,
        }
    }

    /// Whether the field is a plain attribute: not the event's message, not an `otel.*`
    /// field of a span.
    fn is_attribute(&self, name: &str) -> bool {
        !(self.message.is_some() && name == "message"
            || self.overrides.is_some() && name.starts_with("otel."))
    }

    fn record_text(&mut self, field: &Field, text: &str) {
        if !self.is_attribute(field.name()) {
            return self.record(field, Value::Str(text.to_owned()));
        }
        self.sink.put_text(field, text);
    }

    /// An integer, double or bool: straight into the sink when it is a plain attribute.
    ///
    /// Inlined into each `record_*` so that the value is written straight into its slot
    /// (not built in pieces, then moved: a stall on every field).
    #[inline(always)]
    fn record_scalar(&mut self, field: &Field, compact: CompactValue) {
        if !self.is_attribute(field.name()) {
            return self.record(field, compact.to_value());
        }
        self.sink.put_scalar(field, compact);
    }

    fn record(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                *message = Some(into_text(value));
                return;
            }
        }
        let otel_field = matches!(
            name,
            "otel.name" | "otel.kind" | "otel.status_code" | "otel.status_description"
        );
        if let Some(extras) = self.overrides.as_deref_mut().filter(|_| otel_field) {
            let overrides = &mut extras.get_or_insert_with(Box::default).overrides;
            match name {
                "otel.name" => return overrides.name = Some(into_text(value)),
                "otel.kind" => return overrides.kind = SpanKind::parse(&into_text(value)),
                "otel.status_code" => {
                    let code = StatusCode::parse(&into_text(value)).unwrap_or_default();
                    return overrides.status = Some(Status {
                        code,
                        message: String::new(),
                    });
                }
                "otel.status_description" => {
                    return overrides.status = Some(Status {
                        code: StatusCode::Error,
                        message: into_text(value),
                    })
                }
                _ => {}
            }
        }
        self.sink.put(field, value);
    }
}

fn into_text(value: Value) -> String {
    match value {
        Value::Str(s) => s,
        other => other.to_string(),
    }
}

/// An unsigned or wide integer, as the wire carries it: tracing-opentelemetry 0.34 has no
/// `record_u64` (nor `record_i128`/`record_u128`), so it exports such a field as its
/// decimal text. The capture shows the same text, so that a test never passes in-process
/// what fails over the wire; record counts as `i64` to export numbers (the matchers say so
/// when an integer is compared with such a text).
fn wide_int(value: impl ToString) -> Value {
    Value::Str(value.to_string())
}

impl<S: FieldSink + ?Sized> Visit for FieldVisitor<'_, S> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record_scalar(field, CompactValue::Double(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_scalar(field, CompactValue::Int(value));
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
        self.record_scalar(field, CompactValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value);
    }

    /// As the wire carries it: tracing-opentelemetry 0.34 has no `record_bytes`, so the
    /// bytes arrive as tracing's debug text, `[c0 ff ee]`.
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        let hex: Vec<String> = value.iter().map(|byte| format!("{byte:02x}")).collect();
        self.record(field, Value::Str(format!("[{}]", hex.join(" "))));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record(field, Value::Str(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::Str(format!("{value:?}")));
    }
}
