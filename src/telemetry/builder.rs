//! Configuring one node's telemetry, and building its providers and exporters.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

use super::http_client::RuntimeBoundClient;
use super::in_process::Delivery;
use super::overlapping::{DrainOnFlush, InFlight, OverlappingExporter};
use super::seeded_ids::SeededIds;
use super::{
    Protocol, Providers, Telemetry, TelemetryError, DRAIN_MARGIN, EXPORT_BATCH_DELAY,
    EXPORT_BATCH_SIZE,
};
use crate::capture::SpanCaptureLayer;
use crate::model::Value;

/// In process, metrics are collected at each flush; the reader's own timer is set past
/// any run (a year).
const IN_PROCESS_COLLECTION_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

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
            // HTTP (in-process delivery builds no exporter).
            _ => $builder
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
    pub(super) protocol: Protocol,
    pub(super) grpc_endpoint: String,
    pub(super) http_endpoint: String,
    pub(super) resource: Vec<(String, Value)>,
    pub(super) scope: String,
    pub(super) scope_version: String,
    pub(super) gzip: bool,
    pub(super) timeout: Duration,
    pub(super) max_queue_size: usize,
    pub(super) max_concurrent_exports: usize,
    pub(super) max_level: tracing::level_filters::LevelFilter,
    /// One change signal shared by several nodes' captures, so that a wait can span them.
    pub(super) capture_notifier: Option<std::sync::Arc<crate::store::Notifier>>,
    /// The receiver, for [`Protocol::InProcess`].
    pub(super) in_process: Option<std::sync::Arc<crate::receiver::ingest::Shared>>,
    pub(super) virtual_origin: Option<tokio::time::Instant>,
    pub(super) id_seed: Option<u64>,
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

    /// Stamps the node's spans from tokio's clock counted from `origin` — in a paused
    /// runtime, virtual time (see
    /// [`capture::Builder::virtual_time`](crate::capture::Builder::virtual_time)). With
    /// [`Protocol::InProcess`] the receiver gets those times, and metric points and log
    /// records are stamped at delivery from the same clock.
    pub fn virtual_time(mut self, origin: tokio::time::Instant) -> Self {
        self.virtual_origin = Some(origin);
        self
    }

    /// Draws the node's trace and span ids from `seed` instead of the SDK's thread-local
    /// generator, so that a simulated run exports the same ids every time.
    pub fn ids_from_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
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
        let resource = self.otel_resource();
        // The wire tap hands each exported span's ids to the capture layer, then the span
        // to the processor it wraps (one processor: the SDK clones a span per processor
        // when there are several).
        let wire_token = crate::capture::wire::new_token();
        let (delivery, tracer_provider, meter_provider, logger_provider) =
            match (self.protocol, &self.in_process) {
                (Protocol::InProcess, Some(receiver)) => {
                    let delivery =
                        Delivery::new(std::sync::Arc::clone(receiver), self.virtual_origin);
                    let tracer = self.tracer_provider(
                        crate::capture::wire::WireTap::new(
                            wire_token,
                            crate::capture::wire::Discard,
                        ),
                        &resource,
                    );
                    // Collected at each flush only, and each log record queued as it is
                    // emitted: no export thread acts at a moment of its own.
                    let meter = Self::meter_provider(
                        delivery.metric_exporter(),
                        &resource,
                        IN_PROCESS_COLLECTION_INTERVAL,
                    );
                    let logger = SdkLoggerProvider::builder()
                        .with_simple_exporter(delivery.log_exporter())
                        .with_resource(resource)
                        .build();
                    (Some(delivery), tracer, meter, logger)
                }
                (Protocol::InProcess, None) => return Err(TelemetryError::NoReceiver),
                _ => {
                    let runtime = tokio::runtime::Handle::try_current()?;
                    let span_exporter = self.span_exporter(&runtime)?;
                    // A drain waits the exporter's timeout and a margin for the exports in
                    // flight.
                    let in_flight =
                        InFlight::new(self.max_concurrent_exports, self.timeout + DRAIN_MARGIN);
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
                    let tracer = self.tracer_provider(
                        crate::capture::wire::WireTap::new(wire_token, span_processor),
                        &resource,
                    );
                    let meter = Self::meter_provider(
                        self.metric_exporter(&runtime)?,
                        &resource,
                        Duration::from_secs(60),
                    );
                    let logger = self.logger_provider(self.log_exporter(&runtime)?, resource);
                    (None, tracer, meter, logger)
                }
            };

        let mut capture = SpanCaptureLayer::builder()
            .scope(self.scope.clone(), self.scope_version.clone())
            .wire_token(wire_token);
        if let Some(origin) = self.virtual_origin {
            capture = capture.virtual_time(origin);
        }
        if let Some(notifier) = &self.capture_notifier {
            capture = capture.notifier(std::sync::Arc::clone(notifier));
        }
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
            delivery,
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

    fn tracer_provider(
        &self,
        processor: impl opentelemetry_sdk::trace::SpanProcessor + 'static,
        resource: &opentelemetry_sdk::Resource,
    ) -> SdkTracerProvider {
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource.clone());
        match self.id_seed {
            Some(seed) => provider.with_id_generator(SeededIds::new(seed)).build(),
            None => provider.build(),
        }
    }

    /// A meter provider collecting into `exporter` at each flush and every `interval`.
    fn meter_provider(
        exporter: impl opentelemetry_sdk::metrics::exporter::PushMetricExporter,
        resource: &opentelemetry_sdk::Resource,
        interval: Duration,
    ) -> SdkMeterProvider {
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone())
            .build()
    }

    fn logger_provider(
        &self,
        exporter: impl opentelemetry_sdk::logs::LogExporter + 'static,
        resource: opentelemetry_sdk::Resource,
    ) -> SdkLoggerProvider {
        let processor = opentelemetry_sdk::logs::BatchLogProcessor::builder(exporter)
            .with_batch_config(
                opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_max_queue_size(self.max_queue_size)
                    .with_max_export_batch_size(EXPORT_BATCH_SIZE)
                    .with_scheduled_delay(EXPORT_BATCH_DELAY)
                    .build(),
            )
            .build();
        SdkLoggerProvider::builder()
            .with_log_processor(processor)
            .with_resource(resource)
            .build()
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
