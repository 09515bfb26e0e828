//! An echo service over libp2p request-response, instrumented as production code is: its
//! own spans, and W3C trace context carried in its own message type through
//! opentelemetry's `TraceContextPropagator` and tracing-opentelemetry's
//! `OpenTelemetrySpanExt`. It knows nothing of any test kit.
//!
//! `send_echo` (client) opens on the caller and closes when the answer arrives;
//! `handle_echo` (server) runs on the callee under the caller's span as a remote parent,
//! and the text comes back in upper case.

#![warn(missing_docs)]

use std::collections::HashMap;

use libp2p::futures::channel::oneshot;
use libp2p::request_response::{self, cbor, OutboundRequestId, ProtocolSupport};
use libp2p::{PeerId, StreamProtocol};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A request: the text, and the caller's trace context as W3C headers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// What to echo.
    pub text: String,
    /// `traceparent` and `tracestate`, as the propagator wrote them.
    pub headers: HashMap<String, String>,
}

/// The answer: the text in upper case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// The echoed text.
    pub text: String,
}

/// The service's network behaviour.
pub type Behaviour = cbor::Behaviour<Request, Response>;

/// Where an echo's answer (or why it failed) goes.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// The behaviour speaking `/echo/1`.
pub fn behaviour() -> Behaviour {
    cbor::Behaviour::new(
        [(StreamProtocol::new("/echo/1"), ProtocolSupport::Full)],
        request_response::Config::default(),
    )
}

/// The client side of one echo: its span (open until the answer) and the request, whose
/// headers carry that span's context.
pub fn outgoing(to: &PeerId, text: String) -> (tracing::Span, Request) {
    let span = tracing::info_span!(
        "send_echo",
        otel.kind = "client",
        to = %to,
        otel.status_code = tracing::field::Empty,
    );
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    (span, Request { text, headers })
}

/// The server side of one echo: its span, under the caller's as a remote parent, and the
/// answer. Production code ignores a missing parent: the span is then a root.
pub fn handle(request: &Request) -> (tracing::Span, Response) {
    let span = tracing::info_span!(
        "handle_echo",
        otel.kind = "server",
        bytes = request.text.len() as i64,
    );
    let _ = span.set_parent(TraceContextPropagator::new().extract(&request.headers));
    let text = span.in_scope(|| request.text.to_uppercase());
    (span, Response { text })
}

/// One node's echo logic: requests in flight keep their client span open until answered.
#[derive(Debug, Default)]
pub struct EchoService {
    pending: HashMap<OutboundRequestId, (tracing::Span, Reply)>,
}

impl EchoService {
    /// Echoes `text` off `to`; the answer goes to `reply`.
    pub fn send(&mut self, behaviour: &mut Behaviour, to: PeerId, text: String, reply: Reply) {
        let (span, request) = outgoing(&to, text);
        let id = span.in_scope(|| behaviour.send_request(&to, request));
        self.pending.insert(id, (span, reply));
    }

    /// Handles one event of the behaviour: answers requests, completes echoes.
    pub fn on_event(
        &mut self,
        behaviour: &mut Behaviour,
        event: request_response::Event<Request, Response>,
    ) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let (span, response) = handle(&request);
                    span.in_scope(|| {
                        let _ = behaviour.send_response(channel, response);
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((span, reply)) = self.pending.remove(&request_id) {
                        // Close the span before answering: whoever awaits the answer may
                        // read the spans at once.
                        drop(span);
                        let _ = reply.send(Ok(response.text));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((span, reply)) = self.pending.remove(&request_id) {
                    span.record("otel.status_code", "error");
                    drop(span);
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            _ => {}
        }
    }
}
