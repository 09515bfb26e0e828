//! The three OTLP signals as one abstraction, so that ingestion and each transport are
//! written once, generic over the signal: what a request and its response are, how a
//! request becomes stored items, where they are kept, how they are counted.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use serde::Serialize;

use super::compact::CompactSpan;
use super::file_export::{File, JsonLines};
use super::ingest::{Counter, Rejection, Shared};
use super::trace_protobuf;
use super::Config;
use crate::model::{
    check_metric_ids, log_records_from_otlp, metric_points_from_otlp, LogRecord, MetricPoint,
    Resource,
};
use crate::store::Store;

/// One OTLP signal: traces, metrics or logs.
pub(crate) trait Signal: Send + Sync + 'static {
    /// The export request, as both transports read it.
    type Request: Send + 'static;
    /// The export response.
    type Response: prost::Message + Serialize + Send + 'static;
    /// What is stored per request item.
    type Item: Send + 'static;

    /// What the items are called in messages: "span", "metric", "log".
    const NAME: &'static str;
    /// The counter of stored items.
    const ACCEPTED: Counter;
    /// The counter of refused items.
    const REFUSED: Counter;
    /// The OTLP-JSON lines file the requests go to.
    const FILE: File;
    /// Whether `admit` writes the file line itself, from what it stored (traces: so that
    /// a duplicate or a refused span never reaches the file); else ingestion writes the
    /// request as it came once it is stored.
    const WRITES_ITS_OWN_LINE: bool = false;

    /// Reads a request from protobuf bytes (traces keep the bytes, read when stored).
    fn from_protobuf(bytes: Bytes) -> Result<Self::Request, prost::DecodeError>;
    /// Reads a request from OTLP JSON.
    fn from_json(bytes: &[u8]) -> Result<Self::Request, serde_json::Error>;
    /// The request as it came, as an OTLP-JSON line, for the signals that do not write
    /// their own (`None` counts as a write error).
    fn json_line(request: &Self::Request) -> Option<Vec<u8>>;

    /// Converts a request into items; an invalid request is refused whole.
    fn items(shared: &Shared, request: Self::Request) -> Result<Vec<Self::Item>, Rejection>;
    /// The resource of an item, for `service.name` labels.
    fn resource(item: &Self::Item) -> &Arc<Resource>;
    /// The response, with a partial success when items were rejected or a message given.
    fn response(rejected: i64, message: String) -> Self::Response;

    /// Stores the items of one request whole, or refuses them whole.
    fn admit(
        shared: &Shared,
        items: Vec<Self::Item>,
        transport: super::ingest::Transport,
    ) -> Result<(), Rejection>;
}

/// A signal kept as a plain list of items, bounded by a count.
pub(crate) trait BatchStored: Signal {
    /// Where the items are kept.
    fn store(shared: &Shared) -> &Store<Self::Item>;
    /// How many items the store may hold.
    fn capacity(config: &Config) -> usize;
}

/// A partial success only when something was rejected or said.
fn partial<T>(rejected: i64, message: String, make: impl FnOnce(i64, String) -> T) -> Option<T> {
    (rejected > 0 || !message.is_empty()).then(|| make(rejected, message))
}

/// Spans.
#[derive(Debug)]
pub(crate) struct Traces;

/// A trace export request as it came: protobuf bytes, read when stored (straight into the
/// store's form when they hold what exporters send), or decoded from OTLP JSON.
#[derive(Debug)]
pub(crate) enum TraceRequest {
    Protobuf(Bytes),
    Json(ExportTraceServiceRequest),
}

impl Signal for Traces {
    type Request = TraceRequest;
    type Response = ExportTraceServiceResponse;
    type Item = CompactSpan;
    const NAME: &'static str = "span";
    const ACCEPTED: Counter = Counter::AcceptedSpans;
    const REFUSED: Counter = Counter::RefusedSpans;
    const FILE: File = File::Traces;
    const WRITES_ITS_OWN_LINE: bool = true;

    fn from_protobuf(bytes: Bytes) -> Result<TraceRequest, prost::DecodeError> {
        Ok(TraceRequest::Protobuf(bytes))
    }

    fn from_json(bytes: &[u8]) -> Result<TraceRequest, serde_json::Error> {
        crate::model::otlp_json::from_slice(bytes).map(TraceRequest::Json)
    }

    fn json_line(request: &TraceRequest) -> Option<Vec<u8>> {
        match request {
            TraceRequest::Protobuf(bytes) => {
                JsonLines::line(&ExportTraceServiceRequest::decode(bytes.clone()).ok()?)
            }
            TraceRequest::Json(request) => JsonLines::line(request),
        }
    }

    fn items(shared: &Shared, request: TraceRequest) -> Result<Vec<CompactSpan>, Rejection> {
        let resource_spans = match request {
            TraceRequest::Protobuf(bytes) => {
                if let Some(parsed) = trace_protobuf::parse(&bytes) {
                    return Ok(shared.spans.compact_parsed(&parsed));
                }
                ExportTraceServiceRequest::decode(bytes)
                    .map_err(|error| {
                        Rejection::Invalid(format!("malformed Protobuf request: {error}"))
                    })?
                    .resource_spans
            }
            TraceRequest::Json(request) => request.resource_spans,
        };
        shared
            .spans
            .compact_request(resource_spans)
            .map_err(|error| Rejection::Invalid(error.to_string()))
    }

    fn resource(item: &CompactSpan) -> &Arc<Resource> {
        &item.resource
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: partial(rejected, message, |rejected_spans, error_message| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }
    }

    fn admit(
        shared: &Shared,
        items: Vec<CompactSpan>,
        transport: super::ingest::Transport,
    ) -> Result<(), Rejection> {
        shared.store_spans_once(items, transport)
    }
}

/// The reading, file line and admission of a signal whose request is OTLP's own message
/// and whose items are kept as a plain batch ([`BatchStored`]): metrics and logs alike.
macro_rules! batch_signal_io {
    ($request:ty) => {
        fn from_protobuf(bytes: Bytes) -> Result<$request, prost::DecodeError> {
            <$request>::decode(bytes)
        }

        fn from_json(bytes: &[u8]) -> Result<$request, serde_json::Error> {
            crate::model::otlp_json::from_slice(bytes)
        }

        fn json_line(request: &$request) -> Option<Vec<u8>> {
            JsonLines::line(request)
        }

        fn admit(
            shared: &Shared,
            items: Vec<Self::Item>,
            transport: super::ingest::Transport,
        ) -> Result<(), Rejection> {
            shared.store_batch::<Self>(items, transport)
        }
    };
}

/// Metric data points.
#[derive(Debug)]
pub(crate) struct Metrics;

impl Signal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    type Item = MetricPoint;
    const NAME: &'static str = "metric";
    const ACCEPTED: Counter = Counter::AcceptedMetricPoints;
    const REFUSED: Counter = Counter::RefusedMetricPoints;
    const FILE: File = File::Metrics;

    batch_signal_io!(ExportMetricsServiceRequest);

    fn items(_: &Shared, request: Self::Request) -> Result<Vec<MetricPoint>, Rejection> {
        check_metric_ids(&request.resource_metrics)
            .map_err(|error| Rejection::Invalid(error.to_string()))?;
        Ok(metric_points_from_otlp(&request.resource_metrics))
    }

    fn resource(item: &MetricPoint) -> &Arc<Resource> {
        &item.resource
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: partial(rejected, message, |rejected_data_points, error_message| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }
    }
}

/// Log records.
#[derive(Debug)]
pub(crate) struct Logs;

impl Signal for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    type Item = LogRecord;
    const NAME: &'static str = "log";
    const ACCEPTED: Counter = Counter::AcceptedLogRecords;
    const REFUSED: Counter = Counter::RefusedLogRecords;
    const FILE: File = File::Logs;

    batch_signal_io!(ExportLogsServiceRequest);

    fn items(_: &Shared, request: Self::Request) -> Result<Vec<LogRecord>, Rejection> {
        log_records_from_otlp(&request.resource_logs)
            .map_err(|error| Rejection::Invalid(error.to_string()))
    }

    fn resource(item: &LogRecord) -> &Arc<Resource> {
        &item.resource
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: partial(rejected, message, |rejected_log_records, error_message| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }
    }
}

impl BatchStored for Metrics {
    fn store(shared: &Shared) -> &Store<MetricPoint> {
        &shared.metrics
    }

    fn capacity(config: &Config) -> usize {
        config.capacity_metric_points
    }
}

impl BatchStored for Logs {
    fn store(shared: &Shared) -> &Store<LogRecord> {
        &shared.logs
    }

    fn capacity(config: &Config) -> usize {
        config.capacity_log_records
    }
}
