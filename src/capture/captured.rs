//! The compact form a span takes while open and in the capture store, and its conversion
//! into the span model when a test reads it.
//!
//! Keeping keys as `&'static str`, times as `Instant`s and the never-recorded fields as a
//! bitmask keeps allocation and clock reads off the instrumented code's hot path; the
//! work of building [`SpanRecord`]s is done once per span, when (and if) it is read.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::Metadata;

use super::visitor::SpanOverrides;
use crate::model::compact_value::CompactValue;
use crate::model::{
    Attributes, ParentRef, Resource, Scope, SpanEvent, SpanId, SpanLink, SpanRecord, Status,
    StatusCode, TraceId, Value,
};

/// Maps `Instant`s to Unix time with one wall-clock reading taken at creation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base_instant: Instant,
    base_unix_nanos: u64,
}

impl Clock {
    pub(super) fn new() -> Self {
        let base_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, nanos_u64);
        Clock {
            base_instant: Instant::now(),
            base_unix_nanos,
        }
    }

    pub(super) fn unix_nanos(&self, at: Instant) -> u64 {
        self.base_unix_nanos
            .saturating_add(nanos_u64(at.saturating_duration_since(self.base_instant)))
    }
}

fn nanos_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub(super) struct CapturedSpan {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) parent: Option<SpanId>,
    /// Whether the parent lives on another node (its context was propagated).
    pub(super) remote_parent: bool,
    pub(super) metadata: &'static Metadata<'static>,
    pub(super) fields: Vec<(&'static str, CompactValue)>,
    /// Bit `i` set: the field with index `i` has been recorded (at creation or later).
    pub(super) recorded: u64,
    pub(super) start: Instant,
    pub(super) end: Option<Instant>,
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
    pub(super) busy_idle: Option<(Duration, Duration)>,
}

impl CapturedSpan {
    /// The rarer parts, created on first use.
    pub(super) fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
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

    pub(super) fn to_record(
        &self,
        clock: &Clock,
        resource: &Arc<Resource>,
        scope: &Arc<Scope>,
    ) -> SpanRecord {
        let none = Extras::default();
        let extras = self.extras.as_deref().unwrap_or(&none);
        let mut attributes: Attributes = self
            .fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_value()))
            .collect();
        if let Some((busy, idle)) = extras.busy_idle {
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
            end_unix_nanos: self.end.map(|end| clock.unix_nanos(end)),
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
            unrecorded_fields: self
                .metadata
                .fields()
                .iter()
                .filter(|field| {
                    !field.name().starts_with("otel.")
                        && 1u64
                            .checked_shl(field.index() as u32)
                            .is_some_and(|bit| self.recorded & bit == 0)
                })
                .map(|field| field.name().to_owned())
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
