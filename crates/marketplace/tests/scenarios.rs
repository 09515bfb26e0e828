//! The plan's six scenarios (section 3), defined once in `p2p_otel_marketplace::scenarios`
//! and asserted here on what the embedded receiver got over OTLP from every node of a real
//! libp2p mesh; and its integration checks (section 5). Never on CLI output.

#[path = "../../../tests/common/mod.rs"]
mod common;

use p2p_otel_testkit::contract::Report;
use std::time::Duration;

use p2p_otel_marketplace::scenarios::{self, InProcess, Observed, Run};
use p2p_otel_marketplace::{self as marketplace, Config, Package, Query};
use p2p_otel_testkit::model::{PointValue, Value};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::SpanSource;
use p2p_otel_testkit::TraceSet;

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

/// The scenarios' nodes, in this process, given three times the usual time: this binary
/// runs beside every other on a CI runner's cores, in a debug build.
const ON: InProcess = InProcess::with_time_scale(3);

async fn receiver() -> OtlpReceiver {
    OtlpReceiver::start(receiver::Config::default())
        .await
        .unwrap()
}

/// Every check passed (else the checks and the traces are printed), and the scenario's
/// trace is snapshotted.
fn assert_scenario(name: &str, run: &Run) {
    assert!(run.passed(), "{run}");
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, run.render());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_bootstrap() {
    let receiver = receiver().await;
    assert_scenario(
        "scenario_1_bootstrap",
        &scenarios::bootstrap(&ON, &receiver, 3).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_publish_with_both_children() {
    let receiver = receiver().await;
    assert_scenario(
        "scenario_2_publish",
        &scenarios::publish(&ON, &receiver).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_search_and_a_cache_hit_on_repeat() {
    let receiver = receiver().await;
    assert_scenario(
        "scenario_3_search",
        &scenarios::search(&ON, &receiver).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_distributed_search_is_one_trace_across_three_nodes() {
    let receiver = receiver().await;
    let run = scenarios::distributed_search(&ON, &receiver, 3).await;
    assert_scenario("scenario_4_distributed_search", &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_a_silent_peer_loses_reputation_and_gets_fewer_queries() {
    let receiver = receiver().await;
    let run = scenarios::silent_peer_reputation(&ON, &receiver).await;
    assert_scenario("scenario_5_silent_peer", &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_6_an_unreachable_dht_peer_ends_in_a_timeout_error_span() {
    let receiver = receiver().await;
    assert_scenario(
        "scenario_6_timeout",
        &scenarios::timeout(&ON, &receiver).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_sharing_one_receiver_read_only_their_own_nodes() {
    let receiver = receiver().await;
    let runs = scenarios::all(&ON, &receiver, 3).await;
    for run in &runs {
        assert!(run.passed(), "{run}");
    }
    let total: usize = runs.iter().map(|r| r.traces.span_count()).sum();
    assert!(
        total < receiver.spans().len(),
        "each run kept only its own trace"
    );
}

/// A mesh exporting to a receiver that also writes OTLP-JSON lines files.
struct Files {
    receiver: OtlpReceiver,
    dir: std::path::PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn with_files() -> Files {
    use std::hash::{BuildHasher, Hasher};
    let suffix = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let dir = std::env::temp_dir().join(format!(
        "p2p-otel-scenarios-{}-{suffix}",
        std::process::id()
    ));
    let receiver = OtlpReceiver::start(receiver::Config::default().with_json_lines_dir(&dir))
        .await
        .unwrap();
    Files { receiver, dir }
}

fn package(name: &str, title: &str) -> Package {
    Package::new(name.parse().unwrap(), "1.0.0".parse().unwrap(), title)
}

fn accepted(receiver: &OtlpReceiver) -> u64 {
    receiver.counter(receiver::Counter::AcceptedSpans, Some(scenarios::SERVICE))
}

/// The marketplace's contract holds on the spans and metrics (no violation), and every
/// declared span names the service.
fn check_contract(traces: &TraceSet, metrics: &[p2p_otel_testkit::model::MetricPoint]) -> Report {
    let contract = marketplace::contract().unwrap();
    let report = contract.check(traces, metrics, &[]);
    report.assert_no_violations().unwrap();
    assert!(report.samples().0 > 0, "no span in:\n{traces}");
    for span in traces
        .spans()
        .filter(|s| contract.required_attributes(s.name()).is_some())
    {
        assert_eq!(
            span.attribute("service.name"),
            Some(&Value::from(scenarios::SERVICE))
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_checks_health_counts_files_and_metrics() {
    let files = with_files().await;
    let mut o = Observed::start(&files.receiver, 3, 11, Config::for_tests())
        .await
        .unwrap();
    let (_, health) = common::http_get(&o.receiver.http_endpoint(), "/health").await;
    assert!(health.contains("Server available"));
    o.ready().await.unwrap();
    let mut counts = vec![accepted(o.receiver)];
    let peers = vec![o.peer(1).unwrap()];
    o.bootstrap(0, peers).await.unwrap();
    o.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_bootstrap", WAIT)
        .await
        .unwrap();
    counts.push(accepted(o.receiver));
    o.node(0)
        .unwrap()
        .publish(package("acme/tool", "A tool"))
        .await
        .unwrap();
    o.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_publish", WAIT)
        .await
        .unwrap();
    counts.push(accepted(o.receiver));
    o.node(2)
        .unwrap()
        .search(&Query::text("tool"))
        .await
        .unwrap();
    o.flush().await.unwrap();
    o.receiver
        .wait_for_complete_trace("p2p_search", WAIT)
        .await
        .unwrap();
    counts.push(accepted(o.receiver));
    assert!(
        counts.windows(2).all(|w| w[1] > w[0]),
        "each operation raised the count: {counts:?}"
    );

    let file = std::fs::read_to_string(files.dir.join("traces.jsonl")).unwrap();
    for needle in scenarios::EXPORTED_NAMES {
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
async fn the_contract_holds_for_every_span_and_metric_of_a_full_workload() {
    let receiver = receiver().await;
    let mut o = Observed::start(&receiver, 3, 12, Config::for_tests())
        .await
        .unwrap();
    o.ready().await.unwrap();
    let id: marketplace::PackageId = "acme/all".parse().unwrap();
    let version: marketplace::Version = "1.0.0".parse().unwrap();
    let peers = vec![o.peer(1).unwrap()];
    o.bootstrap(0, peers).await.unwrap();
    o.node(0)
        .unwrap()
        .publish(package("acme/all", "everything"))
        .await
        .unwrap();
    o.node(1)
        .unwrap()
        .search(&Query::text("all"))
        .await
        .unwrap();
    o.node(2)
        .unwrap()
        .get_package_version(&id, &version)
        .await
        .unwrap();
    o.node(2).unwrap().list_versions(&id).await.unwrap();
    o.node(2)
        .unwrap()
        .exists(&"acme/none".parse().unwrap())
        .await
        .unwrap();
    o.node(0).unwrap().delete(&id).await.unwrap();
    o.flush().await.unwrap();
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
    let report = check_contract(&traces, &o.receiver.metric_points());
    println!("{report}");
}

/// The whole validation in virtual time: every scenario passes, two runs of one seed give
/// the same transcript byte for byte (renderings, every span's virtual start and end,
/// ids, metric points), and another seed another.
mod simulated {
    use super::*;

    #[test]
    fn the_six_scenarios_replay_byte_for_byte_for_one_seed() {
        let first = scenarios::simulate(1, 3).unwrap();
        for run in &first.runs {
            assert!(run.passed(), "{run}");
        }
        eprintln!(
            "virtual {:?}, wall {:?}, digest {}",
            first.virtual_time,
            first.wall_time,
            first.digest()
        );
        let second = scenarios::simulate(1, 3).unwrap();
        if let Some(divergence) = first.first_divergence(&second) {
            panic!("{divergence}\n--- first run:\n{}", first.transcript);
        }
        assert_eq!(first.digest(), second.digest());
        let other = scenarios::simulate(2, 3).unwrap();
        assert!(other.passed());
        assert_ne!(first.digest(), other.digest());
    }
}
