//! Reading what the receiver holds, at once and without waiting: spans, traces, metric
//! points, log records, its own counters, Prometheus renderings; and clearing it.

use std::sync::Arc;

use super::{prometheus, Counter, OtlpReceiver, TraceWatch};
use crate::model::{LogRecord, MetricPoint, SpanRecord, TraceId};
use crate::tree::TraceSet;

impl OtlpReceiver {
    /// Every span received, in arrival order, duplicates kept once. Copies the whole
    /// store: for a large one, prefer [`OtlpReceiver::trace`] and [`TraceWatch`].
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.shared.spans.spans()
    }

    /// Every span received, as trace trees.
    pub fn traces(&self) -> TraceSet {
        TraceSet::new(self.spans())
    }

    /// One trace, from the store's index: costs the spans of that trace, whatever the
    /// store holds. Empty when the trace is unknown.
    pub fn trace(&self, trace_id: TraceId) -> TraceSet {
        TraceSet::new(self.shared.spans.trace(&trace_id))
    }

    /// Every stored trace's id, oldest first.
    pub fn trace_ids(&self) -> Vec<TraceId> {
        self.shared.spans.trace_ids()
    }

    /// How many spans are stored.
    pub fn span_count(&self) -> usize {
        self.shared.spans.len()
    }

    /// How many spans are stored per `service.name`, without copying any: what a summary
    /// of a large store needs.
    pub fn span_counts_by_service(&self) -> std::collections::BTreeMap<String, usize> {
        self.shared.spans.counts_by_service()
    }

    /// How many traces are stored.
    pub fn trace_count(&self) -> usize {
        self.shared.spans.trace_count()
    }

    /// How many bytes the span store holds, as it estimates them against
    /// [`Config::with_span_byte_capacity`].
    ///
    /// [`Config::with_span_byte_capacity`]: super::Config::with_span_byte_capacity
    pub fn span_store_bytes(&self) -> usize {
        self.shared.spans.bytes()
    }

    /// Follows the traces as requests add spans to them, from now on: see [`TraceWatch`].
    pub fn watch_traces(&self) -> TraceWatch {
        TraceWatch::new(Arc::clone(&self.shared))
    }

    /// Every metric data point received, in arrival order.
    pub fn metric_points(&self) -> Vec<MetricPoint> {
        self.shared.metrics.lock().clone()
    }

    /// The data points of the metric `name`.
    pub fn metric_points_named(&self, name: &str) -> Vec<MetricPoint> {
        self.shared
            .metrics
            .lock()
            .iter()
            .filter(|point| point.name == name)
            .cloned()
            .collect()
    }

    /// Every log record received, in arrival order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.shared.logs.lock().clone()
    }

    /// The total of one of the receiver's own counters, over both transports, for one
    /// `service.name` or all.
    pub fn counter(&self, counter: Counter, service_name: Option<&str>) -> u64 {
        self.shared
            .counters()
            .iter()
            .filter(|((counter_of, _, service), _)| {
                *counter_of == counter && service_name.is_none_or(|wanted| wanted == service)
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The receiver's own counters as Prometheus text (what `GET /metrics` serves).
    pub fn prometheus_self_metrics(&self) -> String {
        prometheus::receiver_metrics(&self.shared)
    }

    /// The received application metrics as Prometheus text (`GET /metrics/received`).
    pub fn prometheus_received_metrics(&self) -> String {
        prometheus::received_metrics(&self.shared.metrics.lock())
    }

    /// Forgets every span, metric point and log record received, and which spans were
    /// seen (so a span sent again after a clear is stored again). Counters keep counting.
    pub fn clear(&self) {
        self.shared.clear();
    }
}
