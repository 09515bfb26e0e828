//! The echo service tested with the kit as a dev-dependency, in its styles: two captures
//! and no network; a 3-node memory mesh whose nodes each capture (no exporter); over
//! OTLP; generated sequences through the harness. The service propagates with the
//! standard OpenTelemetry API only, so every style must see its remote parents.

use std::time::Duration;

use libp2p::futures::channel::oneshot;
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use p2p_otel_echo_service::{behaviour, Behaviour, EchoService};
use p2p_otel_testkit::mesh::{
    self, Mesh, MeshBehaviourEvent, MeshError, Node, NodeEvent, NodeSwarm, Topology,
};
use p2p_otel_testkit::model::SpanKind;
use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
use p2p_otel_testkit::strategy::invariants::Executed;
use p2p_otel_testkit::strategy::sequence::{Harness, System};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::tree::{expect, SpanMatcher};
use p2p_otel_testkit::{capture, CaptureHandle, SpanSource};
use proptest::prelude::*;

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

/// The service as a mesh node: the kit's `Node` trait around the service's own logic.
#[derive(Default)]
struct EchoNode(EchoService);

struct Echo {
    to: PeerId,
    text: String,
    reply: oneshot::Sender<Result<String, String>>,
}

impl Node for EchoNode {
    type Behaviour = Behaviour;
    type Command = Echo;
    type Observations = ();

    fn on_command(&mut self, swarm: &mut NodeSwarm<Behaviour>, Echo { to, text, reply }: Echo) {
        self.0.send(&mut swarm.behaviour_mut().app, to, text, reply);
    }

    fn on_swarm_event(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: NodeEvent<Behaviour>) {
        if let SwarmEvent::Behaviour(MeshBehaviourEvent::App(event)) = event {
            self.0.on_event(&mut swarm.behaviour_mut().app, event);
        }
    }
}

/// Node `from` echoes `text` off node `to`.
async fn echo(mesh: &Mesh<EchoNode>, from: usize, to: usize, text: &str) -> Result<String, String> {
    let (reply, answer) = oneshot::channel();
    let to = mesh.peer_id(to).map_err(|e| e.to_string())?;
    let command = Echo {
        to,
        text: text.to_owned(),
        reply,
    };
    mesh.node(from)
        .map_err(|e: MeshError| e.to_string())?
        .send(command)
        .await
        .map_err(|e| e.to_string())?;
    answer.await.map_err(|e| e.to_string())?
}

/// Starts an echo mesh from `builder` and connects every pair of nodes.
async fn connected(builder: mesh::Builder) -> Mesh<EchoNode> {
    let mut mesh = builder
        .start(|_| Ok((behaviour(), EchoNode::default())))
        .await
        .unwrap();
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    mesh
}

/// A connected echo mesh whose nodes each capture in-process: no exporter, no receiver.
async fn captured_mesh(n: usize) -> (Mesh<EchoNode>, capture::PerNode) {
    let captures = capture::PerNode::new().service("echo", "1.0.0");
    let mesh = connected(mesh::Builder::new(n).capture_per_node(&captures)).await;
    (mesh, captures)
}

/// An echo mesh whose nodes export over OTLP/gRPC to `receiver`.
async fn exporting_mesh(n: usize, receiver: &OtlpReceiver) -> (Mesh<EchoNode>, PerNode) {
    let telemetry = PerNode::new(Protocol::Grpc, receiver).service("echo", "1.0.0");
    let mesh = connected(mesh::Builder::new(n).telemetry_per_node(&telemetry)).await;
    (mesh, telemetry)
}

/// `handle_echo` on node `to`, a server span under `send_echo` (client) on node `from`.
fn echo_edge(mesh: &Mesh<EchoNode>, from: usize, to: usize) -> SpanMatcher {
    expect::span()
        .named("handle_echo")
        .with_kind(SpanKind::Server)
        .on_node(mesh.peer_id(to).unwrap())
        .with_remote_parent_from(
            expect::span()
                .named("send_echo")
                .with_kind(SpanKind::Client)
                .on_node(mesh.peer_id(from).unwrap()),
        )
}

#[test]
fn the_service_depends_on_nothing_of_the_kit() {
    let manifest = include_str!("../Cargo.toml");
    let dependencies = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    assert!(dependencies.contains("libp2p"), "{dependencies}");
    for line in dependencies.lines() {
        assert!(
            !line.trim_start().starts_with("p2p-otel"),
            "production code must not depend on a crate of ours: {line}"
        );
    }
}

/// Caller and handler each under their own capture, no network: the caller's
/// `span.context()` yields something to inject, and the handler's span takes it.
#[test]
fn two_captures_see_the_handler_under_the_callers_span() {
    let (caller, caller_spans) = capture::Builder::default()
        .opentelemetry_layer(true)
        .dispatch();
    let (handler, handler_spans) = capture::Builder::default()
        .opentelemetry_layer(true)
        .dispatch();
    let to = PeerId::random();
    let request = tracing::dispatcher::with_default(&caller, || {
        let (span, request) = p2p_otel_echo_service::outgoing(&to, "hello".to_owned());
        drop(span);
        request
    });
    assert!(
        request
            .headers
            .get("traceparent")
            .is_some_and(|t| t.starts_with("00-")),
        "{:?}",
        request.headers
    );
    let response =
        tracing::dispatcher::with_default(&handler, || p2p_otel_echo_service::handle(&request).1);
    assert_eq!(response.text, "HELLO");

    let (sent, handled) = (caller_spans.spans(), handler_spans.spans());
    assert_eq!((sent.len(), handled.len()), (1, 1), "{sent:?}\n{handled:?}");
    let parent = handled[0].parent.expect("the handler has a parent");
    assert_eq!(parent.span_id, sent[0].span_id);
    assert_eq!(parent.remote, Some(true));
    assert_eq!(handled[0].trace_id, sent[0].trace_id);
    assert_eq!(handled[0].kind, SpanKind::Server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_with_a_capture_per_node_sees_remote_parents_and_snapshots() {
    let (mesh, captures) = captured_mesh(2).await;
    assert_eq!(echo(&mesh, 0, 1, "hello").await.unwrap(), "HELLO");
    // The server's span closes after its response is on the way: the client may hold the
    // answer first. The barrier waits until the trace is done on every node.
    let union = captures
        .wait_for_distributed_trace("send_echo", WAIT)
        .await
        .unwrap();
    union
        .expect(&echo_edge(&mesh, 0, 1).with_attr("bytes", 5))
        .unwrap();
    union.expect_no_orphans().unwrap();
    insta::assert_snapshot!("echo_captured", union.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_each_capture_their_handler_under_a_remote_parent() {
    let (mesh, captures) = captured_mesh(3).await;
    echo(&mesh, 0, 1, "one").await.unwrap();
    echo(&mesh, 0, 2, "two").await.unwrap();
    for node in [1, 2] {
        // Closed after the response left: waited for, not read at once.
        let own = captures
            .get(node)
            .unwrap()
            .wait_for_span_named("handle_echo", WAIT)
            .await
            .unwrap();
        let handler = own.expect(&expect::span().named("handle_echo")).unwrap();
        assert_eq!(
            handler.record().parent.and_then(|p| p.remote),
            Some(true),
            "{own}"
        );
    }
    let union = captures.traces();
    assert_eq!(union.traces().len(), 2, "one trace per echo:\n{union}");
    union.expect_no_orphans().unwrap();
    union.expect(&echo_edge(&mesh, 0, 2)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_otlp_the_receiver_gets_the_same_tree() {
    let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
    let (mesh, telemetry) = exporting_mesh(2, &receiver).await;
    echo(&mesh, 1, 0, "over the wire").await.unwrap();
    telemetry.flush().await.unwrap();
    let trace = receiver
        .wait_for_complete_trace("handle_echo", WAIT)
        .await
        .unwrap()
        .with_render_settings(telemetry.render_settings());
    trace.expect(&echo_edge(&mesh, 1, 0)).unwrap();
    let captured = p2p_otel_testkit::TraceSet::new(
        (0..2).flat_map(|i| telemetry.get(i).unwrap().capture().spans()),
    )
    .with_render_settings(telemetry.render_settings());
    assert_eq!(captured.render(), trace.render());
}

/// A current-thread runtime whose clock is paused: time moves only when every task waits.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// One run of a simulated echo mesh: three nodes on a paused clock (virtual time), echoes
/// a quarter of a virtual second apart, every node capturing in virtual time. Returns the
/// timeline — each span's start and end in virtual nanoseconds, node, name and kind, in
/// the order they began — and the nodes' peer ids.
fn simulated_echoes(seed: u64) -> String {
    let runtime = paused_runtime();
    runtime.block_on(async {
        let origin = tokio::time::Instant::now();
        let captures = capture::PerNode::with_builder(
            p2p_otel_testkit::SpanCaptureLayer::builder().virtual_time(origin),
        )
        .service("echo", "1.0.0");
        let mesh = connected(mesh::Builder::new(3).seed(seed).capture_per_node(&captures)).await;
        for (from, to, text) in [
            (1, 0, "one"),
            (2, 1, "two"),
            (0, 2, "three"),
            (1, 2, "four"),
        ] {
            // Spacing in virtual time (the clock is paused): the echoes begin at known
            // instants; nothing is being waited for.
            tokio::time::sleep(Duration::from_millis(250)).await;
            echo(&mesh, from, to, text).await.unwrap();
        }
        let mut timeline = captures.timeline();
        timeline.push_str(&format!("{:?}\n", mesh.peer_ids()));
        mesh.shutdown().await;
        timeline
    })
}

/// Virtual time and a fixed event order make a small simulated mesh replay itself: the same
/// seed gives the same timeline byte for byte (times included, real ones would differ in
/// every run); another seed gives other peer ids, so the comparison can fail.
#[test]
fn a_simulated_mesh_replays_the_same_timeline_for_the_same_seed() {
    let first = simulated_echoes(5);
    assert!(
        first.matches("handle_echo").count() == 4 && first.contains("1767225600250000000 "),
        "four echoes, the first at 250 virtual ms:\n{first}"
    );
    assert_eq!(first, simulated_echoes(5));
    assert_ne!(first, simulated_echoes(6));
    eprintln!("{first}");
}

/// A modelled edge in virtual time: with 100 ms each way, an echo's client span on the
/// caller lasts exactly two round trips — one for multistream-select to agree on the new
/// stream's protocol, one for the request and its answer — and the handler's span, which
/// receives and answers at one instant, none. The run costs milliseconds of wall time.
#[test]
fn an_edge_of_100_ms_makes_the_callers_span_last_its_round_trips() {
    const ONE_WAY: Duration = Duration::from_millis(100);
    let runtime = paused_runtime();
    let wall = std::time::Instant::now();
    let (client, server) = runtime.block_on(async {
        let origin = tokio::time::Instant::now();
        let captures = capture::PerNode::with_builder(
            p2p_otel_testkit::SpanCaptureLayer::builder().virtual_time(origin),
        );
        let mesh = connected(
            mesh::Builder::new(2)
                .seed(3)
                .latency(ONE_WAY)
                .capture_per_node(&captures),
        )
        .await;
        // Twice: the first opens the connection's first stream, the second reuses nothing
        // but the connection (request-response opens a stream per request).
        for text in ["first", "second"] {
            echo(&mesh, 1, 0, text).await.unwrap();
        }
        let spans: Vec<_> = captures.handles().iter().flat_map(|h| h.spans()).collect();
        mesh.shutdown().await;
        let durations = |name: &str| -> Vec<u64> {
            spans
                .iter()
                .filter(|s| s.name == name)
                .filter_map(|s| s.duration_nanos())
                .collect()
        };
        (durations("send_echo"), durations("handle_echo"))
    });
    let round_trip = 2 * ONE_WAY.as_nanos() as u64;
    assert_eq!(server, [0, 0], "the handler answers at once");
    assert_eq!(
        client,
        [2 * round_trip, 2 * round_trip],
        "in ns of virtual time"
    );
    eprintln!(
        "send_echo lasted {:?} ns of virtual time ({} round trips each); {:?} of wall time",
        client,
        client[0] / round_trip,
        wall.elapsed()
    );
}

/// Per-node uplinks: node 1 sends over 100 ms, node 0 over 10 ms, so every exchange
/// between them takes 110 ms and an echo's client span its two round trips, 220 ms —
/// whichever node calls.
#[test]
fn a_slow_uplink_makes_every_edge_of_its_node_asymmetric() {
    let (from_slow, from_fast) = paused_runtime().block_on(async {
        let origin = tokio::time::Instant::now();
        let captures = capture::PerNode::with_builder(
            p2p_otel_testkit::SpanCaptureLayer::builder().virtual_time(origin),
        );
        let mesh = connected(
            mesh::Builder::new(2)
                .seed(4)
                .latency(Duration::from_millis(10))
                .node_link(1, mesh::Link::new(Duration::from_millis(100)))
                .capture_per_node(&captures),
        )
        .await;
        echo(&mesh, 1, 0, "from the slow node").await.unwrap();
        echo(&mesh, 0, 1, "from the fast node").await.unwrap();
        let mut spans: Vec<_> = captures.handles().iter().flat_map(|h| h.spans()).collect();
        spans.retain(|s| s.name == "send_echo");
        spans.sort_by_key(|s| s.start_unix_nanos);
        mesh.shutdown().await;
        let durations: Vec<u64> = spans.iter().filter_map(|s| s.duration_nanos()).collect();
        (durations[0], durations[1])
    });
    assert_eq!((from_slow, from_fast), (220_000_000, 220_000_000));
}

/// A lossy edge in virtual time: over 10 ms with 1 % of segments lost, the model sends a
/// lost segment again after a 200 ms retransmission timeout (doubling when lost again), and
/// the echoes that waited for one last longer than the lossless two round trips — never
/// shorter. The link stats count the retransmissions; without loss, on the same seed, every
/// echo lasts exactly 40 ms and none is counted. The same seed, the same losses to the
/// nanosecond.
#[test]
fn a_lossy_edge_shows_the_retransmissions_the_model_caused() {
    fn echoes(seed: u64, loss: f64) -> (Vec<u64>, mesh::LinkStats) {
        paused_runtime().block_on(async {
            let origin = tokio::time::Instant::now();
            let captures = capture::PerNode::with_builder(
                p2p_otel_testkit::SpanCaptureLayer::builder().virtual_time(origin),
            );
            let link = mesh::Link::new(Duration::from_millis(10)).loss(loss);
            let mesh = connected(
                mesh::Builder::new(2)
                    .seed(seed)
                    .link(link)
                    .capture_per_node(&captures),
            )
            .await;
            let before = mesh.link_stats();
            for n in 0..200 {
                echo(&mesh, 1, 0, &format!("echo {n}")).await.unwrap();
            }
            let after = mesh.link_stats();
            let mut spans: Vec<_> = captures.handles().iter().flat_map(|h| h.spans()).collect();
            spans.retain(|s| s.name == "send_echo");
            spans.sort_by_key(|s| s.start_unix_nanos);
            mesh.shutdown().await;
            let mut during = after;
            during.segments -= before.segments;
            during.bytes -= before.bytes;
            during.retransmissions -= before.retransmissions;
            (
                spans.iter().filter_map(|s| s.duration_nanos()).collect(),
                during,
            )
        })
    }
    const LOSSLESS: u64 = 40_000_000;
    let (clean, clean_stats) = echoes(9, 0.0);
    assert!(clean.iter().all(|d| *d == LOSSLESS), "{clean:?}");
    assert_eq!(clean_stats.retransmissions, 0);
    let (lossy, stats) = echoes(9, 0.01);
    assert_eq!(lossy.len(), 200);
    assert!(lossy.iter().all(|d| *d >= LOSSLESS), "{lossy:?}");
    let slow: Vec<u64> = lossy.iter().filter(|d| **d > LOSSLESS).copied().collect();
    assert!(stats.retransmissions > 0, "{stats:?}");
    // A slowed echo waited for a lost segment of its own, or for one lost just before it
    // (the stream holds what follows a loss).
    assert!(!slow.is_empty(), "{stats:?}");
    assert_eq!(
        (lossy.clone(), stats),
        echoes(9, 0.01),
        "the same seed, the same losses"
    );
    eprintln!(
        "{} segments, {} retransmitted; {} of 200 echoes slowed: {:?} ms",
        stats.segments,
        stats.retransmissions,
        slow.len(),
        slow.iter().map(|d| d / 1_000_000).collect::<Vec<_>>()
    );
}

/// A partition and its heal in virtual time: cut, the echo fails at once (no connection,
/// and the block list refuses a new one); healed, the nodes reconnect over the 50 ms edge
/// and the echo answers — in virtual time measured exactly, whatever the machine's load.
#[test]
fn a_partition_and_its_heal_pass_in_virtual_time() {
    let (cut_at, healed_at) = partition_and_heal();
    assert!(
        cut_at < healed_at && healed_at < WAIT,
        "{cut_at:?} {healed_at:?}"
    );
    // The same run again: the same virtual times to the nanosecond.
    assert_eq!((cut_at, healed_at), partition_and_heal());
    eprintln!(
        "partitioned and failed by {cut_at:?}, healed and answered by {healed_at:?} (virtual)"
    );
}

/// When, in virtual time from the cut, the echo failed and the healed echo answered.
fn partition_and_heal() -> (Duration, Duration) {
    let runtime = paused_runtime();
    runtime.block_on(async {
        let mut mesh = connected(
            mesh::Builder::new(2)
                .seed(4)
                .latency(Duration::from_millis(50)),
        )
        .await;
        let start = tokio::time::Instant::now();
        mesh.partition(&[&[0], &[1]], WAIT).await.unwrap();
        let cut = echo(&mesh, 1, 0, "cut").await;
        assert!(cut.is_err(), "{cut:?}");
        let cut_at = start.elapsed();
        mesh.heal(WAIT).await.unwrap();
        assert_eq!(echo(&mesh, 1, 0, "back").await.unwrap(), "BACK");
        let healed_at = start.elapsed();
        mesh.shutdown().await;
        (cut_at, healed_at)
    })
}

/// An adopter's first contract: drafted from one run of the service over OTLP, it loads,
/// keeps the run that made it, and says what it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_drafted_from_a_run_keeps_that_run() {
    let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
    let (mesh, telemetry) = exporting_mesh(2, &receiver).await;
    for text in ["one", "two"] {
        echo(&mesh, 1, 0, text).await.unwrap();
    }
    telemetry.flush().await.unwrap();
    receiver
        .wait_for_complete_trace("handle_echo", WAIT)
        .await
        .unwrap();
    let traces = receiver.traces();
    let draft = p2p_otel_testkit::contract::infer(
        &traces,
        &receiver.metric_points(),
        &receiver.log_records(),
        None,
    )
    .unwrap();
    let spans = &draft.files()[1].1;
    assert!(spans.contains("remote_parent: true"), "{spans}");
    let contract = draft.load().unwrap();
    let report = contract.check(&traces, &[], &[]);
    assert!(!report.has_violations(), "{report}\n{spans}");
    eprintln!(
        "drafted {} lines from {} spans",
        draft.line_count(),
        traces.span_count()
    );
    mesh.shutdown().await;
}

/// The echo service as the sequence harness drives it: its model is "you get your text
/// back in upper case".
struct EchoSystem {
    mesh: Mesh<EchoNode>,
    telemetry: PerNode,
}

#[derive(Clone, Debug)]
struct Send {
    from: usize,
    to: usize,
    text: String,
}

impl System for EchoSystem {
    type Operation = Send;
    type Outcome = Result<String, String>;

    async fn run(&mut self, op: &Send) -> Self::Outcome {
        echo(&self.mesh, op.from, op.to, &op.text).await
    }

    fn check(&mut self, op: &Send, outcome: &Self::Outcome) -> Result<(), String> {
        match outcome {
            Ok(text) if *text == op.text.to_uppercase() => Ok(()),
            other => Err(format!(
                "expected {:?}, got {other:?}",
                op.text.to_uppercase()
            )),
        }
    }

    fn expected_root(&self, op: &Send, outcome: &Self::Outcome) -> Option<Executed> {
        Some(Executed {
            instance: self.mesh.peer_id(op.from).ok()?.to_string(),
            root: "send_echo",
            failed: outcome.is_err(),
        })
    }

    async fn flush(&self) -> Result<(), String> {
        self.telemetry.flush().await.map_err(|e| e.to_string())
    }

    fn captures(&self) -> Vec<CaptureHandle> {
        (0..3)
            .filter_map(|i| self.telemetry.get(i))
            .map(|t| t.capture().clone())
            .collect()
    }
}

fn arb_sends() -> impl Strategy<Value = Vec<Send>> {
    let send = (0usize..3, 1usize..3, "[a-z ]{0,8}").prop_map(|(from, step, text)| Send {
        from,
        to: (from + step) % 3,
        text,
    });
    proptest::collection::vec(send, 1..6)
}

proptest! {
    #![proptest_config(p2p_otel_testkit::strategy::config(16, "proptest-regressions/echo.txt"))]

    #[test]
    fn generated_echo_sequences_hold_the_model_and_the_invariants(sends in arb_sends()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let result = runtime.block_on(async {
            let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
            let (mesh, telemetry) = exporting_mesh(3, &receiver).await;
            let harness = Harness::new().handler_joins("handle_echo", "send_echo").render_settings(mesh.render_settings());
            let mut system = EchoSystem { mesh, telemetry };
            let verified = harness.run(&mut system, &sends, &receiver).await;
            system.mesh.shutdown().await;
            verified.map(|v| v.executed.len())
        });
        prop_assert_eq!(result, Ok(sends.len()));
    }
}

/// The echo system on a simulated mesh, with a deliberately broken property for the
/// replay test: when `within` is set, every echo must answer within it (virtual time) —
/// false on a lossy link, whenever one of the echo's segments is lost.
struct SimulatedEchoSystem {
    echo: EchoSystem,
    within: Option<Duration>,
    last: Duration,
}

impl System for SimulatedEchoSystem {
    type Operation = Send;
    type Outcome = Result<String, String>;

    async fn run(&mut self, op: &Send) -> Self::Outcome {
        let started = tokio::time::Instant::now();
        let outcome = self.echo.run(op).await;
        self.last = started.elapsed();
        outcome
    }

    fn check(&mut self, op: &Send, outcome: &Self::Outcome) -> Result<(), String> {
        self.echo.check(op, outcome)?;
        match self.within {
            Some(within) if self.last > within => Err(format!(
                "answered in {:?} of virtual time, more than {within:?}",
                self.last
            )),
            _ => Ok(()),
        }
    }

    fn expected_root(&self, op: &Send, outcome: &Self::Outcome) -> Option<Executed> {
        self.echo.expected_root(op, outcome)
    }

    async fn flush(&self) -> Result<(), String> {
        self.echo.flush().await
    }

    fn captures(&self) -> Vec<CaptureHandle> {
        self.echo.captures()
    }
}

/// One sequence on a simulated echo mesh: three nodes over a 10 ms link that loses 1 % of
/// its segments, its losses, peer ids and trace ids drawn from `seed`, on a paused runtime
/// of a thread of its own whose every random draw is the seed's (`mesh::simulate`),
/// telemetry handed to a receiver in process. On failure: the
/// seed, the harness's verdict, and the timeline of what arrived (virtual times).
fn simulated_sequence(
    seed: u64,
    sends: &[Send],
    within: Option<Duration>,
) -> Result<usize, String> {
    let sends = sends.to_vec();
    mesh::simulate(seed, move || async move {
        let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
        let telemetry = PerNode::new(Protocol::InProcess, &receiver)
            .service("echo", "1.0.0")
            .virtual_time(tokio::time::Instant::now())
            .ids_from_seed(seed);
        let link = mesh::Link::new(Duration::from_millis(10)).loss(0.01);
        let mesh = connected(
            mesh::Builder::new(3)
                .seed(seed)
                .link(link)
                .telemetry_per_node(&telemetry),
        )
        .await;
        let settings = mesh.render_settings();
        let harness = Harness::new()
            .handler_joins("handle_echo", "send_echo")
            .render_settings(settings.clone());
        let mut system = SimulatedEchoSystem {
            echo: EchoSystem { mesh, telemetry },
            within,
            last: Duration::ZERO,
        };
        let verified = harness.run(&mut system, &sends, &receiver).await;
        let _ = system.echo.telemetry.flush().await;
        let timeline = receiver.traces().with_render_settings(settings).timeline();
        system.echo.mesh.shutdown().await;
        verified
            .map(|v| v.executed.len())
            .map_err(|failure| format!("seed {seed}: {failure}\ntimeline:\n{timeline}"))
    })
    .unwrap()
}

proptest! {
    #![proptest_config(p2p_otel_testkit::strategy::config(16, "proptest-regressions/echo.txt"))]

    /// The seed is part of the case: a failure prints it, and the case reruns exactly.
    #[test]
    fn generated_sequences_hold_on_a_simulated_lossy_mesh(seed in any::<u64>(), sends in arb_sends()) {
        prop_assert_eq!(simulated_sequence(seed, &sends, None), Ok(sends.len()));
    }
}

/// A deliberately broken property — "every echo answers within its lossless 40 ms" on a
/// link that loses 1 % of its segments — fails; proptest shrinks it and prints the failing
/// case, the seed with it; running that case again prints the identical failure, virtual
/// times included, in another thread and runtime.
#[test]
fn a_broken_property_fails_with_its_seed_and_its_rerun_prints_the_same_failure() {
    use proptest::test_runner::{
        Config as RunnerConfig, RngAlgorithm, TestError, TestRng, TestRunner,
    };
    let config = RunnerConfig {
        cases: 64,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = (any::<u64>(), arb_sends());
    let within = Some(Duration::from_millis(40));
    let result = runner.run(&strategy, |(seed, sends)| {
        match simulated_sequence(seed, &sends, within) {
            Ok(_) => Ok(()),
            Err(failure) => Err(TestCaseError::fail(failure)),
        }
    });
    let Err(TestError::Fail(reason, (seed, sends))) = result else {
        panic!("the broken property held in 64 cases: {result:?}");
    };
    let printed = reason.message().to_owned();
    assert!(printed.starts_with(&format!("seed {seed}: ")), "{printed}");
    assert!(printed.contains("more than 40ms"), "{printed}");
    let again = simulated_sequence(seed, &sends, within).unwrap_err();
    assert_eq!(
        again, printed,
        "the rerun of seed {seed} prints the same failure"
    );
    eprintln!("shrunk to seed {seed}, {sends:?}:\n{printed}");
}
