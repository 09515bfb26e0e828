//! W3C trace context for any message, through OpenTelemetry's own
//! `TraceContextPropagator`: put a span's context into a carrier your message holds, and
//! on the receiving side make it the parent of the handling span.
//!
//! This crate is what production code may depend on: its tree is opentelemetry, the SDK's
//! propagator, tracing, tracing-opentelemetry and serde — nothing of a test kit. The kit
//! (p2p-otel-testkit) re-exports it as `p2p_otel_testkit::propagation`.
//!
//! [`TraceContext::of`] and [`set_parent`] do what the standard API does —
//! `OpenTelemetrySpanExt::context` and `OpenTelemetrySpanExt::set_parent` — and also reach
//! a layer that keeps span ids of its own without an OpenTelemetry layer beside it (the
//! kit's in-process capture does) through a [`SpanContextHook`].
//!
//! ```
//! use p2p_otel_context::{set_parent, TraceContext};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Request {
//!     text: String,
//!     trace: TraceContext,
//! }
//!
//! // Outside any span (or with no layer that keeps span contexts) a message carries none.
//! let request = Request { text: "hello".into(), trace: TraceContext::current() };
//! assert!(request.trace.is_empty());
//!
//! // A received context becomes the parent of the handling span, when a layer can take it.
//! let trace = TraceContext {
//!     traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
//!     tracestate: None,
//! };
//! let span = tracing::info_span!("handle_request");
//! assert_eq!(set_parent(&span, &trace), Err(p2p_otel_context::PropagationError::NotTaken));
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::{Deserialize, Serialize};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context a message carries: `traceparent` and `tracestate`, both optional
/// (a message sent outside any span carries neither). Serde-friendly: put it in your
/// message type as a field. It is an OpenTelemetry [`Injector`] and [`Extractor`], so any
/// propagator can fill and read it.
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
    /// The context of `span`, as its subscriber knows it: the OpenTelemetry context when
    /// an OpenTelemetry layer sees the span, else the ids a layer with a
    /// [`SpanContextHook`] keeps; empty outside any span.
    pub fn of(span: &Span) -> TraceContext {
        let mut context = span.context();
        if !context.span().span_context().is_valid() {
            if let Some(kept) =
                with_hook(span, |hook, dispatch, id| (hook.span_context)(dispatch, id)).flatten()
            {
                context = Context::new().with_remote_span_context(kept);
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

    /// The remote span it names, if its `traceparent` is valid.
    pub fn span_context(&self) -> Option<SpanContext> {
        let context = TraceContextPropagator::new().extract(self);
        let remote = context.span().span_context().clone();
        remote.is_valid().then_some(remote)
    }

    /// The trace and parent span ids it names, if its `traceparent` is valid.
    pub fn ids(&self) -> Option<(TraceId, SpanId)> {
        self.span_context()
            .map(|remote| (remote.trace_id(), remote.span_id()))
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
    /// Neither an OpenTelemetry layer nor a layer with a [`SpanContextHook`] sees the span
    /// (it is disabled, or its subscriber has neither), or it has already started.
    #[error("no layer could take the parent: the span is disabled, its subscriber keeps no span contexts, or it already started")]
    NotTaken,
}

/// Makes the remote context in `context` the parent of `span`: call it right after
/// creating the span, before entering it or creating children. The OpenTelemetry layer
/// (through `OpenTelemetrySpanExt::set_parent`) and any layer with a [`SpanContextHook`]
/// see the remote parent.
pub fn set_parent(span: &Span, context: &TraceContext) -> Result<(), PropagationError> {
    let Some(traceparent) = &context.traceparent else {
        return Err(PropagationError::Missing);
    };
    let Some(remote) = context.span_context() else {
        return Err(PropagationError::Invalid(traceparent.clone()));
    };
    let exported = span
        .set_parent(TraceContextPropagator::new().extract(context))
        .is_ok();
    let kept = with_hook(span, |hook, dispatch, id| {
        (hook.set_remote_parent)(dispatch, id, &remote)
    })
    .unwrap_or(false);
    if exported || kept {
        Ok(())
    } else {
        Err(PropagationError::NotTaken)
    }
}

/// How a tracing layer that keeps span ids of its own — not tracing-opentelemetry's, such
/// as an in-process capture — answers [`TraceContext::of`] and [`set_parent`] when no
/// OpenTelemetry layer sees the span.
///
/// The layer hands out a `'static` hook from `Layer::downcast_raw` when asked for
/// `TypeId::of::<SpanContextHook>()`, the way tracing-opentelemetry hands out its own
/// context accessor; the functions receive the span's dispatch and id.
#[derive(Clone, Copy, Debug)]
pub struct SpanContextHook {
    /// The context the layer keeps for span `id`, if it sees the span.
    pub span_context: fn(&tracing::Dispatch, &tracing::span::Id) -> Option<SpanContext>,
    /// Makes `parent`, a span of another process, the parent of span `id`; whether the
    /// layer took it.
    pub set_remote_parent: fn(&tracing::Dispatch, &tracing::span::Id, &SpanContext) -> bool,
}

/// Runs `f` with the hook of `span`'s subscriber, if it has one.
fn with_hook<R>(
    span: &Span,
    f: impl FnOnce(&SpanContextHook, &tracing::Dispatch, &tracing::span::Id) -> R,
) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<SpanContextHook>()
            .map(|hook| f(hook, dispatch, id))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceState};

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_carrier_round_trips_through_the_propagator() {
        let remote = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let mut carrier = TraceContext::default();
        TraceContextPropagator::new().inject_context(
            &Context::new().with_remote_span_context(remote.clone()),
            &mut carrier,
        );
        assert_eq!(carrier.traceparent.as_deref(), Some(TRACEPARENT));
        assert_eq!(carrier.tracestate.as_deref(), Some("vendor=x"));
        assert_eq!(carrier.ids(), Some((remote.trace_id(), remote.span_id())));
        let json = serde_json::to_string(&carrier).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"traceparent":"{TRACEPARENT}","tracestate":"vendor=x"}}"#)
        );
        assert_eq!(
            serde_json::from_str::<TraceContext>(&json).unwrap(),
            carrier
        );
        assert_eq!(
            serde_json::to_string(&TraceContext::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn a_bad_or_missing_traceparent_is_a_typed_error() {
        let span = Span::none();
        assert_eq!(
            set_parent(&span, &TraceContext::default()),
            Err(PropagationError::Missing)
        );
        let bad = TraceContext {
            traceparent: Some("00-zz-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        assert_eq!(
            set_parent(&span, &bad),
            Err(PropagationError::Invalid(
                "00-zz-b7ad6b7169203331-01".into()
            ))
        );
        assert!(bad.ids().is_none());
    }
}
