//! libp2p memory-transport meshes: one test binary for this area.

use std::time::Duration;

use libp2p::swarm::dummy;
use p2p_otel_testkit::capture::SpanCaptureLayer;
use p2p_otel_testkit::mesh::{self, Mesh, MeshError, NodeState, Passive, Security, Topology};
use p2p_otel_testkit::CaptureHandle;
use tracing_subscriber::layer::SubscriberExt;

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

type DummyMesh = Mesh<Passive<dummy::Behaviour>>;

async fn dummy_mesh(n: usize, security: Security) -> DummyMesh {
    mesh::Builder::new(n)
        .seed(42)
        .security(security)
        .start(|_| Ok((dummy::Behaviour, Passive::default())))
        .await
        .unwrap()
}

fn degree(states: &[NodeState], index: usize) -> usize {
    states[index].connected.len()
}

#[tokio::test]
async fn peer_ids_come_from_the_seed() {
    let a = dummy_mesh(3, Security::Noise).await;
    let b = dummy_mesh(3, Security::Noise).await;
    assert_eq!(a.peer_ids(), b.peer_ids(), "same seed, same identities");
    let c: DummyMesh = mesh::Builder::new(3)
        .seed(43)
        .start(|_| Ok((dummy::Behaviour, Passive::default())))
        .await
        .unwrap();
    assert_ne!(a.peer_ids(), c.peer_ids());
    let distinct: std::collections::HashSet<_> = a.peer_ids().into_iter().collect();
    assert_eq!(distinct.len(), 3);
    assert_ne!(
        a.addr(0).unwrap(),
        b.addr(0).unwrap(),
        "each mesh listens on its own addresses"
    );
}

#[tokio::test]
async fn topologies_connect_exactly_their_edges() {
    for (topology, n, degrees) in [
        (Topology::Full, 4, vec![3, 3, 3, 3]),
        (Topology::Star, 4, vec![3, 1, 1, 1]),
        (Topology::Line, 4, vec![1, 2, 2, 1]),
        (Topology::Ring, 5, vec![2, 2, 2, 2, 2]),
    ] {
        let mut mesh = dummy_mesh(n, Security::Plaintext).await;
        mesh.connect_topology(topology, WAIT).await.unwrap();
        let states = mesh.states();
        let got: Vec<usize> = (0..n).map(|i| degree(&states, i)).collect();
        assert_eq!(got, degrees, "{topology:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_nodes_in_a_ring_and_a_random_graph() {
    let mut ring = dummy_mesh(16, Security::Noise).await;
    ring.connect_topology(Topology::Ring, WAIT).await.unwrap();
    assert!(ring.states().iter().all(|s| s.connected.len() == 2));
    let mut random = dummy_mesh(16, Security::Plaintext).await;
    random
        .connect_topology(Topology::Random { degree: 3, seed: 1 }, WAIT)
        .await
        .unwrap();
    assert!(random.states().iter().all(|s| s.connected.len() >= 3));
}

#[tokio::test]
async fn partition_cuts_and_heal_restores() {
    let mut mesh = dummy_mesh(3, Security::Noise).await;
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    let peers = mesh.peer_ids();
    mesh.partition(&[&[0], &[1, 2]], WAIT).await.unwrap();
    let states = mesh.states();
    assert!(states[0].connected.is_empty());
    assert_eq!(states[1].connected.iter().collect::<Vec<_>>(), [&peers[2]]);
    let refused = mesh.connect(0, 1).await.unwrap_err();
    assert!(matches!(refused, MeshError::Dial { .. }), "{refused}");
    mesh.heal(WAIT).await.unwrap();
    assert!(mesh.states().iter().all(|s| s.connected.len() == 2));
}

#[tokio::test]
async fn disconnect_closes_a_connection_and_forgets_the_edge() {
    let mut mesh = dummy_mesh(3, Security::Plaintext).await;
    mesh.connect_topology(Topology::Line, WAIT).await.unwrap();
    let peers = mesh.peer_ids();
    mesh.disconnect(1, 2).await.unwrap();
    mesh.wait_until("1 and 2 apart", WAIT, |s| {
        !s[2].connected.contains(&peers[1])
    })
    .await
    .unwrap();
    mesh.kill(2).await.unwrap();
    mesh.restart(2, WAIT).await.unwrap();
    assert!(
        mesh.states()[2].connected.is_empty(),
        "a forgotten edge is not restored on restart"
    );
}

#[tokio::test]
async fn a_killed_node_is_gone_and_restarts_with_its_identity() {
    let mut mesh = dummy_mesh(3, Security::Noise).await;
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    let (peer, old_addr) = (mesh.peer_id(0).unwrap(), mesh.addr(0).unwrap());
    mesh.kill(0).await.unwrap();
    assert!(!mesh.is_alive(0));
    assert!(matches!(
        mesh.node(0).unwrap_err(),
        MeshError::NodeStopped { index: 0 }
    ));
    mesh.wait_until("the others to see node 0 gone", WAIT, |states| {
        !states[1].connected.contains(&peer) && !states[2].connected.contains(&peer)
    })
    .await
    .unwrap();
    mesh.restart(0, WAIT).await.unwrap();
    assert_eq!(mesh.peer_id(0).unwrap(), peer);
    assert_ne!(mesh.addr(0).unwrap(), old_addr, "a new listener");
    let states = mesh.states();
    assert!(states[0].alive);
    assert!(states[1].connected.contains(&peer) && states[2].connected.contains(&peer));
}

/// libp2p's memory transport keeps a listener's port in a table of the process until the
/// listener is removed; a killed node and a shut-down mesh give theirs back, so a simulation
/// replaying from the same seed can draw the same ports again.
#[tokio::test]
async fn a_stopped_node_gives_its_memory_port_back() {
    use libp2p::core::transport::{ListenerId, MemoryTransport, Transport};
    let listen_again = |addr: libp2p::Multiaddr| {
        let mut transport = MemoryTransport::default();
        let id = ListenerId::next();
        let listened = transport.listen_on(id, addr.clone()).map(|_| ());
        transport.remove_listener(id);
        listened.map_err(|e| format!("{addr}: {e}"))
    };
    let mut mesh = dummy_mesh(2, Security::Plaintext).await;
    let (killed, shut_down) = (mesh.addr(0).unwrap(), mesh.addr(1).unwrap());
    assert!(
        listen_again(killed.clone()).is_err(),
        "taken while node 0 runs"
    );
    mesh.kill(0).await.unwrap();
    listen_again(killed).unwrap();
    mesh.shutdown().await;
    listen_again(shut_down).unwrap();
}

#[tokio::test]
async fn a_wait_that_cannot_hold_times_out_with_every_nodes_state() {
    let mesh = dummy_mesh(2, Security::Plaintext).await;
    let error = mesh
        .wait_until(
            "a connection that nobody dials",
            Duration::from_millis(50),
            |states| states.iter().any(|s| !s.connected.is_empty()),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("waiting for a connection that nobody dials"),
        "{message}"
    );
    assert!(
        message.contains("node 0 ") && message.contains("node 1 "),
        "{message}"
    );
    assert!(matches!(
        mesh.node(7).unwrap_err(),
        MeshError::NoSuchNode { index: 7, len: 2 }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_traces_into_its_own_dispatch() {
    let handles: std::sync::Arc<std::sync::Mutex<Vec<(usize, CaptureHandle)>>> = Default::default();
    let sink = handles.clone();
    let mut mesh: DummyMesh = mesh::Builder::new(3)
        .dispatch_per_node(move |index, peer| {
            let (layer, handle) = SpanCaptureLayer::builder()
                .resource_attribute("service.instance.id", peer.to_string())
                .build();
            sink.lock().unwrap().push((index, handle));
            Ok(tracing::Dispatch::new(
                tracing_subscriber::registry().with(layer),
            ))
        })
        .start(|_| Ok((dummy::Behaviour, Passive::default())))
        .await
        .unwrap();
    mesh.connect(0, 1).await.unwrap();
    let peers = mesh.peer_ids();
    mesh.wait_until("0 and 1 connected", WAIT, |s| {
        s[1].connected.contains(&peers[0])
    })
    .await
    .unwrap();
    let handles = handles.lock().unwrap().clone();
    let open = |index: usize| -> Vec<String> {
        let (_, handle) = handles.iter().find(|(i, _)| *i == index).unwrap();
        handle.open_spans().into_iter().map(|s| s.name).collect()
    };
    assert!(
        open(0).contains(&"new_established_connection".to_owned()),
        "{:?}",
        open(0)
    );
    assert!(
        open(1).contains(&"new_established_connection".to_owned()),
        "{:?}",
        open(1)
    );
    assert!(
        open(2).is_empty(),
        "node 2 connected to nobody: {:?}",
        open(2)
    );
}

/// Failures speak of nodes the way the trees beside them do: `[node 1]`, never a raw peer
/// id in the message and `[peer 2]` in the tree.
#[tokio::test]
async fn an_invariant_failure_names_nodes_as_the_trees_it_prints_do() {
    use p2p_otel_testkit::model::{Resource, SpanId, SpanRecord, TraceId, Value};
    use p2p_otel_testkit::strategy::invariants::{self, Executed};
    use p2p_otel_testkit::TraceSet;
    use std::sync::Arc;

    let mesh = dummy_mesh(2, Security::Plaintext).await;
    let peers = mesh.peer_ids();
    // Node 0 ran a search; node 1 was asked to publish and produced nothing.
    let mut search = SpanRecord::new(
        TraceId::from_bytes([1; 16]),
        SpanId::from_bytes([1; 8]),
        "p2p_search",
    );
    let mut resource = Resource::default();
    resource.attributes.insert(
        "service.instance.id".into(),
        Value::from(peers[0].to_string()),
    );
    search.resource = Arc::new(resource);
    search.start_unix_nanos = 1;
    search.end_unix_nanos = Some(2);
    let traces = TraceSet::new([search]).with_render_settings(mesh.render_settings());
    let executed = [Executed {
        instance: peers[1].to_string(),
        root: "p2p_publish",
        failed: false,
    }];
    let message = invariants::roots_match_operations(&traces, &executed)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("node [node 1]: 1 operation(s) but 0 root span(s)"),
        "{message}"
    );
    assert!(
        message.contains("node [node 0] has 1 root span(s) but ran nothing"),
        "{message}"
    );
    assert!(
        message.contains("service.instance.id = [node 0]"),
        "the tree: {message}"
    );
    for peer in &peers {
        assert!(
            !message.contains(&peer.to_string()),
            "a raw peer id in: {message}"
        );
    }
    mesh.shutdown().await;
}

/// A node logic that dials whatever peer it is told to, as Kademlia dials what it learns.
mod dialer {
    use libp2p::swarm::dial_opts::DialOpts;
    use libp2p::swarm::dummy;
    use libp2p::{Multiaddr, PeerId};
    use p2p_otel_testkit::mesh::{Node, NodeEvent, NodeSwarm};
    use tokio::sync::oneshot;

    /// Dial `peer` at the address; answered with what `Swarm::dial` said.
    pub type Dial = (PeerId, Multiaddr, oneshot::Sender<Result<(), String>>);

    pub struct Dialer;

    impl Node for Dialer {
        type Behaviour = dummy::Behaviour;
        type Command = Dial;
        type Observations = ();
        fn on_swarm_event(
            &mut self,
            _: &mut NodeSwarm<dummy::Behaviour>,
            _: NodeEvent<dummy::Behaviour>,
        ) {
        }
        fn on_command(
            &mut self,
            swarm: &mut NodeSwarm<dummy::Behaviour>,
            (peer, addr, reply): Dial,
        ) {
            let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
            let _ = reply.send(swarm.dial(opts).map_err(|e| format!("{e:?}")));
        }
    }
}

async fn dial_beyond_the_line(
    discovery: mesh::Discovery,
) -> (Mesh<dialer::Dialer>, Result<(), String>) {
    let mut mesh = mesh::Builder::new(3)
        .seed(7)
        .security(Security::Plaintext)
        .discovery(discovery)
        .start(|_| Ok((dummy::Behaviour, dialer::Dialer)))
        .await
        .unwrap();
    mesh.connect_topology(Topology::Line, WAIT).await.unwrap();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let far = (mesh.peer_id(2).unwrap(), mesh.addr(2).unwrap(), reply);
    mesh.node(0).unwrap().send(far).await.unwrap();
    let outcome = answer.await.unwrap();
    (mesh, outcome)
}

#[tokio::test]
async fn with_discovery_off_a_dial_beyond_the_edges_is_denied() {
    let (mesh, outcome) = dial_beyond_the_line(mesh::Discovery::Off).await;
    let error = outcome.expect_err("node 0 and node 2 share no edge");
    assert!(
        error.contains("Denied") && error.contains("NotAllowed"),
        "{error}"
    );
    let states = mesh.states();
    assert_eq!((degree(&states, 0), degree(&states, 2)), (1, 1));
}

#[tokio::test]
async fn with_discovery_open_a_dial_beyond_the_edges_connects() {
    let (mesh, outcome) = dial_beyond_the_line(mesh::Discovery::Open).await;
    outcome.unwrap();
    let peers = mesh.peer_ids();
    mesh.wait_until("node 0 connected to node 2", WAIT, |s| {
        s[0].connected.contains(&peers[2]) && s[2].connected.contains(&peers[0])
    })
    .await
    .unwrap();
}

/// A task a node's logic starts keeps the node's dispatch when started with `mesh::spawn`:
/// its spans are in that node's capture, as the logic's own are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_a_node_spawns_traces_into_that_node() {
    use p2p_otel_testkit::capture::PerNode;
    use p2p_otel_testkit::mesh::{NodeEvent, NodeSwarm};
    use p2p_otel_testkit::SpanSource;

    /// On each command, does its work in a task of its own.
    struct Background;
    impl mesh::Node for Background {
        type Behaviour = dummy::Behaviour;
        type Command = ();
        type Observations = ();
        fn on_swarm_event(
            &mut self,
            _: &mut NodeSwarm<dummy::Behaviour>,
            _: NodeEvent<dummy::Behaviour>,
        ) {
        }
        fn on_command(&mut self, _: &mut NodeSwarm<dummy::Behaviour>, (): ()) {
            mesh::spawn(async {
                tracing::info_span!("background_work").in_scope(|| {});
            });
        }
    }

    let captures = PerNode::new();
    let mesh: Mesh<Background> = mesh::Builder::new(2)
        .capture_per_node(&captures)
        .start(|_| Ok((dummy::Behaviour, Background)))
        .await
        .unwrap();
    mesh.node(1).unwrap().send(()).await.unwrap();
    let traces = captures
        .wait_for_span_named("background_work", WAIT)
        .await
        .unwrap();
    assert_eq!(traces.span_count(), 1, "{}", traces.render());
    let on_node_1 = captures.get(1).unwrap().spans();
    assert!(
        on_node_1.iter().any(|s| s.name == "background_work"),
        "the task's span is node 1's: {on_node_1:?}"
    );
    assert!(captures
        .get(0)
        .unwrap()
        .spans()
        .iter()
        .all(|s| s.name != "background_work"));
}
