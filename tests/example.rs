//! A service that is not the marketplace — a tiny libp2p request-response echo whose
//! requests carry W3C trace context — exercised in the kit's four styles: in-process
//! capture with matchers and a snapshot; over OTLP; a 3-node memory mesh with remote
//! parents in every node's own capture; generated sequences through the harness.

mod echo {
    //! The service: `send_echo` (client) on the caller, `handle_echo` (server) on the
    //! callee under a remote parent, the text echoed in upper case.

    use std::collections::HashMap;

    use libp2p::request_response::{self, cbor, OutboundRequestId, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{PeerId, StreamProtocol};
    use p2p_otel_testkit::mesh::{Mesh, MeshBehaviourEvent, MeshError, Node, NodeEvent, NodeSwarm};
    use p2p_otel_testkit::propagation::{self, TraceContext};
    use serde::{Deserialize, Serialize};
    use tokio::sync::oneshot;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Request {
        pub text: String,
        pub trace: TraceContext,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        pub text: String,
    }

    pub type Behaviour = cbor::Behaviour<Request, Response>;
    type Reply = oneshot::Sender<Result<String, String>>;

    pub struct Echo {
        to: PeerId,
        text: String,
        reply: Reply,
    }

    /// One node's logic: requests in flight keep their client span open until answered.
    #[derive(Default)]
    pub struct EchoNode {
        pending: HashMap<OutboundRequestId, (tracing::Span, Reply)>,
    }

    pub fn behaviour() -> Behaviour {
        cbor::Behaviour::new(
            [(StreamProtocol::new("/echo/1"), ProtocolSupport::Full)],
            request_response::Config::default(),
        )
    }

    impl Node for EchoNode {
        type Behaviour = Behaviour;
        type Command = Echo;
        type Observations = ();

        fn on_command(&mut self, swarm: &mut NodeSwarm<Behaviour>, Echo { to, text, reply }: Echo) {
            let span = tracing::info_span!(
                "send_echo",
                otel.kind = "client",
                to = %to,
                otel.status_code = tracing::field::Empty,
            );
            let trace = TraceContext::of(&span);
            let id = swarm
                .behaviour_mut()
                .app
                .send_request(&to, Request { text, trace });
            self.pending.insert(id, (span, reply));
        }

        fn on_swarm_event(
            &mut self,
            swarm: &mut NodeSwarm<Behaviour>,
            event: NodeEvent<Behaviour>,
        ) {
            let SwarmEvent::Behaviour(MeshBehaviourEvent::App(event)) = event else {
                return;
            };
            match event {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let span = tracing::info_span!(
                            "handle_echo",
                            otel.kind = "server",
                            bytes = request.text.len() as i64,
                        );
                        let _ = propagation::set_parent(&span, &request.trace);
                        let text = request.text.to_uppercase();
                        span.in_scope(|| {
                            let _ = swarm
                                .behaviour_mut()
                                .app
                                .send_response(channel, Response { text });
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some((span, reply)) = self.pending.remove(&request_id) {
                            // Close the span before answering: whoever awaits the answer
                            // may read the spans at once.
                            drop(span);
                            let _ = reply.send(Ok(response.text));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    if let Some((span, reply)) = self.pending.remove(&request_id) {
                        span.record("otel.status_code", "error");
                        drop(span);
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                _ => {}
            }
        }
    }

    /// Node `from` echoes `text` off node `to`.
    pub async fn echo(
        mesh: &Mesh<EchoNode>,
        from: usize,
        to: usize,
        text: &str,
    ) -> Result<String, String> {
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
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use echo::{echo, EchoNode};
use p2p_otel_testkit::mesh::{self, Mesh, Topology};
use p2p_otel_testkit::model::SpanKind;
use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
use p2p_otel_testkit::strategy::invariants::Executed;
use p2p_otel_testkit::strategy::sequence::{Harness, System};
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::tree::expect;
use p2p_otel_testkit::{capture, CaptureHandle, SpanSource, TraceSet};
use proptest::prelude::*;

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

/// A connected echo mesh whose nodes each capture into their own handle.
async fn captured_mesh(n: usize) -> (Mesh<EchoNode>, Arc<Mutex<Vec<CaptureHandle>>>) {
    let captures = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&captures);
    let mut mesh = mesh::Builder::new(n)
        .dispatch_per_node(move |_, peer| {
            let (dispatch, handle) = capture::Builder::default()
                .resource_attribute("service.instance.id", peer.to_string())
                .dispatch();
            sink.lock().unwrap().push(handle);
            Ok(dispatch)
        })
        .start(|_| Ok((echo::behaviour(), EchoNode::default())))
        .await
        .unwrap();
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    (mesh, captures)
}

/// An echo mesh whose nodes export over OTLP/gRPC to `receiver`.
async fn exporting_mesh(n: usize, receiver: &OtlpReceiver) -> (Mesh<EchoNode>, PerNode) {
    let telemetry = PerNode::new(Protocol::Grpc, receiver).service("echo", "1.0.0");
    let mut mesh = mesh::Builder::new(n)
        .telemetry_per_node(&telemetry)
        .start(|_| Ok((echo::behaviour(), EchoNode::default())))
        .await
        .unwrap();
    mesh.connect_topology(Topology::Full, WAIT).await.unwrap();
    (mesh, telemetry)
}

/// `handle_echo` on node `to`, a server span under `send_echo` (client) on node `from`.
fn echo_edge(mesh: &Mesh<EchoNode>, from: usize, to: usize) -> p2p_otel_testkit::tree::SpanMatcher {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_capture_matchers_and_a_snapshot() {
    let (mesh, captures) = captured_mesh(2).await;
    assert_eq!(echo(&mesh, 0, 1, "hello").await.unwrap(), "HELLO");
    let captures = captures.lock().unwrap().clone();
    // The server's span closes after its response is on the way: the client may hold the
    // answer first, so wait for the span rather than read at once.
    captures[1]
        .wait_for_span_named("handle_echo", WAIT)
        .await
        .unwrap();
    let union = TraceSet::new(captures.iter().flat_map(CaptureHandle::spans))
        .with_render_settings(mesh.render_settings());
    union
        .expect(&echo_edge(&mesh, 0, 1).with_attr("bytes", 5))
        .unwrap();
    union.expect_no_orphans().unwrap();
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("example_echo_captured", union.render());
    });
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
    let captured = TraceSet::new((0..2).flat_map(|i| telemetry.get(i).unwrap().capture().spans()))
        .with_render_settings(telemetry.render_settings());
    assert_eq!(captured.render(), trace.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_each_capture_their_handler_under_a_remote_parent() {
    let (mesh, captures) = captured_mesh(3).await;
    echo(&mesh, 0, 1, "one").await.unwrap();
    echo(&mesh, 0, 2, "two").await.unwrap();
    let captures = captures.lock().unwrap().clone();
    for node in [1, 2] {
        // Closed after the response left: waited for, not read at once.
        let own = captures[node]
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
    let union = TraceSet::new(captures.iter().flat_map(CaptureHandle::spans));
    assert_eq!(union.traces().len(), 2, "one trace per echo:\n{union}");
    union.expect_no_orphans().unwrap();
    union.expect(&echo_edge(&mesh, 0, 2)).unwrap();
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
    #![proptest_config(p2p_otel_testkit::strategy::config(16, "proptest-regressions/example.txt"))]

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
