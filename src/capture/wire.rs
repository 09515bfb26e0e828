//! What the OpenTelemetry path exported for a span, handed to the capture layer so that
//! the in-process view carries the wire's ids, parent (remote or not), links and status.
//!
//! In a [`Telemetry`](crate::telemetry::Telemetry) dispatch the OpenTelemetry layer closes
//! a span first: its SDK span ends and the provider's span processor runs, synchronously,
//! on the closing thread. That processor is a [`WireTap`] around the exporting one: it
//! leaves the exported ids in a thread-local slot before passing the span on; the capture
//! layer's `on_close` runs next on the same thread and takes them. A token per dispatch
//! keeps two dispatches on one thread apart, and the span name is checked, so a slot left
//! by another span is never applied.

use std::borrow::Cow;
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
    name: Cow<'static, str>,
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

/// The span processor of a [`Telemetry`](crate::telemetry::Telemetry) dispatch: it reports
/// each ended span to the capture layer of its dispatch, then hands it to the exporting
/// processor it wraps.
///
/// Wrapping rather than sitting beside it keeps the provider at one processor: the SDK
/// gives a lone processor the ended span as it is, but clones the whole span (name,
/// attributes, events, links) once per processor when there are several.
#[derive(Debug)]
pub(crate) struct WireTap<P> {
    token: u64,
    exporting: P,
}

impl<P: SpanProcessor> WireTap<P> {
    pub(crate) fn new(token: u64, exporting: P) -> Self {
        WireTap { token, exporting }
    }

    /// What the capture layer needs of an ended span.
    fn exported(&self, span: &SpanData) -> Exported {
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
        let status = match &span.status {
            opentelemetry::trace::Status::Unset => Status::default(),
            opentelemetry::trace::Status::Ok => Status {
                code: StatusCode::Ok,
                message: String::new(),
            },
            opentelemetry::trace::Status::Error { description } => Status {
                code: StatusCode::Error,
                message: description.to_string(),
            },
        };
        Exported {
            token: self.token,
            name: span.name.clone(),
            trace_id,
            span_id,
            parent,
            links,
            status,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for WireTap<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.exporting.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let exported = self.exported(&span);
        ENDED.with(|slot| *slot.borrow_mut() = Some(exported));
        self.exporting.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporting.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporting.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.exporting.shutdown()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.exporting.set_resource(resource);
    }
}

/// The exporting processor of a capture that exports nowhere: the wire tap before it
/// still reports each ended span's ids to the capture.
#[derive(Debug)]
pub(crate) struct Discard;

impl SpanProcessor for Discard {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// tracing-opentelemetry's layer over `tracer`, as the kit's dispatches compose it: no
/// code location, thread or target attributes (the capture records none either), no
/// busy/idle timing.
pub(crate) fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
}

/// A tracer whose spans end in `tap` (the capture of the same dispatch) and go no further.
pub(crate) fn tap_only_tracer(token: u64) -> opentelemetry_sdk::trace::SdkTracer {
    use opentelemetry::trace::TracerProvider as _;
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(WireTap::new(token, Discard))
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build()
        .tracer("p2p-otel-testkit")
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{BatchSpanProcessor, InMemorySpanExporter, SdkTracerProvider};

    use super::*;

    /// The tap leaves the ids of each ended span for the capture layer, once, and the
    /// exporting processor it wraps gets the span whole; flush reaches it through the tap.
    #[test]
    fn the_tap_reports_each_span_and_passes_it_on_whole() {
        let exporter = InMemorySpanExporter::default();
        let token = new_token();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(WireTap::new(
                token,
                BatchSpanProcessor::builder(exporter.clone()).build(),
            ))
            .build();
        let mut span = provider.tracer("wire").start("announce");
        span.set_attribute(KeyValue::new("peers", 2));
        span.end();
        assert!(
            take(new_token()).is_none(),
            "another dispatch's token finds nothing"
        );
        let reported = take(token).expect("the tap reported the span");
        assert!(take(token).is_none(), "a report is taken once");

        provider
            .force_flush()
            .expect("flush reaches the batch processor");
        let spans = exporter.get_finished_spans().expect("exported spans");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "announce");
        assert_eq!(spans[0].attributes, [KeyValue::new("peers", 2)]);
        assert_eq!(reported.name, "announce");
        assert_eq!(
            (reported.trace_id, reported.span_id),
            ids(&spans[0].span_context)
        );
        provider
            .shutdown()
            .expect("shutdown reaches the batch processor");
    }
}
