//! What the trace viewer shows beside traces: the received metric points
//! (`GET /api/metrics`) and log records (`GET /api/logs`), and, with a contract
//! (`Config::with_contract`), its findings on one trace (`GET /api/findings/<id>`) and its
//! coverage and findings over everything received (`GET /api/contract`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value as Json};

use super::ingest::Shared;
use crate::contract::Contract;
use crate::model::{Attributes, Resource, Value};
use crate::tree::TraceSet;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/metrics", get(metrics))
        .route("/api/logs", get(logs))
        .route("/api/contract", get(contract))
        .route("/api/findings/{id}", get(findings))
}

fn json_answer(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A value as a reader sees it: strings bare, everything else as rendered.
fn text(value: &Value) -> String {
    match value {
        Value::Str(text) => text.clone(),
        other => other.to_string(),
    }
}

fn texts(attributes: &Attributes) -> Json {
    attributes
        .iter()
        .map(|(key, value)| (key.clone(), Json::String(text(value))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The service and node a resource names.
fn origin(resource: &Resource) -> (String, String) {
    let get = |key: &str| resource.attributes.get(key).map(text).unwrap_or_default();
    (get("service.name"), get("service.instance.id"))
}

/// `GET /api/metrics`: `{ "points": [ { name, description, unit, kind, temporality,
/// attributes (as text), value, startTimeUnixNano, timeUnixNano, service, node } ] }`.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // A copy, so that ingestion waits for nothing but the copy.
    let received = shared.metrics.lock().clone();
    let points: Vec<Json> = received
        .iter()
        .map(|point| {
            let (service, node) = origin(&point.resource);
            json!({
                "name": point.name,
                "description": point.description,
                "unit": point.unit,
                "kind": point.kind,
                "temporality": point.temporality,
                "attributes": texts(&point.attributes),
                "value": point.value,
                "startTimeUnixNano": point.start_unix_nanos.to_string(),
                "timeUnixNano": point.time_unix_nanos.to_string(),
                "service": service,
                "node": node,
            })
        })
        .collect();
    json_answer(StatusCode::OK, &json!({ "points": points }))
}

/// `GET /api/logs`: `{ "records": [ { timeUnixNano, severityNumber, severityText, body,
/// eventName, traceId, spanId, attributes, service, node } ] }`, ids in hex.
async fn logs(State(shared): State<Arc<Shared>>) -> Response {
    let received = shared.logs.lock().clone();
    let records: Vec<Json> = received
        .iter()
        .map(|record| {
            let (service, node) = origin(&record.resource);
            json!({
                "timeUnixNano": record.time_unix_nanos.to_string(),
                "severityNumber": record.severity_number,
                "severityText": record.severity_text,
                "body": record.body.as_ref().map(text),
                "eventName": record.event_name,
                "traceId": record.trace_id.map(|id| id.to_string()),
                "spanId": record.span_id.map(|id| id.to_string()),
                "attributes": texts(&record.attributes),
                "service": service,
                "node": node,
            })
        })
        .collect();
    json_answer(StatusCode::OK, &json!({ "records": records }))
}

/// `GET /api/contract`: `{ "contract": false }` without one; else `"contract": true` and
/// the report over everything received, in the shape of `check --format json`.
async fn contract(State(shared): State<Arc<Shared>>) -> Response {
    let Some(contract) = shared.config.contract.clone() else {
        return json_answer(StatusCode::OK, &json!({ "contract": false }));
    };
    let (spans, metrics, logs) = (
        shared.spans.spans(),
        shared.metrics.lock().clone(),
        shared.logs.lock().clone(),
    );
    let report = tokio::task::spawn_blocking(move || {
        contract
            .check(&TraceSet::new(spans), &metrics, &logs)
            .to_json()
    })
    .await;
    match report {
        Ok(mut report) => {
            report["contract"] = Json::Bool(true);
            json_answer(StatusCode::OK, &report)
        }
        Err(error) => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "error": format!("the check stopped: {error}") }),
        ),
    }
}

/// `GET /api/findings/<trace id>`: the contract's findings on that trace's spans (each
/// on the first span it concerns, with how many it concerns), `{ "contract": false }`
/// without a contract.
async fn findings(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(contract) = shared.config.contract.clone() else {
        return json_answer(StatusCode::OK, &json!({ "contract": false }));
    };
    let trace_id = match super::query_api::trace_id_in_path(&id) {
        Ok(trace_id) => trace_id,
        Err(message) => return super::query_api::bad_request(message),
    };
    let traces = TraceSet::new(shared.spans.trace(&trace_id));
    json_answer(
        StatusCode::OK,
        &json!({ "contract": true, "findings": findings_on_spans(&contract, &traces) }),
    )
}

/// The contract's findings on these spans, as JSON: each on the first span it concerns.
/// Only what concerns spans — no metric or coverage finding of a spans-only check.
pub(crate) fn findings_on_spans(contract: &Contract, traces: &TraceSet) -> Json {
    let report = contract.check(traces, &[], &[]);
    let on_spans: Vec<_> = report
        .findings()
        .iter()
        .filter(|finding| finding.span.is_some())
        .collect();
    serde_json::to_value(on_spans).unwrap_or_default()
}
