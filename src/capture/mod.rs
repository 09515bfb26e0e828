//! In-process span capture: [`SpanCaptureLayer`], a `tracing_subscriber::Layer`, and the
//! [`CaptureHandle`] that reads what it captured.
//!
//! The layer records what a hand-rolled capture usually misses: late `record()`s, explicit
//! and contextual parents, explicit roots, `follows_from` links, events with their fields,
//! busy/idle time between enters and exits, close times, status and kind from the fields
//! tracing-opentelemetry reads (`otel.status_code`, `otel.status_description`,
//! `otel.kind`, `otel.name`) and from `error = true` / `error_message`, and — so a
//! forgotten `record()` is visible — every declared field that was never recorded.
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

mod ids;
mod visitor;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::span::{Attributes as SpanAttributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::model::{
    Attributes, ParentRef, Resource, Scope, SpanEvent, SpanId, SpanLink, SpanRecord, Status,
    StatusCode, TraceId, Value,
};
use crate::store::{SpanStore, WaitError};
use crate::tree::TraceSet;

use ids::IdGenerator;
use visitor::{FieldVisitor, SpanOverrides};

/// A tracing `Layer` that records every span of its subscriber into the span model.
///
/// Create it with [`SpanCaptureLayer::new`] or [`SpanCaptureLayer::builder`], add it to a
/// subscriber, and read the spans from the [`CaptureHandle`] returned beside it.
#[derive(Debug)]
pub struct SpanCaptureLayer {
    shared: Arc<Shared>,
    ids: IdGenerator,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
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
#[derive(Debug, Default)]
#[must_use = "call .build() to get the layer and its handle"]
pub struct Builder {
    resource: Resource,
    scope: Scope,
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

    /// Builds the layer and the handle that reads what it captures.
    pub fn build(self) -> (SpanCaptureLayer, CaptureHandle) {
        let shared = Arc::new(Shared::default());
        let layer = SpanCaptureLayer {
            shared: Arc::clone(&shared),
            ids: IdGenerator::new(),
            resource: Arc::new(self.resource),
            scope: Arc::new(self.scope),
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
/// shortest way to give one test, or one mesh node, its own subscriber.
///
/// ```
/// let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
/// tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("work").in_scope(|| {}));
/// assert_eq!(handle.spans().len(), 1);
/// ```
pub fn dispatch() -> (tracing::Dispatch, CaptureHandle) {
    let (layer, handle) = SpanCaptureLayer::new();
    (
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

/// A span that has started but not closed yet, as [`CaptureHandle::open_spans`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSpan {
    /// The span's trace.
    pub trace_id: TraceId,
    /// The span's id.
    pub span_id: SpanId,
    /// The span's name when it was created.
    pub name: String,
}

#[derive(Debug, Default)]
struct Shared {
    closed: SpanStore,
    open: Mutex<HashMap<SpanId, OpenSpan>>,
    events_outside_spans: Mutex<Vec<SpanEvent>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        self.shared.closed.snapshot()
    }

    /// How many spans have closed.
    pub fn len(&self) -> usize {
        self.shared.closed.len()
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
        let mut open: Vec<OpenSpan> = lock(&self.shared.open).values().cloned().collect();
        open.sort_by(|a, b| (&a.name, a.span_id).cmp(&(&b.name, b.span_id)));
        open
    }

    /// Events emitted while no span was current (so they belong to no span).
    pub fn events_outside_spans(&self) -> Vec<SpanEvent> {
        lock(&self.shared.events_outside_spans).clone()
    }

    /// Forgets every closed span and outside event (open spans stay tracked).
    pub fn clear(&self) {
        self.shared.closed.clear();
        lock(&self.shared.events_outside_spans).clear();
    }

    /// Waits until `condition` holds over the closed spans; on timeout the error shows
    /// every span that did close, rendered as trees. Wakes on each close, never polls.
    ///
    /// Needs a tokio runtime with time enabled (as `#[tokio::test]` gives).
    pub async fn wait_until(
        &self,
        expected: &str,
        timeout: Duration,
        condition: impl FnMut(&[SpanRecord]) -> bool,
    ) -> Result<Vec<SpanRecord>, WaitError> {
        self.shared
            .closed
            .wait_until(expected, timeout, condition)
            .await
    }

    /// Waits until at least `count` spans have closed.
    pub async fn wait_for_spans(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<SpanRecord>, WaitError> {
        self.wait_until(&format!("{count} closed span(s)"), timeout, |spans| {
            spans.len() >= count
        })
        .await
    }

    /// Waits until a span named `name` has closed.
    pub async fn wait_for_span_named(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Vec<SpanRecord>, WaitError> {
        self.wait_until(&format!("a span named {name:?}"), timeout, |spans| {
            spans.iter().any(|span| span.name == name)
        })
        .await
    }
}

/// Per-span state kept in the registry's extensions while the span is open.
#[derive(Debug)]
struct Pending {
    record: SpanRecord,
    overrides: SpanOverrides,
    declared_unrecorded: BTreeSet<&'static str>,
    error_event: bool,
    timing: Timing,
}

/// Busy and idle time, the way tracing-opentelemetry reports `busy_ns` / `idle_ns`.
#[derive(Debug)]
struct Timing {
    last: Instant,
    busy: Duration,
    idle: Duration,
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn nanos_i64(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

impl Pending {
    fn finish(mut self, end: SystemTime) -> SpanRecord {
        self.timing.idle += self.timing.last.elapsed();
        let record = &mut self.record;
        record.end_unix_nanos = Some(unix_nanos(end));
        record
            .attributes
            .insert("busy_ns".into(), Value::Int(nanos_i64(self.timing.busy)));
        record
            .attributes
            .insert("idle_ns".into(), Value::Int(nanos_i64(self.timing.idle)));
        if let Some(name) = self.overrides.name.take() {
            record.name = name;
        }
        if let Some(kind) = self.overrides.kind {
            record.kind = kind;
        }
        let error_field = record.attributes.get("error") == Some(&Value::Bool(true));
        let code = self
            .overrides
            .status_code
            .unwrap_or(if error_field || self.error_event {
                StatusCode::Error
            } else {
                StatusCode::Unset
            });
        let message = match code {
            StatusCode::Error => self
                .overrides
                .status_description
                .take()
                .or_else(|| {
                    record
                        .attributes
                        .get("error_message")
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        record.status = Status { code, message };
        record.unrecorded_fields = self
            .declared_unrecorded
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.record
    }
}

impl<S> Layer<S> for SpanCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // The registry has already resolved explicit parents, contextual parents and
        // explicit roots. A parent without our state (filtered out of this layer) is
        // skipped in favour of its nearest captured ancestor.
        let parent = span.scope().skip(1).find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<Pending>()
                .map(|p| (p.record.trace_id, p.record.span_id))
        });
        let (trace_id, parent) = match parent {
            Some((trace_id, span_id)) => (
                trace_id,
                Some(ParentRef {
                    span_id,
                    remote: Some(false),
                }),
            ),
            None => (self.ids.trace_id(), None),
        };
        let mut record = SpanRecord::new(trace_id, self.ids.span_id(), attrs.metadata().name());
        record.parent = parent;
        record.start_unix_nanos = unix_nanos(SystemTime::now());
        record.resource = Arc::clone(&self.resource);
        record.scope = Arc::clone(&self.scope);
        let mut overrides = SpanOverrides::default();
        attrs.record(&mut FieldVisitor {
            attributes: &mut record.attributes,
            overrides: Some(&mut overrides),
            message: None,
        });
        let declared_unrecorded = attrs
            .metadata()
            .fields()
            .iter()
            .map(|field| field.name())
            .filter(|name| !name.starts_with("otel.") && !record.attributes.contains_key(*name))
            .collect();
        lock(&self.shared.open).insert(
            record.span_id,
            OpenSpan {
                trace_id,
                span_id: record.span_id,
                name: record.name.clone(),
            },
        );
        span.extensions_mut().insert(Pending {
            record,
            overrides,
            declared_unrecorded,
            error_event: false,
            timing: Timing {
                last: Instant::now(),
                busy: Duration::ZERO,
                idle: Duration::ZERO,
            },
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(pending) = extensions.get_mut::<Pending>() else {
            return;
        };
        let mut recorded = Attributes::new();
        values.record(&mut FieldVisitor {
            attributes: &mut recorded,
            overrides: Some(&mut pending.overrides),
            message: None,
        });
        values.record(&mut DeclaredNames(&mut pending.declared_unrecorded));
        pending.record.attributes.extend(recorded);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let Some(cause) = ctx.span(follows) else {
            return;
        };
        let Some((trace_id, span_id)) = cause
            .extensions()
            .get::<Pending>()
            .map(|p| (p.record.trace_id, p.record.span_id))
        else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(pending) = extensions.get_mut::<Pending>() {
            pending.record.links.push(SpanLink {
                trace_id,
                span_id,
                attributes: Attributes::new(),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut attributes = Attributes::new();
        let mut message = None;
        event.record(&mut FieldVisitor {
            attributes: &mut attributes,
            overrides: None,
            message: Some(&mut message),
        });
        let metadata = event.metadata();
        attributes.insert("level".into(), Value::Str(metadata.level().as_str().into()));
        attributes.insert("target".into(), Value::Str(metadata.target().into()));
        let span_event = SpanEvent {
            name: message.unwrap_or_else(|| metadata.name().to_owned()),
            time_unix_nanos: unix_nanos(SystemTime::now()),
            attributes,
        };
        match ctx.event_span(event) {
            Some(span) => {
                let mut extensions = span.extensions_mut();
                if let Some(pending) = extensions.get_mut::<Pending>() {
                    pending.error_event |= *metadata.level() == Level::ERROR;
                    pending.record.events.push(span_event);
                }
            }
            None => lock(&self.shared.events_outside_spans).push(span_event),
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(pending) = extensions.get_mut::<Pending>() {
            let now = Instant::now();
            pending.timing.idle += now.saturating_duration_since(pending.timing.last);
            pending.timing.last = now;
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(pending) = extensions.get_mut::<Pending>() {
            let now = Instant::now();
            pending.timing.busy += now.saturating_duration_since(pending.timing.last);
            pending.timing.last = now;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let end = SystemTime::now();
        let Some(span) = ctx.span(&id) else { return };
        let Some(pending) = span.extensions_mut().remove::<Pending>() else {
            return;
        };
        let record = pending.finish(end);
        lock(&self.shared.open).remove(&record.span_id);
        self.shared.closed.push(record);
    }
}

/// Removes every visited field name from the set of declared-but-unrecorded fields.
struct DeclaredNames<'a>(&'a mut BTreeSet<&'static str>);

impl tracing::field::Visit for DeclaredNames<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn std::fmt::Debug) {
        self.0.remove(field.name());
    }
}
