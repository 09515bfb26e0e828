//! The embedded OTLP receiver: what a Docker Collector did, inside the test process.
//!
//! [`OtlpReceiver`] serves, on `127.0.0.1` ports chosen by the OS (configurable):
//!
//! - OTLP/gRPC (`TraceService`, `MetricsService`, `LogsService`; gzip accepted);
//! - OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` in `application/x-protobuf`
//!   or `application/json` (answered in the request's encoding), gzip or not, chunked or
//!   not;
//! - `GET /health`; `GET /metrics`, the receiver's own counters named like the
//!   Collector's (`otelcol_receiver_accepted_spans`, …, labelled by transport and
//!   `service_name`); `GET /metrics/received`, the application metrics it received, as
//!   Prometheus text.
//!
//! Everything received is kept exactly, in the crate's model, and tests wait for what they
//! need on a notification — never a poll — with timeouts that show what did arrive.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
//! use p2p_otel_testkit::SpanSource;
//!
//! let receiver = OtlpReceiver::start(Config::default()).await?;
//! // Point an exporter at receiver.grpc_endpoint() or receiver.http_endpoint(), run the
//! // code under test, flush, then wait: `receiver.wait_for_spans(3, timeout).await?`.
//! assert!(receiver.grpc_endpoint().starts_with("http://127.0.0.1:"));
//! let nothing = receiver.wait_for_spans(0, Duration::from_secs(5)).await?;
//! assert_eq!(nothing.span_count(), 0);
//! receiver.shutdown().await?;
//! # Ok(()) }
//! ```

mod closing;
mod compact;
mod file_export;
mod grpc;
mod http;
mod http_server;
mod ingest;
pub(crate) mod prometheus;
mod signal;
mod span_store;
mod trace_protobuf;
mod trace_watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

use crate::model::{LogRecord, MetricPoint, SpanRecord, TraceId};
use crate::source::SpanSource;
use crate::store::WaitError;
use crate::tree::TraceSet;

use file_export::JsonLines;
use grpc::OtlpGrpc;
pub use ingest::Counter;
use ingest::Shared;
pub use trace_watch::TraceWatch;

/// What a server task ends with when it fails.
type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// Errors starting or running the receiver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// A listening socket could not be bound (port busy, address not local…).
    #[error("could not bind the {what} listener on {addr}: {source}")]
    Bind {
        /// "OTLP/gRPC" or "OTLP/HTTP".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An OTLP-JSON export file or its folder could not be created.
    #[error("could not open the OTLP-JSON export file {path}: {source}")]
    ExportFile {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A server task failed while serving.
    #[error("the {what} server failed")]
    Serve {
        /// Which server.
        what: &'static str,
        /// What it reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A fault to inject into the next requests, to test an exporter's retry behaviour. A
/// malformed or invalid request is refused as such and takes no fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Refuse the request as retryable: gRPC `UNAVAILABLE` with retry info, HTTP 503
    /// with `Retry-After`. Nothing is stored.
    Unavailable {
        /// The retry delay suggested to the client.
        retry_after: Duration,
    },
    /// Store all but the last `rejected` items and answer with an OTLP partial success.
    PartialSuccess {
        /// How many items to reject.
        rejected: u64,
        /// The error message in the partial success.
        message: String,
    },
    /// Delay the response, then handle the request normally.
    Delay(Duration),
}

/// Receiver settings. [`Default`]: both servers on `127.0.0.1:0`, 64 MiB body limit
/// (compressed and decompressed), capacity of 1,000,000 spans in at most 1 GiB, and
/// 1,000,000 metric points and log records each, a full store refusing more (no
/// eviction), no file export, 5 s shutdown grace.
///
/// ```
/// use p2p_otel_testkit::receiver::Config;
/// let config = Config::default()
///     .with_max_body_bytes(8 << 20)
///     .with_span_capacity(100_000)
///     .with_json_lines_dir("target/otel-output");
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    pub(crate) max_body_bytes: usize,
    pub(crate) capacity_spans: usize,
    pub(crate) capacity_span_bytes: usize,
    pub(crate) keep_last_traces: Option<usize>,
    pub(crate) capacity_metric_points: usize,
    pub(crate) capacity_log_records: usize,
    json_lines_dir: Option<PathBuf>,
    shutdown_grace: Duration,
    idle_timeout: Option<Duration>,
    header_read_timeout: Option<Duration>,
}

/// The default idle timeout of a connection: 2 minutes, longer than the 60 s export
/// interval of OpenTelemetry's periodic metric reader, so an exporter's connection stays.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The default time an OTLP/HTTP client has to send a request's headers once it starts
/// one: 30 s (hyper's own default), ample for any exporter, which sends them at once.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/2 flow-control window of each gRPC stream.
const GRPC_WINDOW_BYTES: u32 = 1 << 20;
/// The largest HTTP/2 frame a client may send (HTTP/2's default is 16 KiB): an exporter's
/// batch of a few hundred spans arrives in a frame or two instead of a dozen.
const GRPC_MAX_FRAME_BYTES: u32 = 1 << 20;

/// The default span capacity: 1,000,000 spans.
pub const DEFAULT_SPAN_CAPACITY: usize = 1_000_000;
/// The default byte capacity of the span store: 1 GiB, as the store estimates its own
/// size (compact spans, shared names and resources, indexes).
pub const DEFAULT_SPAN_BYTE_CAPACITY: usize = 1 << 30;

const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_addr: LOOPBACK_ANY_PORT,
            http_addr: LOOPBACK_ANY_PORT,
            max_body_bytes: 64 << 20,
            capacity_spans: DEFAULT_SPAN_CAPACITY,
            capacity_span_bytes: DEFAULT_SPAN_BYTE_CAPACITY,
            keep_last_traces: None,
            capacity_metric_points: 1_000_000,
            capacity_log_records: 1_000_000,
            json_lines_dir: None,
            shutdown_grace: Duration::from_secs(5),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
        }
    }
}

impl Config {
    /// The OTLP/gRPC listening address.
    pub fn with_grpc_addr(mut self, addr: SocketAddr) -> Self {
        self.grpc_addr = addr;
        self
    }

    /// The OTLP/HTTP listening address.
    pub fn with_http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = addr;
        self
    }

    /// The largest request body accepted, before and after decompression.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How many spans the store holds before refusing more, loudly: gRPC
    /// `RESOURCE_EXHAUSTED` with a retry delay, HTTP 429 with `Retry-After`, counted in
    /// [`Counter::RefusedSpans`].
    pub fn with_span_capacity(mut self, spans: usize) -> Self {
        self.capacity_spans = spans;
        self
    }

    /// How many bytes the span store may hold (as it estimates its own size) before
    /// refusing more, whatever the span count: a few huge spans cannot take the memory.
    pub fn with_span_byte_capacity(mut self, bytes: usize) -> Self {
        self.capacity_span_bytes = bytes;
        self
    }

    /// Keeps only the `traces` most recent traces, and makes room for new spans when a
    /// capacity is reached by evicting the oldest traces (counted in
    /// [`Counter::EvictedSpans`]) instead of refusing: for a receiver that runs for days.
    pub fn with_keep_last_traces(mut self, traces: usize) -> Self {
        self.keep_last_traces = Some(traces);
        self
    }

    /// How many metric points the store holds before refusing more.
    pub fn with_metric_point_capacity(mut self, points: usize) -> Self {
        self.capacity_metric_points = points;
        self
    }

    /// How many log records the store holds before refusing more.
    pub fn with_log_record_capacity(mut self, records: usize) -> Self {
        self.capacity_log_records = records;
        self
    }

    /// How long [`OtlpReceiver::shutdown`] lets requests in flight finish before it closes
    /// every connection (default 5 s): a client that holds a connection open — silent, or
    /// halfway through a request — never keeps the receiver from shutting down.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Closes a connection on which nothing was sent or read for `timeout` (default
    /// [`DEFAULT_IDLE_TIMEOUT`]): a client that connects and never finishes its request
    /// headers, or stops reading its answer, gives its connection up; `None` keeps idle
    /// connections for ever. Exporters reconnect on their next export.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Closes an OTLP/HTTP connection whose client has not sent a request's headers
    /// within `timeout` of starting them (default [`DEFAULT_HEADER_READ_TIMEOUT`]): a
    /// client that trickles its headers a byte at a time, which the idle timeout counts
    /// as progress, still loses the connection. `None` waits for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use p2p_otel_testkit::receiver::Config;
    ///
    /// let config = Config::default().with_header_read_timeout(Some(Duration::from_secs(5)));
    /// # let _ = config;
    /// ```
    pub fn with_header_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Also append every request, as OTLP JSON, to `traces.jsonl`, `metrics.jsonl` and
    /// `logs.jsonl` in this folder (created if missing), one request per line.
    pub fn with_json_lines_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.json_lines_dir = Some(dir.into());
        self
    }
}

/// A running receiver. Dropping it stops both servers; [`OtlpReceiver::shutdown`] also
/// waits until their ports are released.
#[derive(Debug)]
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Past the grace period: closes every connection still open.
    close: watch::Sender<bool>,
    tasks: Vec<ServerTask>,
}

/// Gives tonic's own answers to bad input the codes the OTLP specification asks for.
///
/// tonic rejects a request before our services see it in two cases: a message over the
/// decoding limit gets `OUT_OF_RANGE` (OTLP clients expect `RESOURCE_EXHAUSTED`, which
/// tonic already uses for an overflowing decompression), and malformed framing — an
/// undecodable metrics or logs message (trace messages reach our service undecoded),
/// corrupt compression, a compressed flag without an encoding, an unknown flag, a
/// truncated frame — gets `INTERNAL` (OTLP: `INVALID_ARGUMENT`, the
/// client's error, not retryable). Our services never answer `OUT_OF_RANGE` or
/// `INTERNAL` themselves, so every such status is tonic's verdict on the request.
fn tonic_rejections_as_otlp_codes<B>(mut response: ::http::Response<B>) -> ::http::Response<B> {
    let headers = response.headers_mut();
    let replacement = match headers.get("grpc-status").map(|v| v.as_bytes()) {
        Some(b"11") => Some("8"),
        Some(b"13") => Some("3"),
        _ => None,
    };
    if let Some(code) = replacement {
        headers.insert("grpc-status", ::http::HeaderValue::from_static(code));
    }
    response
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ReceiverError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ReceiverError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    addr: SocketAddr,
    listener: &TcpListener,
) -> Result<SocketAddr, ReceiverError> {
    listener
        .local_addr()
        .map_err(|source| ReceiverError::Bind { what, addr, source })
}

impl OtlpReceiver {
    /// Binds both listeners and starts serving. Needs a tokio runtime.
    pub async fn start(config: Config) -> Result<Self, ReceiverError> {
        let files = match &config.json_lines_dir {
            Some(dir) => Some(JsonLines::create(dir)?),
            None => None,
        };
        let grpc_listener = bind("OTLP/gRPC", config.grpc_addr).await?;
        let http_listener = bind("OTLP/HTTP", config.http_addr).await?;
        let grpc_addr = local_addr("OTLP/gRPC", config.grpc_addr, &grpc_listener)?;
        let http_addr = local_addr("OTLP/HTTP", config.http_addr, &http_listener)?;
        let limit = config.max_body_bytes;
        let idle_timeout = config.idle_timeout;
        let header_read_timeout = config.header_read_timeout;
        let shared = Arc::new(Shared::new(config, files));
        let (stop, stopped) = watch::channel(false);
        // Given once the grace period is over: every connection still open fails and closes.
        let (close, closing) = watch::channel(false);

        let service = OtlpGrpc {
            shared: Arc::clone(&shared),
        };
        // HTTP/2's default 64 KiB windows stall a client with several 100 KB batches in
        // flight until the server acknowledges each chunk: open them wider.
        let mut grpc_server = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(GRPC_WINDOW_BYTES))
            .initial_connection_window_size(Some(4 * GRPC_WINDOW_BYTES))
            .max_frame_size(Some(GRPC_MAX_FRAME_BYTES))
            .layer(grpc::RequireGrpc::layer())
            .layer(tower::util::MapResponseLayer::new(
                tonic_rejections_as_otlp_codes::<tonic::body::Body>
                    as fn(
                        ::http::Response<tonic::body::Body>,
                    ) -> ::http::Response<tonic::body::Body>,
            ));
        let grpc = grpc_server
            .add_service(grpc::TraceExport::new(Arc::clone(&shared), limit))
            .add_service(
                MetricsServiceServer::new(service.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(limit),
            )
            .add_service(
                LogsServiceServer::new(service)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(limit),
            )
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY, Nagle and delayed ACKs stall responses by ~40 ms.
                closing::incoming(
                    TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                    closing.clone(),
                    idle_timeout,
                ),
                signal(stopped.clone()),
            );
        let grpc_task = tokio::spawn(async move { grpc.await.map_err(ServeError::from) });

        let router = http::router(Arc::clone(&shared));
        let http_task = tokio::spawn(async move {
            http_server::serve(
                closing::Listener::new(http_listener, closing, idle_timeout),
                router,
                stopped,
                header_read_timeout,
            )
            .await
            .map_err(ServeError::from)
        });

        Ok(OtlpReceiver {
            shared,
            grpc_addr,
            http_addr,
            stop,
            close,
            tasks: vec![("OTLP/gRPC", grpc_task), ("OTLP/HTTP", http_task)],
        })
    }

    /// The gRPC endpoint for an exporter, e.g. `http://127.0.0.1:41234`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The HTTP base URL, e.g. `http://127.0.0.1:41235`; signals are under `/v1/traces`,
    /// `/v1/metrics`, `/v1/logs`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the OTLP-JSON lines files are written, if enabled.
    pub fn json_lines_dir(&self) -> Option<&std::path::Path> {
        self.shared.files.as_ref().map(JsonLines::folder)
    }

    /// Every span received, in arrival order, duplicates kept once. Copies the whole
    /// store: for a large one, prefer [`OtlpReceiver::trace`] and [`TraceWatch`].
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.shared.spans.spans()
    }

    /// Every span received, as trace trees.
    pub fn traces(&self) -> TraceSet {
        TraceSet::new(self.spans())
    }

    /// One trace, from the store's index: costs the spans of that trace, whatever the
    /// store holds. Empty when the trace is unknown.
    pub fn trace(&self, trace_id: TraceId) -> TraceSet {
        TraceSet::new(self.shared.spans.trace(&trace_id))
    }

    /// Every stored trace's id, oldest first.
    pub fn trace_ids(&self) -> Vec<TraceId> {
        self.shared.spans.trace_ids()
    }

    /// How many spans are stored.
    pub fn span_count(&self) -> usize {
        self.shared.spans.len()
    }

    /// How many spans are stored per `service.name`, without copying any: what a summary
    /// of a large store needs.
    pub fn span_counts_by_service(&self) -> std::collections::BTreeMap<String, usize> {
        self.shared.spans.counts_by_service()
    }

    /// How many traces are stored.
    pub fn trace_count(&self) -> usize {
        self.shared.spans.trace_count()
    }

    /// How many bytes the span store holds, as it estimates them against
    /// [`Config::with_span_byte_capacity`].
    pub fn span_store_bytes(&self) -> usize {
        self.shared.spans.bytes()
    }

    /// Follows the traces as requests add spans to them, from now on: see [`TraceWatch`].
    pub fn watch_traces(&self) -> TraceWatch {
        TraceWatch::new(Arc::clone(&self.shared))
    }

    /// Every metric data point received, in arrival order.
    pub fn metric_points(&self) -> Vec<MetricPoint> {
        self.shared.metrics.lock().clone()
    }

    /// The data points of the metric `name`.
    pub fn metric_points_named(&self, name: &str) -> Vec<MetricPoint> {
        self.shared
            .metrics
            .lock()
            .iter()
            .filter(|point| point.name == name)
            .cloned()
            .collect()
    }

    /// Every log record received, in arrival order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.shared.logs.lock().clone()
    }

    /// The total of one of the receiver's own counters, over both transports, for one
    /// `service.name` or all.
    pub fn counter(&self, counter: Counter, service_name: Option<&str>) -> u64 {
        self.shared
            .counters()
            .iter()
            .filter(|((counter_of, _, service), _)| {
                *counter_of == counter && service_name.is_none_or(|wanted| wanted == service)
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The receiver's own counters as Prometheus text (what `GET /metrics` serves).
    pub fn prometheus_self_metrics(&self) -> String {
        prometheus::receiver_metrics(&self.shared)
    }

    /// The received application metrics as Prometheus text (`GET /metrics/received`).
    pub fn prometheus_received_metrics(&self) -> String {
        prometheus::received_metrics(&self.shared.metrics.lock())
    }

    /// Forgets every span, metric point and log record received, and which spans were
    /// seen (so a span sent again after a clear is stored again). Counters keep counting.
    pub fn clear(&self) {
        self.shared.clear();
    }

    /// Applies `fault` to each of the next `times` export requests, of any signal and
    /// either transport, in arrival order.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.shared.inject(fault, times);
    }

    /// Waits until at least `count` spans are stored, and returns how many there are,
    /// without copying them: the cheap wait for throughput-sensitive code.
    pub async fn wait_for_span_count(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        self.shared
            .spans
            .wait_until(&format!("{count} span(s)"), timeout, |store| {
                let stored = store.len();
                (stored >= count).then_some(stored)
            })
            .await
    }

    /// Waits until some data point of metric `name` satisfies `condition`; returns every
    /// point of that metric that does.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        timeout: Duration,
        mut condition: impl FnMut(&MetricPoint) -> bool,
    ) -> Result<Vec<MetricPoint>, WaitError> {
        self.shared
            .metrics
            .wait_until(
                "metric point(s)",
                &format!("a point of metric {name:?} that satisfies the condition"),
                timeout,
                |points| {
                    let found: Vec<MetricPoint> = points
                        .iter()
                        .filter(|point| point.name == name && condition(point))
                        .cloned()
                        .collect();
                    (!found.is_empty()).then_some(found)
                },
                describe_metrics,
            )
            .await
    }

    /// Waits until at least `count` log records have arrived.
    pub async fn wait_for_log_records(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<LogRecord>, WaitError> {
        self.shared
            .logs
            .wait_until(
                "log record(s)",
                &format!("{count} log record(s)"),
                timeout,
                |records| (records.len() >= count).then(|| records.to_vec()),
                |records| {
                    records
                        .iter()
                        .map(|r| {
                            let body = r.body.as_ref().map(ToString::to_string).unwrap_or_default();
                            format!("  {} {body}\n", r.severity_text)
                        })
                        .collect()
                },
            )
            .await
    }

    /// Stops both servers: requests in flight get the grace period
    /// ([`Config::with_shutdown_grace`]), then the servers and their connections are
    /// dropped, whatever clients do. Returns once the ports are released.
    pub async fn shutdown(mut self) -> Result<(), ReceiverError> {
        self.stop().await
    }

    /// Stops both servers as [`OtlpReceiver::shutdown`] does, but keeps what was received
    /// readable: everything acknowledged before the servers stopped is there, and nothing
    /// arrives after. Stopping again does nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
    ///
    /// let mut receiver = OtlpReceiver::start(Config::default()).await?;
    /// receiver.stop().await?;
    /// assert_eq!(receiver.span_count(), 0); // the final count: no request can add to it
    /// assert!(std::net::TcpStream::connect(receiver.grpc_addr()).is_err());
    /// # Ok(()) }
    /// ```
    pub async fn stop(&mut self) -> Result<(), ReceiverError> {
        let _ = self.stop.send(true);
        let grace = self.shared.config.shutdown_grace;
        let tasks = std::mem::take(&mut self.tasks);
        let ended = stop_within(tasks, grace, self.close.clone()).await;
        // A connection the servers no longer own may still deliver a request: from here
        // on it is refused, so what is stored and written is what was acknowledged.
        self.shared.stop_storing();
        for (what, finished) in ended {
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(ReceiverError::Serve { what, source }),
                Err(join) => {
                    return Err(ReceiverError::Serve {
                        what,
                        source: Box::new(join),
                    })
                }
            }
        }
        Ok(())
    }
}

impl SpanSource for OtlpReceiver {
    fn spans(&self) -> Vec<SpanRecord> {
        OtlpReceiver::spans(self)
    }

    /// Copies the store on every change to test `condition`: fine for a test's spans; for
    /// a large store, [`OtlpReceiver::wait_for_span_count`] and
    /// [`SpanSource::wait_for_complete_trace`] cost only what changed.
    fn wait_until<'a>(
        &'a self,
        expected: &'a str,
        timeout: Duration,
        mut condition: impl FnMut(&[SpanRecord]) -> bool + Send + 'a,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        self.shared
            .spans
            .wait_until(expected, timeout, move |store| {
                let spans = store.spans();
                condition(&spans).then(|| TraceSet::new(spans))
            })
    }

    /// Looks only at the traces each request touched, through the store's index.
    fn wait_for_complete_trace<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        let mut watch = self.watch_traces();
        let mut pending: Vec<TraceId> = self.trace_ids();
        let expected = format!("a complete trace with a span named {name:?}");
        async move {
            let check = |ids: &[TraceId]| {
                ids.iter().find_map(|id| {
                    let trace = self.trace(*id);
                    trace
                        .traces()
                        .iter()
                        .any(|t| t.is_complete() && t.spans().any(|span| span.name() == name))
                        .then_some(trace)
                })
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Some(found) = check(&pending) {
                    return Ok(found);
                }
                match tokio::time::timeout_at(deadline, watch.changed()).await {
                    Ok(touched) => pending = touched,
                    Err(_) => {
                        let spans = self.spans();
                        return Err(WaitError::Timeout {
                            expected,
                            waited: timeout,
                            arrived: spans.len(),
                            unit: "span(s)",
                            rendered: TraceSet::new(spans).render(),
                        });
                    }
                }
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Not shut down explicitly: still bound the servers' lives by the grace period.
        let grace = self.shared.config.shutdown_grace;
        let tasks = std::mem::take(&mut self.tasks);
        if tasks.is_empty() {
            return;
        }
        let close = self.close.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stop_within(tasks, grace, close));
        }
    }
}

/// A server's task, named.
type ServerTask = (&'static str, JoinHandle<Result<(), ServeError>>);

/// How a server's task ended.
type Ended = Result<Result<(), ServeError>, tokio::task::JoinError>;

/// Waits for the servers' graceful shutdown until `grace` has passed; then fails every
/// connection still open, so that it ends, and drops a server that still does not.
async fn stop_within(
    tasks: Vec<ServerTask>,
    grace: Duration,
    close: watch::Sender<bool>,
) -> Vec<(&'static str, Ended)> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut ended = Vec::new();
    for (what, mut task) in tasks {
        let finished = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(finished) => finished,
            Err(_) => {
                let _ = close.send(true);
                match tokio::time::timeout(CLOSE_WAIT, &mut task).await {
                    Ok(finished) => finished,
                    Err(_) => {
                        task.abort();
                        match task.await {
                            Err(join) if join.is_cancelled() => Ok(Ok(())),
                            other => other,
                        }
                    }
                }
            }
        };
        ended.push((what, finished));
    }
    ended
}

/// How long a server may take to notice its connections failed before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

async fn signal(mut stopped: watch::Receiver<bool>) {
    // Ends on `true`, or when the receiver (the sender) is gone.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Metric names with their point counts, for wait timeouts.
fn describe_metrics(points: &[MetricPoint]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for point in points {
        *counts.entry(point.name.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, count)| format!("  {name}: {count} point(s)\n"))
        .collect()
}
