//! Span exports with more than one request in flight.
//!
//! opentelemetry_sdk's thread-based batch processor exports serially: its thread converts
//! the batch to OTLP, sends it, and waits for the answer before it takes the next batch.
//! [`OverlappingExporter`] still converts and sends each batch on that thread (the first
//! poll of opentelemetry-otlp's export future does both), then hands the wait for the
//! answer to a task on the node's runtime and returns, so the next batch is converted
//! while the last one is on the wire. Only when `limit` exports are in flight does the
//! processor's thread wait for one to end. What is sent, and which thread does the work
//! of sending it, is unchanged: the application's runtime gets no conversion to do.
//!
//! Handing the wait off must not weaken what a flush means. [`DrainOnFlush`] wraps the
//! batch processor: its `force_flush` and shutdown return only once every export handed
//! off has been answered, and they report the exports that failed since the previous
//! flush, including those the processor's timer started (the SDK only logs those).

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The exports handed off and not yet answered, and how the answered ones went.
#[derive(Debug)]
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    idle: Condvar,
    /// How long a drain waits for the exports in flight: the exporter's request timeout
    /// and a margin. An export that retries can take longer; the drain then reports a
    /// timeout, which `Telemetry::flush` answers by asking again.
    patience: Duration,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    failed: usize,
    first_failure: Option<String>,
}

impl InFlight {
    pub(crate) fn new(limit: usize, patience: Duration) -> Arc<Self> {
        Arc::new(InFlight {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            patience,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the counts are still
        // whole numbers worth reading.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn started(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> Running {
        self.state().running += 1;
        Running {
            in_flight: Arc::clone(self),
            outcome: None,
            _slot: slot,
        }
    }

    /// Waits until no export is in flight, for at most `patience`.
    fn wait_idle(&self) -> OTelSdkResult {
        let state = self.state();
        let (state, waited) = self
            .idle
            .wait_timeout_while(state, self.patience, |state| state.running > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() && state.running > 0 {
            return Err(OTelSdkError::Timeout(self.patience));
        }
        Ok(())
    }

    /// Waits until no export is in flight, then reports (and forgets) the failures
    /// since the last report.
    pub(crate) fn drain(&self) -> OTelSdkResult {
        self.wait_idle()?;
        let mut state = self.state();
        let failed = std::mem::take(&mut state.failed);
        match state.first_failure.take() {
            // Not an `OTelSdkError::Timeout` even when the export timed out: a timeout
            // tells `Telemetry::flush` to ask again, and asking again would find nothing
            // in flight and report success for spans that were lost.
            Some(first) if failed > 1 => Err(OTelSdkError::InternalFailure(format!(
                "{failed} span exports failed; the first: {first}"
            ))),
            Some(first) => Err(OTelSdkError::InternalFailure(format!(
                "a span export failed: {first}"
            ))),
            None => Ok(()),
        }
    }
}

/// One export in flight: counted until dropped, whether it finished or its task was
/// dropped with the runtime.
struct Running {
    in_flight: Arc<InFlight>,
    outcome: Option<OTelSdkResult>,
    _slot: OwnedSemaphorePermit,
}

impl Running {
    fn finish(mut self, outcome: OTelSdkResult) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let failure = match self.outcome.take() {
            Some(Ok(())) => None,
            Some(Err(error)) => Some(error.to_string()),
            None => Some("the runtime stopped before the export was answered".to_owned()),
        };
        let mut state = self.in_flight.state();
        state.running -= 1;
        if let Some(failure) = failure {
            state.failed += 1;
            state.first_failure.get_or_insert(failure);
        }
        drop(state);
        self.in_flight.idle.notify_all();
    }
}

/// Converts and sends each batch with `exporter` on the calling thread, and waits for its
/// answer in a task on `runtime`: at most `limit` exports in flight.
#[derive(Debug)]
pub(crate) struct OverlappingExporter<E> {
    exporter: Arc<E>,
    runtime: tokio::runtime::Handle,
    in_flight: Arc<InFlight>,
}

impl<E> OverlappingExporter<E> {
    pub(crate) fn new(
        exporter: E,
        runtime: tokio::runtime::Handle,
        in_flight: Arc<InFlight>,
    ) -> Self {
        OverlappingExporter {
            exporter: Arc::new(exporter),
            runtime,
            in_flight,
        }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OverlappingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let slot = Arc::clone(&self.in_flight.slots)
            .acquire_owned()
            .await
            .map_err(|_closed| OTelSdkError::AlreadyShutdown)?;
        let running = self.in_flight.started(slot);
        let exporter = Arc::clone(&self.exporter);
        let mut export = Box::pin(async move { exporter.export(batch).await });
        // The first poll converts and sends, here on the processor's thread, as the SDK's
        // own call would; nothing waits for it to be woken, since the task below polls
        // it again at once with a waker of its own.
        let mut no_waiting = Context::from_waker(Waker::noop());
        match export.as_mut().poll(&mut no_waiting) {
            Poll::Ready(outcome) => running.finish(outcome),
            // Dropped unpolled if the runtime has stopped: `Running` then counts it failed.
            Poll::Pending => drop(self.runtime.spawn(async move {
                running.finish(export.await);
            })),
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.in_flight.wait_idle()
    }

    /// Waits for the exports in flight, then shuts the wrapped exporter down. Failures
    /// are left for [`DrainOnFlush`] to report: the batch processor ignores what its
    /// exporter's shutdown returns.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let idle = self.in_flight.wait_idle();
        self.in_flight.slots.close();
        let shut = self.exporter.shutdown_with_timeout(timeout);
        idle.and(shut)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // The provider sets its resource once, as it is built, before any export; an
        // export in flight would hold a second handle to the exporter.
        if let Some(exporter) = Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        } else {
            let mut state = self.in_flight.state();
            state.failed += 1;
            state.first_failure.get_or_insert_with(|| {
                "the resource changed while exports were in flight".to_owned()
            });
        }
    }
}

/// A span processor whose flush and shutdown also wait for the exports its exporter
/// handed off, and report how they went.
#[derive(Debug)]
pub(crate) struct DrainOnFlush<P> {
    processor: P,
    in_flight: Arc<InFlight>,
}

impl<P> DrainOnFlush<P> {
    pub(crate) fn new(processor: P, in_flight: Arc<InFlight>) -> Self {
        DrainOnFlush {
            processor,
            in_flight,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for DrainOnFlush<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.processor.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.processor.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        match self.processor.force_flush() {
            // Batches are still being handed off (the processor gives a flush 5 s): the
            // failures so far are left for the flush that sees every batch answered, which
            // `Telemetry::flush` asks for after a timeout.
            Err(OTelSdkError::Timeout(limit)) => Err(OTelSdkError::Timeout(limit)),
            handed_off => both(handed_off, self.in_flight.drain()),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let handed_off = self.processor.shutdown_with_timeout(timeout);
        both(handed_off, self.in_flight.drain())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.processor.set_resource(resource);
    }
}

/// The processor's result and the drain's, losing neither: a drain that timed out took
/// no failures (they wait for the next one), but one that reported failures has
/// forgotten them, so they are reported even beside the processor's own error.
fn both(handed_off: OTelSdkResult, answered: OTelSdkResult) -> OTelSdkResult {
    match (handed_off, answered) {
        (Ok(()), answered) => answered,
        (Err(error), Ok(()) | Err(OTelSdkError::Timeout(_))) => Err(error),
        (Err(error), Err(failures)) => Err(OTelSdkError::InternalFailure(format!(
            "{error}; and {failures}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Generous: these tests hold exports with a gate, never with a short clock.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// An exporter whose exports wait for a pass through `gate`, then answer `answer`.
    #[derive(Debug, Clone)]
    struct Gated {
        gate: Arc<Semaphore>,
        started: Arc<tokio::sync::Notify>,
        answered: Arc<AtomicUsize>,
        answer: Result<(), &'static str>,
        /// The thread each export began on: where its conversion would run.
        began_on: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl Gated {
        fn new(answer: Result<(), &'static str>) -> Self {
            Gated {
                gate: Arc::new(Semaphore::new(0)),
                started: Arc::new(tokio::sync::Notify::new()),
                answered: Arc::new(AtomicUsize::new(0)),
                answer,
                began_on: Arc::default(),
            }
        }
    }

    impl SpanExporter for Gated {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.began_on
                .lock()
                .expect("not poisoned")
                .push(std::thread::current().id());
            self.started.notify_one();
            self.gate
                .acquire()
                .await
                .map_err(|closed| OTelSdkError::InternalFailure(closed.to_string()))?
                .forget();
            self.answered.fetch_add(1, Ordering::SeqCst);
            self.answer
                .map_err(|why| OTelSdkError::InternalFailure(why.to_owned()))
        }
    }

    fn overlapping(
        gated: &Gated,
        limit: usize,
        patience: Duration,
    ) -> (OverlappingExporter<Gated>, Arc<InFlight>) {
        let in_flight = InFlight::new(limit, patience);
        let exporter = OverlappingExporter::new(
            gated.clone(),
            tokio::runtime::Handle::current(),
            Arc::clone(&in_flight),
        );
        (exporter, in_flight)
    }

    /// An exporter whose waits go to a runtime of its own, not this thread's: this
    /// thread stands for the batch processor's, which has none.
    fn on_a_runtime_of_its_own(
        gated: &Gated,
    ) -> (
        tokio::runtime::Runtime,
        OverlappingExporter<Gated>,
        Arc<InFlight>,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("a runtime");
        let in_flight = InFlight::new(2, PATIENCE);
        let exporter = OverlappingExporter::new(
            gated.clone(),
            runtime.handle().clone(),
            Arc::clone(&in_flight),
        );
        (runtime, exporter, in_flight)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_overlap_up_to_the_limit_and_no_further() {
        let gated = Gated::new(Ok(()));
        let (exporter, in_flight) = overlapping(&gated, 2, PATIENCE);
        // Two exports are handed off at once, neither answered yet.
        for _ in 0..2 {
            let handed_off = exporter.export(Vec::new()).now_or_never();
            assert!(matches!(handed_off, Some(Ok(()))), "{handed_off:?}");
        }
        assert_eq!(in_flight.state().running, 2);
        // A third waits for a slot.
        assert!(exporter.export(Vec::new()).now_or_never().is_none());
        gated.gate.add_permits(1);
        tokio::time::timeout(PATIENCE, exporter.export(Vec::new()))
            .await
            .expect("a slot frees once an export is answered")
            .expect("handed off");
        gated.gate.add_permits(2);
        let drained = tokio::task::spawn_blocking(move || in_flight.drain()).await;
        assert!(matches!(drained, Ok(Ok(()))), "{drained:?}");
        assert_eq!(gated.answered.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_batch_is_converted_on_the_processors_thread_and_answered_on_the_runtime() {
        let gated = Gated::new(Ok(()));
        let (_runtime, exporter, in_flight) = on_a_runtime_of_its_own(&gated);
        futures::executor::block_on(exporter.export(Vec::new())).expect("handed off");
        assert_eq!(
            *gated.began_on.lock().expect("not poisoned"),
            [std::thread::current().id()],
            "the export must begin (convert, encode, send) on the calling thread"
        );
        gated.gate.add_permits(1);
        assert!(matches!(in_flight.drain(), Ok(())));
        assert_eq!(
            gated.answered.load(Ordering::SeqCst),
            1,
            "answered on the runtime"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drain_waits_for_held_exports_then_reports_their_failures_once() {
        let gated = Gated::new(Err("the receiver refused the batch"));
        // The exports are held by the gate: the short patience is only how long this
        // test waits to see the drain give up on them.
        let (exporter, in_flight) = overlapping(&gated, 2, Duration::from_millis(200));
        for _ in 0..2 {
            exporter.export(Vec::new()).await.expect("handed off");
        }
        let held = Arc::clone(&in_flight);
        let drained = tokio::task::spawn_blocking(move || held.drain()).await;
        assert!(
            matches!(drained, Ok(Err(OTelSdkError::Timeout(_)))),
            "held exports must not count as answered: {drained:?}"
        );
        gated.gate.add_permits(2);
        let again = Arc::clone(&in_flight);
        let drained = tokio::task::spawn_blocking(move || again.drain()).await;
        match drained {
            Ok(Err(OTelSdkError::InternalFailure(text))) => {
                assert!(text.starts_with("2 span exports failed"), "{text}");
                assert!(text.contains("the receiver refused the batch"), "{text}");
            }
            other => panic!("expected both failures, got {other:?}"),
        }
        let drained = tokio::task::spawn_blocking(move || in_flight.drain()).await;
        assert!(matches!(drained, Ok(Ok(()))), "reported once: {drained:?}");
    }

    #[test]
    fn an_export_whose_runtime_stops_is_reported_as_failed_not_waited_for() {
        let gated = Gated::new(Ok(()));
        let (runtime, exporter, in_flight) = on_a_runtime_of_its_own(&gated);
        futures::executor::block_on(exporter.export(Vec::new())).expect("handed off");
        runtime.shutdown_background();
        match in_flight.drain() {
            Err(OTelSdkError::InternalFailure(text)) => {
                assert!(text.contains("runtime stopped"), "{text}")
            }
            other => panic!("expected the abandoned export, got {other:?}"),
        }
        assert_eq!(gated.answered.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_providers_flush_returns_once_the_handed_off_export_is_answered() {
        let gated = Gated::new(Ok(()));
        let (exporter, in_flight) = overlapping(&gated, 2, PATIENCE);
        let processor = DrainOnFlush::new(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build(),
            in_flight,
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        provider.tracer("test").in_span("p2p_search", |_| {});
        let flushing = provider.clone();
        let flushed = tokio::task::spawn_blocking(move || flushing.force_flush());
        // The batch is handed off and held; only then may the export answer.
        tokio::time::timeout(PATIENCE, gated.started.notified())
            .await
            .expect("the flush hands the batch off");
        gated.gate.add_permits(1);
        let flushed = flushed.await;
        assert!(matches!(flushed, Ok(Ok(()))), "{flushed:?}");
        assert_eq!(
            gated.answered.load(Ordering::SeqCst),
            1,
            "the flush returned before the export was answered"
        );
        let shut = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        assert!(matches!(shut, Ok(Ok(()))), "{shut:?}");
    }

    /// A batch processor whose flush always times out, as the SDK's does after 5 s.
    #[derive(Debug)]
    struct FlushTimesOut;

    impl SpanProcessor for FlushTimesOut {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, _: SpanData) {}
        fn force_flush(&self) -> OTelSdkResult {
            Err(OTelSdkError::Timeout(Duration::from_secs(5)))
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_wait_for_a_flush_that_saw_every_batch_handed_off() {
        let gated = Gated::new(Err("the receiver refused the batch"));
        let (exporter, in_flight) = overlapping(&gated, 2, PATIENCE);
        gated.gate.add_permits(1);
        exporter.export(Vec::new()).await.expect("handed off");
        let processor = DrainOnFlush::new(FlushTimesOut, Arc::clone(&in_flight));
        let flushed = tokio::task::spawn_blocking(move || processor.force_flush()).await;
        assert!(
            matches!(flushed, Ok(Err(OTelSdkError::Timeout(_)))),
            "a timeout, which `Telemetry::flush` asks again after: {flushed:?}"
        );
        let drained = tokio::task::spawn_blocking(move || in_flight.drain()).await;
        match drained {
            Ok(Err(OTelSdkError::InternalFailure(text))) => {
                assert!(text.contains("the receiver refused the batch"), "{text}")
            }
            other => panic!("the failure must wait for the next flush: {other:?}"),
        }
    }

    #[test]
    fn a_processor_error_and_export_failures_are_reported_together() {
        let timeout = || Err(OTelSdkError::Timeout(Duration::from_secs(5)));
        let failed = || {
            Err(OTelSdkError::InternalFailure(
                "a span export failed: no".into(),
            ))
        };
        assert!(matches!(both(Ok(()), Ok(())), Ok(())));
        assert!(matches!(
            both(timeout(), Ok(())),
            Err(OTelSdkError::Timeout(_))
        ));
        // A drain that timed out took nothing: the processor's timeout stands, and asking
        // again finds the failures still there.
        assert!(matches!(
            both(timeout(), timeout()),
            Err(OTelSdkError::Timeout(_))
        ));
        match both(timeout(), failed()) {
            Err(OTelSdkError::InternalFailure(text)) => assert!(text.contains("no"), "{text}"),
            other => panic!("the failures must survive a processor timeout: {other:?}"),
        }
    }
}
