//! Mesh readiness and publish-to-searchable latency, with marketplace nodes on the memory
//! transport (noise + yamux, `Config::for_tests()`, 50 ms gossip heartbeat):
//! - time until a mesh is ready: started, every topology edge connected, every node with
//!   Kademlia routing entries and a gossipsub mesh peer — 3 nodes (full), 16, 64, 256 and
//!   1,024 nodes (random graph, degree ≥ 4). Before the timings of each size from 64 up,
//!   one mesh is profiled (`support/mesh_profile.rs`): live heap per node counted by this
//!   bench's allocator, connections per node against the topology's degree, routing and
//!   gossip-mesh sizes, CPU in the 3 s after ready and in the 3 s after that. At 64 nodes
//!   the same mesh with `Discovery::Open` (Kademlia free to dial what it learns, as the
//!   mesh was before it held nodes to their edges) is profiled beside it;
//! - on a ready 16-node ring: from `publish` on node 0 to a `search` on node 8 (the far
//!   side) returning the package.
//!
//! - publish + search latency on a ready 3-node mesh, with every node's telemetry
//!   exporting over OTLP/gRPC to an embedded receiver, and without telemetry: both
//!   meshes run side by side, their operations interleaved. Before the timings, the
//!   publish and the search are also timed apart over 1,000 rounds and their medians
//!   printed (`print_split`), steadier than criterion's figure for the pair.
//!
//! - the validation's scenarios in real time and simulated (`scenarios::simulate`), and
//!   scenario 5 alone both ways (its 2 s request timeout), side by side.
//!
//! Targets: 3 nodes < 100 ms, 256 nodes < 2 s, 1,024 nodes < 10 s and ≤ 2 MB per node,
//! memory per node flat within 1.5× from 64 to 1,024 nodes, a ready 1,024-node mesh at
//! rest under half a core; telemetry overhead ≤ 10 %; scenario 5 simulated under 50 ms
//! of wall time, the simulated validation under half the real-time one.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use p2p_otel_marketplace::{
    self as marketplace, scenarios, Config, P2PRegistry, Package, Query, Registry, RegistryNode,
};
use p2p_otel_testkit::mesh::{self, Discovery, Mesh, Topology};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use tokio::runtime::Runtime;

#[path = "support/mesh_profile.rs"]
mod mesh_profile;

#[global_allocator]
static ALLOCATOR: mesh_profile::CountingAllocator = mesh_profile::CountingAllocator;

/// Waits end on notification; this long only on failure (a 1,024-node mesh needs ~12 s).
const WAIT: Duration = Duration::from_secs(120);

async fn ready_mesh(nodes: usize, topology: Topology) -> Mesh<RegistryNode> {
    ready_observed_mesh(nodes, topology, None, Discovery::Off).await
}

async fn ready_observed_mesh(
    nodes: usize,
    topology: Topology,
    telemetry: Option<PerNode>,
    discovery: Discovery,
) -> Mesh<RegistryNode> {
    ready_from(
        mesh::Builder::new(nodes).discovery(discovery),
        topology,
        &Config::for_tests(),
        telemetry.as_ref(),
    )
    .await
}

/// The marketplace mesh `builder` makes, connected along `topology` and ready (routing
/// entries and gossip peers on every node).
async fn ready_from(
    builder: mesh::Builder,
    topology: Topology,
    config: &Config,
    telemetry: Option<&PerNode>,
) -> Mesh<RegistryNode> {
    let mut mesh = marketplace::start_mesh(builder, config.clone(), telemetry)
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
        (256, Topology::Random { degree: 4, seed: 1 }),
        (1024, Topology::Random { degree: 4, seed: 1 }),
    ] {
        // Profiled once, inside the routine: criterion calls it only for a benchmark its
        // filter selects, so `cargo bench -- publish_and_search` does not build 1,024 nodes.
        let mut profiled = nodes < 64;
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, &nodes| {
            if !std::mem::replace(&mut profiled, true) {
                runtime.block_on(print_profile(nodes, topology, Discovery::Off));
                if nodes == 64 {
                    runtime.block_on(print_profile(nodes, topology, Discovery::Open));
                }
            }
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

/// Builds one mesh, profiles it (see `support/mesh_profile.rs`) and prints the profile.
async fn print_profile(nodes: usize, topology: Topology, discovery: Discovery) {
    let heap_before = mesh_profile::live_bytes();
    let start = Instant::now();
    let mesh = ready_observed_mesh(nodes, topology, None, discovery).await;
    let ready = start.elapsed();
    let profile = mesh_profile::Profile::measure(&mesh, topology, ready, heap_before).await;
    eprintln!("mesh_ready/{nodes} profile, discovery {discovery:?}: {profile}");
    mesh.shutdown().await;
}

fn bench_package(n: u64) -> Package {
    Package::new(
        format!("bench/p{n}").parse().expect("id"),
        "1.0.0".parse().expect("version"),
        "bench",
    )
}

/// One publish on `publisher` and a search for it on `searcher`; how long each took.
async fn publish_and_search(
    publisher: &P2PRegistry,
    searcher: &P2PRegistry,
    n: u64,
) -> (Duration, Duration) {
    let package = bench_package(n);
    let query = Query::text(package.id.to_string().as_str());
    let start = Instant::now();
    publisher.publish(package).await.expect("publish");
    let published = Instant::now();
    searcher.search(&query).await.expect("search");
    (published - start, published.elapsed())
}

/// Deletes what [`publish_and_search`] published, so indexes do not grow from one
/// sample to the next (a later bench function would otherwise search larger ones).
async fn unpublish(publisher: &P2PRegistry, n: u64) {
    publisher
        .delete(&bench_package(n).id)
        .await
        .expect("delete");
}

/// Rounds of [`print_split`] after its warm-up ones.
const SPLIT_ROUNDS: usize = 1_000;

/// Publish and search timed apart on both meshes, which go first alternating from one
/// round to the next, and printed as medians over [`SPLIT_ROUNDS`]: criterion's one
/// figure per function moves by ±10 % between runs on a 2-core machine, where these
/// medians move by a few µs, and they show which half of the pair the telemetry slows.
async fn print_split(
    off: &(P2PRegistry, P2PRegistry),
    on: &(P2PRegistry, P2PRegistry),
    counter: &std::sync::atomic::AtomicU64,
) {
    #[derive(Default)]
    struct Timings {
        publish: Vec<Duration>,
        search: Vec<Duration>,
        both: Vec<Duration>,
    }
    async fn round(mesh: &(P2PRegistry, P2PRegistry), n: u64, into: &mut Timings) {
        let (publish, search) = publish_and_search(&mesh.0, &mesh.1, n).await;
        into.publish.push(publish);
        into.search.push(search);
        into.both.push(publish + search);
    }
    fn median(samples: &mut [Duration]) -> Duration {
        samples.sort_unstable();
        samples[samples.len() / 2]
    }
    let warm_up = SPLIT_ROUNDS / 5;
    let (mut plain, mut observed) = (Timings::default(), Timings::default());
    for i in 0..warm_up + SPLIT_ROUNDS {
        if i == warm_up {
            (plain, observed) = (Timings::default(), Timings::default());
        }
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i % 2 == 0 {
            round(off, n, &mut plain).await;
            round(on, n, &mut observed).await;
        } else {
            round(on, n, &mut observed).await;
            round(off, n, &mut plain).await;
        }
        unpublish(&off.0, n).await;
        unpublish(&on.0, n).await;
    }
    let line = |what: &str, off: &mut Vec<Duration>, on: &mut Vec<Duration>| {
        let (off, on) = (median(off), median(on));
        let overhead = (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "{what} {:.0} → {:.0} µs ({overhead:+.1} %)",
            us(off),
            us(on)
        )
    };
    eprintln!(
        "publish_and_search_3_nodes split, medians of {SPLIT_ROUNDS} rounds, telemetry off → on: {}; {}; {}",
        line("publish", &mut plain.publish, &mut observed.publish),
        line("search", &mut plain.search, &mut observed.search),
        line("publish + search", &mut plain.both, &mut observed.both),
    );
}

/// Both meshes run for the whole group, and every timed operation on one is followed by
/// an untimed one on the other: the two figures see the same machine, the same background
/// (heartbeats, exporters) and the same growth of their indexes, so their ratio is the
/// telemetry's cost and not the drift between two runs.
fn telemetry_overhead(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("publish_and_search_3_nodes");
    group.sample_size(30);
    let (plain, observed, _receiver) = runtime.block_on(async {
        let receiver = OtlpReceiver::start(receiver::Config::default())
            .await
            .expect("receiver");
        let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", "bench");
        let observed =
            ready_observed_mesh(3, Topology::Full, Some(telemetry), Discovery::Off).await;
        let plain = ready_mesh(3, Topology::Full).await;
        (plain, observed, receiver)
    });
    let config = Config::for_tests();
    let pair = |mesh: &Mesh<RegistryNode>| {
        (
            marketplace::registry(mesh, 0, &config).expect("node 0"),
            marketplace::registry(mesh, 2, &config).expect("node 2"),
        )
    };
    let (off, on) = (pair(&plain), pair(&observed));
    let counter = std::sync::atomic::AtomicU64::new(0);
    // Printed once, inside the first routine: only when the filter selects this group.
    let mut split_printed = false;
    for (label, timed, other) in [("telemetry_off", &off, &on), ("telemetry_on", &on, &off)] {
        group.bench_function(label, |b| {
            if !std::mem::replace(&mut split_printed, true) {
                runtime.block_on(print_split(&off, &on, &counter));
            }
            b.to_async(&runtime).iter_custom(|iters| {
                let counter = &counter;
                async move {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let start = Instant::now();
                        publish_and_search(&timed.0, &timed.1, n).await;
                        elapsed += start.elapsed();
                        publish_and_search(&other.0, &other.1, n).await;
                        unpublish(&timed.0, n).await;
                        unpublish(&other.0, n).await;
                    }
                    elapsed
                }
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        plain.shutdown().await;
        observed.shutdown().await;
    });
}

/// Readiness on a simulated mesh: the same nodes and topologies on a paused current-thread
/// runtime — virtual time, libp2p's timers included (the workspace's virtual-time patch) —
/// over 1 ms edges. Wall time is what is measured; the live heap per node of one ready
/// mesh is printed before the timings of each size.
fn simulated_readiness(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh_ready_simulated");
    group.sample_size(10);
    for (nodes, topology) in [
        (3, Topology::Full),
        (64, Topology::Random { degree: 4, seed: 1 }),
        (256, Topology::Random { degree: 4, seed: 1 }),
        (1024, Topology::Random { degree: 4, seed: 1 }),
    ] {
        let mut profiled = false;
        let mut searched = false;
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, &nodes| {
            if !std::mem::replace(&mut profiled, true) {
                let heap_before = mesh_profile::live_bytes();
                let (wall, virtual_time, heap) = simulated(nodes, topology, |_| {
                    mesh_profile::live_bytes() - heap_before
                });
                eprintln!(
                    "mesh_ready_simulated/{nodes}: ready in {wall:?} of wall time, \
                     {virtual_time:?} of virtual time, {:.2} MB of heap per node",
                    heap as f64 / nodes as f64 / 1e6
                );
            }
            if nodes == 1024 && !std::mem::replace(&mut searched, true) {
                print_simulated_publish_and_search(nodes, topology);
            }
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| simulated(nodes, topology, |_| ()).0)
                    .sum()
            })
        });
    }
    group.finish();
}

/// A current-thread runtime whose clock is paused: time moves only when every task waits.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a paused runtime")
}

/// A ready marketplace mesh over 1 ms edges from `seed`, on the current (paused) runtime.
async fn ready_simulated_mesh(
    nodes: usize,
    topology: Topology,
    config: &Config,
    seed: u64,
) -> Mesh<RegistryNode> {
    let builder = mesh::Builder::new(nodes)
        .seed(seed)
        .latency(Duration::from_millis(1));
    ready_from(builder, topology, config, None).await
}

/// On a ready simulated mesh: a publish on node 0 and a search on the node half the mesh
/// away, their wall and virtual times printed; run twice from one seed (`mesh::simulate`),
/// with the digest of every delivery on the mesh's links, to show whether the runs replay.
fn print_simulated_publish_and_search(nodes: usize, topology: Topology) {
    let run = || {
        mesh::simulate(5, move || async move {
            let config = Config::for_tests();
            let mesh = ready_simulated_mesh(nodes, topology, &config, 5).await;
            let publisher = marketplace::registry(&mesh, 0, &config).expect("node 0");
            let searcher = marketplace::registry(&mesh, nodes / 2, &config).expect("far node");
            let (wall, start) = (Instant::now(), tokio::time::Instant::now());
            publisher.publish(bench_package(0)).await.expect("publish");
            let published = (wall.elapsed(), start.elapsed());
            let (wall, start) = (Instant::now(), tokio::time::Instant::now());
            let hits = searcher
                .search(&Query::text("bench"))
                .await
                .expect("search");
            let line = format!(
                "publish on node 0 in {:?} of wall time ({:?} virtual); search on node {} in \
                 {:?} of wall time ({:?} virtual), {} hit(s)",
                published.0,
                published.1,
                nodes / 2,
                wall.elapsed(),
                start.elapsed(),
                hits.len()
            );
            let links = mesh.link_stats();
            mesh.shutdown().await;
            (line, links)
        })
        .expect("a simulation")
    };
    let (first, again) = (run(), run());
    for (line, links) in [&first, &again] {
        eprintln!(
            "mesh_ready_simulated/{nodes}: {line}; {} segments, deliveries digest {:016x}",
            links.segments, links.deliveries_digest
        );
    }
    eprintln!(
        "mesh_ready_simulated/{nodes}: two runs of seed 5 {}",
        if first.1 == again.1 {
            "delivered the same segments at the same virtual times"
        } else {
            "parted"
        }
    );
}

/// One simulated mesh made ready: its wall and virtual time to ready, and what `measure`
/// reads of it then.
fn simulated<T>(
    nodes: usize,
    topology: Topology,
    measure: impl FnOnce(&Mesh<RegistryNode>) -> T,
) -> (Duration, Duration, T) {
    let runtime = paused_runtime();
    runtime.block_on(async {
        let wall = Instant::now();
        let start = tokio::time::Instant::now();
        let mesh = ready_simulated_mesh(nodes, topology, &Config::for_tests(), 0).await;
        let times = (wall.elapsed(), start.elapsed());
        let measured = measure(&mesh);
        mesh.shutdown().await;
        (times.0, times.1, measured)
    })
}

/// The validation's scenarios (1–6 and the lifecycle, 3 nodes) in real time — the memory
/// mesh exporting over OTLP/gRPC to a receiver, on two threads — and simulated
/// (`scenarios::simulate`: a paused clock, 20 ms edges, telemetry in process); and
/// scenario 5 alone both ways, whose silent peer makes the search wait out a 2 s request
/// timeout. Side by side in one run; wall time is what is measured.
fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validation");
    group.sample_size(10);
    let real = Runtime::new().expect("a runtime");
    let on = scenarios::InProcess::default();
    group.bench_function("all_real_time", |b| {
        b.iter(|| {
            real.block_on(async {
                let receiver = bench_receiver().await;
                let runs = scenarios::all(&on, &receiver, 3).await;
                assert!(runs.iter().all(scenarios::Run::passed));
            })
        })
    });
    let mut seed = 0;
    group.bench_function("all_simulated", |b| {
        b.iter(|| {
            seed += 1;
            let simulation = scenarios::simulate(seed, 3).expect("a simulation");
            assert!(simulation.passed());
        })
    });
    group.bench_function("scenario_5_real_time", |b| {
        b.iter(|| {
            real.block_on(async {
                let receiver = bench_receiver().await;
                assert!(scenarios::silent_peer_reputation(&on, &receiver)
                    .await
                    .passed());
            })
        })
    });
    group.bench_function("scenario_5_simulated", |b| {
        b.iter(|| {
            paused_runtime().block_on(async {
                let receiver = bench_receiver().await;
                let on = scenarios::Simulated::new(1);
                assert!(scenarios::silent_peer_reputation(&on, &receiver)
                    .await
                    .passed());
            })
        })
    });
    group.finish();
}

async fn bench_receiver() -> OtlpReceiver {
    OtlpReceiver::start(receiver::Config::default())
        .await
        .expect("a receiver")
}

criterion_group!(
    benches,
    readiness,
    simulated_readiness,
    telemetry_overhead,
    validation
);
criterion_main!(benches);
