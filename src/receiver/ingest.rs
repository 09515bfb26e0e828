//! What happens to an export request once decoded, whichever transport brought it:
//! fault injection, conversion into the model, capacity, de-duplication, counting,
//! storing and file export. A request is stored whole or not at all.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::compact::CompactSpan;
use super::file_export::JsonLines;
use super::signal::{BatchStored, Signal, Traces};
use super::span_store::{tally, Limits, SpanStore, Tally};
use super::{Config, Fault};
use crate::model::{spans_to_otlp, LogRecord, MetricPoint, Resource, SpanRecord, Value};
use crate::store::{lock, Store};

/// The delay a full store suggests before a retry.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Transport {
    Grpc,
    Http,
    /// Handed over in this process (`telemetry::Protocol::InProcess`), no socket.
    InProcess,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
            Transport::InProcess => "in_process",
        }
    }
}

/// The receiver's own counters, named like the Collector's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Counter {
    /// `otelcol_receiver_accepted_spans`: spans stored.
    AcceptedSpans,
    /// `otelcol_receiver_refused_spans`: spans refused (capacity, injected faults).
    RefusedSpans,
    /// `otelcol_receiver_duplicate_spans`: spans received again, kept once.
    DuplicateSpans,
    /// `otelcol_receiver_evicted_spans`: spans of the oldest traces dropped to make room
    /// (only when the receiver keeps the last N traces).
    EvictedSpans,
    /// `otelcol_receiver_accepted_metric_points`: metric points stored.
    AcceptedMetricPoints,
    /// `otelcol_receiver_refused_metric_points`: metric points refused.
    RefusedMetricPoints,
    /// `otelcol_receiver_accepted_log_records`: log records stored.
    AcceptedLogRecords,
    /// `otelcol_receiver_refused_log_records`: log records refused.
    RefusedLogRecords,
}

impl Counter {
    /// Its name in the Prometheus text of `GET /metrics`, as the Collector names it.
    pub fn name(self) -> &'static str {
        match self {
            Counter::AcceptedSpans => "otelcol_receiver_accepted_spans",
            Counter::RefusedSpans => "otelcol_receiver_refused_spans",
            Counter::DuplicateSpans => "otelcol_receiver_duplicate_spans",
            Counter::EvictedSpans => "otelcol_receiver_evicted_spans",
            Counter::AcceptedMetricPoints => "otelcol_receiver_accepted_metric_points",
            Counter::RefusedMetricPoints => "otelcol_receiver_refused_metric_points",
            Counter::AcceptedLogRecords => "otelcol_receiver_accepted_log_records",
            Counter::RefusedLogRecords => "otelcol_receiver_refused_log_records",
        }
    }

    pub(crate) fn help(self) -> &'static str {
        match self {
            Counter::AcceptedSpans => "Spans successfully pushed into the store.",
            Counter::RefusedSpans => "Spans that could not be stored (capacity, injected faults).",
            Counter::DuplicateSpans => "Spans received again (same trace and span id), kept once.",
            Counter::EvictedSpans => "Spans of the oldest traces evicted to make room.",
            Counter::AcceptedMetricPoints => "Metric points successfully pushed into the store.",
            Counter::RefusedMetricPoints => "Metric points that could not be stored.",
            Counter::AcceptedLogRecords => "Log records successfully pushed into the store.",
            Counter::RefusedLogRecords => "Log records that could not be stored.",
        }
    }
}

/// Why a request was not stored.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// The request could not be decoded or converted (bad ids…).
    Invalid(String),
    /// An injected outage: retry after the given time.
    Unavailable { retry_after: Duration },
    /// The store is full: retry after the given time (a test may clear it meanwhile).
    Full {
        message: String,
        retry_after: Duration,
    },
    /// The receiver was stopped: nothing more is stored or written.
    Stopped,
}

/// A stored request, possibly partially (an injected partial success).
#[derive(Debug, Default)]
struct Accepted {
    pub(crate) rejected: i64,
    pub(crate) message: String,
}

/// Counters keyed by counter, transport and `service.name`.
pub(crate) type Counters = BTreeMap<(Counter, Transport, String), u64>;

/// Everything the servers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) spans: SpanStore,
    pub(crate) metrics: Store<MetricPoint>,
    pub(crate) logs: Store<LogRecord>,
    counters: Mutex<Counters>,
    faults: Mutex<VecDeque<Fault>>,
    pub(crate) files: Option<JsonLines>,
    /// Whether requests are still stored. Each request holds it for reading while it
    /// stores and writes its line; [`Shared::stop_storing`] takes it for writing, so once
    /// that returns, counts and files are final.
    storing: RwLock<bool>,
}

/// The `service.name` of a resource, for counter labels.
pub(crate) fn service_name(resource: &Resource) -> String {
    match resource.attributes.get("service.name") {
        Some(Value::Str(name)) => name.clone(),
        Some(other) => other.to_string(),
        None => "unknown_service".to_owned(),
    }
}

impl Shared {
    pub(crate) fn new(config: Config, files: Option<JsonLines>) -> Self {
        let limits = Limits {
            spans: config.capacity_spans,
            bytes: config.capacity_span_bytes,
            keep_last_traces: config.keep_last_traces,
        };
        Shared {
            config,
            spans: SpanStore::new(limits),
            metrics: Store::default(),
            logs: Store::default(),
            counters: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(VecDeque::new()),
            files,
            storing: RwLock::new(true),
        }
    }

    /// Waits for the requests being stored to finish, then refuses every later one: the
    /// store, the counters and the files no longer change.
    pub(crate) fn stop_storing(&self) {
        let mut storing = self
            .storing
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *storing = false;
    }

    pub(crate) fn clear(&self) {
        self.spans.clear();
        self.metrics.lock().clear();
        self.logs.lock().clear();
        self.metrics.notify();
        self.logs.notify();
    }

    pub(crate) fn inject(&self, fault: Fault, times: usize) {
        lock(&self.faults).extend(std::iter::repeat_n(fault, times));
    }

    pub(crate) fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    /// Adds one per item to `counter`, labelled by each item's `service.name`. Items of
    /// one request share their resource, so runs of the same resource are tallied first
    /// and each distinct resource is looked up once.
    fn count<'a>(
        &self,
        counter: Counter,
        transport: Transport,
        resources: impl IntoIterator<Item = &'a Arc<Resource>>,
    ) {
        self.count_tally(counter, transport, &tally(resources));
    }

    fn count_tally(&self, counter: Counter, transport: Transport, tally: &Tally) {
        if tally.is_empty() {
            return;
        }
        let mut counters = lock(&self.counters);
        for (resource, n) in tally {
            *counters
                .entry((counter, transport, service_name(resource)))
                .or_default() += n;
        }
    }

    /// Takes the next injected fault: waits out a delay (then carries on), refuses on an
    /// outage, or returns how many items a partial success must reject.
    async fn apply_fault(&self) -> Result<Option<(u64, String)>, Rejection> {
        let fault = lock(&self.faults).pop_front();
        match fault {
            None => Ok(None),
            Some(Fault::Delay(delay)) => {
                // A deliberate, injected delay: the fault a test asked for, not a wait.
                tokio::time::sleep(delay).await;
                Ok(None)
            }
            Some(Fault::Unavailable { retry_after }) => Err(Rejection::Unavailable { retry_after }),
            Some(Fault::PartialSuccess { rejected, message }) => Ok(Some((rejected, message))),
        }
    }

    /// Drops the last items a partial-success fault rejects, counting them as refused.
    fn apply_partial<S: Signal>(
        &self,
        items: &mut Vec<S::Item>,
        partial: Option<(u64, String)>,
        transport: Transport,
    ) -> Accepted {
        let Some((rejected, message)) = partial else {
            return Accepted::default();
        };
        let keep = items
            .len()
            .saturating_sub(usize::try_from(rejected).unwrap_or(usize::MAX));
        let dropped = items.split_off(keep);
        self.count(S::REFUSED, transport, dropped.iter().map(S::resource));
        Accepted {
            rejected: i64::try_from(dropped.len()).unwrap_or(i64::MAX),
            message,
        }
    }

    /// Stores a whole batch, or refuses it whole when it would exceed the capacity.
    pub(crate) fn store_batch<S: BatchStored>(
        &self,
        items: Vec<S::Item>,
        transport: Transport,
    ) -> Result<(), Rejection> {
        let store = S::store(self);
        let capacity = S::capacity(&self.config);
        let mut stored = store.lock();
        if stored.len() + items.len() > capacity {
            let message = format!(
                "{} store full: {} stored, {} more refused (capacity {capacity})",
                S::NAME,
                stored.len(),
                items.len(),
            );
            drop(stored);
            self.count(S::REFUSED, transport, items.iter().map(S::resource));
            return Err(Rejection::Full {
                message,
                retry_after: FULL_RETRY_AFTER,
            });
        }
        // Counted before anyone is woken: a waiter sees counters that include the batch.
        self.count(S::ACCEPTED, transport, items.iter().map(S::resource));
        stored.extend(items);
        drop(stored);
        store.notify();
        Ok(())
    }

    /// Stores the spans not seen before (in the store or earlier in the request), and
    /// counts the others as duplicates. The file gets what is stored, once: never a
    /// duplicate or a refused span.
    pub(crate) fn store_spans_once(
        &self,
        spans: Vec<CompactSpan>,
        transport: Transport,
    ) -> Result<(), Rejection> {
        let admitted = self.spans.admit(
            spans,
            |fresh| {
                if let Some(files) = &self.files {
                    let records: Vec<SpanRecord> =
                        fresh.iter().map(CompactSpan::to_record).collect();
                    let line = JsonLines::line(&ExportTraceServiceRequest {
                        resource_spans: spans_to_otlp(&records),
                    });
                    files.write(Traces::FILE, line);
                }
            },
            |admission| {
                self.count_tally(Counter::AcceptedSpans, transport, &admission.accepted);
                self.count_tally(Counter::DuplicateSpans, transport, &admission.duplicates);
                self.count_tally(Counter::EvictedSpans, transport, &admission.evicted);
            },
        );
        match admitted {
            Ok(admission) => {
                self.spans.publish(admission);
                Ok(())
            }
            Err(full) => {
                self.count_tally(Counter::RefusedSpans, transport, &full.refused);
                Err(Rejection::Full {
                    message: full.message,
                    retry_after: FULL_RETRY_AFTER,
                })
            }
        }
    }

    /// Ingests one export request of any signal: fault injection, conversion, partial
    /// success, storing (whole or not at all), counting and the JSON lines file.
    pub(crate) async fn ingest<S: Signal>(
        &self,
        request: S::Request,
        transport: Transport,
    ) -> Result<S::Response, Rejection> {
        // Serialized before conversion consumes the request; written once it is stored.
        let line = self
            .files
            .as_ref()
            .filter(|_| !S::WRITES_ITS_OWN_LINE)
            .map(|_| S::json_line(&request));
        // A malformed or invalid request is refused before any injected fault applies.
        let mut items = S::items(self, request)?;
        let partial = self.apply_fault().await?;
        // Held (never across an await) until the request is stored and written.
        let storing = self
            .storing
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*storing {
            return Err(Rejection::Stopped);
        }
        let accepted = self.apply_partial::<S>(&mut items, partial, transport);
        S::admit(self, items, transport)?;
        if let (Some(files), Some(line)) = (&self.files, line) {
            files.write(S::FILE, line);
        }
        drop(storing);
        Ok(S::response(accepted.rejected, accepted.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};
    use crate::receiver::signal::TraceRequest;

    fn one_span_request(n: u8) -> TraceRequest {
        let span = SpanRecord::new(
            TraceId::from_bytes([n; 16]),
            SpanId::from_bytes([n; 8]),
            "op",
        );
        TraceRequest::Json(ExportTraceServiceRequest {
            resource_spans: spans_to_otlp(&[span]),
        })
    }

    #[tokio::test]
    async fn once_stopped_nothing_more_is_stored_or_counted() {
        let shared = Shared::new(Config::default(), None);
        shared
            .ingest::<Traces>(one_span_request(1), Transport::Grpc)
            .await
            .map_err(|rejection| format!("{rejection:?}"))
            .unwrap();
        shared.stop_storing();
        let refused = shared
            .ingest::<Traces>(one_span_request(2), Transport::Http)
            .await;
        assert!(matches!(refused, Err(Rejection::Stopped)), "{refused:?}");
        assert_eq!(shared.spans.len(), 1);
        let accepted: u64 = shared
            .counters()
            .iter()
            .filter(|((counter, ..), _)| *counter == Counter::AcceptedSpans)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(accepted, 1);
    }
}
