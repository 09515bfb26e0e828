//! The compact form a span takes while open and in the capture store, and its conversion
//! into the span model when a test reads it.
//!
//! Values kept by field index in the capture's shared buffer (the names are in the span's
//! `'static` metadata), times as raw readings of the capture's clock and short
//! strings inline keep allocation off the instrumented code's hot path and a retained
//! span small (~80 bytes, plus 24 a declared field); the work of building [`SpanRecord`]s
//! is done once per span, when (and if) it is read.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Metadata;

use super::values::FieldValues;
use super::visitor::SpanOverrides;
use crate::model::compact_value::CompactValue;
use crate::model::{
    Attributes, ParentRef, Resource, Scope, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord,
    Status, StatusCode, TraceId, Value,
};

/// The capture's clock: the processor's time-stamp counter where it is invariant (read by
/// quanta, about a third of the cost of `Instant::now()` through the vDSO), the OS's
/// monotonic clock elsewhere. A reading is a raw count, kept as it is and converted to
/// nanoseconds only when a span is read, with one wall-clock reading taken at creation
/// mapping it to Unix time. quanta calibrates the counter once per process, when the
/// first capture is built: 0.6–3 ms here, 200 ms at most on a loaded machine.
///
/// With [`Builder::virtual_time`](super::Builder::virtual_time) it reads tokio's clock
/// instead — a paused runtime's virtual time — as nanoseconds since an origin, mapped to
/// Unix time from a fixed epoch, so two runs of one simulation stamp the same times.
#[derive(Debug, Clone)]
pub(super) struct Clock {
    source: Source,
    base_reading: u64,
    base_unix_nanos: u64,
}

#[derive(Debug, Clone)]
enum Source {
    Counter(quanta::Clock),
    /// tokio's clock, as nanoseconds since this instant.
    Tokio(tokio::time::Instant),
}

/// Where virtual time starts in Unix time: 2026-01-01T00:00:00Z.
pub(crate) const VIRTUAL_EPOCH_UNIX_NANOS: u64 = 1_767_225_600_000_000_000;

/// tokio's clock now, as Unix nanoseconds on the virtual time line that starts at `origin`
/// (2026-01-01T00:00:00Z): what a capture built with
/// [`virtual_time(origin)`](super::Builder::virtual_time) stamps a span closed now with —
/// for the time of day of code that runs in a simulation.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let origin = tokio::time::Instant::now();
/// tokio::time::sleep(std::time::Duration::from_secs(1)).await;
/// assert_eq!(p2p_otel_testkit::capture::virtual_unix_nanos(origin), 1_767_225_601_000_000_000);
/// # }
/// ```
pub fn virtual_unix_nanos(origin: tokio::time::Instant) -> u64 {
    let clock = Clock::virtual_from(origin);
    clock.base_unix_nanos.saturating_add(clock.now())
}

impl Clock {
    pub(super) fn new() -> Self {
        let source = quanta::Clock::new();
        let base_reading = source.raw();
        let base_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, nanos_u64);
        Clock {
            source: Source::Counter(source),
            base_reading,
            base_unix_nanos,
        }
    }

    /// tokio's clock from `origin`, which is [`VIRTUAL_EPOCH_UNIX_NANOS`] in Unix time.
    pub(super) fn virtual_from(origin: tokio::time::Instant) -> Self {
        Clock {
            source: Source::Tokio(origin),
            base_reading: 0,
            base_unix_nanos: VIRTUAL_EPOCH_UNIX_NANOS,
        }
    }

    /// A reading: what a captured span keeps for its start and end.
    #[inline(always)]
    pub(super) fn now(&self) -> u64 {
        match &self.source {
            Source::Counter(counter) => counter.raw(),
            Source::Tokio(origin) => {
                nanos_u64(tokio::time::Instant::now().saturating_duration_since(*origin))
            }
        }
    }

    /// Nanoseconds from one reading to a later one (0 if it is not later).
    pub(super) fn nanos_between(&self, earlier: u64, later: u64) -> u64 {
        match &self.source {
            Source::Counter(counter) => counter.delta_as_nanos(earlier, later),
            Source::Tokio(_) => later.saturating_sub(earlier),
        }
    }

    /// Unix time, in nanoseconds, of a reading.
    pub(super) fn unix_nanos(&self, reading: u64) -> u64 {
        self.base_unix_nanos
            .saturating_add(self.nanos_between(self.base_reading, reading))
    }
}

fn nanos_u64(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

#[derive(Debug)]
pub(super) struct CapturedSpan {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) parent: Option<SpanId>,
    /// Whether the parent lives on another node (its context was propagated).
    pub(super) remote_parent: bool,
    pub(super) metadata: &'static Metadata<'static>,
    /// Where the span's slots start in the capture's [`FieldValues`]: one per declared
    /// field, by the field's index, `None` until recorded (and for the `otel.*` fields,
    /// which set [`SpanOverrides`] instead).
    pub(super) values_at: usize,
    /// When the span started and closed, as raw [`Clock::now`] readings (`end` is set on
    /// close), converted to Unix time only when the span is read.
    pub(super) start: u64,
    pub(super) end: u64,
    /// What most spans lack, boxed so that a plain span stays small.
    pub(super) extras: Option<Box<Extras>>,
}

/// The rarer parts of a captured span.
#[derive(Debug, Default)]
pub(super) struct Extras {
    pub(super) overrides: SpanOverrides,
    pub(super) events: Vec<SpanEvent>,
    pub(super) links: Vec<SpanLink>,
    /// Busy and idle time, when the layer tracks them.
    pub(super) busy_idle: Option<BusyIdle>,
}

/// Time a span spent entered (busy) and not (idle), as tracing-opentelemetry measures it.
#[derive(Debug)]
pub(super) struct BusyIdle {
    pub(super) busy: Duration,
    pub(super) idle: Duration,
    /// The clock reading of the last enter or exit (or of the start).
    pub(super) last_transition: u64,
}

impl BusyIdle {
    pub(super) fn new(start: u64) -> Self {
        BusyIdle {
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            last_transition: start,
        }
    }

    /// Adds the time since the last transition to idle time (on enter and close) or to
    /// busy time (on exit).
    pub(super) fn transition(&mut self, clock: &Clock, now: u64, was_busy: bool) {
        let spent = Duration::from_nanos(clock.nanos_between(self.last_transition, now));
        if was_busy {
            self.busy += spent;
        } else {
            self.idle += spent;
        }
        self.last_transition = now;
    }
}

impl CapturedSpan {
    /// The rarer parts, created on first use.
    pub(super) fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Whether this is a handler with no local parent — a server or consumer span at the
    /// root of its node's tree — whose remote parent only OpenTelemetry may know yet.
    pub(super) fn is_handler_root(&self) -> bool {
        self.parent.is_none()
            && matches!(
                self.overrides().and_then(|overrides| overrides.kind),
                Some(SpanKind::Server | SpanKind::Consumer)
            )
    }

    fn overrides(&self) -> Option<&SpanOverrides> {
        self.extras.as_deref().map(|extras| &extras.overrides)
    }

    /// The span's name: `otel.name` when set, else the tracing name.
    pub(super) fn name(&self) -> &str {
        self.overrides()
            .and_then(|overrides| overrides.name.as_deref())
            .unwrap_or(self.metadata.name())
    }

    /// The span's slots in `values`.
    pub(super) fn values<'a>(&self, values: &'a FieldValues) -> &'a [Option<CompactValue>] {
        values.get(self.values_at, self.metadata.fields().len())
    }

    /// The span's slots in `values`, to record into.
    pub(super) fn values_mut<'a>(
        &self,
        values: &'a mut FieldValues,
    ) -> &'a mut [Option<CompactValue>] {
        values.get_mut(self.values_at, self.metadata.fields().len())
    }

    pub(super) fn to_record(
        &self,
        values: &FieldValues,
        clock: &Clock,
        resource: &Arc<Resource>,
        scope: &Arc<Scope>,
    ) -> SpanRecord {
        let none = Extras::default();
        let extras = self.extras.as_deref().unwrap_or(&none);
        let declared = self.metadata.fields();
        let mut attributes: Attributes = declared
            .iter()
            .zip(self.values(values))
            .filter_map(|(field, value)| {
                Some((field.name().to_owned(), value.as_ref()?.to_value()))
            })
            .collect();
        if let Some(BusyIdle { busy, idle, .. }) = extras.busy_idle {
            let nanos_i64 =
                |d: Duration| Value::Int(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            attributes.insert("busy_ns".into(), nanos_i64(busy));
            attributes.insert("idle_ns".into(), nanos_i64(idle));
        }
        let status = self.status();
        SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent.map(|span_id| ParentRef {
                span_id,
                remote: Some(self.remote_parent),
            }),
            name: self.name().to_owned(),
            kind: extras.overrides.kind.unwrap_or_default(),
            status,
            attributes,
            events: extras.events.clone(),
            links: extras.links.clone(),
            start_unix_nanos: clock.unix_nanos(self.start),
            end_unix_nanos: Some(clock.unix_nanos(self.end)),
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
            unrecorded_fields: declared
                .iter()
                .zip(self.values(values))
                .filter(|(field, value)| value.is_none() && !field.name().starts_with("otel."))
                .map(|(field, _)| field.name().to_owned())
                .collect(),
        }
    }

    /// The status as tracing-opentelemetry 0.34 exports it: set by `otel.status_code` and
    /// `otel.status_description` in recording order, and an ERROR-level event inside the
    /// span makes an unset status an error without a message. (`error = true` is only an
    /// attribute, on the wire as here.)
    fn status(&self) -> Status {
        let status = self
            .overrides()
            .and_then(|overrides| overrides.status.clone())
            .unwrap_or_default();
        match status.code {
            StatusCode::Error => status,
            code => Status {
                code,
                message: String::new(),
            },
        }
    }

    /// An ERROR-level event happened inside the span.
    pub(super) fn error_event(&mut self) {
        let status = &mut self.extras_mut().overrides.status;
        if status.as_ref().is_none_or(|s| s.code == StatusCode::Unset) {
            *status = Some(Status {
                code: StatusCode::Error,
                message: String::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn readings_convert_to_the_time_the_os_clocks_give() {
        let clock = Clock::new();
        // Readings bracket a spin of at least 2 ms and are bracketed by `Instant`s, so a
        // busy machine that stops this thread anywhere only widens both intervals.
        let outer_start = Instant::now();
        let first = clock.now();
        let inner_start = Instant::now();
        while inner_start.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let second = clock.now();
        let outer = outer_start.elapsed();
        let measured = Duration::from_nanos(clock.nanos_between(first, second));
        assert!(
            measured >= Duration::from_micros(1_980) && measured <= outer + outer / 100,
            "{measured:?} between readings, {outer:?} around them"
        );
        assert_eq!(clock.nanos_between(second, first), 0, "never negative");
        let unix = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, nanos_u64)
        };
        let before = unix();
        let converted = clock.unix_nanos(clock.now());
        let after = unix();
        // The clock's base pairs a reading with the wall clock, taken one after the other.
        let slack = 1_000_000_000;
        assert!(
            converted + slack >= before && converted <= after + slack,
            "{converted} against the wall clock's {before}..{after}"
        );
    }
}
