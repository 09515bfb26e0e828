//! Capture equals wire: what a test sees in-process is what the exporter sends. Generated
//! span trees — every field type, late records, events, links, errors, remote parents set
//! through the kit's propagation and through tracing-opentelemetry's `set_parent` — are
//! emitted once through a `Telemetry` dispatch, and the in-process capture must render
//! exactly like what the receiver got over OTLP/gRPC, OTLP/HTTP protobuf and OTLP/HTTP JSON,
//! with the same trace ids, span ids and parents.
//!
//! `PROPTEST_CASES=N` raises the depth (256 by default); failures are persisted in
//! `proptest-regressions/fidelity.txt`.

use std::sync::OnceLock;
use std::time::Duration;

use p2p_otel_testkit::model::{SpanRecord, Value};
use p2p_otel_testkit::propagation::{self, TraceContext};
use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
use p2p_otel_testkit::strategy;
use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
use p2p_otel_testkit::tree::{attr, expect, RenderSettings};
use p2p_otel_testkit::{capture, SpanSource};
use proptest::prelude::*;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const WAIT: Duration = Duration::from_secs(20);

/// One generated field value, of each type tracing can record.
#[derive(Clone, Debug)]
enum Field {
    Int(i64),
    Unsigned(u64),
    Double(f64),
    Bool(bool),
    Text(String),
    Debug(Vec<u8>),
}

/// One generated span: fields at creation and recorded late, events, an error, children.
#[derive(Clone, Debug)]
struct Node {
    name: String,
    at_creation: Option<Field>,
    late: Vec<Field>,
    events: Vec<(String, Option<Field>)>,
    error: bool,
    follows_previous: bool,
    children: Vec<Node>,
}

/// A remote parent for a root, and through which API it is set.
#[derive(Clone, Debug)]
struct Remote {
    trace_id: u128,
    span_id: u64,
    through_tracing_opentelemetry: bool,
}

#[derive(Clone, Debug)]
struct Case {
    roots: Vec<(Node, Option<Remote>)>,
}

fn arb_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        any::<i64>().prop_map(Field::Int),
        prop_oneof![0u64..1000, (i64::MAX as u64)..=u64::MAX].prop_map(Field::Unsigned),
        // OTLP JSON has no NaN or infinities: finite doubles only.
        (-1e12f64..1e12).prop_map(Field::Double),
        any::<bool>().prop_map(Field::Bool),
        "\\PC{0,12}".prop_map(Field::Text),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Field::Debug),
    ]
}

fn arb_node() -> impl Strategy<Value = Node> {
    let leaf = (
        "[a-z_]{1,10}",
        proptest::option::of(arb_field()),
        proptest::collection::vec(arb_field(), 0..3),
        proptest::collection::vec(("[a-z ]{1,10}", proptest::option::of(arb_field())), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, at_creation, late, events, error, follows_previous)| Node {
                name,
                at_creation,
                late,
                events,
                error,
                follows_previous,
                children: Vec::new(),
            },
        );
    leaf.prop_recursive(3, 8, 3, |inner| {
        (inner.clone(), proptest::collection::vec(inner, 0..3)).prop_map(|(mut node, children)| {
            node.children = children;
            node
        })
    })
}

fn arb_case() -> impl Strategy<Value = Case> {
    let remote = (1u128.., 1u64.., any::<bool>()).prop_map(|(trace_id, span_id, through)| Remote {
        trace_id,
        span_id,
        through_tracing_opentelemetry: through,
    });
    proptest::collection::vec((arb_node(), proptest::option::of(remote)), 1..3)
        .prop_map(|roots| Case { roots })
}

fn record(span: &tracing::Span, name: &str, value: &Field) {
    match value {
        Field::Int(v) => span.record(name, *v),
        Field::Unsigned(v) => span.record(name, *v),
        Field::Double(v) => span.record(name, *v),
        Field::Bool(v) => span.record(name, *v),
        Field::Text(v) => span.record(name, v.as_str()),
        Field::Debug(v) => span.record(name, tracing::field::debug(v)),
    };
}

/// The field a value goes to, by its type.
fn slot(value: &Field) -> &'static str {
    match value {
        Field::Int(_) => "int",
        Field::Unsigned(_) => "unsigned",
        Field::Double(_) => "double",
        Field::Bool(_) => "flag",
        Field::Text(_) => "text",
        Field::Debug(_) => "debug",
    }
}

fn event(message: &str, value: &Option<Field>) {
    match value {
        None => tracing::info!("{message}"),
        Some(Field::Int(v)) => tracing::info!(value = *v, "{message}"),
        Some(Field::Unsigned(v)) => tracing::info!(value = *v, "{message}"),
        Some(Field::Double(v)) => tracing::info!(value = *v, "{message}"),
        Some(Field::Bool(v)) => tracing::info!(value = *v, "{message}"),
        Some(Field::Text(v)) => tracing::info!(value = v.as_str(), "{message}"),
        Some(Field::Debug(v)) => tracing::info!(value = ?v, "{message}"),
    }
}

/// Emits `node` and its children; returns how many spans that was.
/// `otel_layer`: whether the dispatch has an OpenTelemetry layer, without which
/// tracing-opentelemetry's own `set_parent` has nothing to set (the kit's helper is used).
fn emit(
    node: &Node,
    remote: Option<&Remote>,
    previous: Option<&tracing::Span>,
    otel_layer: bool,
) -> (usize, tracing::Span) {
    let span = tracing::info_span!(
        "generated",
        otel.name = node.name.as_str(),
        otel.status_code = Empty,
        int = Empty,
        unsigned = Empty,
        double = Empty,
        flag = Empty,
        text = Empty,
        debug = Empty,
        error = Empty,
    );
    if let Some(remote) = remote {
        let context = TraceContext {
            traceparent: Some(format!(
                "00-{:032x}-{:016x}-01",
                remote.trace_id, remote.span_id
            )),
            tracestate: None,
        };
        if remote.through_tracing_opentelemetry && otel_layer {
            use opentelemetry::propagation::TextMapPropagator;
            let parent =
                opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&context);
            span.set_parent(parent).unwrap();
        } else {
            propagation::set_parent(&span, &context).unwrap();
        }
    }
    if let (true, Some(previous)) = (node.follows_previous, previous) {
        span.follows_from(previous);
    }
    if let Some(value) = &node.at_creation {
        record(&span, slot(value), value);
    }
    let mut count = 1;
    span.in_scope(|| {
        for (message, value) in &node.events {
            event(message, value);
        }
        let mut siblings: Vec<tracing::Span> = Vec::new();
        for child in &node.children {
            let (n, child_span) = emit(child, None, siblings.last(), otel_layer);
            count += n;
            siblings.push(child_span);
        }
    });
    for value in &node.late {
        record(&span, slot(value), value);
    }
    if node.error {
        span.record("error", true);
        span.record("otel.status_code", "error");
    }
    (count, span)
}

struct Exporters {
    runtime: tokio::runtime::Runtime,
    receiver: OtlpReceiver,
    nodes: Vec<Telemetry>,
}

/// One receiver and one telemetry per protocol for every case.
fn exporters() -> &'static Exporters {
    static SHARED: OnceLock<Exporters> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (receiver, nodes) = runtime.block_on(async {
            let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
            let nodes = [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson]
                .into_iter()
                .map(|protocol| {
                    Telemetry::builder(protocol, &receiver)
                        .resource_attribute("service.name", "fidelity")
                        .scope("fidelity", "1.0.0")
                        .build()
                        .unwrap()
                })
                .collect();
            (receiver, nodes)
        });
        Exporters {
            runtime,
            receiver,
            nodes,
        }
    })
}

/// Trace id, span id, parent and remoteness of every span, in a stable order.
fn structure(spans: &[SpanRecord]) -> Vec<String> {
    let mut out: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} parent={:?} links={:?}",
                s.name,
                s.trace_id,
                s.span_id,
                s.parent
                    .map(|p| (p.span_id.to_string(), p.remote == Some(true))),
                s.links
                    .iter()
                    .map(|l| l.span_id.to_string())
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    out.sort();
    out
}

/// Emits every root of `case` into the current dispatch; returns the span count.
fn emit_case(case: &Case, otel_layer: bool) -> usize {
    let mut total = 0;
    let mut previous: Option<tracing::Span> = None;
    for (root, remote) in &case.roots {
        let (n, span) = emit(root, remote.as_ref(), previous.as_ref(), otel_layer);
        total += n;
        previous = Some(span);
    }
    total
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let shared = exporters();
    // The capture alone, with no OpenTelemetry layer beside it, must agree too.
    let (alone, alone_spans) = capture::Builder::default()
        .resource_attribute("service.name", "fidelity")
        .scope("fidelity", "1.0.0")
        .dispatch();
    tracing::dispatcher::with_default(&alone, || emit_case(case, false));
    let settings = RenderSettings::default().unrecorded_fields(false);
    let alone_rendered = alone_spans.traces().render_with(&settings);
    for node in &shared.nodes {
        shared.receiver.clear();
        node.capture().clear();
        let total = tracing::dispatcher::with_default(node.dispatch(), || emit_case(case, true));
        let received = shared.runtime.block_on(async {
            node.flush().await.unwrap();
            shared.receiver.wait_for_spans(total, WAIT).await
        });
        let received = received.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let captured = node.capture().traces();
        prop_assert_eq!(captured.span_count(), total);
        prop_assert_eq!(received.span_count(), total);
        // Declared-but-unrecorded fields are what only the capture can know.
        let wire = received.render_with(&settings);
        prop_assert_eq!(captured.render_with(&settings), wire.clone());
        prop_assert_eq!(
            &alone_rendered,
            &wire,
            "the capture without an OpenTelemetry layer"
        );
        let (mine, theirs) = (node.capture().spans(), shared.receiver.spans());
        prop_assert_eq!(structure(&mine), structure(&theirs));
    }
    Ok(())
}

proptest! {
    #![proptest_config(strategy::config(256, "proptest-regressions/fidelity.txt"))]

    #[test]
    fn the_capture_renders_exactly_what_the_receiver_got_over_every_protocol(case in arb_case()) {
        check(&case)?;
    }
}

mod remote_parents {
    use super::*;
    use p2p_otel_testkit::libp2p::swarm::dummy;
    use p2p_otel_testkit::mesh::{self, Passive, Topology};
    use p2p_otel_testkit::telemetry::PerNode;
    use p2p_otel_testkit::TraceSet;

    /// A request crosses three nodes of a memory mesh, each with its own telemetry; every
    /// node's own capture holds its handler span under a remote parent, and the union of
    /// the captures is the same tree the receiver got.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handlers_have_remote_parents_in_every_nodes_own_capture() {
        let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
        let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("relay", "1.0.0");
        let mut mesh = mesh::Builder::new(3)
            .telemetry_per_node(&telemetry)
            .start(|_| Ok((dummy::Behaviour, Passive::default())))
            .await
            .unwrap();
        mesh.connect_topology(Topology::Line, WAIT).await.unwrap();
        let node = |i: usize| telemetry.get(i).unwrap();
        // Node 0 calls node 1, which calls node 2: each message carries the caller's context.
        let to_one = tracing::dispatcher::with_default(node(0).dispatch(), || {
            let request = tracing::info_span!("send_request", target = 1);
            let _entered = request.enter();
            TraceContext::current()
        });
        let to_two = tracing::dispatcher::with_default(node(1).dispatch(), || {
            let handler = tracing::info_span!("handle_request", hop = 1);
            propagation::set_parent(&handler, &to_one).unwrap();
            let _entered = handler.enter();
            let forward = tracing::info_span!("send_request", target = 2);
            let _forwarding = forward.enter();
            TraceContext::current()
        });
        tracing::dispatcher::with_default(node(2).dispatch(), || {
            let handler = tracing::info_span!("handle_request", hop = 2);
            propagation::set_parent(&handler, &to_two).unwrap();
            handler.in_scope(|| {});
        });
        for hop in [1i64, 2] {
            let captured = node(hop as usize).capture().traces();
            captured
                .expect(
                    &expect::span()
                        .named("handle_request")
                        .with_attr("hop", hop)
                        .with_attr("service.instance.id", attr::non_empty()),
                )
                .unwrap();
            let handler = captured.find_named("handle_request")[0].record().clone();
            assert_eq!(
                handler.parent.and_then(|p| p.remote),
                Some(true),
                "{captured}"
            );
        }
        let union = TraceSet::new((0..3).flat_map(|i| node(i).capture().spans()))
            .with_render_settings(mesh.render_settings());
        assert_eq!(
            union.traces().len(),
            1,
            "one trace across three nodes:\n{union}"
        );
        union.expect_no_orphans().unwrap();
        let peer = |i: usize| mesh.peer_id(i).unwrap();
        // Hop 2 ran on node 2, under node 1's forwarding request, in node 0's trace.
        union
            .expect(
                &expect::span()
                    .named("handle_request")
                    .on_node(peer(2))
                    .with_remote_parent_from(
                        expect::span()
                            .named("send_request")
                            .with_attr("target", 2)
                            .on_node(peer(1)),
                    )
                    .in_same_trace_as(expect::span().named("send_request").on_node(peer(0))),
            )
            .unwrap();
        // A nested miss names the innermost condition, with nodes as the trees name them.
        let missed = union
            .expect(
                &expect::span()
                    .named("handle_request")
                    .on_node(peer(2))
                    .with_remote_parent_from(expect::span().named("send_request").on_node(peer(0))),
            )
            .unwrap_err()
            .to_string();
        assert!(
            missed.contains("ran on node [node 1], not [node 0]"),
            "the innermost miss: {missed}"
        );
        assert!(!missed.contains(&peer(0).to_string()), "{missed}");
        telemetry.flush().await.unwrap();
        let received = receiver
            .wait_for_spans(union.span_count(), WAIT)
            .await
            .unwrap();
        let received = received.with_render_settings(telemetry.render_settings());
        assert_eq!(union.render(), received.render());
        mesh.shutdown().await;
    }

    /// An unsigned count is exported as text; the capture shows the same, and a numeric
    /// matcher says why it missed and how to fix it.
    #[tokio::test]
    async fn an_unsigned_field_is_text_in_the_capture_as_on_the_wire() {
        let receiver = OtlpReceiver::start(Config::default()).await.unwrap();
        let node = Telemetry::builder(Protocol::Grpc, &receiver)
            .build()
            .unwrap();
        tracing::dispatcher::with_default(node.dispatch(), || {
            tracing::info_span!("announce", peers = 2u64, replicas = 2i64).in_scope(|| {});
        });
        node.flush().await.unwrap();
        let received = receiver.wait_for_spans(1, WAIT).await.unwrap();
        let captured = node.capture().traces();
        for traces in [&captured, &received] {
            let span = traces.find_named("announce")[0].record().clone();
            assert_eq!(span.attributes["peers"], Value::from("2"));
            assert_eq!(span.attributes["replicas"], Value::Int(2));
        }
        let missed = captured
            .expect(&expect::span().named("announce").with_attr("peers", 2))
            .unwrap_err()
            .to_string();
        assert!(missed.contains("record it as i64"), "{missed}");
        assert_eq!(captured.render(), received.render());
    }

    /// The capture's level filter: `INFO` by default, as `Telemetry` exports.
    #[test]
    fn capture_filters_by_level_and_target() {
        let (dispatch, handle) = capture::dispatch();
        let (verbose, everything) = capture::Builder::default()
            .max_level(tracing::level_filters::LevelFilter::TRACE)
            .dispatch();
        let (targeted, chosen) = capture::Builder::default()
            .target(
                "fidelity::chatty",
                tracing::level_filters::LevelFilter::TRACE,
            )
            .dispatch();
        for dispatch in [&dispatch, &verbose, &targeted] {
            tracing::dispatcher::with_default(dispatch, || {
                tracing::info_span!("operation").in_scope(|| {});
                tracing::trace_span!("poll").in_scope(|| {});
                tracing::trace_span!(target: "fidelity::chatty", "chatty_poll").in_scope(|| {});
            });
        }
        let names = |h: &capture::CaptureHandle| {
            let mut names: Vec<String> = h.spans().into_iter().map(|s| s.name).collect();
            names.sort();
            names
        };
        assert_eq!(names(&handle), ["operation"]);
        assert_eq!(names(&everything), ["chatty_poll", "operation", "poll"]);
        assert_eq!(names(&chosen), ["chatty_poll", "operation"]);
    }
}
