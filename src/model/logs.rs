//! Log records in the model.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use serde::{Deserialize, Serialize};

use super::metrics::{resource_from_otlp, scope_from_otlp};
use super::otlp::{attributes_from_otlp, value_from_otlp};
use super::ModelError;
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

/// Log records from OTLP `ResourceLogs`, with their resource and scope. A record's trace
/// and span ids are optional (empty, or all zeroes, when it was logged outside a span),
/// but when present they must have OTLP's lengths — as a span's must — else the whole
/// request is refused with an error that names the record.
pub fn log_records_from_otlp(resource_logs: &[ResourceLogs]) -> Result<Vec<LogRecord>, ModelError> {
    let mut out = Vec::new();
    for (r, rl) in resource_logs.iter().enumerate() {
        let resource = resource_from_otlp(rl.resource.as_ref());
        for (s, sl) in rl.scope_logs.iter().enumerate() {
            let scope = scope_from_otlp(sl.scope.as_ref());
            for (l, record) in sl.log_records.iter().enumerate() {
                let invalid = |source: ModelError| ModelError::InvalidLogRecord {
                    resource: r,
                    scope: s,
                    record: l,
                    source: Box::new(source),
                };
                out.push(LogRecord {
                    time_unix_nanos: record.time_unix_nano,
                    severity_number: record.severity_number,
                    severity_text: record.severity_text.clone(),
                    body: record
                        .body
                        .as_ref()
                        .and_then(|body: &AnyValue| value_from_otlp(body)),
                    attributes: attributes_from_otlp(&record.attributes),
                    event_name: record.event_name.clone(),
                    trace_id: optional_id(&record.trace_id, TraceId::from_slice)
                        .map_err(invalid)?,
                    span_id: optional_id(&record.span_id, SpanId::from_slice).map_err(invalid)?,
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                });
            }
        }
    }
    Ok(out)
}

/// An id that may be absent: empty or all zeroes is `None`, a wrong length an error.
pub(super) fn optional_id<T>(
    bytes: &[u8],
    parse: fn(&[u8]) -> Result<T, ModelError>,
) -> Result<Option<T>, ModelError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match parse(bytes) {
        Ok(id) => Ok(Some(id)),
        Err(ModelError::ZeroId { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
