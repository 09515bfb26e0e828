//! Log records in the model.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use serde::{Deserialize, Serialize};

use super::metrics::{resource_from_otlp, scope_from_otlp};
use super::otlp::{attributes_from_otlp, value_from_otlp};
use super::{Attributes, Resource, Scope, SpanId, TraceId, Value};

/// One log record, with the trace context it was emitted in (if any).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the event happened (0 when unknown), nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// OTLP severity number (1–24; 0 unspecified).
    pub severity_number: i32,
    /// Severity text such as `INFO`.
    pub severity_text: String,
    /// The body, if any.
    pub body: Option<Value>,
    /// Attributes.
    pub attributes: Attributes,
    /// Event name, when the record is an event.
    pub event_name: String,
    /// The trace the record belongs to, if emitted inside a span.
    pub trace_id: Option<TraceId>,
    /// The span the record belongs to.
    pub span_id: Option<SpanId>,
    /// The producing resource.
    pub resource: Arc<Resource>,
    /// The instrumentation scope.
    pub scope: Arc<Scope>,
}

/// Converts OTLP `ResourceLogs` into log records. Invalid (wrong-length or zero) trace or
/// span ids are kept as `None`: a log record without trace context is valid OTLP.
pub fn log_records_from_otlp(resource_logs: &[ResourceLogs]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in resource_logs {
        let resource = resource_from_otlp(rl.resource.as_ref());
        for sl in &rl.scope_logs {
            let scope = scope_from_otlp(sl.scope.as_ref());
            out.extend(sl.log_records.iter().map(|record| {
                LogRecord {
                    time_unix_nanos: record.time_unix_nano,
                    severity_number: record.severity_number,
                    severity_text: record.severity_text.clone(),
                    body: record
                        .body
                        .as_ref()
                        .and_then(|body: &AnyValue| value_from_otlp(body)),
                    attributes: attributes_from_otlp(&record.attributes),
                    event_name: record.event_name.clone(),
                    trace_id: TraceId::from_slice(&record.trace_id).ok(),
                    span_id: SpanId::from_slice(&record.span_id).ok(),
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                }
            }));
        }
    }
    out
}
