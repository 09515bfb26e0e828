//! Property-based tests: generated operation sequences over a real mesh, checked against
//! a reference model and against trace invariants on what arrived over OTLP; plus
//! properties of decoding, rendering and OTLP round trips.
//!
//! `PROPTEST_CASES=N` raises the depth (defaults are sized for CI); failures shrink to the
//! smallest failing input and are persisted in `proptest-regressions/properties.txt`.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use p2p_otel_testkit::marketplace::{self, Config, P2PRegistry, Package, Registry, RegistryNode};
use p2p_otel_testkit::mesh::{Mesh, Security, Topology};
use p2p_otel_testkit::model::{spans_from_otlp, spans_to_otlp, SpanRecord};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::strategy::invariants::{self, Executed};
use p2p_otel_testkit::strategy::{
    arb_invalid_package_id, arb_invalid_version, arb_operations, arb_package, arb_span_set,
    node_of, package_of, Model, Operation, Outcome,
};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::TraceSet;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use prost::Message;

const NODES: usize = 3;
const WAIT: Duration = Duration::from_secs(10);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES, when set, wins: that is how a deep run is asked for.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    }
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
    let builder = Mesh::builder(NODES).seed(11).security(Security::Plaintext);
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

fn root_of(operation: &Operation) -> Option<(&'static str, &'static str)> {
    Some(match operation {
        Operation::Publish { .. } => ("p2p_publish", "publish"),
        Operation::Search { .. } => ("p2p_search", "search"),
        Operation::Get { .. } => ("p2p_get", "get"),
        Operation::ListVersions { .. } => ("p2p_list_versions", "list_versions"),
        Operation::Exists { .. } => ("p2p_exists", "exists"),
        Operation::Delete { .. } => ("p2p_delete", "delete"),
        Operation::Bootstrap { .. } => ("p2p_bootstrap", "bootstrap"),
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
        if let (Some((root, label)), Some(n), true) = (root_of(operation), node, alive) {
            executed.push(Executed {
                instance: r.mesh.peer_id(n).map_err(|e| e.to_string())?.to_string(),
                root,
                operation: label,
                failed: outcome.is_err(),
            });
        }
    }
    r.telemetry.flush().await.map_err(|e| e.to_string())?;
    let roots = executed.len();
    let traces = r
        .receiver
        .wait_for_spans_where(&format!("{roots} root span(s)"), WAIT, |spans| {
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
        invariants::remote_handlers_join_the_search(&traces),
        invariants::schema_holds(&traces, &marketplace::schema()),
    ];
    for check in checks {
        check.map_err(|e| e.to_string())?;
    }
    invariants::operation_counters_match(&r.receiver.metric_points(), &executed)?;
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

/// One receiver for every case of the decoding property: it must survive them all.
fn shared_receiver() -> &'static (tokio::runtime::Runtime, OtlpReceiver) {
    static SHARED: std::sync::OnceLock<(tokio::runtime::Runtime, OtlpReceiver)> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let receiver = runtime
            .block_on(OtlpReceiver::start(receiver::Config::default()))
            .unwrap();
        (runtime, receiver)
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_bytes_always_get_a_status_and_never_stop_the_receiver(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        json in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        use http_body_util::BodyExt;
        let (runtime, receiver) = shared_receiver();
        let status = runtime.block_on(async {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
            let mut request = hyper::Request::post(format!("{}/v1/traces", receiver.http_endpoint()))
                .header("content-type", if json { "application/json" } else { "application/x-protobuf" });
            if gzip {
                request = request.header("content-encoding", "gzip");
            }
            let response = client.request(request.body(http_body_util::Full::new(bytes::Bytes::from(bytes))).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        });
        prop_assert!(matches!(status, 200 | 400), "status {status}");
        let health = runtime.block_on(async {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
            client.get(format!("{}/health", receiver.http_endpoint()).parse().unwrap()).await.map(|r| r.status().as_u16())
        });
        prop_assert_eq!(health.ok(), Some(200));
    }

    #[test]
    fn rendering_is_the_same_for_every_arrival_order(
        (spans, shuffled) in arb_span_set().prop_flat_map(|spans| (Just(spans.clone()), Just(spans).prop_shuffle()))
    ) {
        prop_assert_eq!(TraceSet::new(spans).render(), TraceSet::new(shuffled).render());
    }

    #[test]
    fn valid_traces_survive_otlp_protobuf_and_json_round_trips(spans in arb_span_set()) {
        let request = ExportTraceServiceRequest { resource_spans: spans_to_otlp(&spans) };
        let by_id = |mut spans: Vec<SpanRecord>| { spans.sort_by_key(|s| (s.trace_id, s.span_id)); spans };
        let protobuf = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(by_id(spans_from_otlp(&protobuf.resource_spans).unwrap()), by_id(spans.clone()));
        let json: ExportTraceServiceRequest = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert_eq!(by_id(spans_from_otlp(&json.resource_spans).unwrap()), by_id(spans));
    }

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
