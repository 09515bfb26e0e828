//! Scenarios 5 and 6: misbehaving peers, next to the scenario's nodes — a silent peer
//! that loses reputation, a black hole whose requests end in typed timeouts — and the
//! spans and metrics that show it.

use std::time::Duration;

use libp2p::PeerId;
use p2p_otel_testkit::model::{PointValue, StatusCode, Value};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::{attr, expect, TraceSet};

use super::checks::{finish, Checks};
use super::observed::records;
use super::{package, Launcher, Observed, Run, ScenarioError};
use crate::{Config, MarketplaceError, NodeCondition, Query, KAD_PROTOCOL, REGISTRY_PROTOCOL};

/// Scenario 5: a peer that accepts search requests and never answers, next to a good
/// one, with a fan-out of one: asked once, it times out, loses reputation, and the next
/// five searches go to the good peer; reputation, success rate and response time are
/// exported per peer.
pub async fn silent_peer_reputation(on: &dyn Launcher, receiver: &OtlpReceiver) -> Run {
    let mut checks = Checks::default();
    let result = silent_peer_body(on, receiver, &mut checks).await;
    finish(
        "scenario 5: a silent peer loses reputation",
        "9.4",
        checks,
        result,
    )
}

async fn silent_peer_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    // About timeouts: the silent peer never answers, so the timeout is what the scenario
    // provokes — and what the whole validation run waits for, its longest scenario. The
    // good peer races the same clock, though: 2 s is plenty on an idle machine, not on 2
    // cores running every test binary at once in a debug build (it answered in 2.4 s and
    // lost reputation too). The launcher's time scale stretches it for such machines.
    let config = Config {
        search_fanout: 1,
        request_timeout: Duration::from_secs(2) * on.time_scale(),
        ..Config::for_tests()
    };
    let mut o = Observed::start_on(on, receiver, 2, 9, config).await?;
    o.ready().await?;
    let quiet = on.silent_peer(REGISTRY_PROTOCOL, 31).await?;
    quiet.node(0)?.send(o.peer(0)?).await?;
    let quiet_peer = quiet.peer_id(0)?;
    let connected = NodeCondition {
        connected_to: vec![quiet_peer],
        ..NodeCondition::default()
    };
    o.wait_for(&[0], &connected).await?;
    o.node(1)?
        .publish(package("acme/answer", "the answer")?)
        .await?;
    o.wait_for(&[0], &NodeCondition::packages(1)).await?;
    for _ in 0..6 {
        o.node(0)?.search(&Query::text("answer")).await?;
    }
    let traces = o
        .wait("six searches", |spans| {
            spans.iter().filter(|s| s.name == "p2p_search").count() == 6
        })
        .await?;
    let good = o.peer_id(1)?;
    let asked = |peer: &PeerId| {
        traces
            .find(
                &expect::span()
                    .named("send_request")
                    .with_attr("target_peer", peer.to_string()),
            )
            .len()
    };
    checks.that(
        "the silent peer is asked once, then avoided",
        asked(&quiet_peer) == 1 && asked(&good) == 5,
        format!(
            "requests: silent peer {}, good peer {}",
            asked(&quiet_peer),
            asked(&good)
        ),
    );
    let timed_out = checks.ok(
        "the request to the silent peer ends in a timeout Error span",
        traces.expect(
            &expect::span()
                .named("send_request")
                .with_attr("target_peer", quiet_peer.to_string())
                .with_status(StatusCode::Error)
                .with_attr("error_type", "timeout"),
        ),
    );
    // What the node exported, not what it says when asked: the same check whether the
    // node is in this process or another.
    let silent_id = Value::from(quiet_peer.to_string());
    o.wait_for_metric("p2p_peer_reputation", |p| {
        p.attribute("peer_id") == Some(&silent_id)
    })
    .await?;
    let latest = |name: &str, peer: &PeerId| {
        o.metric_points_named(name)
            .iter()
            .rev()
            .find(|p| p.attribute("peer_id") == Some(&Value::from(peer.to_string())))
            .and_then(|p| p.value.as_f64())
    };
    let reputation = latest("p2p_peer_reputation", &quiet_peer);
    checks.that(
        "the silent peer's reputation fell below one half",
        reputation.is_some_and(|r| r < 0.5),
        format!("p2p_peer_reputation of the silent peer: {reputation:?}"),
    );
    for name in ["p2p_peer_reputation", "peer_success_rate"] {
        let (quiet_score, good_score) = (latest(name, &quiet_peer), latest(name, &good));
        checks.that(
            &format!("{name} is in [0, 1] and lower for the silent peer"),
            matches!((quiet_score, good_score), (Some(q), Some(g))
                if (0.0..=1.0).contains(&q) && (0.0..=1.0).contains(&g) && q < g),
            format!("silent {quiet_score:?}, good {good_score:?}"),
        );
    }
    let response_time = latest("peer_response_time_ms", &good);
    checks.that(
        "peer_response_time_ms is exported for the good peer",
        response_time.is_some_and(|t| t >= 0.0),
        format!("{response_time:?}"),
    );
    let trace = timed_out.map_or_else(
        || traces.clone(),
        |span| o.set(records(span.trace().spans())),
    );
    o.shutdown().await;
    quiet.shutdown().await;
    Ok(trace)
}

/// Scenario 6: a peer that swallows Kademlia streams: bootstrap and publish end in typed
/// timeouts after the configured 200 ms (not the production 30 s), the publish span is an
/// Error with `error = true`, `error_type = timeout` and the message, and
/// `p2p_operations_total{operation=publish,status=error}` counts it.
pub async fn timeout(on: &dyn Launcher, receiver: &OtlpReceiver) -> Run {
    let mut checks = Checks::default();
    let result = timeout_body(on, receiver, &mut checks).await;
    finish(
        "scenario 6: a timeout emits an Error span with error_type = timeout",
        "9.4",
        checks,
        result,
    )
}

async fn timeout_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    let config = Config {
        query_timeout: Duration::from_millis(200),
        ..Config::for_tests()
    };
    let o = Observed::start_on(on, receiver, 1, 10, config).await?;
    let black_hole = on.silent_peer(KAD_PROTOCOL, 32).await?;
    let hole = (black_hole.peer_id(0)?, black_hole.addr(0)?);
    let bootstrap = o.bootstrap(0, vec![hole]).await;
    checks.that(
        "bootstrap from it is a typed timeout",
        matches!(bootstrap, Err(MarketplaceError::Timeout { .. })),
        format!("{bootstrap:?}"),
    );
    let publish = o.node(0)?.publish(package("acme/lost", "lost")?).await;
    checks.that(
        "the publish is a typed timeout",
        matches!(publish, Err(MarketplaceError::Timeout { .. })),
        format!("{publish:?}"),
    );
    let traces = o.trace_of("p2p_publish").await?;
    checks.ok(
        "p2p_publish is an Error span with error, error_type, error_message, and its dht_put child timed out",
        traces.expect(
            &expect::span()
                .named("p2p_publish")
                .with_status(StatusCode::Error)
                .with_status_message(attr::matches("timed out after 200ms"))
                .with_attr("error", true)
                .with_attr("error_type", "timeout")
                .with_attr(
                    "error_message",
                    attr::matches("^DHT put timed out after 200ms$"),
                )
                .with_child(
                    expect::span()
                        .named("dht_put")
                        .with_attr("error_type", "timeout"),
                ),
        ),
    );
    let errors = o
        .wait_for_metric("p2p_operations_total", |p| {
            p.attribute("operation") == Some(&Value::from("publish"))
                && p.attribute("status") == Some(&Value::from("error"))
        })
        .await?;
    let last = errors.last().map(|p| p.value.clone());
    checks.that(
        "p2p_operations_total{operation=publish,status=error} counts it",
        last == Some(PointValue::Int(1)),
        format!("latest point: {last:?}"),
    );
    o.shutdown().await;
    black_hole.shutdown().await;
    Ok(traces)
}
