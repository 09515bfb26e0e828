//! OTLP/HTTP (protobuf and JSON, gzip or not), health, and the Prometheus views.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;
use serde::Serialize;

use super::ingest::{Rejection, Shared, Transport};
use super::prometheus;
use super::signal::{Logs, Metrics, Signal, Traces};

/// The two OTLP/HTTP encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error response: HTTP status, gRPC code for the body, message, and extra headers.
struct HttpError {
    status: StatusCode,
    grpc_code: tonic::Code,
    message: String,
    retry_after_secs: Option<u64>,
}

impl HttpError {
    fn new(status: StatusCode, grpc_code: tonic::Code, message: impl Into<String>) -> Self {
        HttpError {
            status,
            grpc_code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn respond(self, format: Option<Format>) -> Response {
        let status_body = RpcStatus {
            code: self.grpc_code as i32,
            message: self.message,
        };
        let mut response = match format {
            Some(format) => encode(format, &status_body),
            None => status_body.message.into_response(),
        };
        *response.status_mut() = self.status;
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<Rejection> for HttpError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Invalid(message) => HttpError::new(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                message,
            ),
            Rejection::Unavailable { retry_after } => HttpError {
                retry_after_secs: Some(retry_after.as_secs_f64().ceil() as u64),
                ..HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    tonic::Code::Unavailable,
                    "injected fault: receiver unavailable",
                )
            },
            Rejection::Full {
                message,
                retry_after,
            } => HttpError {
                retry_after_secs: Some(retry_after.as_secs_f64().ceil() as u64),
                ..HttpError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    tonic::Code::ResourceExhausted,
                    message,
                )
            },
            Rejection::Stopped => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                "receiver stopped: nothing more is stored",
            ),
        }
    }
}

fn encode<T: Message + Serialize>(format: Format, message: &T) -> Response {
    let body = match format {
        Format::Protobuf => message.encode_to_vec(),
        Format::Json => json_without_nulls(message),
    };
    (
        [(header::CONTENT_TYPE, format.content_type())],
        Bytes::from(body),
    )
        .into_response()
}

/// OTLP JSON leaves unset fields out; the generated serde writes them as `null`.
fn json_without_nulls<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing generated OTLP types cannot fail; an empty object is the fallback.
    let mut value = serde_json::to_value(message).unwrap_or_default();
    if let serde_json::Value::Object(fields) = &mut value {
        fields.retain(|_, field| !field.is_null());
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
}

fn format_of(headers: &HeaderMap) -> Result<Format, HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Format::Protobuf)
    } else if media_type.eq_ignore_ascii_case("application/json") {
        Ok(Format::Json)
    } else {
        Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!(
                "unsupported content type {content_type:?}: use application/x-protobuf or application/json"
            ),
        ))
    }
}

fn too_large(limit: usize, what: &str) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        tonic::Code::ResourceExhausted,
        format!("{what} exceeds the limit of {limit} bytes"),
    )
}

/// Reads the body (chunked or not) up to `limit` bytes, then undoes `Content-Encoding`,
/// stopping a decompression as soon as it passes `limit` (a gzip bomb never inflates).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, HttpError> {
    let collected = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                too_large(limit, "request body")
            } else {
                HttpError::new(
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    format!("reading the request body failed: {error}"),
                )
            }
        })?
        .to_bytes();
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        // No bytes is an empty export, whatever encoding the headers claim.
        _ if collected.is_empty() => Ok(collected),
        "" | "identity" => Ok(collected),
        "gzip" | "x-gzip" => {
            let mut inflated = Vec::new();
            flate2::read::MultiGzDecoder::new(&collected[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|error| {
                    HttpError::new(
                        StatusCode::BAD_REQUEST,
                        tonic::Code::InvalidArgument,
                        format!("gzip body could not be decompressed: {error}"),
                    )
                })?;
            if inflated.len() > limit {
                return Err(too_large(limit, "decompressed request body"));
            }
            Ok(Bytes::from(inflated))
        }
        other => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!("unsupported content encoding {other:?}: use gzip or none"),
        )),
    }
}

fn decode<S: Signal>(format: Format, bytes: Bytes) -> Result<S::Request, HttpError> {
    let invalid = |error: String| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            format!("malformed {format:?} request: {error}"),
        )
    };
    let decoded = match format {
        Format::Json if !bytes.is_empty() => S::from_json(&bytes).map_err(|e| e.to_string()),
        // An empty request is a valid, empty export in either encoding.
        _ => S::from_protobuf(bytes).map_err(|e| e.to_string()),
    };
    decoded.map_err(invalid)
}

/// Reads a request of signal `S` from headers and body.
async fn request<S: Signal>(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(S::Request, Format), (HttpError, Option<Format>)> {
    let format = format_of(headers).map_err(|e| (e, None))?;
    let bytes = read_body(headers, body, shared.config.max_body_bytes)
        .await
        .map_err(|e| (e, Some(format)))?;
    let request = decode::<S>(format, bytes).map_err(|e| (e, Some(format)))?;
    Ok((request, format))
}

/// `POST /v1/{traces,metrics,logs}`: decode, ingest, answer in the request's encoding.
async fn export<S: Signal>(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, format) = match request::<S>(&shared, &headers, body).await {
        Ok(decoded) => decoded,
        Err((error, format)) => return error.respond(format),
    };
    match shared.ingest::<S>(request, Transport::Http).await {
        Ok(response) => encode(format, &response),
        Err(rejection) => HttpError::from(rejection).respond(Some(format)),
    }
}

async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"Server available"}"#,
    )
        .into_response()
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn self_metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        prometheus::receiver_metrics(&shared),
    )
        .into_response()
}

async fn received_metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = prometheus::received_metrics(&shared.metrics.lock());
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response()
}

/// The HTTP router: OTLP endpoints, `/health`, `/metrics` (the receiver's own counters),
/// `/metrics/received` (the application metrics it received, as Prometheus text), the
/// query API (`/api/search`, `/api/traces/<id>`) and the trace viewer (`/`, `/api/stream`).
pub(crate) fn router(shared: Arc<Shared>, stopped: tokio::sync::watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/metrics", post(export::<Metrics>))
        .route("/v1/logs", post(export::<Logs>))
        .route("/health", get(health))
        .route("/metrics", get(self_metrics))
        .route("/metrics/received", get(received_metrics))
        .merge(
            // The viewer and its API, behind one host check and one set of headers.
            Router::new()
                .merge(super::query_api::routes())
                .merge(super::signals_api::routes())
                .merge(super::ui::routes(stopped))
                .route_layer(axum::middleware::from_fn(super::ui::guard)),
        )
        .with_state(shared)
}
