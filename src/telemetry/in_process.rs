//! Delivery without a socket ([`Protocol::InProcess`](super::Protocol::InProcess)): a
//! node's telemetry handed to a receiver of this process as the OTLP messages an exporter
//! would send, at each flush — so that a simulated mesh, whose paused clock never waits
//! for real I/O, still fills a receiver and every wait and check on it works unchanged.
//!
//! Spans come from the node's capture (which carries the exported ids, parents, links and
//! status: capture equals the wire), so a capture stamped in virtual time delivers virtual
//! times; metric points and log records, stamped by the SDK from the system clock, are
//! restamped from the same virtual clock when there is one — a metric collection at the
//! flush that collects it, a log record as it is emitted (the log exporter queues it on
//! the emitting thread).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{data::ResourceMetrics, Temporality};
use prost::Message;

use super::{DeliveryError, TelemetryError};
use crate::capture::{virtual_unix_nanos, CaptureHandle, Cursor, VIRTUAL_EPOCH_UNIX_NANOS};
use crate::model::spans_to_otlp;
use crate::receiver::ingest::{Rejection, Shared, Transport};
use crate::receiver::signal::{Logs, Metrics, Signal, TraceRequest, Traces};
use crate::store::lock;

/// What one node delivers in process: the receiver, the metric and log requests its
/// exporters queued since the last delivery, and how many captured spans went already.
#[derive(Debug)]
pub(super) struct Delivery {
    receiver: Arc<Shared>,
    metrics: Queue<ExportMetricsServiceRequest>,
    logs: Queue<ExportLogsServiceRequest>,
    spans_delivered: Mutex<Cursor>,
    /// The simulation's start, when metric points and log records are restamped from it.
    virtual_origin: Option<tokio::time::Instant>,
}

type Queue<T> = Arc<Mutex<Vec<T>>>;

impl Delivery {
    pub(super) fn new(receiver: Arc<Shared>, virtual_origin: Option<tokio::time::Instant>) -> Self {
        Delivery {
            receiver,
            metrics: Queue::default(),
            logs: Queue::default(),
            spans_delivered: Mutex::new(Cursor::default()),
            virtual_origin,
        }
    }

    /// The metric exporter that queues for this delivery.
    pub(super) fn metric_exporter(&self) -> QueuedMetrics {
        QueuedMetrics(Arc::clone(&self.metrics))
    }

    /// The log exporter that queues for this delivery.
    pub(super) fn log_exporter(&self) -> QueuedLogs {
        QueuedLogs {
            queue: Arc::clone(&self.logs),
            resource: ResourceAttributesWithSchema::default(),
            virtual_origin: self.virtual_origin,
        }
    }

    /// Hands the receiver, in this order, the spans `capture` closed since the last
    /// delivery, then the queued metric and log requests; returns when all are stored.
    pub(super) async fn deliver(&self, capture: &CaptureHandle) -> Result<(), TelemetryError> {
        let fresh = {
            // Read and moved on under one lock: two flushes never deliver a span twice.
            let mut delivered = lock(&self.spans_delivered);
            let (fresh, next) = capture.closed_since(*delivered);
            *delivered = next;
            fresh
        };
        if !fresh.is_empty() {
            let request = ExportTraceServiceRequest {
                resource_spans: spans_to_otlp(&fresh),
            };
            // The bytes an exporter would send: the receiver reads them as it reads gRPC's.
            let bytes = bytes::Bytes::from(request.encode_to_vec());
            self.ingest::<Traces>(TraceRequest::Protobuf(bytes)).await?;
        }
        let now = self.virtual_origin.map(virtual_unix_nanos);
        let metrics = std::mem::take(&mut *lock(&self.metrics));
        for mut request in metrics {
            if let Some(now) = now {
                restamp_metrics(&mut request, now);
            }
            self.ingest::<Metrics>(request).await?;
        }
        let logs = std::mem::take(&mut *lock(&self.logs));
        for request in logs {
            self.ingest::<Logs>(request).await?;
        }
        Ok(())
    }

    async fn ingest<S: Signal>(&self, request: S::Request) -> Result<(), TelemetryError> {
        self.receiver
            .ingest::<S>(request, Transport::InProcess)
            .await
            .map(drop)
            .map_err(|rejection| {
                TelemetryError::Delivery(DeliveryError::Refused {
                    signal: S::NAME,
                    reason: reason(&rejection),
                })
            })
    }
}

fn reason(rejection: &Rejection) -> String {
    match rejection {
        Rejection::Invalid(why) => format!("invalid: {why}"),
        Rejection::Unavailable { retry_after } => {
            format!("unavailable (an injected outage), retry after {retry_after:?}")
        }
        Rejection::Full { message, .. } => message.clone(),
        Rejection::Stopped => "the receiver was stopped".to_owned(),
    }
}

/// Every point of `request` stamped at `now`, its start at the virtual epoch.
fn restamp_metrics(request: &mut ExportMetricsServiceRequest, now: u64) {
    let metrics = request
        .resource_metrics
        .iter_mut()
        .flat_map(|r| r.scope_metrics.iter_mut())
        .flat_map(|s| s.metrics.iter_mut());
    let epoch = VIRTUAL_EPOCH_UNIX_NANOS;
    macro_rules! stamp {
        ($points:expr) => {
            for point in $points {
                point.time_unix_nano = now;
                point.start_time_unix_nano = epoch;
            }
        };
    }
    for metric in metrics {
        match &mut metric.data {
            Some(Data::Gauge(gauge)) => stamp!(&mut gauge.data_points),
            Some(Data::Sum(sum)) => stamp!(&mut sum.data_points),
            Some(Data::Histogram(histogram)) => stamp!(&mut histogram.data_points),
            Some(Data::ExponentialHistogram(histogram)) => stamp!(&mut histogram.data_points),
            Some(Data::Summary(summary)) => stamp!(&mut summary.data_points),
            None => {}
        }
    }
}

/// Every record of `request` observed at `now` (and timed then when it had a time): the
/// log exporter queues a record as it is emitted, on the emitting thread.
fn restamp_logs(request: &mut ExportLogsServiceRequest, now: u64) {
    let records = request
        .resource_logs
        .iter_mut()
        .flat_map(|r| r.scope_logs.iter_mut())
        .flat_map(|s| s.log_records.iter_mut());
    for record in records {
        if record.time_unix_nano != 0 {
            record.time_unix_nano = now;
        }
        record.observed_time_unix_nano = now;
    }
}

/// The SDK's metric exporter for in-process delivery: it queues each collection as the
/// request an OTLP exporter would send.
#[derive(Debug)]
pub(super) struct QueuedMetrics(Queue<ExportMetricsServiceRequest>);

impl PushMetricExporter for QueuedMetrics {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        lock(&self.0).push(ExportMetricsServiceRequest::from(metrics));
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// The SDK's log exporter for in-process delivery.
#[derive(Debug)]
pub(super) struct QueuedLogs {
    queue: Queue<ExportLogsServiceRequest>,
    resource: ResourceAttributesWithSchema,
    virtual_origin: Option<tokio::time::Instant>,
}

impl LogExporter for QueuedLogs {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let resource_logs =
            opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope(
                &batch,
                &self.resource,
            );
        let mut request = ExportLogsServiceRequest { resource_logs };
        if let Some(origin) = self.virtual_origin {
            restamp_logs(&mut request, virtual_unix_nanos(origin));
        }
        lock(&self.queue).push(request);
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.into();
    }
}
