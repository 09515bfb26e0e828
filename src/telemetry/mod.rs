//! One node's telemetry, wired to a receiver: tracer, meter and logger providers from
//! opentelemetry_sdk with real opentelemetry-otlp exporters, and a tracing [`Dispatch`]
//! that feeds both the OpenTelemetry layer and a [`SpanCaptureLayer`](crate::SpanCaptureLayer).
//!
//! Nothing global is touched: no global subscriber, provider or propagator. Everything the
//! exporters would otherwise read from `OTEL_EXPORTER_OTLP_*` variables (endpoint,
//! protocol, timeout, compression) and the batch settings (`OTEL_BSP_*`) are set
//! explicitly, and the resource is built without environment detectors, so a variable in
//! the environment cannot send a test's telemetry elsewhere or change what is exported.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
//! use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
//! use p2p_otel_testkit::SpanSource;
//!
//! let receiver = OtlpReceiver::start(Config::default()).await?;
//! let node = Telemetry::builder(Protocol::Grpc, &receiver)
//!     .resource_attribute("service.name", "ggen-p2p")
//!     .resource_attribute("service.instance.id", "node-1")
//!     .build()?;
//! tracing::dispatcher::with_default(node.dispatch(), || {
//!     tracing::info_span!("p2p_bootstrap").in_scope(|| {});
//! });
//! node.flush().await?;
//! receiver.wait_for_spans(1, std::time::Duration::from_secs(5)).await?;
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

mod builder;
mod http_client;
mod in_process;
mod overlapping;
mod per_node;
mod seeded_ids;

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;

use crate::capture::CaptureHandle;
use crate::receiver::OtlpReceiver;

pub use builder::Builder;
pub use per_node::PerNode;

/// How the exporters reach the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
    /// No socket: at each flush the node hands the receiver of this process the OTLP
    /// messages an exporter would send — for a simulated mesh on a paused runtime, which
    /// never waits for real I/O. Spans are sent from the node's capture (which holds the
    /// exported ids, parents and status), so a capture in virtual time delivers virtual
    /// times. Needs [`Telemetry::builder`] or [`PerNode::new`] (a receiver, not endpoints).
    InProcess,
}

/// Errors building, flushing or shutting down a node's telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// An exporter could not be built.
    #[error("building the OTLP {signal} exporter failed: {source}")]
    Build {
        /// "trace", "metric" or "log".
        signal: &'static str,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// No tokio runtime was running: exporters need one.
    #[error("telemetry must be built inside a tokio runtime: {0}")]
    NoRuntime(#[from] tokio::runtime::TryCurrentError),
    /// A provider failed to flush or shut down.
    #[error("{action} of the {signal} provider failed")]
    Provider {
        /// "flush" or "shutdown".
        action: &'static str,
        /// "tracer", "meter" or "logger".
        signal: &'static str,
        /// What the SDK reported.
        #[source]
        source: opentelemetry_sdk::error::OTelSdkError,
    },
    /// The blocking flush task could not be joined.
    #[error("the flush task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// [`Protocol::InProcess`] was asked for without a receiver (endpoints only).
    #[error("in-process delivery needs a receiver of this process: build with `Telemetry::builder` or `PerNode::new`, not endpoints")]
    NoReceiver,
    /// What a node delivered in process did not reach the receiver's store.
    #[error("delivery in process failed")]
    Delivery(#[from] DeliveryError),
    /// A wait over the nodes' telemetry timed out.
    #[error(transparent)]
    Wait(#[from] crate::WaitError),
}

/// Why a delivery in process ([`Protocol::InProcess`]) did not reach the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver refused the request (full, stopped, an injected outage, invalid).
    #[error("the receiver refused the {signal}s: {reason}")]
    Refused {
        /// "span", "metric" or "log".
        signal: &'static str,
        /// The receiver's reason.
        reason: String,
    },
}

/// Which provider ("tracer", "meter", "logger") and how its flush or shutdown went.
type ProviderResult = (
    &'static str,
    Result<(), opentelemetry_sdk::error::OTelSdkError>,
);

#[derive(Debug, Clone)]
pub(super) struct Providers {
    pub(super) tracer: SdkTracerProvider,
    pub(super) meter: SdkMeterProvider,
    pub(super) logger: SdkLoggerProvider,
}

impl Providers {
    /// Runs `action` on every provider off the async threads: the SDK's flush and
    /// shutdown block until the export threads are done, and those exports may need this
    /// very runtime to make progress.
    async fn blocking(
        &self,
        action: &'static str,
        run: fn(&Providers) -> Vec<ProviderResult>,
    ) -> Result<(), TelemetryError> {
        let providers = self.clone();
        let results = tokio::task::spawn_blocking(move || run(&providers)).await?;
        Self::reported(action, results)
    }

    /// Runs `action` on every provider on this thread: for delivery in process, whose
    /// exporters only queue in memory, so that nothing else of the simulation runs while
    /// the metrics are collected (a run replays the same values).
    fn here(
        &self,
        action: &'static str,
        run: fn(&Providers) -> Vec<ProviderResult>,
    ) -> Result<(), TelemetryError> {
        Self::reported(action, run(self))
    }

    fn reported(action: &'static str, results: Vec<ProviderResult>) -> Result<(), TelemetryError> {
        for (signal, result) in results {
            result.map_err(|source| TelemetryError::Provider {
                action,
                signal,
                source,
            })?;
        }
        Ok(())
    }
}

/// One node's telemetry. See the [module docs](self).
#[derive(Debug)]
pub struct Telemetry {
    pub(super) providers: Providers,
    pub(super) shut_down: bool,
    /// With [`Protocol::InProcess`]: what the node hands the receiver at each flush.
    delivery: Option<in_process::Delivery>,
    pub(super) dispatch: Dispatch,
    pub(super) capture: CaptureHandle,
    pub(super) scope: opentelemetry::InstrumentationScope,
    pub(super) instance_id: Option<String>,
}

impl Telemetry {
    /// A builder exporting with `protocol` to `receiver`.
    pub fn builder(protocol: Protocol, receiver: &OtlpReceiver) -> Builder {
        let mut builder = Self::builder_for_endpoints(
            protocol,
            receiver.grpc_endpoint(),
            receiver.http_endpoint(),
        );
        builder.in_process = Some(receiver.shared());
        builder
    }

    /// A builder exporting with `protocol` to any OTLP endpoint: `grpc_endpoint` such as
    /// `http://127.0.0.1:4317`, `http_endpoint` a base URL such as `http://127.0.0.1:4318`.
    pub fn builder_for_endpoints(
        protocol: Protocol,
        grpc_endpoint: impl Into<String>,
        http_endpoint: impl Into<String>,
    ) -> Builder {
        Builder {
            in_process: None,
            virtual_origin: None,
            id_seed: None,
            protocol,
            grpc_endpoint: grpc_endpoint.into(),
            http_endpoint: http_endpoint.into().trim_end_matches('/').to_owned(),
            resource: Vec::new(),
            scope: "p2p-otel-testkit".to_owned(),
            scope_version: String::new(),
            gzip: true,
            timeout: Duration::from_secs(10),
            max_queue_size: 65_536,
            max_concurrent_exports: 2,
            max_level: tracing::level_filters::LevelFilter::INFO,
            capture_notifier: None,
        }
    }

    /// The node's tracing dispatch: use it with `tracing::dispatcher::with_default` or
    /// `WithSubscriber::with_subscriber`, never as the global default.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The `service.instance.id` of its resource, if it has one.
    pub fn instance_id(&self) -> Option<String> {
        self.instance_id.clone()
    }

    /// What the node's capture layer saw, in-process.
    pub fn capture(&self) -> &CaptureHandle {
        &self.capture
    }

    /// A meter of the node's meter provider, named after the scope.
    pub fn meter(&self) -> opentelemetry::metrics::Meter {
        use opentelemetry::metrics::MeterProvider as _;
        self.providers.meter.meter_with_scope(self.scope.clone())
    }

    /// The node's logger provider, to emit log records with the OpenTelemetry logs API.
    pub fn logger_provider(&self) -> &SdkLoggerProvider {
        &self.providers.logger
    }

    /// The node's tracer provider.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.providers.tracer
    }

    /// Exports everything finished so far — spans, a metrics collection, log records —
    /// and returns once the receiver has answered. Safe on any runtime flavour: the
    /// blocking SDK calls run on tokio's blocking pool.
    ///
    /// The SDK gives a flush 5 s (not configurable); on a busy machine a big backlog can
    /// take longer while exports still make progress, so a flush that timed out is asked
    /// again, for up to [`FLUSH_PATIENCE`] in all, before the timeout is reported.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        self.run_providers("flush", Providers::flush).await
    }

    /// Flushes and shuts the providers down. Prefer it to dropping: a drop must shut down
    /// without awaiting.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shut_down = true;
        self.run_providers("shutdown", Providers::shutdown).await
    }

    /// Runs `action` on the providers: in process on this thread, then hands the receiver
    /// what it produced; over OTLP on tokio's blocking pool.
    async fn run_providers(
        &self,
        action: &'static str,
        run: fn(&Providers) -> Vec<ProviderResult>,
    ) -> Result<(), TelemetryError> {
        match &self.delivery {
            Some(delivery) => {
                self.providers.here(action, run)?;
                delivery.deliver(&self.capture).await
            }
            None => self.providers.blocking(action, run).await,
        }
    }
}

/// Spans or log records per export, for both batch processors.
pub(super) const EXPORT_BATCH_SIZE: usize = 512;

/// How long either batch processor waits before exporting a batch that is not full.
pub(super) const EXPORT_BATCH_DELAY: Duration = Duration::from_millis(200);

/// How much longer than the exporter's timeout a flush waits for the exports in flight.
pub(super) const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// How long [`Telemetry::flush`] keeps asking the SDK to flush while it times out.
pub const FLUSH_PATIENCE: Duration = Duration::from_secs(60);

/// Whether a flush error is a timeout. With several span processors (the capture's wire
/// tap and the exporting one) the SDK folds their results into one `InternalFailure`
/// whose text lists them, so a timeout shows only there.
fn timed_out(error: &OTelSdkError) -> bool {
    match error {
        OTelSdkError::Timeout(_) => true,
        OTelSdkError::InternalFailure(text) => text.contains("Timeout("),
        _ => false,
    }
}

impl Providers {
    fn flush(&self) -> Vec<ProviderResult> {
        let started = std::time::Instant::now();
        let patiently = |flush: &dyn Fn() -> Result<(), OTelSdkError>| loop {
            match flush() {
                Err(error) if timed_out(&error) && started.elapsed() < FLUSH_PATIENCE => continue,
                done => return done,
            }
        };
        vec![
            ("tracer", patiently(&|| self.tracer.force_flush())),
            ("meter", patiently(&|| self.meter.force_flush())),
            ("logger", patiently(&|| self.logger.force_flush())),
        ]
    }

    fn shutdown(&self) -> Vec<ProviderResult> {
        vec![
            ("tracer", self.tracer.shutdown()),
            ("meter", self.meter.shutdown()),
            ("logger", self.logger.shutdown()),
        ]
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // The SDK shuts a provider down, blocking, when its last handle drops. Do it on a
        // detached thread instead: never on a runtime thread the exporters need, and not
        // on tokio's blocking pool either, which a runtime waits for when it is dropped
        // (a test would then wait out the exporters' retries). The handles dropped here
        // afterwards belong to providers already shut down, or about to be.
        if self.shut_down {
            return;
        }
        let providers = self.providers.clone();
        let spawned = std::thread::Builder::new()
            .name("telemetry-shutdown".to_owned())
            .spawn(move || drop(providers.shutdown()));
        // Without a thread, shut down here: blocking beats losing the final export.
        if spawned.is_err() {
            drop(self.providers.shutdown());
        }
    }
}
