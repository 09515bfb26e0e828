//! W3C trace context for any message, independent of libp2p: put the current span's
//! context into a carrier your message holds, and on the receiving side make it the parent
//! of the handling span — through opentelemetry's `TraceContextPropagator`, never by hand.
//!
//! This module is the crate `p2p-otel-context`, re-exported: production code that wants
//! the serde carrier depends on that crate alone (opentelemetry, the SDK's propagator,
//! tracing, tracing-opentelemetry, serde), never on the kit. Code that propagates with the
//! standard API instead (`TraceContextPropagator` with tracing-opentelemetry's
//! `OpenTelemetrySpanExt::context` and `set_parent`) needs neither: a
//! [`Telemetry`] dispatch, a capture built with
//! [`capture::Builder::opentelemetry_layer`] and a mesh's per-node captures all see those
//! remote parents.
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
//! [`capture::Builder::opentelemetry_layer`]: crate::capture::Builder::opentelemetry_layer

pub use p2p_otel_context::{set_parent, PropagationError, SpanContextHook, TraceContext};
