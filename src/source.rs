//! One API over every place spans come from, so one test body runs in-process
//! ([`CaptureHandle`](crate::CaptureHandle)) or over OTLP
//! ([`OtlpReceiver`](crate::receiver::OtlpReceiver)).

use std::future::Future;
use std::time::Duration;

use crate::model::SpanRecord;
use crate::store::WaitError;
use crate::tree::TraceSet;

/// Where spans arrive: read them, or wait honestly until what a test needs is there.
///
/// Every wait wakes on each arrival (no polling, no sleeps) and fails at its timeout
/// with a [`WaitError`] that renders what did arrive.
///
/// ```
/// use std::time::Duration;
/// use p2p_otel_testkit::{capture, SpanSource};
///
/// /// The same assertions, whichever source the spans came through.
/// async fn publish_was_traced(source: &impl SpanSource) -> Result<(), Box<dyn std::error::Error>> {
///     let trace = source.wait_for_complete_trace("publish", Duration::from_secs(5)).await?;
///     assert_eq!(trace.spans().count(), 2);
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (dispatch, handle) = capture::dispatch();
/// tracing::dispatcher::with_default(&dispatch, || {
///     tracing::info_span!("publish").in_scope(|| tracing::info_span!("store").in_scope(|| {}));
/// });
/// publish_was_traced(&handle).await?;
/// # Ok(()) }
/// ```
pub trait SpanSource: Send + Sync {
    /// Every span that has arrived (closed spans, for a capture), in arrival order.
    fn spans(&self) -> Vec<SpanRecord>;

    /// Every span that has arrived, as trace trees.
    fn traces(&self) -> TraceSet {
        TraceSet::new(self.spans())
    }

    /// Waits until `condition` holds over every span that has arrived; returns them all
    /// as trees. `expected` says what was awaited, in the timeout's message.
    fn wait_until<'a>(
        &'a self,
        expected: &'a str,
        timeout: Duration,
        condition: impl FnMut(&[SpanRecord]) -> bool + Send + 'a,
    ) -> impl Future<Output = Result<TraceSet, WaitError>> + Send + 'a;

    /// Waits until at least `count` spans have arrived.
    fn wait_for_spans(
        &self,
        count: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<TraceSet, WaitError>> + Send + '_ {
        async move {
            let expected = format!("{count} span(s)");
            self.wait_until(&expected, timeout, move |spans| spans.len() >= count)
                .await
        }
    }

    /// Waits until a span named `name` has arrived.
    fn wait_for_span_named<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> impl Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        async move {
            let expected = format!("a span named {name:?}");
            self.wait_until(&expected, timeout, move |spans| {
                spans.iter().any(|span| span.name == name)
            })
            .await
        }
    }

    /// Waits until some trace holds a span named `name` and misses no parent; returns
    /// that trace alone.
    fn wait_for_complete_trace<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> impl Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        async move {
            let expected = format!("a complete trace with a span named {name:?}");
            let all = self
                .wait_until(&expected, timeout, move |spans| {
                    complete_trace_with(&TraceSet::new(spans.to_vec()), name, |_| true).is_some()
                })
                .await?;
            Ok(only_trace(&all, complete_trace_with(&all, name, |_| true)))
        }
    }
}

/// A wait over spans that timed out: what was awaited, and every span that did arrive,
/// rendered (with `settings`, when the source names its nodes).
pub(crate) fn spans_timed_out(
    expected: &str,
    waited: Duration,
    spans: Vec<SpanRecord>,
    settings: Option<crate::tree::RenderSettings>,
) -> WaitError {
    let arrived = spans.len();
    let mut traces = TraceSet::new(spans);
    if let Some(settings) = settings {
        traces = traces.with_render_settings(settings);
    }
    WaitError::Timeout {
        expected: expected.to_owned(),
        waited,
        arrived,
        unit: "span(s)",
        rendered: traces.render(),
    }
}

/// The id of the first complete trace holding a span named `name` for which `also` holds.
pub(crate) fn complete_trace_with(
    set: &TraceSet,
    name: &str,
    also: impl Fn(&crate::tree::Trace) -> bool,
) -> Option<crate::model::TraceId> {
    set.traces()
        .iter()
        .find(|trace| {
            trace.is_complete() && trace.spans().any(|span| span.name() == name) && also(trace)
        })
        .map(|trace| trace.trace_id())
}

/// The spans of `set` in trace `id` (none when `id` is `None`), as a set of their own.
pub(crate) fn only_trace(set: &TraceSet, id: Option<crate::model::TraceId>) -> TraceSet {
    TraceSet::new(
        set.spans()
            .map(|span| span.record())
            .filter(|span| Some(span.trace_id) == id)
            .cloned(),
    )
}
