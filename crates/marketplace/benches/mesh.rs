//! Mesh readiness and publish-to-searchable latency, with marketplace nodes on the memory
//! transport (noise + yamux, test timeouts, 50 ms gossip heartbeat):
//! - time until a mesh is ready: started, every topology edge connected, every node with
//!   Kademlia routing entries and a gossipsub mesh peer — 3 nodes (full), 16 and 64 nodes
//!   (random graph, degree ≥ 4);
//! - on a ready 16-node ring: from `publish` on node 0 to a `search` on node 8 (the far
//!   side) returning the package.
//!
//! - publish + search latency on a ready 3-node mesh, with every node's telemetry
//!   exporting over OTLP/gRPC to an embedded receiver, and without telemetry.
//!
//! Targets: 3 nodes < 100 ms, 64 nodes < 3 s; telemetry overhead ≤ 10 %.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use p2p_otel_marketplace::{self as marketplace, Config, Package, Query, Registry, RegistryNode};
use p2p_otel_testkit::mesh::{self, Mesh, Topology};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use tokio::runtime::Runtime;

const WAIT: Duration = Duration::from_secs(30);

async fn ready_mesh(nodes: usize, topology: Topology) -> Mesh<RegistryNode> {
    ready_observed_mesh(nodes, topology, None).await
}

async fn ready_observed_mesh(
    nodes: usize,
    topology: Topology,
    telemetry: Option<PerNode>,
) -> Mesh<RegistryNode> {
    let mut mesh = marketplace::start_mesh(
        mesh::Builder::new(nodes),
        Config::for_tests(),
        telemetry.as_ref(),
    )
    .await
    .expect("mesh starts");
    mesh.connect_topology(topology, WAIT)
        .await
        .expect("edges connect");
    marketplace::wait_ready(&mesh, WAIT)
        .await
        .expect("mesh ready");
    mesh
}

fn readiness(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("mesh_ready");
    group.sample_size(10);
    for (nodes, topology) in [
        (3, Topology::Full),
        (16, Topology::Random { degree: 4, seed: 1 }),
        (64, Topology::Random { degree: 4, seed: 1 }),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, &nodes| {
            b.to_async(&runtime).iter_custom(|iters| async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mesh = ready_mesh(nodes, topology).await;
                    elapsed += start.elapsed();
                    mesh.shutdown().await;
                }
                elapsed
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("publish_to_searchable");
    group.sample_size(10);
    group.bench_function("16_node_ring_far_side", |b| {
        b.to_async(&runtime).iter_custom(|iters| async move {
            let config = Config::for_tests();
            let mesh = ready_mesh(16, Topology::Ring).await;
            let publisher = marketplace::registry(&mesh, 0, &config).expect("node 0");
            let searcher = marketplace::registry(&mesh, 8, &config).expect("node 8");
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let name = format!("bench/pkg-{i}");
                let package = Package::new(
                    name.parse().expect("id"),
                    "1.0.0".parse().expect("version"),
                    "bench",
                );
                let start = Instant::now();
                publisher.publish(package).await.expect("publish");
                let expected = usize::try_from(i + 1).expect("fits");
                mesh.wait_until("the far side to index it", WAIT, |states| {
                    states[8].observations.packages >= expected
                })
                .await
                .expect("propagated");
                let hits = searcher
                    .search(&Query::text(name.as_str()))
                    .await
                    .expect("search");
                assert_eq!(hits.len(), 1);
                elapsed += start.elapsed();
            }
            mesh.shutdown().await;
            elapsed
        })
    });
    group.finish();
}

fn telemetry_overhead(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("publish_and_search_3_nodes");
    group.sample_size(30);
    for observed in [false, true] {
        let label = if observed {
            "telemetry_on"
        } else {
            "telemetry_off"
        };
        let (mesh, _receiver) = runtime.block_on(async {
            if observed {
                let receiver = OtlpReceiver::start(receiver::Config::default())
                    .await
                    .expect("receiver");
                let telemetry =
                    PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", "bench");
                let mesh = ready_observed_mesh(3, Topology::Full, Some(telemetry)).await;
                (mesh, Some(receiver))
            } else {
                (ready_mesh(3, Topology::Full).await, None)
            }
        });
        let config = Config::for_tests();
        let publisher = marketplace::registry(&mesh, 0, &config).expect("node 0");
        let searcher = marketplace::registry(&mesh, 2, &config).expect("node 2");
        let counter = std::sync::atomic::AtomicU64::new(0);
        group.bench_function(label, |b| {
            b.to_async(&runtime).iter(|| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (publisher, searcher) = (publisher.clone(), searcher.clone());
                async move {
                    let name = format!("bench/p{n}");
                    let package = Package::new(
                        name.parse().expect("id"),
                        "1.0.0".parse().expect("version"),
                        "bench",
                    );
                    publisher.publish(package).await.expect("publish");
                    searcher
                        .search(&Query::text(name.as_str()))
                        .await
                        .expect("search");
                }
            })
        });
        runtime.block_on(mesh.shutdown());
    }
    group.finish();
}

criterion_group!(benches, readiness, telemetry_overhead);
criterion_main!(benches);
