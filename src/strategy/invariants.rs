//! Invariants every trace of a marketplace run must satisfy, checked on what arrived over
//! OTLP. Each returns an [`AssertionError`] that lists the violations and renders the
//! trees, so a shrunk failing sequence comes with its evidence.

use std::collections::{BTreeMap, HashMap};

use crate::model::{MetricPoint, SpanRecord, StatusCode, Value};
use crate::tree::{AssertionError, Schema, TraceSet};

/// One operation as it ran: on which node (its `service.instance.id`), the root span it
/// must have produced, and whether it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The node's instance id (its peer id).
    pub instance: String,
    /// The root span name: `p2p_publish`, `p2p_search`, …
    pub root: &'static str,
    /// The `operation` label of its metrics.
    pub operation: &'static str,
    /// Whether it returned an error.
    pub failed: bool,
}

fn fail(what: &str, violations: &[String], traces: &TraceSet) -> AssertionError {
    AssertionError::new(format!(
        "{what}: {} violation(s):\n  {}\nreceived:\n{}",
        violations.len(),
        violations.join("\n  "),
        traces.render()
    ))
}

fn instance(span: &SpanRecord) -> String {
    match span.attribute("service.instance.id") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Each operation produced exactly one root span named for it, on its node, in order,
/// with an Error status exactly when the operation returned an error.
pub fn roots_match_operations(
    traces: &TraceSet,
    executed: &[Executed],
) -> Result<(), AssertionError> {
    let mut roots: BTreeMap<String, Vec<&SpanRecord>> = BTreeMap::new();
    for trace in traces.traces() {
        for root in trace.roots() {
            roots
                .entry(instance(root.record()))
                .or_default()
                .push(root.record());
        }
    }
    for spans in roots.values_mut() {
        spans.sort_by_key(|s| s.start_unix_nanos);
    }
    let mut expected: BTreeMap<String, Vec<&Executed>> = BTreeMap::new();
    for op in executed {
        expected.entry(op.instance.clone()).or_default().push(op);
    }
    let mut violations = Vec::new();
    for (node, ops) in &expected {
        let got = roots.get(node).map(Vec::as_slice).unwrap_or_default();
        if got.len() != ops.len() {
            violations.push(format!(
                "node {node}: {} operation(s) but {} root span(s): {:?}",
                ops.len(),
                got.len(),
                got.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
            ));
            continue;
        }
        for (i, (op, span)) in ops.iter().zip(got).enumerate() {
            if span.name != op.root {
                violations.push(format!(
                    "node {node}, op {i}: root {} for a {}",
                    span.name, op.root
                ));
            }
            let error = span.status.code == StatusCode::Error;
            if error != op.failed {
                violations.push(format!(
                    "node {node}, op {i} ({}): returned {} but its root status is {}",
                    op.root,
                    if op.failed { "an error" } else { "success" },
                    span.status.code
                ));
            }
        }
    }
    for (node, spans) in &roots {
        if !expected.contains_key(node) {
            violations.push(format!(
                "node {node} has {} root span(s) but ran nothing",
                spans.len()
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail(
            "roots do not match the operations",
            &violations,
            traces,
        ))
    }
}

/// Every span ended, and a child starts and ends within its parent when both ran on
/// the same node (across nodes, clocks and lifetimes are independent).
pub fn spans_closed_and_nested(traces: &TraceSet) -> Result<(), AssertionError> {
    let mut violations = Vec::new();
    for span in traces.spans() {
        let record = span.record();
        let Some(end) = record.end_unix_nanos else {
            violations.push(format!("{} never ended", record.name));
            continue;
        };
        let Some(parent) = span.parent() else {
            continue;
        };
        let parent = parent.record();
        if instance(parent) != instance(record) {
            continue;
        }
        let parent_end = parent.end_unix_nanos.unwrap_or(u64::MAX);
        if record.start_unix_nanos < parent.start_unix_nanos || end > parent_end {
            violations.push(format!(
                "{} is not within its parent {}",
                record.name, parent.name
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail("spans not closed or not nested", &violations, traces))
    }
}

/// Every `handle_dht_query` belongs to the trace of the `p2p_search` that caused it.
pub fn remote_handlers_join_the_search(traces: &TraceSet) -> Result<(), AssertionError> {
    let mut violations = Vec::new();
    for span in traces.spans().filter(|s| s.name() == "handle_dht_query") {
        let root = span.ancestors().last();
        if root.map(|r| r.name()) != Some("p2p_search") {
            violations.push(format!(
                "a handle_dht_query whose root is {:?}, not p2p_search",
                root.map(|r| r.name())
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail(
            "remote handlers outside their search's trace",
            &violations,
            traces,
        ))
    }
}

/// The schema holds on every span that did not fail (a failed step may legitimately
/// miss what it never got, like the `message_id` of an announcement nobody received).
pub fn schema_holds(traces: &TraceSet, schema: &Schema) -> Result<(), AssertionError> {
    let ok = TraceSet::new(
        traces
            .spans()
            .filter(|s| s.record().status.code != StatusCode::Error)
            .map(|s| s.record().clone()),
    );
    ok.expect_schema(schema).map(drop)
}

/// `p2p_operations_total{operation,status}`, summed over nodes (latest cumulative point
/// of each), equals the operations run, by outcome.
pub fn operation_counters_match(
    points: &[MetricPoint],
    executed: &[Executed],
) -> Result<(), String> {
    let mut latest: HashMap<(String, String, String), (u64, i64)> = HashMap::new();
    for point in points.iter().filter(|p| p.name == "p2p_operations_total") {
        let label = |key: &str| {
            point
                .attribute(key)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default()
        };
        let key = (
            label("service.instance.id"),
            label("operation"),
            label("status"),
        );
        let value = point.value.as_f64().unwrap_or(0.0) as i64;
        let entry = latest.entry(key).or_insert((0, 0));
        if point.time_unix_nanos >= entry.0 {
            *entry = (point.time_unix_nanos, value);
        }
    }
    let mut measured: BTreeMap<(String, String), i64> = BTreeMap::new();
    for ((_, operation, status), (_, value)) in latest {
        *measured.entry((operation, status)).or_default() += value;
    }
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for op in executed {
        let status = if op.failed { "error" } else { "ok" };
        *expected
            .entry((op.operation.to_owned(), status.to_owned()))
            .or_default() += 1;
    }
    measured.retain(|_, v| *v != 0);
    if measured == expected {
        Ok(())
    } else {
        Err(format!(
            "p2p_operations_total {measured:?} != operations run {expected:?}"
        ))
    }
}
