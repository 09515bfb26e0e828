//! Property-based tests of the reference marketplace: generated operation sequences over a
//! real mesh, checked against its reference model and against the kit's trace invariants
//! on what arrived over OTLP; and its validated inputs.
//!
//! `PROPTEST_CASES=N` raises the depth (defaults are sized for CI); failures shrink to the
//! smallest failing input and are persisted in `proptest-regressions/properties.txt`.

use std::time::Duration;

use p2p_otel_marketplace::strategy::{
    arb_invalid_package_id, arb_invalid_version, arb_operations, arb_package, node_of, package_of,
    Model, Operation, Outcome,
};
use p2p_otel_marketplace::{
    self as marketplace, Config, P2PRegistry, Package, Registry, RegistryNode,
};
use p2p_otel_testkit::mesh::{self, Mesh, Security, Topology};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::strategy;
use p2p_otel_testkit::strategy::invariants::{self, Executed};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::SpanSource;
use p2p_otel_testkit::TraceSet;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const NODES: usize = 3;
const WAIT: Duration = Duration::from_secs(10);

/// CI-sized defaults; `PROPTEST_CASES` raises them.
fn config(cases: u32) -> ProptestConfig {
    strategy::config(cases, "proptest-regressions/properties.txt")
}

fn node_config(meter: Option<opentelemetry::metrics::Meter>) -> Config {
    Config {
        query_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(150),
        meter,
        ..Config::for_tests()
    }
}

struct Run {
    receiver: OtlpReceiver,
    telemetry: PerNode,
    mesh: Mesh<RegistryNode>,
    nodes: Vec<P2PRegistry>,
}

async fn start() -> Run {
    let receiver = OtlpReceiver::start(receiver::Config::default())
        .await
        .unwrap();
    let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", "prop");
    let builder = mesh::Builder::new(NODES)
        .seed(11)
        .security(Security::Plaintext);
    let mut mesh = marketplace::start_mesh(builder, node_config(None), Some(&telemetry))
        .await
        .unwrap();
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    marketplace::wait_ready(&mesh, WAIT).await.unwrap();
    let nodes = (0..NODES)
        .map(|i| marketplace::registry(&mesh, i, &node_config(None)).unwrap())
        .collect();
    Run {
        receiver,
        telemetry,
        mesh,
        nodes,
    }
}

fn root_of(operation: &Operation) -> Option<&'static str> {
    Some(match operation {
        Operation::Publish { .. } => "p2p_publish",
        Operation::Search { .. } => "p2p_search",
        Operation::Get { .. } => "p2p_get",
        Operation::ListVersions { .. } => "p2p_list_versions",
        Operation::Exists { .. } => "p2p_exists",
        Operation::Delete { .. } => "p2p_delete",
        Operation::Bootstrap { .. } => "p2p_bootstrap",
        _ => return None,
    })
}

/// Runs one operation, returning its outcome.
async fn run(r: &mut Run, operation: &Operation) -> Outcome {
    let stopped = |e: marketplace::MarketplaceError| match e {
        marketplace::MarketplaceError::NodeStopped => Outcome::Stopped(e),
        other => Outcome::Unit(Err(other.to_string())),
    };
    let node = |n: &usize| n % NODES;
    match operation {
        Operation::Publish {
            node: n,
            package,
            minor,
        } => {
            let (id, version) = package_of(*package, *minor).unwrap();
            match r.nodes[node(n)]
                .publish(Package::new(id, version, "generated"))
                .await
            {
                Ok(()) => Outcome::Unit(Ok(())),
                Err(e) => stopped(e),
            }
        }
        Operation::Delete { node: n, package } => {
            let (id, _) = package_of(*package, 0).unwrap();
            match r.nodes[node(n)].delete(&id).await {
                Ok(()) => Outcome::Unit(Ok(())),
                Err(e) => stopped(e),
            }
        }
        Operation::Search { node: n, query } => match r.nodes[node(n)].search(query).await {
            Err(marketplace::MarketplaceError::NodeStopped) => {
                Outcome::Stopped(marketplace::MarketplaceError::NodeStopped)
            }
            other => Outcome::Hits(other),
        },
        Operation::Get {
            node: n,
            package,
            minor,
        } => {
            let (id, version) = package_of(*package, *minor).unwrap();
            match r.nodes[node(n)].get_package_version(&id, &version).await {
                Err(marketplace::MarketplaceError::NodeStopped) => {
                    Outcome::Stopped(marketplace::MarketplaceError::NodeStopped)
                }
                other => Outcome::Package(other),
            }
        }
        Operation::ListVersions { node: n, package } => {
            let (id, _) = package_of(*package, 0).unwrap();
            match r.nodes[node(n)].list_versions(&id).await {
                Err(marketplace::MarketplaceError::NodeStopped) => {
                    Outcome::Stopped(marketplace::MarketplaceError::NodeStopped)
                }
                other => Outcome::Versions(other),
            }
        }
        Operation::Exists { node: n, package } => {
            let (id, _) = package_of(*package, 0).unwrap();
            match r.nodes[node(n)].exists(&id).await {
                Err(marketplace::MarketplaceError::NodeStopped) => {
                    Outcome::Stopped(marketplace::MarketplaceError::NodeStopped)
                }
                other => Outcome::Exists(other),
            }
        }
        Operation::Bootstrap { node: n } => {
            let peers = (0..NODES)
                .filter(|&i| i != node(n) && r.mesh.is_alive(i))
                .map(|i| (r.mesh.peer_id(i).unwrap(), r.mesh.addr(i).unwrap()))
                .collect();
            match r.nodes[node(n)].bootstrap_from(peers).await {
                Err(marketplace::MarketplaceError::NodeStopped) => {
                    Outcome::Stopped(marketplace::MarketplaceError::NodeStopped)
                }
                other => Outcome::Bootstrap(other),
            }
        }
        Operation::Kill { node: n } => {
            Outcome::Unit(r.mesh.kill(node(n)).await.map_err(|e| e.to_string()))
        }
        Operation::Restart { node: n } => {
            let result = r
                .mesh
                .restart(node(n), WAIT)
                .await
                .map_err(|e| e.to_string());
            if let Ok(handle) = marketplace::registry(&r.mesh, node(n), &node_config(None)) {
                r.nodes[node(n)] = handle;
            }
            Outcome::Unit(result)
        }
        Operation::Partition { node: n } => {
            let isolated = [node(n)];
            let others: Vec<usize> = (0..NODES).filter(|&i| i != node(n)).collect();
            Outcome::Unit(
                r.mesh
                    .partition(&[&isolated, &others], WAIT)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }
        Operation::Heal => Outcome::Unit(r.mesh.heal(WAIT).await.map_err(|e| e.to_string())),
    }
}

/// Runs a sequence against the model, then checks every trace invariant over OTLP.
async fn check_sequence(operations: Vec<Operation>) -> Result<(), String> {
    let mut r = start().await;
    let mut model = Model::new(NODES);
    let mut executed = Vec::new();
    for (step, operation) in operations.iter().enumerate() {
        let node = node_of(operation).map(|n| n % NODES);
        let alive = node.is_none_or(|n| model.alive(n));
        let outcome = run(&mut r, operation).await;
        model
            .apply(operation, &outcome)
            .map_err(|e| format!("step {step} {operation:?}: {e}"))?;
        if let (Some(root), Some(n), true) = (root_of(operation), node, alive) {
            executed.push(Executed {
                instance: r.mesh.peer_id(n).map_err(|e| e.to_string())?.to_string(),
                root,
                failed: outcome.is_err(),
            });
        }
    }
    r.telemetry.flush().await.map_err(|e| e.to_string())?;
    let roots = executed.len();
    let traces = r
        .receiver
        .wait_until(&format!("{roots} root span(s)"), WAIT, |spans| {
            TraceSet::new(spans.to_vec())
                .traces()
                .iter()
                .map(|t| t.roots().len())
                .sum::<usize>()
                >= roots
                && TraceSet::new(spans.to_vec()).orphans().is_empty()
        })
        .await
        .map_err(|e| e.to_string())?;
    let checks = [
        invariants::roots_match_operations(&traces, &executed),
        traces.expect_no_orphans(),
        invariants::spans_closed_and_nested(&traces),
        invariants::handlers_join_their_callers(&traces, &[("handle_dht_query", "p2p_search")]),
        invariants::schema_holds(&traces, &marketplace::schema()),
    ];
    for check in checks {
        check.map_err(|e| e.to_string())?;
    }
    marketplace::strategy::invariants::operation_counters_match(
        &r.receiver.metric_points(),
        &executed,
    )?;
    r.mesh.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn operation_sequences_match_the_model_and_the_trace_invariants(operations in arb_operations(NODES, 10)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(check_sequence(operations));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn invalid_ids_and_versions_are_refused_and_valid_packages_accepted(
        bad_id in arb_invalid_package_id(),
        bad_version in arb_invalid_version(),
        package in arb_package(),
    ) {
        prop_assert!(bad_id.parse::<marketplace::PackageId>().is_err(), "{bad_id:?} accepted");
        prop_assert!(bad_version.parse::<marketplace::Version>().is_err(), "{bad_version:?} accepted");
        let text = serde_json::to_string(&package).unwrap();
        prop_assert_eq!(serde_json::from_str::<Package>(&text).unwrap(), package.clone());
        prop_assert_eq!(package.version.to_string().parse::<marketplace::Version>().unwrap(), package.version);
    }
}
