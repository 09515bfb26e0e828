//! The receiver's query API, in the shape of Tempo's: `GET /api/search?q=TRACEQL` (the
//! matching spansets, most recent trace first) and `GET /api/traces/<id>` (one trace as
//! OTLP/JSON), for the local collector's UI and for anything that speaks to Tempo.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::ingest::Shared;
use crate::model::{spans_to_otlp, TraceId};
use crate::traceql::Query;
use crate::tree::TraceSet;

/// How many traces `/api/search` returns when the request does not say (Tempo's default).
const DEFAULT_LIMIT: usize = 20;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/search", get(search))
        .route("/api/traces/{id}", get(trace))
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub(super) fn bad_request(message: String) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        message,
    )
}

/// `GET /api/search?q=TRACEQL&limit=N`: `q` defaults to `{ }`, `limit` (traces) to 20, `0`
/// for all. A bad query is a 400 whose body is the error with its caret.
async fn search(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let mut text = "{ }".to_owned();
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "q" => text = value.into_owned(),
            "limit" => match value.parse() {
                Ok(n) => limit = n,
                Err(_) => {
                    return bad_request(format!("limit must be a whole number, not {value:?}"))
                }
            },
            _ => {}
        }
    }
    let query = match Query::parse(&text) {
        Ok(query) => query,
        Err(error) => return bad_request(error.to_string()),
    };
    // Copying and evaluating a large store is CPU work: off the runtime's workers; and
    // only the `limit` newest traces are written out.
    let evaluated = tokio::task::spawn_blocking(move || {
        let traces = TraceSet::new(shared.spans.spans());
        let found = query.select(&traces);
        serde_json::to_string(&crate::traceql::search_json(&traces, &found, limit))
    })
    .await;
    match evaluated {
        Ok(Ok(body)) => answer(StatusCode::OK, "application/json", body),
        Ok(Err(error)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode the result: {error}"),
        ),
        Err(error) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("the query stopped: {error}"),
        ),
    }
}

/// A trace id from a path: hex, leading zeros optional (Tempo drops them); else why not.
pub(super) fn trace_id_in_path(id: &str) -> Result<TraceId, String> {
    TraceId::from_hex(&format!("{id:0>32}"))
        .map_err(|_| format!("{id:?} is not a trace id (up to 32 hex digits)"))
}

/// `GET /api/traces/<id>`: the trace as an OTLP/JSON export request (`resourceSpans`);
/// the id in hex, leading zeros optional (Tempo drops them).
async fn trace(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let trace_id = match trace_id_in_path(&id) {
        Ok(trace_id) => trace_id,
        Err(message) => return bad_request(message),
    };
    let spans = shared.spans.trace(&trace_id);
    if spans.is_empty() {
        return answer(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("trace {id} not found"),
        );
    }
    let request = ExportTraceServiceRequest {
        resource_spans: spans_to_otlp(&spans),
    };
    match serde_json::to_string(&request) {
        Ok(body) => answer(StatusCode::OK, "application/json", body),
        Err(error) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode the trace: {error}"),
        ),
    }
}
