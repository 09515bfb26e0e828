//! Query results in the shape of Tempo's search API (`GET /api/search`), so the CLI's
//! `--format json`, the receiver's `/api/search` and Grafana's Tempo data source read the
//! same thing.

use serde_json::{json, Value as Json};

use super::Spanset;
use crate::model::{StatusCode, Value};
use crate::tree::{Trace, TraceSet};

/// A trace id as Tempo writes it: hex without leading zeros.
pub(crate) fn tempo_trace_id(trace: &Trace) -> String {
    let hex = trace.trace_id().to_string();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The distinct `service.name`s and `service.instance.id`s of a trace's spans, in order of
/// start (beyond Tempo's response: what the kit's trace list shows).
fn services_and_nodes(trace: &Trace) -> (Vec<String>, Vec<String>) {
    let mut spans: Vec<_> = trace.records().iter().collect();
    spans.sort_by_key(|span| span.start_unix_nanos);
    let mut services: Vec<String> = Vec::new();
    let mut nodes: Vec<String> = Vec::new();
    for span in spans {
        for (key, seen) in [
            ("service.name", &mut services),
            ("service.instance.id", &mut nodes),
        ] {
            if let Some(Value::Str(value)) = span.resource.attributes.get(key) {
                if !seen.contains(value) {
                    seen.push(value.clone());
                }
            }
        }
    }
    (services, nodes)
}

fn attribute(key: &str, value: &str) -> Json {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// Most recent trace first: `{ "traces": [ { traceID, rootServiceName, rootTraceName, startTimeUnixNano,
/// durationMs, spanSets: [ { spans, matched, attributes } ] } ], "metrics": { … } }`, each
/// trace also with the kit's `durationNanos`, `spanCount`, `errorCount`, `services` and
/// `nodes`.
/// `limit` traces at most (0: all), chosen before any JSON is built.
pub(crate) fn search_response(traces: &TraceSet, spansets: &[Spanset<'_>], limit: usize) -> Json {
    // The spansets of one trace are contiguous: group them, newest trace first.
    let mut groups: Vec<(&Trace, &[Spanset<'_>])> = Vec::new();
    let mut index = 0;
    while index < spansets.len() {
        let trace = spansets[index].trace();
        let first = index;
        while index < spansets.len() && std::ptr::eq(spansets[index].trace(), trace) {
            index += 1;
        }
        groups.push((trace, &spansets[first..index]));
    }
    groups.sort_by_key(|(trace, _)| std::cmp::Reverse(trace.time_range().0));
    if limit > 0 {
        groups.truncate(limit);
    }
    let mut out: Vec<Json> = Vec::new();
    for (trace, group) in groups {
        let sets: Vec<Json> = group.iter().map(spanset_json).collect();
        let records = trace.records();
        let (start, end) = trace.time_range();
        let end = end.unwrap_or(start);
        let root = trace.roots().first().map(|root| root.record());
        let (services, nodes) = services_and_nodes(trace);
        let errors = records
            .iter()
            .filter(|span| span.status.code == StatusCode::Error)
            .count();
        let root_service = root
            .and_then(|root| root.resource.attributes.get("service.name"))
            .and_then(Value::as_str)
            .unwrap_or("<root span not yet received>");
        out.push(json!({
            "traceID": tempo_trace_id(trace),
            "rootServiceName": root_service,
            "rootTraceName": root.map_or("<root span not yet received>", |root| root.name.as_str()),
            "startTimeUnixNano": start.to_string(),
            "durationMs": end.saturating_sub(start) / 1_000_000,
            "durationNanos": end.saturating_sub(start).to_string(),
            "spanCount": records.len(),
            "errorCount": errors,
            "services": services,
            "nodes": nodes,
            "spanSet": sets.first().cloned().unwrap_or(Json::Null),
            "spanSets": sets,
        }));
    }
    json!({
        "traces": out,
        "metrics": {
            "inspectedTraces": traces.traces().len(),
            "inspectedSpans": traces.span_count().to_string(),
        },
    })
}

fn spanset_json(spanset: &Spanset<'_>) -> Json {
    let spans: Vec<Json> = spanset
        .spans()
        .iter()
        .enumerate()
        .map(|(index, span)| {
            let record = span.record();
            let mut attributes: Vec<Json> = Vec::new();
            if let Some(Value::Str(service)) = record.resource.attributes.get("service.name") {
                attributes.push(attribute("service.name", service));
            }
            for (key, value) in spanset.selected(index) {
                attributes.push(attribute(key, value));
            }
            json!({
                "spanID": record.span_id.to_string(),
                "name": record.name,
                "startTimeUnixNano": record.start_unix_nanos.to_string(),
                "durationNanos": record.duration_nanos().unwrap_or(0).to_string(),
                "attributes": attributes,
            })
        })
        .collect();
    let labels: Vec<Json> = spanset
        .labels()
        .iter()
        .map(|(key, value)| attribute(key, value))
        .collect();
    json!({ "spans": spans, "matched": spanset.spans().len(), "attributes": labels })
}
