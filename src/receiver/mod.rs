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
//!   Prometheus text;
//! - `GET /api/search?q=TRACEQL&limit=N` (the matching spansets in the shape of Tempo's
//!   search API, evaluated by [`crate::traceql`]) and `GET /api/traces/<id>` (one trace as
//!   OTLP/JSON);
//! - the trace viewer at `/` (live over `GET /api/stream`; beside traces, the received
//!   metrics and logs, `GET /api/metrics` and `/api/logs`, and with
//!   [`Config::with_contract`] the contract's findings and coverage, `GET /api/findings/<id>`
//!   and `/api/contract`).
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

// The receiver's public face, one job per file.
mod config; // `Config`: settings, defaults, builder methods
mod error; // `ReceiverError`
mod fault; // `Fault` and `OtlpReceiver::inject`
mod queries; // reading and clearing what was received
mod server; // `OtlpReceiver::start`: binding and wiring both servers; their addresses
mod shutdown; // `stop`, `shutdown`, `Drop`: the grace period, then closing connections
mod waits; // `wait_for_*` and the `SpanSource` implementation

// Behind the servers: transports, ingestion and storage.
mod closing;
mod compact;
mod file_export;
mod grpc;
mod http;
mod http_server;
pub(crate) mod ingest;
pub(crate) mod prometheus;
mod query_api; // `/api/search` (TraceQL) and `/api/traces/<id>`, Tempo-shaped
pub(crate) mod signal;
mod signals_api; // `/api/metrics`, `/api/logs`, `/api/contract`, `/api/findings/<id>`
mod span_store;
mod trace_protobuf;
mod trace_watch;
mod ui; // the trace viewer at `/`, live over `/api/stream`; its static export

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    Config, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_SPAN_BYTE_CAPACITY,
    DEFAULT_SPAN_CAPACITY,
};
pub use error::ReceiverError;
pub use fault::Fault;
pub use ingest::Counter;
use ingest::Shared;
pub use trace_watch::TraceWatch;
pub use ui::trace_viewer_html;

/// What a server task ends with when it fails.
type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// A server's task, named.
type ServerTask = (&'static str, JoinHandle<Result<(), ServeError>>);

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
