//! The span model shared by every source and every check.
//!
//! Spans captured in-process by [`SpanCaptureLayer`](crate::SpanCaptureLayer) and spans
//! received over OTLP end up as the same [`SpanRecord`], so assertions, trees and
//! snapshots work the same on either.

pub(crate) mod compact_value;
mod ids;
mod json_lines;
mod logs;
mod metrics;
pub(crate) mod otlp;
pub(crate) mod otlp_json;
mod value;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use ids::{SpanId, TraceId};
#[allow(deprecated)]
pub use json_lines::Telemetry;
pub use json_lines::{JsonLinesError, Signals};
pub use logs::{log_records_from_otlp, LogRecord};
pub use metrics::{
    check_metric_ids, metric_points_from_otlp, MetricKind, MetricPoint, PointValue, Temporality,
};
pub use otlp::{spans_from_otlp, spans_from_otlp_owned, spans_to_otlp};
pub use value::{Attributes, Value};

/// Errors met while turning foreign data into the span model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// An id had the wrong number of bytes.
    #[error("{what} must be {expected} bytes, got {got}")]
    IdLength {
        /// Which id ("trace id", "span id").
        what: &'static str,
        /// The length OTLP requires.
        expected: usize,
        /// The length that arrived.
        got: usize,
    },
    /// An id was all zeroes, which OTLP defines as invalid.
    #[error("{what} is all zeroes, which OTLP defines as invalid")]
    ZeroId {
        /// Which id.
        what: &'static str,
    },
    /// An id in hex form was not hex of the right length.
    #[error("{what} {value:?} is not valid hex of the right length")]
    IdHex {
        /// Which id.
        what: &'static str,
        /// The text that arrived.
        value: String,
    },
    /// A log record inside an OTLP request was invalid.
    #[error("log record (resource #{resource}, scope #{scope}, record #{record}): {source}")]
    InvalidLogRecord {
        /// Index of the `ResourceLogs` in the request.
        resource: usize,
        /// Index of the `ScopeLogs` in the resource.
        scope: usize,
        /// Index of the record in the scope.
        record: usize,
        /// What was wrong.
        #[source]
        source: Box<ModelError>,
    },
    /// An exemplar of a metric data point inside an OTLP request had an invalid id.
    #[error("metric {metric:?} (resource #{resource}, scope #{scope}), an exemplar of point #{point}: {source}")]
    InvalidExemplar {
        /// The metric's name.
        metric: String,
        /// Index of the `ResourceMetrics` in the request.
        resource: usize,
        /// Index of the `ScopeMetrics` in the resource.
        scope: usize,
        /// Index of the data point in the metric.
        point: usize,
        /// What was wrong.
        #[source]
        source: Box<ModelError>,
    },
    /// A span inside an OTLP request was invalid.
    #[error("span {name:?} (resource #{resource}, scope #{scope}, span #{span}): {source}")]
    InvalidSpan {
        /// The span's name, as far as it was readable.
        name: String,
        /// Index of the `ResourceSpans` in the request.
        resource: usize,
        /// Index of the `ScopeSpans` in the resource.
        scope: usize,
        /// Index of the span in the scope.
        span: usize,
        /// What was wrong.
        #[source]
        source: Box<ModelError>,
    },
}

/// The role of a span in a trace, as OpenTelemetry defines it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// An internal operation (the default).
    #[default]
    Internal,
    /// The server side of a remote call.
    Server,
    /// The client side of a remote call.
    Client,
    /// The sender of an asynchronous message.
    Producer,
    /// The receiver of an asynchronous message.
    Consumer,
}

impl SpanKind {
    /// Parses the values `otel.kind` accepts (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        [
            ("internal", SpanKind::Internal),
            ("server", SpanKind::Server),
            ("client", SpanKind::Client),
            ("producer", SpanKind::Producer),
            ("consumer", SpanKind::Consumer),
        ]
        .into_iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

impl fmt::Display for SpanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status code of a span.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    /// No status was set.
    #[default]
    Unset,
    /// The operation was marked as successful.
    Ok,
    /// The operation failed.
    Error,
}

impl StatusCode {
    /// Parses the values `otel.status_code` accepts (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        [
            ("unset", StatusCode::Unset),
            ("ok", StatusCode::Ok),
            ("error", StatusCode::Error),
        ]
        .into_iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, code)| code)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        })
    }
}

/// A span's status: code plus a message (kept only for errors, as OTLP does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// The developer-facing message; empty when none was given.
    pub message: String,
}

/// The parent of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's span id (in the same trace).
    pub span_id: SpanId,
    /// Whether the parent lives in another process or node (its context was propagated).
    /// `None` when the source did not say.
    pub remote: Option<bool>,
}

/// An event recorded inside a span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// The event name (for tracing events: the `message` field, else the callsite name).
    pub name: String,
    /// When it happened, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// The event's fields.
    pub attributes: Attributes,
}

/// A link from a span to another span (tracing's `follows_from`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    /// The linked span's trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// Attributes on the link.
    pub attributes: Attributes,
}

/// The entity that produced telemetry: a service, a node. Its attributes count as present on
/// every span it produced (see [`SpanRecord::attribute`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Resource attributes such as `service.name` and `service.instance.id`.
    pub attributes: Attributes,
    /// The entities the resource describes (OTLP 1.11's `entity_refs`), as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity_refs: Vec<EntityRef>,
}

/// A reference from a resource to an entity it describes (OTLP's `EntityRef`): the
/// entity's type and which of the resource's attributes identify and describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    /// The schema URL of the entity's definition, if any.
    pub schema_url: String,
    /// The entity type, such as `service` or `k8s.pod`.
    pub entity_type: String,
    /// Keys of the resource attributes that identify the entity.
    pub id_keys: Vec<String>,
    /// Keys of the resource attributes that describe it.
    pub description_keys: Vec<String>,
}

impl Resource {
    /// The model's resource from OTLP's (attributes and entity references).
    pub(crate) fn from_otlp(
        resource: Option<opentelemetry_proto::tonic::resource::v1::Resource>,
    ) -> Self {
        let Some(resource) = resource else {
            return Resource::default();
        };
        Resource {
            attributes: otlp::attributes_from_otlp_owned(resource.attributes),
            entity_refs: resource
                .entity_refs
                .into_iter()
                .map(|entity| EntityRef {
                    schema_url: entity.schema_url,
                    entity_type: entity.r#type,
                    id_keys: entity.id_keys,
                    description_keys: entity.description_keys,
                })
                .collect(),
        }
    }

    /// OTLP's resource from the model's.
    pub(crate) fn to_otlp(&self) -> opentelemetry_proto::tonic::resource::v1::Resource {
        opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: otlp::attributes_to_otlp(&self.attributes),
            entity_refs: self
                .entity_refs
                .iter()
                .map(|entity| opentelemetry_proto::tonic::common::v1::EntityRef {
                    schema_url: entity.schema_url.clone(),
                    r#type: entity.entity_type.clone(),
                    id_keys: entity.id_keys.clone(),
                    description_keys: entity.description_keys.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The instrumentation scope (library) that created a span.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// The scope name; empty when unknown.
    pub name: String,
    /// The scope version; empty when unknown.
    pub version: String,
    /// Scope attributes.
    pub attributes: Attributes,
}

/// One finished (or still open) span, whichever source it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id.
    pub span_id: SpanId,
    /// The parent, if the span is not a root.
    pub parent: Option<ParentRef>,
    /// The span name.
    pub name: String,
    /// The span kind.
    pub kind: SpanKind,
    /// The status.
    pub status: Status,
    /// Span attributes (not including the resource's).
    pub attributes: Attributes,
    /// Events, in the order they were recorded.
    pub events: Vec<SpanEvent>,
    /// Links to other spans.
    pub links: Vec<SpanLink>,
    /// Start time in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End time in nanoseconds since the Unix epoch; `None` while the span is open.
    pub end_unix_nanos: Option<u64>,
    /// The resource that produced the span.
    pub resource: Arc<Resource>,
    /// The instrumentation scope.
    pub scope: Arc<Scope>,
    /// Fields the span declared (for example with `tracing::field::Empty`) but never
    /// recorded. A forgotten `record()` shows up here instead of vanishing.
    pub unrecorded_fields: BTreeSet<String>,
}

impl SpanRecord {
    /// Looks an attribute up on the span, then on its resource (the way Jaeger shows
    /// resource attributes as part of every span).
    ///
    /// ```
    /// # use p2p_otel_testkit::model::*;
    /// # use std::sync::Arc;
    /// let mut span = SpanRecord::new(
    ///     TraceId::from_bytes([1; 16]), SpanId::from_bytes([2; 8]), "p2p_search");
    /// let mut resource = Resource::default();
    /// resource.attributes.insert("service.name".into(), "ggen-p2p".into());
    /// span.resource = Arc::new(resource);
    /// assert_eq!(span.attribute("service.name"), Some(&Value::from("ggen-p2p")));
    /// ```
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
    }

    /// A span with the given ids and name and every other field empty, starting at the
    /// epoch; convenient for building test data.
    pub fn new(trace_id: TraceId, span_id: SpanId, name: impl Into<String>) -> Self {
        SpanRecord {
            trace_id,
            span_id,
            parent: None,
            name: name.into(),
            kind: SpanKind::Internal,
            status: Status::default(),
            attributes: Attributes::new(),
            events: Vec::new(),
            links: Vec::new(),
            start_unix_nanos: 0,
            end_unix_nanos: None,
            resource: Arc::default(),
            scope: Arc::default(),
            unrecorded_fields: BTreeSet::new(),
        }
    }

    /// Whether the span has ended.
    pub fn is_closed(&self) -> bool {
        self.end_unix_nanos.is_some()
    }

    /// The span's duration in nanoseconds, if it has ended.
    pub fn duration_nanos(&self) -> Option<u64> {
        self.end_unix_nanos
            .map(|end| end.saturating_sub(self.start_unix_nanos))
    }
}
