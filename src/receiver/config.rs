//! The receiver's settings, their defaults and their builder methods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::contract::Contract;

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
    pub(super) grpc_addr: SocketAddr,
    pub(super) http_addr: SocketAddr,
    pub(crate) max_body_bytes: usize,
    pub(crate) capacity_spans: usize,
    pub(crate) capacity_span_bytes: usize,
    pub(crate) keep_last_traces: Option<usize>,
    pub(crate) capacity_metric_points: usize,
    pub(crate) capacity_log_records: usize,
    pub(super) json_lines_dir: Option<PathBuf>,
    pub(super) shutdown_grace: Duration,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) header_read_timeout: Option<Duration>,
    pub(crate) contract: Option<Arc<Contract>>,
}

/// The default idle timeout of a connection: 2 minutes, longer than the 60 s export
/// interval of OpenTelemetry's periodic metric reader, so an exporter's connection stays.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The default time an OTLP/HTTP client has to send a request's headers once it starts
/// one: 30 s (hyper's own default), ample for any exporter, which sends them at once.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
            contract: None,
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
    ///
    /// [`Counter::RefusedSpans`]: super::Counter::RefusedSpans
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
    ///
    /// [`Counter::EvictedSpans`]: super::Counter::EvictedSpans
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
    ///
    /// [`OtlpReceiver::shutdown`]: super::OtlpReceiver::shutdown
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

    /// A telemetry contract the trace viewer judges what arrived by: its findings on the
    /// spans they concern (`GET /api/findings/<trace id>`) and its coverage and findings
    /// over everything received (`GET /api/contract`). Checked when asked, never on the
    /// ingestion path.
    pub fn with_contract(mut self, contract: Contract) -> Self {
        self.contract = Some(Arc::new(contract));
        self
    }
}
