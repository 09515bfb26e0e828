//! W3C trace context for any message, independent of libp2p: put the current span's
//! context into a carrier your message holds, and on the receiving side make it the parent
//! of the handling span — through opentelemetry's `TraceContextPropagator`, never by hand.
//!
//! It works the same whether the node exports over OTLP (a [`Telemetry`] dispatch, whose
//! OpenTelemetry layer gets the parent) or only captures in-process (a
//! [`capture::dispatch`]): in both, the captured handler span carries the remote parent, so
//! trees, orphan checks and snapshots work on capture alone across a mesh whose nodes each
//! have their own capture.
//!
//! ```
//! use p2p_otel_testkit::{capture, propagation, SpanSource};
//!
//! // Two nodes, each with its own capture.
//! let (caller, caller_spans) = capture::dispatch();
//! let (handler, handler_spans) = capture::dispatch();
//!
//! // The caller puts its request span's context into the message.
//! let message = tracing::dispatcher::with_default(&caller, || {
//!     let request = tracing::info_span!("send_request");
//!     let _entered = request.enter();
//!     propagation::TraceContext::current()
//! });
//! assert!(message.traceparent.as_deref().is_some_and(|t| t.starts_with("00-")));
//!
//! // The handler makes it the parent of its span.
//! tracing::dispatcher::with_default(&handler, || {
//!     let span = tracing::info_span!("handle_request");
//!     propagation::set_parent(&span, &message).unwrap();
//!     span.in_scope(|| {});
//! });
//!
//! let (request, handled) = (caller_spans.spans(), handler_spans.spans());
//! let parent = handled[0].parent.unwrap();
//! assert_eq!(parent.span_id, request[0].span_id);
//! assert_eq!(parent.remote, Some(true));
//! assert_eq!(handled[0].trace_id, request[0].trace_id);
//! ```
//!
//! [`Telemetry`]: crate::telemetry::Telemetry
//! [`capture::dispatch`]: crate::capture::dispatch

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::{Deserialize, Serialize};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::capture;
use crate::model::{SpanId, TraceId};

/// The W3C trace context a message carries: `traceparent` and `tracestate`, both optional
/// (a message sent outside any span carries neither). Serde-friendly: put it in your
/// message type as a field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent`: version, trace id, parent span id, flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// `tracestate`: vendor data, passed along untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of `span`, as its node exports it (the OpenTelemetry ids when the node
    /// has an OpenTelemetry layer, the captured ids otherwise); empty outside any span.
    pub fn of(span: &Span) -> TraceContext {
        let mut context = span.context();
        if !context.span().span_context().is_valid() {
            if let Some((trace_id, span_id)) = capture::ids_of(span) {
                context = Context::new().with_remote_span_context(SpanContext::new(
                    OtelTraceId::from_bytes(trace_id.to_bytes()),
                    opentelemetry::trace::SpanId::from_bytes(span_id.to_bytes()),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::default(),
                ));
            }
        }
        let mut carrier = TraceContext::default();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier
    }

    /// The context of the current span.
    pub fn current() -> TraceContext {
        TraceContext::of(&Span::current())
    }

    /// Whether it carries no `traceparent`.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none()
    }

    /// The trace and parent span ids it names, if its `traceparent` is valid.
    pub fn ids(&self) -> Option<(TraceId, SpanId)> {
        let context = TraceContextPropagator::new().extract(self);
        let span = context.span();
        let remote = span.span_context();
        remote.is_valid().then(|| {
            (
                TraceId::from_bytes(remote.trace_id().to_bytes()),
                SpanId::from_bytes(remote.span_id().to_bytes()),
            )
        })
    }
}

impl Injector for TraceContext {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        if self.traceparent.is_some() {
            keys.push("traceparent");
        }
        if self.tracestate.is_some() {
            keys.push("tracestate");
        }
        keys
    }
}

/// Why a context could not become a span's parent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropagationError {
    /// The message carried no `traceparent`: the span stays a root.
    #[error("the message carries no traceparent")]
    Missing,
    /// The `traceparent` was not a valid W3C trace context.
    #[error("invalid traceparent {0:?}")]
    Invalid(String),
    /// Neither an OpenTelemetry layer nor a capture layer sees the span (it is disabled,
    /// or was created outside any dispatch of the kit), or it has already started.
    #[error("no layer could take the parent: the span is disabled, outside the kit's dispatch, or already started")]
    NotTaken,
}

/// Makes the remote context in `context` the parent of `span`: call it right after
/// creating the span, before entering it or creating children. Both the OpenTelemetry
/// layer (if the node has one) and the capture see the remote parent.
pub fn set_parent(span: &Span, context: &TraceContext) -> Result<(), PropagationError> {
    let Some(traceparent) = &context.traceparent else {
        return Err(PropagationError::Missing);
    };
    let Some((trace_id, span_id)) = context.ids() else {
        return Err(PropagationError::Invalid(traceparent.clone()));
    };
    let exported = span
        .set_parent(TraceContextPropagator::new().extract(context))
        .is_ok();
    let captured = capture::set_remote_parent(span, trace_id, span_id);
    if exported || captured {
        Ok(())
    } else {
        Err(PropagationError::NotTaken)
    }
}
