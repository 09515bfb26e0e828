//! The plan's scenarios and success criteria (sections 3 and 9.2–9.4), each turned into
//! a [`Criterion`] with the evidence that decided it. Checks read only what the receiver
//! got over OTLP, never command output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::HttpClient;

use super::processes::Started;
use super::{Criterion, ProcessRow};
use p2p_otel_marketplace::scenarios::{Launcher, Run};
use p2p_otel_marketplace::{self as marketplace, scenarios};
use p2p_otel_testkit::contract::{CoverageGate, Level, Report as ContractReport};
use p2p_otel_testkit::model::Value;
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::{expect, SpanRef, TraceSet};

fn check(
    section: &'static str,
    name: &str,
    passed: bool,
    evidence: impl Into<String>,
) -> Criterion {
    Criterion::new(section, name, passed, evidence.into())
}

/// 9.2: the health endpoint answers.
pub(super) async fn health(receiver: &OtlpReceiver) -> Criterion {
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(
        Duration::from_secs(5),
        None,
    );
    let request =
        http::Request::get(format!("{}/health", receiver.http_endpoint())).body(Bytes::new());
    let answer = match request {
        Ok(request) => client.send_bytes(request).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(response) => check(
            "9.2",
            "health check endpoint responds",
            response.status().is_success(),
            format!(
                "GET /health → {} {}",
                response.status(),
                String::from_utf8_lossy(response.body())
            ),
        ),
        Err(error) => check("9.2", "health check endpoint responds", false, error),
    }
}

/// Runs scenarios 1–6 (plan §3), defined in the marketplace crate, on nodes started by
/// `on` that export over OTLP to `receiver`; each becomes a check with its evidence. Then
/// checks what holds across all of them: the service named, no orphans, context
/// propagation — and with node `processes`, that the distributed search is one trace
/// across as many processes as it has nodes.
pub(super) async fn run(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    nodes: usize,
    processes: bool,
) -> (Vec<Criterion>, Vec<Run>) {
    let runs = scenarios::all(on, receiver, nodes).await;
    let across = processes.then(|| across_processes(&runs[3].traces, nodes));
    let mut checks: Vec<Criterion> = runs
        .iter()
        .map(|run| Criterion::new(run.section, run.scenario, run.passed(), run.evidence()))
        .collect();
    let traces = receiver.traces();
    let named = traces
        .spans()
        .filter(|s| s.name().starts_with("p2p_"))
        .all(|s| s.attribute("service.name") == Some(&Value::from(scenarios::SERVICE)));
    checks.push(check(
        "9.3",
        "every operation span names the service (service.name = ggen-p2p)",
        named,
        format!("{} span(s) received", traces.span_count()),
    ));
    checks.push(check(
        "9.3",
        "parent-child relationships preserved (no orphan spans)",
        traces.orphans().is_empty(),
        format!(
            "{} trace(s), {} orphan(s)",
            traces.traces().len(),
            traces.orphans().len()
        ),
    ));
    let propagated = traces
        .find(
            &expect::span()
                .named("gossipsub_receive")
                .with_parent(expect::span().named("gossipsub_announce")),
        )
        .len();
    let remote = traces
        .find(
            &expect::span()
                .named("handle_dht_query")
                .with_ancestor(expect::span().named("p2p_search")),
        )
        .into_iter()
        .filter(|h| h.record().parent.and_then(|p| p.remote) == Some(true))
        .count();
    checks.push(check(
        "9.3",
        "trace context propagated across peers and async operations",
        remote >= 1 && propagated >= 1,
        format!("{propagated} gossip reception(s) under their announcement; {remote} remote search handler(s) in their search's trace"),
    ));
    checks.extend(across);
    (checks, runs)
}

/// The `process.pid` of every span.
pub(super) fn pids<'a>(spans: impl Iterator<Item = SpanRef<'a>>) -> BTreeSet<i64> {
    spans
        .filter_map(|s| s.record().resource.attributes.get("process.pid"))
        .filter_map(Value::as_i64)
        .collect()
}

/// With node processes: scenario 4's search is one trace holding spans of `nodes`
/// distinct processes.
fn across_processes(search: &TraceSet, nodes: usize) -> Criterion {
    let pids = pids(search.spans());
    check(
        "9.3",
        &format!("the distributed search is one trace across {nodes} processes"),
        search.traces().len() == 1 && pids.len() == nodes,
        format!(
            "{} trace(s); spans from process.pid {:?}",
            search.traces().len(),
            pids
        ),
    )
}

/// A row per node process: what the receiver got from it.
pub(super) fn per_process(receiver: &OtlpReceiver, started: &[Started]) -> Vec<ProcessRow> {
    let traces = receiver.traces();
    let points = receiver.metric_points();
    started
        .iter()
        .map(|process| {
            let pid = Value::from(i64::from(process.pid));
            ProcessRow {
                pid: process.pid,
                peer_id: process.peer_id.clone(),
                listen: process.listen.clone(),
                spans: traces
                    .spans()
                    .filter(|s| s.record().resource.attributes.get("process.pid") == Some(&pid))
                    .count(),
                metric_points: points
                    .iter()
                    .filter(|p| {
                        p.attribute("service.instance.id")
                            == Some(&Value::from(process.peer_id.as_str()))
                    })
                    .count(),
            }
        })
        .collect()
}

/// 9.3: everything received keeps the marketplace's contract — spans, metrics and logs —
/// and the run covers every span and metric it declares. Returns the check and the
/// contract's report (`None` if the contract did not load).
pub(super) fn contract(
    receiver: &OtlpReceiver,
    per_group: Option<f64>,
) -> (Criterion, Option<ContractReport>) {
    let name = match per_group {
        Some(_) => "telemetry keeps the marketplace's contract (attributes, types, structure, metrics) and covers every declared span and metric",
        None => "telemetry keeps the marketplace's contract (attributes, types, structure, metrics)",
    };
    let contract = match marketplace::contract() {
        Ok(contract) => contract,
        Err(error) => return (check("9.3", name, false, error.to_string()), None),
    };
    let report = contract
        .check(
            &receiver.traces(),
            &receiver.metric_points(),
            &receiver.log_records(),
        )
        .gate(CoverageGate {
            minimum_per_group: per_group,
            ..CoverageGate::default()
        });
    let (spans, points, logs) = report.samples();
    let count = |level| report.at_level(level).count();
    let gate = per_group.map_or_else(String::new, |g| {
        format!(" (each group at least {:.0} %)", g * 100.0)
    });
    let mut evidence = format!(
        "{spans} span(s), {points} metric point(s), {logs} log record(s): {} violation(s), {} improvement(s), {} information; coverage {:.1} %{gate}",
        count(Level::Violation),
        count(Level::Improvement),
        count(Level::Information),
        report.coverage().ratio() * 100.0,
    );
    for finding in report.at_level(Level::Violation).take(5) {
        evidence.push_str(&format!("\n{finding}"));
    }
    (
        check("9.3", name, !report.has_violations(), evidence),
        Some(report),
    )
}

/// 9.2 and 9.4: counters, files and metrics.
pub(super) fn verify(receiver: &OtlpReceiver, otlp_dir: &Path) -> Vec<Criterion> {
    let mut checks = Vec::new();
    let accepted = receiver.counter(
        p2p_otel_testkit::receiver::Counter::AcceptedSpans,
        Some("ggen-p2p"),
    );
    checks.push(check(
        "9.2",
        "receiver accepted spans from ggen-p2p",
        accepted > 0,
        format!("otelcol_receiver_accepted_spans{{service_name=\"ggen-p2p\"}} = {accepted}"),
    ));
    let file = std::fs::read_to_string(otlp_dir.join("traces.jsonl")).unwrap_or_default();
    let missing: Vec<&str> = scenarios::EXPORTED_NAMES
        .iter()
        .copied()
        .filter(|n| !file.contains(n))
        .collect();
    let lines = file
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    checks.push(check(
        "9.2",
        "traces exported to an OTLP-JSON file with the required names and attributes",
        missing.is_empty() && lines > 0,
        format!("{lines} valid JSON line(s); missing: {missing:?}"),
    ));
    let metric = |name: &str| receiver.metric_points_named(name);
    let ops = metric("p2p_operations_total");
    let errors = ops
        .iter()
        .filter(|p| p.attribute("status") == Some(&Value::from("error")))
        .count();
    checks.push(check(
        "9.4",
        "metrics exported, error counters moved",
        !ops.is_empty() && errors > 0,
        format!(
            "{} p2p_operations_total point(s), {errors} with status=error",
            ops.len()
        ),
    ));
    let histograms = [
        "p2p_operation_duration_ms",
        "p2p_search_results",
        "p2p_dht_query_duration_ms",
        "p2p_gossipsub_propagation_ms",
    ];
    let empty: Vec<&str> = histograms
        .iter()
        .copied()
        .filter(|n| metric(n).iter().all(|p| p.value.count().unwrap_or(0) == 0))
        .collect();
    checks.push(check(
        "9.4",
        "latency histograms populated",
        empty.is_empty(),
        format!("empty: {empty:?}"),
    ));
    let reputation = metric("p2p_peer_reputation");
    let in_range = reputation
        .iter()
        .all(|p| p.value.as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)));
    checks.push(check(
        "9.4",
        "peer reputation tracked, scores in [0, 1]",
        !reputation.is_empty() && in_range,
        format!(
            "{} p2p_peer_reputation point(s), all in range: {in_range}",
            reputation.len()
        ),
    ));
    checks
}

/// Spans per `service.name`.
pub(super) fn spans_by_service(receiver: &OtlpReceiver) -> BTreeMap<String, u64> {
    let traces: TraceSet = receiver.traces();
    let mut counts = BTreeMap::new();
    for span in traces.spans() {
        let service = match span.attribute("service.name") {
            Some(Value::Str(s)) => s.clone(),
            _ => "unknown_service".to_owned(),
        };
        *counts.entry(service).or_default() += 1;
    }
    counts
}
