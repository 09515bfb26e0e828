//! Scenarios 1–3: one operation at a time — a bootstrap, a publish, a search — each
//! checked for its root span, its attributes and its children.

use std::time::Duration;

use p2p_otel_testkit::model::{SpanKind, StatusCode};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::{attr, expect, TraceSet};

use super::checks::{contract_and_service, finish, Checks};
use super::observed::{accepted, records};
use super::{package, Launcher, Observed, Run, ScenarioError, SERVICE};
use crate::{Config, MarketplaceError, NodeCondition, Query, PACKAGES_TOPIC};

/// Scenario 1: node 0 bootstraps from the `nodes - 1` others; one root `p2p_bootstrap`
/// with the node count, success and connected peers, exported to the receiver.
pub async fn bootstrap(on: &dyn Launcher, receiver: &OtlpReceiver, nodes: usize) -> Run {
    let mut checks = Checks::default();
    let result = bootstrap_body(on, receiver, nodes.max(2), &mut checks).await;
    finish(
        "scenario 1: bootstrap emits p2p_bootstrap",
        "9.3",
        checks,
        result,
    )
}

async fn bootstrap_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    nodes: usize,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    let mut o = Observed::start_on(on, receiver, nodes, 5, Config::for_tests()).await?;
    let before = accepted(receiver);
    let peers = (1..nodes).map(|i| o.peer(i)).collect::<Result<_, _>>()?;
    let connected = o.bootstrap(0, peers).await;
    checks.that(
        "bootstrap reaches every other node",
        connected.as_ref().is_ok_and(|&n| n == nodes - 1),
        format!("{connected:?}"),
    );
    let traces = o.trace_of("p2p_bootstrap").await?;
    let me = o.peer_id(0)?.to_string();
    checks.ok(
        "p2p_bootstrap with operation, peer_id, bootstrap_node_count, bootstrap_success, connected_peers",
        traces.expect(
            &expect::span()
                .named("p2p_bootstrap")
                .root()
                .with_attr("operation", "bootstrap")
                .with_attr("peer_id", me.clone())
                .with_attr("service.instance.id", me)
                .with_attr("bootstrap_node_count", (nodes - 1) as i64)
                .with_attr("bootstrap_success", true)
                .with_attr("connected_peers", (nodes - 1) as i64)
                .with_status(StatusCode::Unset),
        ),
    );
    contract_and_service(checks, &traces);
    let after = accepted(receiver);
    checks.that(
        "the receiver's accepted-span count rose",
        after > before,
        format!(
            "otelcol_receiver_accepted_spans{{service_name=\"{SERVICE}\"}}: {before} → {after}"
        ),
    );
    o.ready().await?;
    o.shutdown().await;
    Ok(traces)
}

/// Scenario 2: a publish on node 0 of three: `p2p_publish` with a `dht_put` client child
/// and a `gossipsub_announce` producer child, and both peers' `gossipsub_receive` in the
/// same trace under the announcement.
pub async fn publish(on: &dyn Launcher, receiver: &OtlpReceiver) -> Run {
    let mut checks = Checks::default();
    let result = publish_body(on, receiver, &mut checks).await;
    finish(
        "scenario 2: publish emits p2p_publish with dht_put and gossipsub_announce children",
        "9.3",
        checks,
        result,
    )
}

async fn publish_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    let mut o = Observed::start_on(on, receiver, 3, 6, Config::for_tests()).await?;
    o.ready().await?;
    // The span records the subscribers node 0 knows of: wait until it knows both.
    let subscribed = NodeCondition {
        topic_peers: 2,
        ..NodeCondition::default()
    };
    o.wait_for(&[0], &subscribed).await?;
    let before = accepted(receiver);
    let published = o.node(0)?.publish(package("acme/tool", "A tool")?).await;
    checks.ok("the publish succeeds", published);
    o.wait_for(&[1, 2], &NodeCondition::packages(1)).await?;
    let traces = o
        .wait("publish, its children and both receptions", |spans| {
            spans
                .iter()
                .filter(|s| s.name == "gossipsub_receive")
                .count()
                == 2
                && spans.iter().any(|s| s.name == "p2p_publish")
        })
        .await?;
    let publish = traces.expect(
        &expect::span()
            .named("p2p_publish")
            .with_attr("operation", "publish")
            .with_attr("package_id", "acme/tool")
            .with_attr("package_version", "1.0.0")
            .with_attr("dht_replication", 1)
            .with_attr("gossipsub_peers", 2)
            .with_child(
                expect::span()
                    .named("dht_put")
                    .with_kind(SpanKind::Client)
                    .with_attr("operation", "store_package")
                    .with_attr("package_id", "acme/tool")
                    .with_attr("dht_key", "/ggen/pkg/acme/tool/1.0.0"),
            )
            .with_child(
                expect::span()
                    .named("gossipsub_announce")
                    .with_kind(SpanKind::Producer)
                    .with_attr("operation", "announce_package")
                    .with_attr("topic", PACKAGES_TOPIC)
                    .with_attr("subscriber_count", 2)
                    .with_attr("message_id", attr::non_empty()),
            ),
    );
    let Some(publish) = checks.ok(
        "p2p_publish with dht_put (client) and gossipsub_announce (producer) children",
        publish,
    ) else {
        return Ok(traces);
    };
    let trace = o.set(records(publish.trace().spans()));
    checks.ok(
        "both receptions are consumers under the announcement, in the publish's trace",
        trace.expect_count(
            &expect::span()
                .named("gossipsub_receive")
                .with_kind(SpanKind::Consumer)
                .with_attr("propagation_ms", attr::between(0.0, 10_000.0))
                .with_parent(expect::span().named("gossipsub_announce")),
            2,
        ),
    );
    checks.ok("no orphan spans", trace.expect_no_orphans());
    contract_and_service(checks, &trace);
    let after = accepted(receiver);
    checks.that(
        "the receiver's accepted-span count rose",
        after > before,
        format!("{before} → {after}"),
    );
    o.shutdown().await;
    Ok(trace)
}

/// Scenario 3: two identical searches on a lone node: `p2p_search` with the query, result
/// counts by source and latency; the repeat is a cache hit. A lone node's publish fails
/// with a typed replication error but is indexed locally.
pub async fn search(on: &dyn Launcher, receiver: &OtlpReceiver) -> Run {
    let mut checks = Checks::default();
    let result = search_body(on, receiver, &mut checks).await;
    finish(
        "scenario 3: search emits p2p_search with result counts and latency",
        "9.3",
        checks,
        result,
    )
}

async fn search_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    let config = Config {
        cache_ttl: Duration::from_secs(60),
        search_fanout: 0,
        ..Config::for_tests()
    };
    let o = Observed::start_on(on, receiver, 1, 7, config).await?;
    let alone = o
        .node(0)?
        .publish(package("acme/test-kit", "test helpers")?)
        .await;
    checks.that(
        "a lone node's publish is a replication error",
        matches!(alone, Err(MarketplaceError::Replication(_))),
        format!("{alone:?}"),
    );
    let query = Query {
        limit: Some(10),
        ..Query::text("test")
    };
    for attempt in ["first", "repeated"] {
        let hits = o.node(0)?.search(&query).await;
        checks.that(
            &format!("the {attempt} search finds the local package"),
            hits.as_ref().is_ok_and(|h| h.len() == 1),
            format!("{hits:?}"),
        );
    }
    let traces = o
        .wait("two searches", |spans| {
            spans.iter().filter(|s| s.name == "p2p_search").count() == 2
        })
        .await?;
    let search = expect::span()
        .named("p2p_search")
        .with_attr("operation", "search")
        .with_attr("query_text", "test")
        .with_attr("query_limit", 10)
        .with_attr("local_results", 1)
        .with_attr("remote_results", 0)
        .with_attr("total_latency_ms", attr::between(0.0, 2_000.0));
    checks.ok(
        "the first search misses the cache",
        traces.expect(&search.clone().with_attr("cache_hit", false)),
    );
    checks.ok(
        "the repeat is a cache hit",
        traces.expect(&search.with_attr("cache_hit", true)),
    );
    let searches = o.set(
        traces
            .find_named("p2p_search")
            .iter()
            .map(|s| s.record().clone()),
    );
    contract_and_service(checks, &searches);
    o.shutdown().await;
    Ok(searches)
}
