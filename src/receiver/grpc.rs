//! The OTLP/gRPC services served by tonic — metrics and logs by opentelemetry-proto's
//! generated servers, traces by [`TraceExport`] — each handing its request to the one
//! ingestion path.

use std::convert::Infallible;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::ingest::{Rejection, Shared, Transport};
use super::signal::{Logs, Metrics, Signal, TraceRequest, Traces};

/// Serves `TraceService`, `MetricsService` and `LogsService` from one shared state.
#[derive(Debug, Clone)]
pub(crate) struct OtlpGrpc {
    pub(crate) shared: Arc<Shared>,
}

fn status(rejection: Rejection) -> Status {
    match rejection {
        Rejection::Invalid(message) => Status::invalid_argument(message),
        Rejection::Unavailable { retry_after } => Status::with_error_details(
            Code::Unavailable,
            "injected fault: receiver unavailable",
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        // With retry info, OTLP exporters treat RESOURCE_EXHAUSTED as retryable.
        Rejection::Full {
            message,
            retry_after,
        } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        Rejection::Stopped => Status::unavailable("receiver stopped: nothing more is stored"),
    }
}

impl OtlpGrpc {
    async fn export<S: Signal>(
        &self,
        request: Request<S::Request>,
    ) -> Result<Response<S::Response>, Status> {
        self.shared
            .ingest::<S>(request.into_inner(), Transport::Grpc)
            .await
            .map(Response::new)
            .map_err(status)
    }
}

/// `TraceService` served by tonic like opentelemetry-proto's generated server, except that
/// its handler gets the request's protobuf bytes as they came: they are read straight into
/// the store (the generated server would decode them into owned types first).
#[derive(Debug, Clone)]
pub(crate) struct TraceExport {
    shared: Arc<Shared>,
    max_decoding_message_size: usize,
}

impl TraceExport {
    pub(crate) fn new(shared: Arc<Shared>, max_decoding_message_size: usize) -> Self {
        TraceExport {
            shared,
            max_decoding_message_size,
        }
    }
}

impl NamedService for TraceExport {
    const NAME: &'static str = trace_service_server::SERVICE_NAME;
}

const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl<B> Service<::http::Request<B>> for TraceExport
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = ::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        let export = self.clone();
        Box::pin(async move {
            if request.uri().path() != TRACE_EXPORT_PATH {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RequestBytes)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(export.max_decoding_message_size);
            Ok(grpc.unary(ExportTraces(export.shared), request).await)
        })
    }
}

/// The `Export` handler of [`TraceExport`].
struct ExportTraces(Arc<Shared>);

impl UnaryService<Bytes> for ExportTraces {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            shared
                .ingest::<Traces>(
                    TraceRequest::Protobuf(request.into_inner()),
                    Transport::Grpc,
                )
                .await
                .map(Response::new)
                .map_err(status)
        })
    }
}

/// A codec that hands the request's bytes over undecoded and encodes the response.
#[derive(Clone, Copy, Debug)]
struct RequestBytes;

impl Codec for RequestBytes {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RequestBytes;
    type Decoder = RequestBytes;

    fn encoder(&mut self) -> RequestBytes {
        RequestBytes
    }

    fn decoder(&mut self) -> RequestBytes {
        RequestBytes
    }
}

impl Encoder for RequestBytes {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(
        &mut self,
        response: ExportTraceServiceResponse,
        buf: &mut EncodeBuf<'_>,
    ) -> Result<(), Status> {
        response
            .encode(buf)
            .map_err(|error| Status::internal(format!("encoding the response failed: {error}")))
    }
}

impl Decoder for RequestBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        OtlpGrpc::export::<Metrics>(self, request).await
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        OtlpGrpc::export::<Logs>(self, request).await
    }
}

/// Answers a request that is not gRPC (its content type does not start with
/// `application/grpc`) with HTTP 415, as the gRPC specification asks, saying where
/// OTLP/HTTP goes, before tonic sees it.
#[derive(Clone, Debug)]
pub(crate) struct RequireGrpc<S> {
    inner: S,
}

impl<S> RequireGrpc<S> {
    pub(crate) fn layer() -> impl tower::Layer<S, Service = RequireGrpc<S>> + Clone {
        tower::layer::layer_fn(|inner| RequireGrpc { inner })
    }
}

fn is_grpc(headers: &::http::HeaderMap) -> bool {
    headers
        .get(::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

impl<S, B> tower::Service<::http::Request<B>> for RequireGrpc<S>
where
    S: tower::Service<::http::Request<B>, Response = ::http::Response<tonic::body::Body>>,
{
    type Response = ::http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Self::Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        if is_grpc(request.headers()) {
            return futures::future::Either::Right(self.inner.call(request));
        }
        let message = "this is the OTLP/gRPC port: send content-type application/grpc, or \
                       send OTLP/HTTP (protobuf or JSON) to the receiver's HTTP port\n";
        let mut response = ::http::Response::new(tonic::body::Body::new(
            http_body_util::Full::new(bytes::Bytes::from_static(message.as_bytes())),
        ));
        *response.status_mut() = ::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
        response.headers_mut().insert(
            ::http::header::CONTENT_TYPE,
            ::http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        futures::future::Either::Left(std::future::ready(Ok(response)))
    }
}
