//! Starting the receiver: binding both listeners, wiring the OTLP/gRPC and OTLP/HTTP
//! servers onto the shared store, and the addresses they are reachable on.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

use super::file_export::JsonLines;
use super::grpc::{self, OtlpGrpc};
use super::ingest::Shared;
use super::shutdown::signal;
use super::{closing, http, http_server, Config, OtlpReceiver, ReceiverError, ServeError};

/// The HTTP/2 flow-control window of each gRPC stream.
const GRPC_WINDOW_BYTES: u32 = 1 << 20;
/// The largest HTTP/2 frame a client may send (HTTP/2's default is 16 KiB): an exporter's
/// batch of a few hundred spans arrives in a frame or two instead of a dozen.
const GRPC_MAX_FRAME_BYTES: u32 = 1 << 20;

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
    /// What the servers share, for delivery in process (`telemetry::Protocol::InProcess`).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

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

        let router = http::router(Arc::clone(&shared), stopped.clone());
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
}
