//! What the OpenTelemetry path exported for a span, handed to the capture layer so that
//! the in-process view carries the wire's ids, parent (remote or not), links and status.
//!
//! In a [`Telemetry`](crate::telemetry::Telemetry) dispatch the OpenTelemetry layer closes
//! a span first: its SDK span ends and every span processor's `on_end` runs, synchronously,
//! on the closing thread. The first processor is a [`WireTap`], which leaves the exported
//! ids in a thread-local slot; the capture layer's `on_close` runs next on the same thread
//! and takes them. A token per dispatch keeps two dispatches on one thread apart, and the
//! span name is checked, so a slot left by another span is never applied.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use super::captured::CapturedSpan;
use crate::model::{Attributes, SpanId, SpanLink, Status, StatusCode, TraceId};

/// The ids of one exported span.
#[derive(Debug)]
pub(crate) struct Exported {
    token: u64,
    name: String,
    trace_id: TraceId,
    span_id: SpanId,
    /// The parent's span id and whether it is remote.
    parent: Option<(SpanId, bool)>,
    links: Vec<SpanLink>,
    status: Status,
}

thread_local! {
    static ENDED: RefCell<Option<Exported>> = const { RefCell::new(None) };
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A token that ties one capture layer to the processor of the same dispatch.
pub(crate) fn new_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
}

/// What the processor for `token` just exported on this thread, if anything.
pub(super) fn take(token: u64) -> Option<Exported> {
    ENDED.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot
            .as_ref()
            .is_some_and(|exported| exported.token == token)
        {
            slot.take()
        } else {
            None
        }
    })
}

fn ids(context: &SpanContext) -> (TraceId, SpanId) {
    (
        TraceId::from_bytes(context.trace_id().to_bytes()),
        SpanId::from_bytes(context.span_id().to_bytes()),
    )
}

impl Exported {
    /// Gives the captured span the exported ids, parent and links (same span: same name).
    pub(super) fn apply_to(self, captured: &mut CapturedSpan) {
        if self.name != captured.name() {
            return;
        }
        captured.trace_id = self.trace_id;
        captured.span_id = self.span_id;
        captured.parent = self.parent.map(|(id, _)| id);
        captured.remote_parent = self.parent.is_some_and(|(_, remote)| remote);
        let extras = captured.extras_mut();
        extras.links = self.links;
        extras.overrides.status = Some(self.status);
    }
}

/// The span processor that reports each exported span to the capture layer of its
/// dispatch. Register it before the exporting processor.
#[derive(Debug)]
pub(crate) struct WireTap {
    token: u64,
}

impl WireTap {
    pub(crate) fn new(token: u64) -> Self {
        WireTap { token }
    }
}

impl SpanProcessor for WireTap {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let (trace_id, span_id) = ids(&span.span_context);
        let parent = (span.parent_span_id != opentelemetry::trace::SpanId::INVALID).then(|| {
            (
                SpanId::from_bytes(span.parent_span_id.to_bytes()),
                span.parent_span_is_remote,
            )
        });
        let links = span
            .links
            .iter()
            .map(|link| {
                let (trace_id, span_id) = ids(&link.span_context);
                SpanLink {
                    trace_id,
                    span_id,
                    attributes: Attributes::new(),
                }
            })
            .collect();
        let status = match span.status {
            opentelemetry::trace::Status::Unset => Status::default(),
            opentelemetry::trace::Status::Ok => Status {
                code: StatusCode::Ok,
                message: String::new(),
            },
            opentelemetry::trace::Status::Error { description } => Status {
                code: StatusCode::Error,
                message: description.into_owned(),
            },
        };
        let exported = Exported {
            token: self.token,
            name: span.name.into_owned(),
            trace_id,
            span_id,
            parent,
            links,
            status,
        };
        ENDED.with(|slot| *slot.borrow_mut() = Some(exported));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
