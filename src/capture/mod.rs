//! In-process span capture: [`SpanCaptureLayer`], a `tracing_subscriber::Layer`, and the
//! [`CaptureHandle`] that reads what it captured.
//!
//! The layer records what a hand-rolled capture usually misses: late `record()`s, explicit
//! and contextual parents, explicit roots, `follows_from` links, events with their fields,
//! start and close times (and, on request, busy/idle time between enters and exits),
//! status and kind from the fields tracing-opentelemetry reads (`otel.status_code`,
//! `otel.status_description`, `otel.kind`, `otel.name`) and from ERROR events, and — so a
//! forgotten `record()` is visible — every declared field that was never recorded.
//!
//! What it records is what the OpenTelemetry path exports (tracing-opentelemetry 0.34):
//! unsigned and 128-bit integers and byte slices become text, as on the wire; in a
//! [`Telemetry`](crate::telemetry::Telemetry) dispatch the captured ids, parents (remote
//! ones included), links and status are those the exporter sent. `tests/fidelity.rs`
//! checks it as a property over every protocol.
//!
//! Nothing here is global: each layer writes only to its own handle, so tests running in
//! parallel in one process never see each other's spans.
//!
//! ```
//! use p2p_otel_testkit::capture::SpanCaptureLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let (layer, handle) = SpanCaptureLayer::new();
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("p2p_search", query_text = "serde", local_results = tracing::field::Empty);
//!     let _entered = span.enter();
//! });
//! let spans = handle.spans();
//! assert_eq!(spans[0].name, "p2p_search");
//! assert!(spans[0].unrecorded_fields.contains("local_results"));
//! ```

mod captured;
mod ids;
mod layer;
mod open;
mod per_node;
mod values;
mod visitor;
pub(crate) mod wire;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

use crate::model::{Resource, Scope, SpanEvent, SpanId, SpanRecord, TraceId, Value};
use crate::source::SpanSource;
use crate::store::{lock, Notifier, WaitError};
use crate::tree::TraceSet;

pub use captured::virtual_unix_nanos;
pub(crate) use captured::VIRTUAL_EPOCH_UNIX_NANOS;
use captured::{CapturedSpan, Clock};
use ids::IdGenerator;
use open::OpenSpans;
pub(crate) use per_node::done_trace;
pub use per_node::PerNode;
use values::FieldValues;

/// A tracing `Layer` that records every span of its subscriber into the span model.
///
/// Create it with [`SpanCaptureLayer::new`] or [`SpanCaptureLayer::builder`], add it to a
/// subscriber, and read the spans from the [`CaptureHandle`] returned beside it.
#[derive(Debug)]
pub struct SpanCaptureLayer {
    shared: Arc<Shared>,
    track_busy_idle: bool,
    /// Set in a Telemetry dispatch: the token of its wire tap.
    wire_token: Option<u64>,
}

/// Builds a [`SpanCaptureLayer`] with a resource (for example a node's
/// `service.instance.id`) and an instrumentation scope.
///
/// ```
/// use p2p_otel_testkit::capture::SpanCaptureLayer;
/// let (_layer, _handle) = SpanCaptureLayer::builder()
///     .resource_attribute("service.name", "ggen-p2p")
///     .resource_attribute("service.instance.id", "node-1")
///     .scope("p2p-marketplace", "0.1.0")
///     .build();
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() or .dispatch() to get the layer and its handle"]
pub struct Builder {
    resource: Resource,
    scope: Scope,
    track_busy_idle: bool,
    filter: Targets,
    wire_token: Option<u64>,
    opentelemetry_layer: bool,
    notifier: Option<Arc<Notifier>>,
    virtual_origin: Option<tokio::time::Instant>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            resource: Resource::default(),
            scope: Scope::default(),
            track_busy_idle: false,
            filter: Targets::new().with_default(LevelFilter::INFO),
            wire_token: None,
            opentelemetry_layer: false,
            notifier: None,
            virtual_origin: None,
        }
    }
}

impl Builder {
    /// Adds a resource attribute to every captured span.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.resource.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the instrumentation scope name and version recorded on every span.
    pub fn scope(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.scope.name = name.into();
        self.scope.version = version.into();
        self
    }

    /// Stamps spans from tokio's clock — in a paused runtime, virtual time — counted from
    /// `origin`, which becomes 2026-01-01T00:00:00Z: two runs of one simulation stamp the
    /// same start and end times, and a timeout waited out in virtual time lasts its full
    /// length in the span. Give every node's capture the same origin (the simulation's
    /// start). By default spans are stamped from the real clock. A span opened or closed on
    /// a thread outside the runtime reads the real clock there (and is stamped at the
    /// epoch): keep a simulation's spans on its runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use p2p_otel_testkit::SpanCaptureLayer;
    /// let origin = tokio::time::Instant::now();
    /// let (dispatch, handle) = SpanCaptureLayer::builder().virtual_time(origin).dispatch();
    /// let span = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("wait"));
    /// tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    /// drop(span);
    /// let record = &handle.spans()[0];
    /// assert_eq!(record.start_unix_nanos, 1_767_225_600_000_000_000);
    /// assert_eq!(record.duration_nanos(), Some(2_000_000_000));
    /// # }
    /// ```
    pub fn virtual_time(mut self, origin: tokio::time::Instant) -> Self {
        self.virtual_origin = Some(origin);
        self
    }

    /// Also time every enter and exit, recording `busy_ns` and `idle_ns` attributes the
    /// way tracing-opentelemetry does (its `with_tracked_inactivity`). Off by default: it
    /// costs two span lookups and two clock reads per enter/exit pair (about 130 ns per
    /// span on the reference machine, a third of the layer's cost), and default
    /// renderings hide both attributes anyway. Start and close times are always recorded.
    pub fn track_busy_idle(mut self, track: bool) -> Self {
        self.track_busy_idle = track;
        self
    }

    /// The most verbose level [`dispatch`](Self::dispatch) captures: `INFO` by default, as
    /// [`Telemetry`](crate::telemetry::Telemetry) exports (libp2p opens `TRACE` spans on
    /// every poll, which would flood a capture). `LevelFilter::TRACE` captures everything.
    pub fn max_level(mut self, level: LevelFilter) -> Self {
        self.filter = self.filter.with_default(level);
        self
    }

    /// Captures spans and events of `target` (a module path prefix, such as `libp2p_swarm`
    /// or `my_crate::net`) up to `level`, whatever the default.
    pub fn target(mut self, target: impl Into<String>, level: LevelFilter) -> Self {
        self.filter = self.filter.with_target(target, level);
        self
    }

    /// Whether [`dispatch`](Self::dispatch) also runs tracing-opentelemetry's layer, with
    /// a tracer that exports nowhere, so code that propagates trace context with the
    /// standard OpenTelemetry API works under a capture alone: `OpenTelemetrySpanExt::context`
    /// yields the span's context to inject, `OpenTelemetrySpanExt::set_parent` makes a
    /// remote parent, and the captured ids, parents, links and status are those
    /// OpenTelemetry gave the span (as in a [`Telemetry`](crate::telemetry::Telemetry)
    /// dispatch). Off by default: it costs what tracing-opentelemetry costs, several times
    /// the capture itself (about 5×: BENCHMARKS.md). A mesh's per-node captures
    /// ([`PerNode`]) turn it on. [`propagation`](crate::propagation) works without it.
    ///
    /// ```
    /// use opentelemetry::propagation::TextMapPropagator;
    /// use opentelemetry_sdk::propagation::TraceContextPropagator;
    /// use p2p_otel_testkit::capture;
    /// use std::collections::HashMap;
    /// use tracing_opentelemetry::OpenTelemetrySpanExt;
    ///
    /// let (caller, caller_spans) = capture::Builder::default().opentelemetry_layer(true).dispatch();
    /// let (handler, handler_spans) = capture::Builder::default().opentelemetry_layer(true).dispatch();
    ///
    /// // Production code, standard API only: inject on one side, extract on the other.
    /// let mut headers = HashMap::new();
    /// tracing::dispatcher::with_default(&caller, || {
    ///     let span = tracing::info_span!("send_request");
    ///     TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    /// });
    /// tracing::dispatcher::with_default(&handler, || {
    ///     let span = tracing::info_span!("handle_request");
    ///     span.set_parent(TraceContextPropagator::new().extract(&headers)).unwrap();
    ///     span.in_scope(|| {});
    /// });
    ///
    /// let (sent, handled) = (&caller_spans.spans()[0], &handler_spans.spans()[0]);
    /// assert_eq!(handled.trace_id, sent.trace_id);
    /// assert_eq!(handled.parent.unwrap().span_id, sent.span_id);
    /// assert_eq!(handled.parent.unwrap().remote, Some(true));
    /// ```
    pub fn opentelemetry_layer(mut self, on: bool) -> Self {
        self.opentelemetry_layer = on;
        self
    }

    /// Set by a Telemetry dispatch: the capture takes the exported ids from the wire tap.
    pub(crate) fn wire_token(mut self, token: u64) -> Self {
        self.wire_token = Some(token);
        self
    }

    /// Captures that wake one waiter together (a mesh's per-node captures).
    pub(crate) fn notifier(mut self, notifier: Arc<Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// A dispatch of a fresh registry with the level and target filter and the capture
    /// layer (behind tracing-opentelemetry's layer when
    /// [`opentelemetry_layer`](Self::opentelemetry_layer) is on), and its handle.
    pub fn dispatch(mut self) -> (tracing::Dispatch, CaptureHandle) {
        let filter = self.filter.clone();
        if self.opentelemetry_layer {
            let token = wire::new_token();
            self.wire_token = Some(token);
            let otel_layer = wire::otel_layer(wire::tap_only_tracer(token));
            let (layer, handle) = self.build();
            // The OpenTelemetry layer closes a span first: the capture takes its ids.
            let registry = tracing_subscriber::registry()
                .with(filter)
                .with(otel_layer)
                .with(layer);
            return (tracing::Dispatch::new(registry), handle);
        }
        let (layer, handle) = self.build();
        (
            tracing::Dispatch::new(tracing_subscriber::registry().with(filter).with(layer)),
            handle,
        )
    }

    /// Builds the layer and the handle that reads what it captures. The layer itself does
    /// not filter: compose it with a filter, or use [`dispatch`](Self::dispatch).
    pub fn build(self) -> (SpanCaptureLayer, CaptureHandle) {
        let shared = Arc::new(Shared {
            spans: Mutex::new(Spans::default()),
            changed: self.notifier.unwrap_or_default(),
            converted: Mutex::new(Vec::new()),
            events_outside_spans: Mutex::new(Vec::new()),
            clock: self
                .virtual_origin
                .map_or_else(Clock::new, Clock::virtual_from),
            resource: Arc::new(self.resource),
            scope: Arc::new(self.scope),
        });
        let layer = SpanCaptureLayer {
            shared: Arc::clone(&shared),
            track_busy_idle: self.track_busy_idle,
            wire_token: self.wire_token,
        };
        (layer, CaptureHandle { shared })
    }
}

impl SpanCaptureLayer {
    /// A layer with an empty resource and scope, and its handle.
    pub fn new() -> (SpanCaptureLayer, CaptureHandle) {
        Builder::default().build()
    }

    /// A builder for a layer with a resource and scope.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// A `tracing::Dispatch` of a fresh registry with a capture layer, and its handle: the
/// shortest way to give one test, or one mesh node, its own subscriber. It captures `INFO`
/// and above; [`Builder::max_level`] and [`Builder::target`] change that.
///
/// ```
/// let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
/// tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("work").in_scope(|| {}));
/// assert_eq!(handle.spans().len(), 1);
/// ```
pub fn dispatch() -> (tracing::Dispatch, CaptureHandle) {
    Builder::default().dispatch()
}

/// A span that has started but not closed yet, as [`CaptureHandle::open_spans`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSpan {
    /// The span's trace.
    pub trace_id: TraceId,
    /// The span's id.
    pub span_id: SpanId,
    /// The span's callsite name.
    pub name: String,
}

#[derive(Debug)]
struct Shared {
    /// Open spans, and closed ones in compact form.
    spans: Mutex<Spans>,
    /// Notified when a span closes (or the capture is cleared).
    changed: Arc<Notifier>,
    /// `closed[..converted.len()]` turned into the span model; extended when read.
    converted: Mutex<Vec<SpanRecord>>,
    events_outside_spans: Mutex<Vec<SpanEvent>>,
    clock: Clock,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
}

/// What the layer writes, under one lock, so that a closing span leaves the open table
/// and joins the closed ones in one step (one lock to start a span, one to close it).
#[derive(Debug, Default)]
struct Spans {
    /// Ids for captured spans (those the wire does not give).
    ids: IdGenerator,
    open: OpenSpans,
    /// Closed spans, in the order they closed.
    closed: Vec<CapturedSpan>,
    /// The field values of the open and closed spans.
    values: FieldValues,
    /// How many times `clear` ran: a reader's [`Cursor`] from before a clear starts over.
    cleared: u64,
}

/// Where a reader of a capture's closed spans is ([`CaptureHandle::closed_since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    cleared: u64,
    read: usize,
}

impl Shared {
    /// Brings the converted records up to date with `closed` (whose lock the caller
    /// holds, so both move together) and returns them.
    fn converted<'a>(&'a self, spans: &Spans) -> MutexGuard<'a, Vec<SpanRecord>> {
        let mut converted = lock(&self.converted);
        let done = converted.len();
        converted.extend(
            spans.closed[done.min(spans.closed.len())..]
                .iter()
                .map(|span| {
                    span.to_record(&spans.values, &self.clock, &self.resource, &self.scope)
                }),
        );
        converted
    }
}

/// Reads what a [`SpanCaptureLayer`] captured. Cheap to clone; every clone sees the same
/// spans.
#[derive(Clone, Debug)]
pub struct CaptureHandle {
    shared: Arc<Shared>,
}

impl CaptureHandle {
    /// Every closed span, in the order the spans closed.
    pub fn spans(&self) -> Vec<SpanRecord> {
        let spans = lock(&self.shared.spans);
        self.shared.converted(&spans).clone()
    }

    /// The spans closed since `cursor` (all of them after a `clear`), and the cursor past
    /// them.
    pub(crate) fn closed_since(&self, cursor: Cursor) -> (Vec<SpanRecord>, Cursor) {
        let spans = lock(&self.shared.spans);
        let from = if cursor.cleared == spans.cleared {
            cursor.read
        } else {
            0
        };
        let converted = self.shared.converted(&spans);
        let fresh = converted[from.min(converted.len())..].to_vec();
        let next = Cursor {
            cleared: spans.cleared,
            read: converted.len(),
        };
        (fresh, next)
    }

    /// How many spans have closed.
    pub fn len(&self) -> usize {
        lock(&self.shared.spans).closed.len()
    }

    /// Whether no span has closed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The closed spans as trace trees.
    pub fn traces(&self) -> TraceSet {
        TraceSet::new(self.spans())
    }

    /// Spans that were created and have not closed (yet). A span still open when a test
    /// ends was leaked or is held by a task that never finished.
    pub fn open_spans(&self) -> Vec<OpenSpan> {
        let mut open: Vec<OpenSpan> = lock(&self.shared.spans)
            .open
            .iter()
            .map(|open| OpenSpan {
                trace_id: open.trace_id,
                span_id: open.span_id,
                name: open.metadata.name().to_owned(),
            })
            .collect();
        open.sort_by(|a, b| (&a.name, a.span_id).cmp(&(&b.name, b.span_id)));
        open
    }

    /// What the distributed-trace barrier needs of the open spans: each one's trace as
    /// captured, and, for a handler root (a server or consumer span with no local parent,
    /// whose trace OpenTelemetry may have changed through a remote parent), its start in
    /// Unix nanoseconds.
    pub(crate) fn open_for_barrier(&self) -> Vec<(TraceId, Option<u64>)> {
        lock(&self.shared.spans)
            .open
            .iter()
            .map(|open| {
                let handler = open.is_handler_root();
                (
                    open.trace_id,
                    handler.then(|| self.shared.clock.unix_nanos(open.start)),
                )
            })
            .collect()
    }

    /// Events emitted while no span was current (so they belong to no span).
    pub fn events_outside_spans(&self) -> Vec<SpanEvent> {
        lock(&self.shared.events_outside_spans).clone()
    }

    /// Forgets every closed span and outside event (open spans stay tracked).
    pub fn clear(&self) {
        {
            let mut spans = lock(&self.shared.spans);
            let Spans {
                open,
                closed,
                values,
                cleared,
                ..
            } = &mut *spans;
            closed.clear();
            values.keep_only(open.iter_mut());
            lock(&self.shared.converted).clear();
            *cleared += 1;
        }
        self.shared.changed.notify();
        lock(&self.shared.events_outside_spans).clear();
    }
}

impl SpanSource for CaptureHandle {
    fn spans(&self) -> Vec<SpanRecord> {
        CaptureHandle::spans(self)
    }

    fn wait_until<'a>(
        &'a self,
        expected: &'a str,
        timeout: Duration,
        mut condition: impl FnMut(&[SpanRecord]) -> bool + Send + 'a,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        let shared = &self.shared;
        shared.changed.wait_until(
            timeout,
            move || {
                let spans = lock(&shared.spans);
                let converted = shared.converted(&spans);
                condition(&converted).then(|| TraceSet::new(converted.clone()))
            },
            move || {
                let spans = lock(&shared.spans);
                let converted = shared.converted(&spans).clone();
                crate::source::spans_timed_out(expected, timeout, converted, None)
            },
        )
    }
}
