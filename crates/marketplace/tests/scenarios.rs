//! The plan's six scenarios (section 3) and integration checks (section 5), asserted on
//! what the embedded receiver got over OTLP from every node of a real libp2p mesh — never
//! on CLI output.

mod common;

use std::time::Duration;

use p2p_otel_marketplace::{
    self as marketplace, Config, P2PRegistry, Package, Query, Registry, RegistryNode,
};
use p2p_otel_testkit::mesh::{self, Mesh, Security, Topology};
use p2p_otel_testkit::model::{PointValue, SpanKind, StatusCode, Value};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::tree::{attr, expect, ChildOrder, RenderSettings};
use p2p_otel_testkit::SpanSource;
use p2p_otel_testkit::TraceSet;

const WAIT: Duration = Duration::from_secs(10);
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A marketplace mesh whose nodes export spans and metrics over OTLP to one receiver.
struct Observed {
    receiver: OtlpReceiver,
    telemetry: PerNode,
    mesh: Mesh<RegistryNode>,
    nodes: Vec<P2PRegistry>,
    dir: std::path::PathBuf,
}

impl Drop for Observed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn observed(n: usize, config: Config) -> Observed {
    let dir = std::env::temp_dir().join(format!(
        "p2p-otel-scenarios-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let receiver = OtlpReceiver::start(receiver::Config::default().with_json_lines_dir(&dir))
        .await
        .unwrap();
    let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", VERSION);
    let builder = mesh::Builder::new(n).seed(5).security(Security::Plaintext);
    let mesh = marketplace::start_mesh(builder, config.clone(), Some(&telemetry))
        .await
        .unwrap();
    let nodes = (0..n)
        .map(|i| marketplace::registry(&mesh, i, &config).unwrap())
        .collect();
    Observed {
        receiver,
        telemetry,
        mesh,
        nodes,
        dir,
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

async fn ready(o: &mut Observed) {
    o.mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    marketplace::wait_ready(&o.mesh, WAIT).await.unwrap();
}

fn package(name: &str, title: &str) -> Package {
    Package::new(name.parse().unwrap(), "1.0.0".parse().unwrap(), title)
}

fn settings() -> RenderSettings {
    // Gossip receivers and remote handlers run concurrently on different nodes.
    RenderSettings::default().child_order(ChildOrder::Name)
}

macro_rules! assert_scenario_snapshot {
    ($name:expr, $traces:expr) => {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $traces.render_with(&settings()));
        })
    };
}

/// Every span of the trace holding the root span named `root`, once complete.
async fn trace_of(o: &Observed, root: &str) -> TraceSet {
    o.telemetry.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace(root, WAIT)
        .await
        .unwrap()
}

fn accepted(o: &Observed) -> u64 {
    o.receiver
        .counter(receiver::Counter::AcceptedSpans, Some("ggen-p2p"))
}

/// The plan's schema holds, and every schema span names the service and its version.
fn check_schema(traces: &TraceSet) {
    let checked = traces.expect_schema(&marketplace::schema()).unwrap();
    assert!(checked > 0, "no schema span in:\n{traces}");
    for span in traces
        .spans()
        .filter(|s| marketplace::schema().required(s.name()).is_some())
    {
        assert_eq!(
            span.attribute("service.name"),
            Some(&Value::from("ggen-p2p"))
        );
        assert_eq!(
            span.attribute("service.version"),
            Some(&Value::from(VERSION))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_bootstrap() {
    let mut o = observed(3, Config::for_tests()).await;
    let before = accepted(&o);
    let peers = vec![
        (o.mesh.peer_id(1).unwrap(), o.mesh.addr(1).unwrap()),
        (o.mesh.peer_id(2).unwrap(), o.mesh.addr(2).unwrap()),
    ];
    assert_eq!(o.nodes[0].bootstrap_from(peers).await.unwrap(), 2);
    let traces = trace_of(&o, "p2p_bootstrap").await;
    traces
        .expect(
            &expect::span()
                .named("p2p_bootstrap")
                .root()
                .with_attr("operation", "bootstrap")
                .with_attr("peer_id", o.mesh.peer_id(0).unwrap().to_string())
                .with_attr(
                    "service.instance.id",
                    o.mesh.peer_id(0).unwrap().to_string(),
                )
                .with_attr("bootstrap_node_count", 2)
                .with_attr("bootstrap_success", true)
                .with_attr("connected_peers", 2)
                .with_status(StatusCode::Unset),
        )
        .unwrap();
    check_schema(&traces);
    assert!(
        accepted(&o) > before,
        "bootstrap raised the accepted-span count"
    );
    assert_scenario_snapshot!("scenario_1_bootstrap", traces);
    ready(&mut o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_publish_with_both_children() {
    let mut o = observed(3, Config::for_tests()).await;
    ready(&mut o).await;
    o.telemetry.flush().await.unwrap();
    let before = accepted(&o);
    o.nodes[0]
        .publish(package("acme/tool", "A tool"))
        .await
        .unwrap();
    o.mesh
        .wait_until("both peers to receive the announcement", WAIT, |s| {
            s[1].observations.packages == 1 && s[2].observations.packages == 1
        })
        .await
        .unwrap();
    o.telemetry.flush().await.unwrap();
    let traces = o
        .receiver
        .wait_until("publish, its children and both receptions", WAIT, |spans| {
            spans
                .iter()
                .filter(|s| s.name == "gossipsub_receive")
                .count()
                == 2
                && spans.iter().any(|s| s.name == "p2p_publish")
        })
        .await
        .unwrap();
    let publish = traces
        .expect(
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
                        .with_attr("topic", "/ggen/packages/v1")
                        .with_attr("subscriber_count", 2)
                        .with_attr("message_id", attr::non_empty()),
                ),
        )
        .unwrap();
    let trace = TraceSet::new(publish.trace().spans().map(|s| s.record().clone()));
    trace
        .expect_count(
            &expect::span()
                .named("gossipsub_receive")
                .with_kind(SpanKind::Consumer)
                .with_attr("propagation_ms", attr::between(0.0, 10_000.0))
                .with_parent(expect::span().named("gossipsub_announce")),
            2,
        )
        .unwrap();
    trace.expect_no_orphans().unwrap();
    check_schema(&trace);
    assert!(accepted(&o) > before);
    assert_scenario_snapshot!("scenario_2_publish", trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_search_and_a_cache_hit_on_repeat() {
    let config = Config {
        cache_ttl: Duration::from_secs(60),
        search_fanout: 0,
        ..Config::for_tests()
    };
    let o = observed(1, config).await;
    // A lone node cannot replicate: a typed error, and the package is indexed locally.
    let alone = o.nodes[0]
        .publish(package("acme/test-kit", "test helpers"))
        .await
        .unwrap_err();
    assert!(
        matches!(alone, marketplace::MarketplaceError::Replication(_)),
        "{alone}"
    );
    let query = Query {
        limit: Some(10),
        ..Query::text("test")
    };
    assert_eq!(o.nodes[0].search(&query).await.unwrap().len(), 1);
    assert_eq!(o.nodes[0].search(&query).await.unwrap().len(), 1);
    o.telemetry.flush().await.unwrap();
    let traces = o
        .receiver
        .wait_until("two searches", WAIT, |spans| {
            spans.iter().filter(|s| s.name == "p2p_search").count() == 2
        })
        .await
        .unwrap();
    let search = expect::span()
        .named("p2p_search")
        .with_attr("operation", "search")
        .with_attr("query_text", "test")
        .with_attr("query_limit", 10)
        .with_attr("local_results", 1)
        .with_attr("remote_results", 0)
        .with_attr("total_latency_ms", attr::between(0.0, 2_000.0));
    traces
        .expect(&search.clone().with_attr("cache_hit", false))
        .unwrap();
    traces.expect(&search.with_attr("cache_hit", true)).unwrap();
    let searches = TraceSet::new(
        traces
            .find_named("p2p_search")
            .iter()
            .map(|s| s.record().clone()),
    );
    check_schema(&searches);
    assert_scenario_snapshot!("scenario_3_search", searches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_distributed_search_is_one_trace_across_three_nodes() {
    let mut o = observed(3, Config::for_tests()).await;
    ready(&mut o).await;
    o.nodes[1]
        .publish(package("acme/from-two", "test two"))
        .await
        .unwrap();
    o.nodes[2]
        .publish(package("acme/from-three", "test three"))
        .await
        .unwrap();
    o.mesh
        .wait_until("every node to index both packages", WAIT, |s| {
            s.iter().all(|s| s.observations.packages == 2)
        })
        .await
        .unwrap();
    o.telemetry.flush().await.unwrap();
    let hits = o.nodes[0].search(&Query::text("test")).await.unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    o.telemetry.flush().await.unwrap();
    let traces = o
        .receiver
        .wait_until("the search and both remote handlers", WAIT, |spans| {
            let search = spans.iter().find(|s| s.name == "p2p_search");
            search.is_some_and(|search| {
                spans
                    .iter()
                    .filter(|s| s.name == "handle_dht_query" && s.trace_id == search.trace_id)
                    .count()
                    == 2
            })
        })
        .await
        .unwrap();
    let search = traces
        .expect(&expect::span().named("p2p_search").root())
        .unwrap();
    let trace = search.trace();
    let peer = |i: usize| o.mesh.peer_id(i).unwrap().to_string();
    for node in [1, 2] {
        let handler = trace
            .spans()
            .find(|s| {
                s.name() == "handle_dht_query"
                    && s.attribute("peer_id") == Some(&Value::from(peer(node)))
            })
            .unwrap_or_else(|| panic!("no handler on node {node}:\n{traces}"));
        let record = handler.record();
        assert_eq!(record.kind, SpanKind::Server);
        assert_eq!(
            record.parent.and_then(|p| p.remote),
            Some(true),
            "remote parent"
        );
        assert_eq!(
            handler.attribute("service.instance.id"),
            Some(&Value::from(peer(node)))
        );
        let caller = handler
            .parent()
            .expect("the caller's request span is in the trace");
        assert_eq!(caller.name(), "send_request");
        assert_eq!(
            caller.attribute("target_peer"),
            Some(&Value::from(peer(node)))
        );
        assert_eq!(
            caller.attribute("service.instance.id"),
            Some(&Value::from(peer(0)))
        );
        assert!(search.is_ancestor_of(handler));
    }
    let single = TraceSet::new(trace.spans().map(|s| s.record().clone()));
    single.expect_no_orphans().unwrap();
    check_schema(&single);
    assert_scenario_snapshot!("scenario_4_distributed_search", single);
}

async fn silent_peer(protocol: &'static str, seed: u64) -> Mesh<marketplace::SilentPeer> {
    marketplace::silent_peer(protocol, seed, Security::Plaintext)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_a_silent_peer_loses_reputation_and_gets_fewer_queries() {
    let config = Config {
        search_fanout: 1,
        ..Config::for_tests()
    };
    let mut o = observed(2, config).await;
    ready(&mut o).await;
    let quiet = silent_peer(marketplace::REGISTRY_PROTOCOL, 31).await;
    quiet
        .node(0)
        .unwrap()
        .send((o.mesh.peer_id(0).unwrap(), o.mesh.addr(0).unwrap()))
        .await
        .unwrap();
    let quiet_peer = quiet.peer_id(0).unwrap();
    o.mesh
        .wait_until("the silent peer connected", WAIT, |s| {
            s[0].connected.contains(&quiet_peer)
        })
        .await
        .unwrap();
    o.nodes[1]
        .publish(package("acme/answer", "the answer"))
        .await
        .unwrap();
    o.mesh
        .wait_until("node 0 to index the package", WAIT, |s| {
            s[0].observations.packages == 1
        })
        .await
        .unwrap();
    for _ in 0..6 {
        o.nodes[0].search(&Query::text("answer")).await.unwrap();
    }
    o.telemetry.flush().await.unwrap();
    let traces = o
        .receiver
        .wait_until("six searches", WAIT, |spans| {
            spans.iter().filter(|s| s.name == "p2p_search").count() == 6
        })
        .await
        .unwrap();
    let asked = |peer: &libp2p::PeerId| {
        traces
            .find(
                &expect::span()
                    .named("send_request")
                    .with_attr("target_peer", peer.to_string()),
            )
            .len()
    };
    let good = o.mesh.peer_id(1).unwrap();
    assert_eq!(asked(&quiet_peer), 1, "asked once, then avoided:\n{traces}");
    assert_eq!(asked(&good), 5);
    traces
        .expect(
            &expect::span()
                .named("send_request")
                .with_attr("target_peer", quiet_peer.to_string())
                .with_status(StatusCode::Error)
                .with_attr("error_type", "timeout"),
        )
        .unwrap();
    let score = |name: &str, peer: &libp2p::PeerId| {
        let points = o.receiver.metric_points_named(name);
        let point = points
            .iter()
            .rev()
            .find(|p| p.attribute("peer_id") == Some(&Value::from(peer.to_string())))
            .unwrap_or_else(|| panic!("no {name} for {peer}"));
        point.value.as_f64().unwrap()
    };
    o.receiver
        .wait_for_metric("p2p_peer_reputation", WAIT, |_| true)
        .await
        .unwrap();
    for name in ["p2p_peer_reputation", "peer_success_rate"] {
        let (quiet_score, good_score) = (score(name, &quiet_peer), score(name, &good));
        assert!((0.0..=1.0).contains(&quiet_score) && (0.0..=1.0).contains(&good_score));
        assert!(
            quiet_score < good_score,
            "{name}: {quiet_score} vs {good_score}"
        );
    }
    assert!(score("peer_response_time_ms", &good) >= 0.0);
    let timed_out = traces
        .expect(
            &expect::span()
                .named("send_request")
                .with_status(StatusCode::Error),
        )
        .unwrap();
    let trace = TraceSet::new(timed_out.trace().spans().map(|s| s.record().clone()));
    assert_scenario_snapshot!("scenario_5_silent_peer", trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_6_an_unreachable_dht_peer_ends_in_a_timeout_error_span() {
    let config = Config {
        query_timeout: Duration::from_millis(200),
        ..Config::for_tests()
    };
    let o = observed(1, config).await;
    // A peer that accepts Kademlia streams and never answers: every DHT query to it hangs.
    let black_hole = silent_peer(marketplace::KAD_PROTOCOL, 32).await;
    let hole = (black_hole.peer_id(0).unwrap(), black_hole.addr(0).unwrap());
    let started = std::time::Instant::now();
    let bootstrap = o.nodes[0].bootstrap_from(vec![hole]).await.unwrap_err();
    assert!(
        matches!(bootstrap, marketplace::MarketplaceError::Timeout { .. }),
        "{bootstrap}"
    );
    let publish = o.nodes[0]
        .publish(package("acme/lost", "lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(publish, marketplace::MarketplaceError::Timeout { .. }),
        "{publish}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "short timeouts, no 30 s waits"
    );
    let traces = trace_of(&o, "p2p_publish").await;
    let failed = traces
        .expect(
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
        )
        .unwrap();
    assert_eq!(failed.record().status.code, StatusCode::Error);
    assert_scenario_snapshot!("scenario_6_timeout", traces);
    let errors = o
        .receiver
        .wait_for_metric("p2p_operations_total", WAIT, |p| {
            p.attribute("operation") == Some(&Value::from("publish"))
                && p.attribute("status") == Some(&Value::from("error"))
        })
        .await
        .unwrap();
    assert_eq!(errors[errors.len() - 1].value, PointValue::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_checks_health_counts_files_and_metrics() {
    let mut o = observed(3, Config::for_tests()).await;
    let (_, health) = common::http_get(&o.receiver.http_endpoint(), "/health").await;
    assert!(health.contains("Server available"));
    ready(&mut o).await;
    let mut counts = vec![accepted(&o)];
    let peers = vec![(o.mesh.peer_id(1).unwrap(), o.mesh.addr(1).unwrap())];
    o.nodes[0].bootstrap_from(peers).await.unwrap();
    o.telemetry.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_bootstrap", WAIT)
        .await
        .unwrap();
    counts.push(accepted(&o));
    o.nodes[0]
        .publish(package("acme/tool", "A tool"))
        .await
        .unwrap();
    o.telemetry.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_publish", WAIT)
        .await
        .unwrap();
    counts.push(accepted(&o));
    o.nodes[2].search(&Query::text("tool")).await.unwrap();
    o.telemetry.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_search", WAIT)
        .await
        .unwrap();
    counts.push(accepted(&o));
    assert!(
        counts.windows(2).all(|w| w[1] > w[0]),
        "each operation raised the count: {counts:?}"
    );

    let file = std::fs::read_to_string(o.dir.join("traces.jsonl")).unwrap();
    for needle in [
        "\"p2p_bootstrap\"",
        "\"p2p_publish\"",
        "\"p2p_search\"",
        "\"operation\"",
        "\"peer_id\"",
        "\"service.name\"",
    ] {
        assert!(
            file.contains(needle),
            "{needle} missing from the OTLP-JSON file"
        );
    }

    // Every plan metric, with its labels and a plausible value.
    o.receiver
        .wait_for_metric("p2p_searches_total", WAIT, |_| true)
        .await
        .unwrap();
    let has = |name: &str, labels: &[&str]| {
        let points = o.receiver.metric_points_named(name);
        assert!(!points.is_empty(), "{name} missing");
        for label in labels {
            assert!(
                points.iter().all(|p| p.attributes.contains_key(*label)),
                "{name} lacks {label}"
            );
        }
        points
    };
    let ops = has("p2p_operations_total", &["operation", "status"]);
    assert!(ops
        .iter()
        .any(|p| p.attribute("operation") == Some(&Value::from("publish"))));
    assert!(has("p2p_packages_published_total", &[])
        .iter()
        .any(|p| p.value == PointValue::Int(1)));
    has("p2p_searches_total", &["cache_hit"]);
    has("p2p_dht_queries_total", &["query_type"]);
    let durations = has("p2p_operation_duration_ms", &["operation"]);
    assert!(durations.iter().all(|p| p.value.count().unwrap_or(0) >= 1));
    has("p2p_search_results", &["source"]);
    has("p2p_dht_query_duration_ms", &["query_type"]);
    has("p2p_gossipsub_propagation_ms", &[]);
    let connected = has("p2p_connected_peers", &[]);
    assert!(connected
        .iter()
        .all(|p| p.value.as_f64().is_some_and(|v| (0.0..=3.0).contains(&v))));
    has("p2p_known_packages", &[]);
    has("p2p_cache_size_bytes", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_holds_for_every_span_of_a_full_workload() {
    let mut o = observed(3, Config::for_tests()).await;
    ready(&mut o).await;
    let id: marketplace::PackageId = "acme/all".parse().unwrap();
    let version: marketplace::Version = "1.0.0".parse().unwrap();
    let peers = vec![(o.mesh.peer_id(1).unwrap(), o.mesh.addr(1).unwrap())];
    o.nodes[0].bootstrap_from(peers).await.unwrap();
    o.nodes[0]
        .publish(package("acme/all", "everything"))
        .await
        .unwrap();
    o.nodes[1].search(&Query::text("all")).await.unwrap();
    o.nodes[2].get_package_version(&id, &version).await.unwrap();
    o.nodes[2].list_versions(&id).await.unwrap();
    o.nodes[2]
        .exists(&"acme/none".parse().unwrap())
        .await
        .unwrap();
    o.nodes[0].delete(&id).await.unwrap();
    o.telemetry.flush().await.unwrap();
    let names = [
        "p2p_bootstrap",
        "p2p_publish",
        "p2p_search",
        "p2p_get",
        "p2p_list_versions",
        "p2p_exists",
        "p2p_delete",
        "dht_get",
        "handle_dht_query",
        "gossipsub_receive",
    ];
    let traces = o
        .receiver
        .wait_until("a span of every kind", WAIT, |spans| {
            names.iter().all(|n| spans.iter().any(|s| s.name == *n))
        })
        .await
        .unwrap();
    check_schema(&traces);
}
