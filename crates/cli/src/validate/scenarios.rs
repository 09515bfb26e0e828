//! The plan's scenarios and success criteria (sections 3 and 9.2–9.4), each turned into
//! a [`Check`] with the evidence that decided it. Checks read only what the receiver
//! got over OTLP, never command output.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::HttpClient;

use super::{Check, ValidateError};
use p2p_otel_marketplace::{
    self as marketplace, Config, MarketplaceError, Package, Query, Registry,
};
use p2p_otel_testkit::mesh::{self, Security, Topology};
use p2p_otel_testkit::model::{StatusCode, Value};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::telemetry::PerNode;
use p2p_otel_testkit::tree::{expect, TraceSet};
use p2p_otel_testkit::SpanSource;

const WAIT: Duration = Duration::from_secs(10);

fn check(section: &'static str, name: &str, passed: bool, evidence: impl Into<String>) -> Check {
    Check {
        section,
        name: name.to_owned(),
        passed,
        evidence: evidence.into(),
    }
}

/// 9.2: the health endpoint answers.
pub(super) async fn health(receiver: &OtlpReceiver) -> Check {
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

fn package(name: &str, title: &str) -> Result<Package, MarketplaceError> {
    Ok(Package::new(name.parse()?, "1.0.0".parse()?, title))
}

fn describe<T: std::fmt::Debug>(result: &Result<T, MarketplaceError>) -> String {
    match result {
        Ok(value) => format!("ok: {value:?}"),
        Err(error) => format!("error: {error}"),
    }
}

/// Runs scenarios 1–6 (plan §3) on a mesh whose nodes export over OTLP, and checks each
/// on what the receiver got.
pub(super) async fn run(
    receiver: &OtlpReceiver,
    telemetry: &PerNode,
    nodes: usize,
) -> Result<Vec<Check>, ValidateError> {
    let mut checks = Vec::new();
    // Short network timeouts (the memory transport answers in microseconds) and a result
    // cache, so a repeated search is a cache hit.
    let config = Config {
        request_timeout: Duration::from_millis(200),
        cache_ttl: Duration::from_secs(60),
        ..Config::for_tests()
    };
    let builder = mesh::Builder::new(nodes);
    let mut mesh = marketplace::start_mesh(builder, config.clone(), Some(telemetry)).await?;
    let registries: Vec<_> = (0..nodes)
        .map(|i| marketplace::registry(&mesh, i, &config))
        .collect::<Result<_, _>>()?;

    // Scenario 1: bootstrap from the other nodes.
    let peers = (1..nodes)
        .map(|i| Ok((mesh.peer_id(i)?, mesh.addr(i)?)))
        .collect::<Result<Vec<_>, ValidateError>>()?;
    let bootstrap = registries[0].bootstrap_from(peers).await;
    mesh.connect_topology(Topology::Full, WAIT).await?;
    marketplace::wait_ready(&mesh, WAIT).await?;

    // Scenario 2: publish; scenario 3: search twice (the repeat is cached).
    let publish = match package("acme/validated", "validation package") {
        Ok(p) => registries[1].publish(p).await,
        Err(e) => Err(e),
    };
    for (i, registry) in registries.iter().enumerate().skip(2) {
        let own = package(&format!("acme/node-{i}"), "validation package");
        if let Ok(own) = own {
            let _ = registry.publish(own).await;
        }
    }
    mesh.wait_until("every node to index every package", WAIT, |states| {
        states.iter().all(|s| s.observations.packages >= nodes - 1)
    })
    .await?;
    // Scenario 4: a distributed search from node 0; scenario 3: its repeat is cached.
    let search = registries[0].search(&Query::text("validation")).await;
    let _ = registries[0].search(&Query::text("validation")).await;

    // Scenario 5: a silent peer loses reputation (fan-out 1 on a fresh node).
    let quiet =
        marketplace::silent_peer(marketplace::REGISTRY_PROTOCOL, 901, Security::Noise).await?;
    if let Ok(node) = quiet.node(0) {
        let _ = node.send((mesh.peer_id(0)?, mesh.addr(0)?)).await;
    }
    let quiet_peer = quiet.peer_id(0)?;
    mesh.wait_until("the silent peer to connect", WAIT, |s| {
        s[0].connected.contains(&quiet_peer)
    })
    .await?;
    let _ = registries[0].search(&Query::text("node")).await;
    let stats = registries[0].stats().await;

    // Scenario 6: a Kademlia black hole makes a publish time out (200 ms, not 30 s).
    let hole = marketplace::silent_peer(marketplace::KAD_PROTOCOL, 902, Security::Noise).await?;
    let lonely_config = Config {
        query_timeout: Duration::from_millis(200),
        ..Config::for_tests()
    };
    let lonely_mesh = marketplace::start_mesh(
        mesh::Builder::new(1).seed(903),
        lonely_config.clone(),
        Some(telemetry),
    )
    .await;
    let timeout_result = match &lonely_mesh {
        Ok(lonely) => {
            let lonely_registry = marketplace::registry(lonely, 0, &lonely_config)?;
            let _ = lonely_registry
                .bootstrap_from(vec![(hole.peer_id(0)?, hole.addr(0)?)])
                .await;
            match package("acme/lost", "never replicated") {
                Ok(p) => lonely_registry.publish(p).await,
                Err(e) => Err(e),
            }
        }
        Err(error) => Err(MarketplaceError::Network(error.to_string())),
    };

    telemetry.flush().await?;
    let traces = receiver
        .wait_until("every scenario's root span", WAIT, |spans| {
            ["p2p_bootstrap", "p2p_publish", "p2p_search"]
                .iter()
                .all(|n| spans.iter().any(|s| s.name == *n))
        })
        .await
        .unwrap_or_else(|_| receiver.traces());

    let span = |matcher: &p2p_otel_testkit::tree::SpanMatcher| traces.find(matcher).len();
    checks.push(check(
        "9.3",
        "scenario 1: bootstrap emits p2p_bootstrap",
        bootstrap.is_ok()
            && span(
                &expect::span()
                    .named("p2p_bootstrap")
                    .with_attr("operation", "bootstrap"),
            ) >= 1,
        format!(
            "bootstrap {}; {} p2p_bootstrap span(s)",
            describe(&bootstrap),
            traces.find_named("p2p_bootstrap").len()
        ),
    ));
    let publish_tree = expect::span()
        .named("p2p_publish")
        .with_attr("package_id", "acme/validated")
        .with_child(
            expect::span()
                .named("dht_put")
                .with_attr("operation", "store_package"),
        )
        .with_child(
            expect::span()
                .named("gossipsub_announce")
                .with_attr("topic", "/ggen/packages/v1"),
        );
    checks.push(check(
        "9.3",
        "scenario 2: publish emits p2p_publish with dht_put and gossipsub_announce children",
        publish.is_ok() && span(&publish_tree) == 1,
        format!(
            "publish {}; matching trees: {}",
            describe(&publish),
            span(&publish_tree)
        ),
    ));
    let cached = span(
        &expect::span()
            .named("p2p_search")
            .with_attr("cache_hit", true),
    );
    let search_spans = traces.find_named("p2p_search");
    let latency_recorded = search_spans
        .iter()
        .all(|s| s.attribute("total_latency_ms").is_some());
    checks.push(check(
        "9.3",
        "scenario 3: search emits p2p_search with result counts and latency",
        !search_spans.is_empty() && latency_recorded && cached >= 1,
        format!("{} p2p_search span(s), all with total_latency_ms: {latency_recorded}; cache hits recorded: {cached}", search_spans.len()),
    ));
    let distributed = traces.find(
        &expect::span()
            .named("p2p_search")
            .with_descendant(expect::span().named("handle_dht_query")),
    );
    let remote_ok = distributed.first().is_some_and(|search| {
        let handlers: Vec<_> = search
            .descendants()
            .into_iter()
            .filter(|d| d.name() == "handle_dht_query")
            .collect();
        handlers.len() >= nodes - 1
            && handlers
                .iter()
                .all(|h| h.record().parent.and_then(|p| p.remote) == Some(true))
    });
    checks.push(check(
        "9.3",
        "scenario 4: one search is one trace across nodes, remote parents preserved",
        search.as_ref().is_ok_and(|hits| hits.len() >= nodes - 1) && remote_ok,
        format!(
            "search found {:?}; traces with remote handlers: {}",
            search
                .as_ref()
                .map(|hits| hits.iter().map(|p| p.id.to_string()).collect::<Vec<_>>()),
            distributed.len()
        ),
    ));
    let reputation = stats
        .as_ref()
        .ok()
        .and_then(|s| s.reputation.get(&quiet_peer).cloned());
    checks.push(check(
        "9.4",
        "scenario 5: a silent peer loses reputation",
        reputation
            .as_ref()
            .is_some_and(|r| r.failures >= 1 && r.score() < 0.5),
        format!("silent peer stats: {reputation:?}"),
    ));
    let error_span = expect::span()
        .named("p2p_publish")
        .with_status(StatusCode::Error)
        .with_attr("error_type", "timeout");
    checks.push(check(
        "9.4",
        "scenario 6: a timeout emits an Error span with error_type = timeout",
        matches!(timeout_result, Err(MarketplaceError::Timeout { .. })) && span(&error_span) >= 1,
        format!(
            "publish against a black hole: {}",
            describe(&timeout_result)
        ),
    ));
    // Failed steps may miss what they never got (a message id nobody assigned).
    let schema =
        p2p_otel_testkit::strategy::invariants::schema_holds(&traces, &marketplace::schema()).map(
            |()| {
                traces
                    .spans()
                    .filter(|s| s.record().status.code != StatusCode::Error)
                    .count()
            },
        );
    checks.push(check(
        "9.3",
        "all spans have the plan's required attributes (operation, peer_id, service.name, …)",
        schema.is_ok()
            && traces
                .spans()
                .filter(|s| s.name().starts_with("p2p_"))
                .all(|s| s.attribute("service.name") == Some(&Value::from("ggen-p2p"))),
        match &schema {
            Ok(n) => format!("{n} span(s) checked against the schema"),
            Err(e) => e.message().lines().take(5).collect::<Vec<_>>().join(" | "),
        },
    ));
    let complete = traces.orphans().is_empty();
    checks.push(check(
        "9.3",
        "parent-child relationships preserved (no orphan spans)",
        complete,
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
    checks.push(check(
        "9.3",
        "trace context propagated across peers and async operations",
        remote_ok && propagated >= 1,
        format!("{propagated} gossip reception(s) under their announcement; remote search handlers: {remote_ok}"),
    ));
    mesh.shutdown().await;
    Ok(checks)
}

/// 9.2 and 9.4: counters, files and metrics.
pub(super) fn verify(receiver: &OtlpReceiver, otlp_dir: &Path) -> Vec<Check> {
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
    let required = [
        "\"p2p_bootstrap\"",
        "\"p2p_publish\"",
        "\"p2p_search\"",
        "\"operation\"",
        "\"peer_id\"",
        "\"service.name\"",
    ];
    let missing: Vec<&str> = required
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
