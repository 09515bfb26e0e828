//! Scenario 4: a search across nodes is one trace, its remote parents preserved.

use p2p_otel_testkit::model::{SpanKind, Value};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::{expect, TraceSet};

use super::checks::{contract_and_service, finish, Checks};
use super::observed::records;
use super::{package, Launcher, Observed, Run, ScenarioError};
use crate::{Config, NodeCondition, Query};

/// Scenario 4: nodes 1..n each publish a package; a search from node 0 finds them all and
/// is one trace: `p2p_search` → `send_request` (client) on node 0 → `handle_dht_query`
/// (server, remote parent) on every other node.
pub async fn distributed_search(on: &dyn Launcher, receiver: &OtlpReceiver, nodes: usize) -> Run {
    let mut checks = Checks::default();
    let result = distributed_search_body(on, receiver, nodes.max(3), &mut checks).await;
    finish(
        "scenario 4: one search is one trace across nodes, remote parents preserved",
        "9.3",
        checks,
        result,
    )
}

async fn distributed_search_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    nodes: usize,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    // The search asks every other node (the default fan-out, 3, would leave nodes out of
    // a mesh of more than 4).
    let config = Config {
        search_fanout: nodes - 1,
        ..Config::for_tests()
    };
    let mut o = Observed::start_on(on, receiver, nodes, 8, config).await?;
    o.ready().await?;
    for i in 1..nodes {
        o.node(i)?
            .publish(package(&format!("acme/from-{i}"), &format!("test {i}"))?)
            .await?;
    }
    let every: Vec<usize> = (0..nodes).collect();
    o.wait_for(&every, &NodeCondition::packages(nodes - 1))
        .await?;
    o.flush().await?;
    let hits = o.node(0)?.search(&Query::text("test")).await;
    checks.that(
        "the search finds every other node's package",
        hits.as_ref().is_ok_and(|h| h.len() == nodes - 1),
        format!(
            "{:?}",
            hits.as_ref()
                .map(|h| h.iter().map(|p| p.id.to_string()).collect::<Vec<_>>())
        ),
    );
    let handlers = nodes - 1;
    let traces = o
        .wait("the search and every remote handler", |spans| {
            spans.iter().any(|search| {
                search.name == "p2p_search"
                    && spans
                        .iter()
                        .filter(|s| s.name == "handle_dht_query" && s.trace_id == search.trace_id)
                        .count()
                        == handlers
            })
        })
        .await?;
    let Some(search) = checks.ok(
        "p2p_search is a root",
        traces.expect(&expect::span().named("p2p_search").root()),
    ) else {
        return Ok(traces);
    };
    let trace = search.trace();
    let caller = o.peer_id(0)?.to_string();
    for node in 1..nodes {
        let peer = o.peer_id(node)?.to_string();
        let handler = trace.spans().find(|s| {
            s.name() == "handle_dht_query"
                && s.attribute("peer_id") == Some(&Value::from(peer.as_str()))
        });
        let parent = handler.and_then(|h| h.parent());
        checks.that(
            &format!("node {node} handles it as a server span under a remote parent: node 0's send_request to it"),
            handler.is_some_and(|h| {
                h.record().kind == SpanKind::Server
                    && h.record().parent.and_then(|p| p.remote) == Some(true)
                    && h.attribute("service.instance.id") == Some(&Value::from(peer.as_str()))
                    && search.is_ancestor_of(h)
            }) && parent.is_some_and(|p| {
                p.name() == "send_request"
                    && p.attribute("target_peer") == Some(&Value::from(peer.as_str()))
                    && p.attribute("service.instance.id") == Some(&Value::from(caller.as_str()))
            }),
            format!(
                "handler: {:?}; its parent: {:?}",
                handler.map(|h| (h.record().kind, h.record().parent)),
                parent.map(|p| p.name().to_owned())
            ),
        );
    }
    let single = o.set(records(trace.spans()));
    checks.ok("no orphan spans", single.expect_no_orphans());
    contract_and_service(checks, &single);
    o.shutdown().await;
    Ok(single)
}
