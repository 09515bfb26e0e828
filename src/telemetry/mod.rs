//! One node's telemetry, wired to a receiver: tracer, meter and logger providers from
//! opentelemetry_sdk with real opentelemetry-otlp exporters, and a tracing [`Dispatch`]
//! that feeds both the OpenTelemetry layer and a [`SpanCaptureLayer`].
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

mod http_client;
mod overlapping;
mod per_node;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

use crate::capture::{CaptureHandle, SpanCaptureLayer};
use crate::model::Value;
use crate::receiver::OtlpReceiver;

use http_client::RuntimeBoundClient;
use overlapping::{DrainOnFlush, InFlight, OverlappingExporter};
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
}

/// Builds one signal's OTLP exporter for the builder's protocol, with every setting the
/// environment could override given explicitly. A macro because opentelemetry-otlp's
/// span, metric and log exporter builders share methods but no trait to name them by.
macro_rules! exporter {
    ($config:expr, $runtime:expr, $builder:expr, $path:literal) => {
        match $config.protocol {
            Protocol::Grpc => $builder
                .with_tonic()
                .with_endpoint($config.grpc_endpoint.clone())
                .with_timeout($config.timeout)
                .with_compression_if($config.gzip)
                .build(),
            Protocol::HttpProtobuf | Protocol::HttpJson => $builder
                .with_http()
                .with_endpoint(format!("{}{}", $config.http_endpoint, $path))
                .with_protocol($config.http_protocol())
                .with_timeout($config.timeout)
                .with_http_client(RuntimeBoundClient::new($runtime.clone(), $config.timeout))
                .with_http_compression_if($config.gzip)
                .build(),
        }
    };
}

/// Builds a [`Telemetry`]. Defaults: `INFO` and above, gzip on, 10 s export timeout, batches of 512, a
/// span and log queue of 65,536 (the SDK drops beyond it, so raise it for bigger bursts),
/// two span exports in flight at once, metrics exported on flush (and every 60 s),
/// busy/idle timing off in both layers.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the telemetry"]
pub struct Builder {
    protocol: Protocol,
    grpc_endpoint: String,
    http_endpoint: String,
    resource: Vec<(String, Value)>,
    scope: String,
    scope_version: String,
    gzip: bool,
    timeout: Duration,
    max_queue_size: usize,
    max_concurrent_exports: usize,
    max_level: tracing::level_filters::LevelFilter,
}

impl Builder {
    /// Adds a resource attribute (for example `service.name`, `service.instance.id`).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// The instrumentation scope (tracer, meter and logger name and version) every span,
    /// metric and log record is reported under. Default `"p2p-otel-testkit"`, no version:
    /// set your crate's, such as `scope("my-service", env!("CARGO_PKG_VERSION"))`.
    pub fn scope(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.scope = name.into();
        self.scope_version = version.into();
        self
    }

    /// Compress requests with gzip (default on).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// The exporters' request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most verbose level captured and exported (default `INFO`). Libraries such as
    /// libp2p open `DEBUG`/`TRACE` spans on every poll; exporting those costs far more
    /// than the application's own spans.
    pub fn max_level(mut self, level: tracing::level_filters::LevelFilter) -> Self {
        self.max_level = level;
        self
    }

    /// How many finished spans (and log records) may wait for export before the SDK drops.
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.max_queue_size = size;
        self
    }

    /// How many span exports may be in flight at once (default 2; 0 counts as 1).
    ///
    /// The SDK's batch processor exports serially: it converts and encodes a batch,
    /// sends it and waits for the answer before taking the next. With more than one, the
    /// SDK's thread still converts and sends each batch, but hands the wait for its
    /// answer to a task on the runtime, so the next batch is converted while the last is
    /// on the wire; the requests are the same. [`Telemetry::flush`], and the
    /// tracer provider's own `force_flush` and `shutdown`, still return only once every
    /// export has been answered, and report any export that failed since the previous
    /// flush, including those the batch timer started. With `1` the SDK's processor
    /// calls the exporter itself, as production runs it. Log records are always exported
    /// serially.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
    /// use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
    ///
    /// let receiver = OtlpReceiver::start(Config::default()).await?;
    /// let node = Telemetry::builder(Protocol::Grpc, &receiver)
    ///     .max_concurrent_exports(4)
    ///     .build()?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn max_concurrent_exports(mut self, exports: usize) -> Self {
        self.max_concurrent_exports = exports.max(1);
        self
    }

    fn instrumentation_scope(&self) -> opentelemetry::InstrumentationScope {
        let scope = opentelemetry::InstrumentationScope::builder(self.scope.clone());
        if self.scope_version.is_empty() {
            scope.build()
        } else {
            scope.with_version(self.scope_version.clone()).build()
        }
    }

    fn otel_resource(&self) -> opentelemetry_sdk::Resource {
        opentelemetry_sdk::Resource::builder_empty()
            .with_attributes(
                self.resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), otel_value(v))),
            )
            .build()
    }

    /// Builds the providers, exporters and dispatch. Must run inside a tokio runtime:
    /// the exporters' network work runs on it.
    pub fn build(self) -> Result<Telemetry, TelemetryError> {
        let runtime = tokio::runtime::Handle::try_current()?;
        let resource = self.otel_resource();
        let span_exporter = self.span_exporter(&runtime)?;
        // A drain waits the exporter's timeout and a margin for the exports in flight.
        let in_flight = InFlight::new(self.max_concurrent_exports, self.timeout + DRAIN_MARGIN);
        let span_processor = DrainOnFlush::new(
            if self.max_concurrent_exports > 1 {
                self.span_batches(OverlappingExporter::new(
                    span_exporter,
                    runtime.clone(),
                    std::sync::Arc::clone(&in_flight),
                ))
            } else {
                self.span_batches(span_exporter)
            },
            in_flight,
        );
        // The wire tap hands each exported span's ids to the capture layer, then the span
        // to the batch processor it wraps (one processor: the SDK clones a span per
        // processor when there are several).
        let wire_token = crate::capture::wire::new_token();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(crate::capture::wire::WireTap::new(
                wire_token,
                span_processor,
            ))
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource.clone())
            .build();

        let metric_exporter = self.metric_exporter(&runtime)?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter)
            .with_interval(Duration::from_secs(60))
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone())
            .build();

        let log_exporter = self.log_exporter(&runtime)?;
        let log_processor = opentelemetry_sdk::logs::BatchLogProcessor::builder(log_exporter)
            .with_batch_config(
                opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_max_queue_size(self.max_queue_size)
                    .with_max_export_batch_size(EXPORT_BATCH_SIZE)
                    .with_scheduled_delay(EXPORT_BATCH_DELAY)
                    .build(),
            )
            .build();
        let logger_provider = SdkLoggerProvider::builder()
            .with_log_processor(log_processor)
            .with_resource(resource)
            .build();

        let mut capture = SpanCaptureLayer::builder()
            .scope(self.scope.clone(), self.scope_version.clone())
            .wire_token(wire_token);
        for (key, value) in &self.resource {
            capture = capture.resource_attribute(key.clone(), value.clone());
        }
        let (capture_layer, capture) = capture.build();
        let otel_layer = crate::capture::wire::otel_layer(
            tracer_provider.tracer_with_scope(self.instrumentation_scope()),
        );
        // The OpenTelemetry layer closes a span before the capture layer does, so the
        // capture can take the ids, parent and links the span was exported with.
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(self.max_level)
                .with(otel_layer)
                .with(capture_layer),
        );
        Ok(Telemetry {
            providers: Providers {
                tracer: tracer_provider,
                meter: meter_provider,
                logger: logger_provider,
            },
            shut_down: false,
            dispatch,
            capture,
            scope: self.instrumentation_scope(),
            instance_id: self
                .resource
                .iter()
                .rev()
                .find(|(key, _)| key == "service.instance.id")
                .map(|(_, value)| match value {
                    Value::Str(text) => text.clone(),
                    other => other.to_string(),
                }),
        })
    }

    /// The SDK's batch processor over `exporter`, with the builder's queue and the kit's
    /// batch size and delay.
    fn span_batches(
        &self,
        exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    ) -> opentelemetry_sdk::trace::BatchSpanProcessor {
        opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_max_queue_size(self.max_queue_size)
                    .with_max_export_batch_size(EXPORT_BATCH_SIZE)
                    .with_scheduled_delay(EXPORT_BATCH_DELAY)
                    .build(),
            )
            .build()
    }

    fn span_exporter(
        &self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
        exporter!(
            self,
            runtime,
            opentelemetry_otlp::SpanExporter::builder(),
            "/v1/traces"
        )
        .map_err(|source| TelemetryError::Build {
            signal: "trace",
            source,
        })
    }

    fn metric_exporter(
        &self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
        exporter!(
            self,
            runtime,
            opentelemetry_otlp::MetricExporter::builder(),
            "/v1/metrics"
        )
        .map_err(|source| TelemetryError::Build {
            signal: "metric",
            source,
        })
    }

    fn log_exporter(
        &self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
        exporter!(
            self,
            runtime,
            opentelemetry_otlp::LogExporter::builder(),
            "/v1/logs"
        )
        .map_err(|source| TelemetryError::Build {
            signal: "log",
            source,
        })
    }

    fn http_protocol(&self) -> opentelemetry_otlp::Protocol {
        match self.protocol {
            Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
            _ => opentelemetry_otlp::Protocol::HttpBinary,
        }
    }
}

/// Sets gzip on a tonic exporter builder only when asked.
trait CompressionIf: Sized {
    fn with_compression_if(self, gzip: bool) -> Self;
}

impl<T: WithTonicConfig> CompressionIf for T {
    fn with_compression_if(self, gzip: bool) -> Self {
        if gzip {
            self.with_compression(opentelemetry_otlp::Compression::Gzip)
        } else {
            self
        }
    }
}

/// Sets gzip on an HTTP exporter builder only when asked.
trait HttpCompressionIf: Sized {
    fn with_http_compression_if(self, gzip: bool) -> Self;
}

impl<T: WithHttpConfig> HttpCompressionIf for T {
    fn with_http_compression_if(self, gzip: bool) -> Self {
        if gzip {
            self.with_compression(opentelemetry_otlp::Compression::Gzip)
        } else {
            self
        }
    }
}

fn otel_value(value: &Value) -> opentelemetry::Value {
    match value {
        Value::Str(s) => s.clone().into(),
        Value::Int(i) => (*i).into(),
        Value::Double(d) => (*d).into(),
        Value::Bool(b) => (*b).into(),
        other => other.to_string().into(),
    }
}

/// Which provider ("tracer", "meter", "logger") and how its flush or shutdown went.
type ProviderResult = (
    &'static str,
    Result<(), opentelemetry_sdk::error::OTelSdkError>,
);

#[derive(Debug, Clone)]
struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    logger: SdkLoggerProvider,
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
    providers: Providers,
    shut_down: bool,
    dispatch: Dispatch,
    capture: CaptureHandle,
    scope: opentelemetry::InstrumentationScope,
    instance_id: Option<String>,
}

impl Telemetry {
    /// A builder exporting with `protocol` to `receiver`.
    pub fn builder(protocol: Protocol, receiver: &OtlpReceiver) -> Builder {
        Self::builder_for_endpoints(protocol, receiver.grpc_endpoint(), receiver.http_endpoint())
    }

    /// A builder exporting with `protocol` to any OTLP endpoint: `grpc_endpoint` such as
    /// `http://127.0.0.1:4317`, `http_endpoint` a base URL such as `http://127.0.0.1:4318`.
    pub fn builder_for_endpoints(
        protocol: Protocol,
        grpc_endpoint: impl Into<String>,
        http_endpoint: impl Into<String>,
    ) -> Builder {
        Builder {
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
        self.providers.blocking("flush", Providers::flush).await
    }

    /// Flushes and shuts the providers down. Prefer it to dropping: a drop must shut down
    /// without awaiting.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shut_down = true;
        self.providers
            .blocking("shutdown", Providers::shutdown)
            .await
    }
}

/// Spans or log records per export, for both batch processors.
const EXPORT_BATCH_SIZE: usize = 512;

/// How long either batch processor waits before exporting a batch that is not full.
const EXPORT_BATCH_DELAY: Duration = Duration::from_millis(200);

/// How much longer than the exporter's timeout a flush waits for the exports in flight.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

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
