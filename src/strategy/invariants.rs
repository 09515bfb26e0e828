//! Invariants every trace of an operation sequence must satisfy, whatever the system:
//! checked on captured spans or on what arrived over OTLP. Each returns an [`AssertionError`] that lists the violations and renders the
//! trees, so a shrunk failing sequence comes with its evidence.

use std::collections::BTreeMap;

use crate::contract::Contract;
use crate::model::{SpanRecord, StatusCode, Value};
use crate::tree::{AssertionError, TraceSet};

/// One operation as it ran: on which node (its `service.instance.id`), the root span it
/// must have produced, and whether it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The node's instance id (its peer id).
    pub instance: String,
    /// The root span name it must have produced (`p2p_publish`, `rpc_call`, …).
    pub root: &'static str,
    /// Whether it returned an error.
    pub failed: bool,
}

fn fail(what: &str, violations: &[String], traces: &TraceSet) -> AssertionError {
    AssertionError::new(format!(
        "{what}: {} violation(s):\n  {}\nreceived:\n{}",
        violations.len(),
        traces.alias_text(&violations.join("\n  ")),
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

/// Each operation's trace holds the number of spans its system expects (`counts[i]` for
/// `executed[i]`; `None`: no expectation) — the whole trace, other nodes' spans included.
/// Operations are paired with root spans as [`roots_match_operations`] pairs them (per
/// node, in start order); a node whose roots do not pair up is left to that check.
pub fn spans_per_operation(
    traces: &TraceSet,
    executed: &[Executed],
    counts: &[Option<usize>],
) -> Result<(), AssertionError> {
    let mut roots: BTreeMap<String, Vec<(&SpanRecord, &crate::tree::Trace)>> = BTreeMap::new();
    for trace in traces.traces() {
        for root in trace.roots() {
            roots
                .entry(instance(root.record()))
                .or_default()
                .push((root.record(), trace));
        }
    }
    for spans in roots.values_mut() {
        spans.sort_by_key(|(span, _)| span.start_unix_nanos);
    }
    let mut expected: BTreeMap<String, Vec<(&Executed, Option<usize>)>> = BTreeMap::new();
    for (op, count) in executed
        .iter()
        .zip(counts.iter().copied().chain(std::iter::repeat(None)))
    {
        expected
            .entry(op.instance.clone())
            .or_default()
            .push((op, count));
    }
    let mut violations = Vec::new();
    for (node, ops) in &expected {
        let got = roots.get(node).map(Vec::as_slice).unwrap_or_default();
        if got.len() != ops.len() {
            continue;
        }
        for (i, ((op, count), (_, trace))) in ops.iter().zip(got).enumerate() {
            let Some(count) = count else { continue };
            if trace.len() != *count {
                let mut names: Vec<&str> = trace.spans().map(|span| span.name()).collect();
                names.sort_unstable();
                violations.push(format!(
                    "node {node}, op {i} ({}): its trace holds {} span(s), the system expects {count}: {}",
                    op.root,
                    trace.len(),
                    names.join(", ")
                ));
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail("spans per operation", &violations, traces))
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

/// Every span named like a handler belongs to the trace of the operation that caused it:
/// for each `(handler, caller)` pair, every `handler` span's root is named `caller`
/// (for example `("handle_dht_query", "p2p_search")`: a remote handler joined its search
/// across peers).
pub fn handlers_join_their_callers(
    traces: &TraceSet,
    pairs: &[(&str, &str)],
) -> Result<(), AssertionError> {
    let mut violations = Vec::new();
    for &(handler, caller) in pairs {
        for span in traces.spans().filter(|s| s.name() == handler) {
            let root = span.ancestors().last();
            if root.map(|r| r.name()) != Some(caller) {
                violations.push(format!(
                    "a {handler} whose root is {:?}, not {caller}",
                    root.map(|r| r.name())
                ));
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail(
            "handlers outside their caller's trace",
            &violations,
            traces,
        ))
    }
}

/// The contract holds: no finding of level violation on any span (a failed span's
/// missing required attributes are information, see [`Contract`]).
pub fn contract_holds(traces: &TraceSet, contract: &Contract) -> Result<(), AssertionError> {
    contract.check(traces, &[], &[]).assert_no_violations()
}
