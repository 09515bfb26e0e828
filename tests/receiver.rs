//! The embedded OTLP receiver and per-node telemetry, with real exporters: one test
//! binary for this area.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use p2p_otel_testkit::model::{
    spans_from_otlp, spans_to_otlp, MetricKind, PointValue, SpanId, SpanKind, SpanRecord,
    StatusCode, Temporality, TraceId, Value,
};
use p2p_otel_testkit::receiver::{Config, Counter, Fault, OtlpReceiver};
use p2p_otel_testkit::telemetry::{Builder, Protocol, Telemetry};
use p2p_otel_testkit::tree::expect;
use p2p_otel_testkit::SpanSource;
use p2p_otel_testkit::TraceSet;
use prost::Message;
use tracing::{info_span, Dispatch};

/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a test down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);
const PROTOCOLS: [Protocol; 3] = [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson];

async fn receiver() -> OtlpReceiver {
    OtlpReceiver::start(Config::default()).await.unwrap()
}

/// A receiver writing its OTLP-JSON lines files into a fresh folder of this test's own
/// (named by `label`, the process and the thread, so parallel tests never share one).
async fn receiver_writing_files(label: &str) -> (OtlpReceiver, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "p2p-otel-testkit-{label}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let receiver = OtlpReceiver::start(Config::default().with_json_lines_dir(&dir))
        .await
        .unwrap();
    (receiver, dir)
}

fn node(protocol: Protocol, receiver: &OtlpReceiver, instance: &str) -> Telemetry {
    node_builder(protocol, receiver, instance).build().unwrap()
}

fn node_builder(protocol: Protocol, receiver: &OtlpReceiver, instance: &str) -> Builder {
    Telemetry::builder(protocol, receiver)
        .resource_attribute("service.name", "ggen-p2p")
        .resource_attribute("service.instance.id", instance)
        .scope("marketplace", "")
}

/// An error and every source below it, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |error| error.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A publish with two children, typed attributes, a kind, an error child and an event.
fn emit_publish(dispatch: &Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        let publish = info_span!(
            "p2p_publish",
            otel.kind = "client",
            package_id = "acme/tool",
            dht_replication = 2,
            ratio = 0.5,
            signed = true,
        );
        publish.in_scope(|| {
            info_span!("dht_put", dht_key = "/ggen/acme/tool/1.0.0").in_scope(|| {});
            info_span!(
                "gossipsub_announce",
                otel.status_code = "error",
                otel.status_description = "no peers",
            )
            .in_scope(|| tracing::info!(peers = 0, "announce failed"));
        });
    });
}

fn check_publish(traces: &TraceSet, instance: &str) {
    let publish = traces
        .expect(
            &expect::span()
                .named("p2p_publish")
                .root()
                .with_kind(SpanKind::Client)
                .with_attr("package_id", "acme/tool")
                .with_attr("dht_replication", 2)
                .with_attr("ratio", 0.5)
                .with_attr("signed", true)
                .with_attr("service.name", "ggen-p2p")
                .with_attr("service.instance.id", instance)
                .with_child(
                    expect::span()
                        .named("dht_put")
                        .with_attr("dht_key", "/ggen/acme/tool/1.0.0"),
                )
                .with_child(
                    expect::span()
                        .named("gossipsub_announce")
                        .with_status(StatusCode::Error)
                        .with_status_message("no peers")
                        .with_event("announce failed"),
                ),
        )
        .unwrap();
    assert_eq!(publish.record().scope.name, "marketplace");
    traces.expect_no_orphans().unwrap();
}

mod exporters {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn traces_arrive_exactly_over_every_protocol_on_a_current_thread_runtime() {
        for protocol in PROTOCOLS {
            let receiver = receiver().await;
            let telemetry = node(protocol, &receiver, "node-1");
            emit_publish(telemetry.dispatch());
            telemetry.flush().await.unwrap();
            let traces = receiver
                .wait_for_complete_trace("p2p_publish", WAIT)
                .await
                .unwrap();
            assert_eq!(traces.span_count(), 3, "{protocol:?}:\n{traces}");
            check_publish(&traces, "node-1");
            telemetry.shutdown().await.unwrap();
        }
    }

    /// In process, on a paused clock (a simulated mesh's): a flush hands the receiver the
    /// spans, metric points and log records without a socket, stamped in virtual time —
    /// a two-second wait lasts exactly two seconds — with ids drawn from the seed, so a
    /// second run delivers the very same spans.
    #[test]
    fn in_process_delivery_stamps_virtual_time_and_seeded_ids() {
        fn run(
            seed: u64,
        ) -> (
            Vec<SpanRecord>,
            Vec<p2p_otel_testkit::model::MetricPoint>,
            Vec<p2p_otel_testkit::model::LogRecord>,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let receiver = receiver().await;
                let origin = tokio::time::Instant::now();
                let telemetry = node_builder(Protocol::InProcess, &receiver, "node-sim")
                    .virtual_time(origin)
                    .ids_from_seed(seed)
                    .build()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
                let span = tracing::dispatcher::with_default(telemetry.dispatch(), || {
                    info_span!("p2p_search", query = "sim")
                });
                tokio::time::sleep(Duration::from_secs(2)).await;
                drop(span);
                telemetry
                    .meter()
                    .u64_counter("p2p_searches_total")
                    .build()
                    .add(3, &[KeyValue::new("result", "hit")]);
                let logger = telemetry.logger_provider().logger("sim");
                let mut record = logger.create_log_record();
                record.set_body("a log line".into());
                // Stamped by the system clock, as a log bridge stamps it; delivered in virtual time.
                record.set_timestamp(std::time::SystemTime::now());
                logger.emit(record);
                tokio::time::sleep(Duration::from_secs(1)).await;
                telemetry.flush().await.unwrap();
                let spans = receiver.spans();
                let points = receiver.metric_points_named("p2p_searches_total");
                let logs = receiver.log_records();
                telemetry.shutdown().await.unwrap();
                (spans, points, logs)
            })
        }
        let (spans, points, logs) = run(5);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.start_unix_nanos, 1_767_225_600_250_000_000);
        assert_eq!(span.duration_nanos(), Some(2_000_000_000));
        assert_eq!(points.len(), 1, "{points:?}");
        // Collected at the flush, 3.25 virtual seconds in; cumulative from the epoch.
        assert_eq!(points[0].time_unix_nanos, 1_767_225_603_250_000_000);
        assert_eq!(points[0].start_unix_nanos, 1_767_225_600_000_000_000);
        assert_eq!(logs.len(), 1);
        assert_eq!(
            logs[0].time_unix_nanos, 1_767_225_602_250_000_000,
            "emitted then"
        );
        let (again, _, _) = run(5);
        assert_eq!(again, spans, "the same seed delivers the same spans");
        let (other, _, _) = run(6);
        assert_ne!(other[0].trace_id, span.trace_id);
    }

    /// Exports overlap by default, and a flush still means "answered": it reports every
    /// batch the receiver refused since the previous flush, whichever trigger (the
    /// flush, the batch size, the timer) sent it. gRPC only: the overlapping is the same
    /// for every protocol, and each refusal is retried for a few seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_reports_every_batch_the_receiver_refused() {
        // A store with room for nothing refuses every batch, however the SDK cut them.
        let receiver = OtlpReceiver::start(Config::default().with_span_capacity(0))
            .await
            .unwrap();
        let telemetry = node(Protocol::Grpc, &receiver, "node-refused");
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            for i in 0..1_500 {
                info_span!("p2p_search", query = i).in_scope(|| {});
            }
        });
        let error = telemetry
            .flush()
            .await
            .expect_err("every batch was refused");
        let chain = error_chain(&error);
        assert!(chain.contains("span exports failed"), "{chain}");
        assert!(chain.contains("ResourceExhausted"), "{chain}");
        assert_eq!(receiver.span_count(), 0);
        // Every span was sent and refused (opentelemetry-otlp retries a refusal that
        // carries a retry delay, so some were sent more than once).
        let refused = receiver.counter(Counter::RefusedSpans, Some("ggen-p2p"));
        assert!(refused >= 1_500, "{refused} refused");
        // Reported once: nothing was sent since.
        telemetry.flush().await.unwrap();
        telemetry.shutdown().await.unwrap();
    }

    /// And with the SDK's batch processor exporting one batch at a time, as production
    /// runs it (`max_concurrent_exports(1)`), instead of the kit's default two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traces_arrive_on_a_multi_thread_runtime_too() {
        let overlapping = PROTOCOLS.map(|protocol| (protocol, 2));
        for (protocol, exports) in overlapping.into_iter().chain([(Protocol::Grpc, 1)]) {
            let receiver = receiver().await;
            let telemetry = node_builder(protocol, &receiver, "node-2")
                .max_concurrent_exports(exports)
                .build()
                .unwrap();
            emit_publish(telemetry.dispatch());
            telemetry.flush().await.unwrap();
            let traces = receiver
                .wait_for_complete_trace("p2p_publish", WAIT)
                .await
                .unwrap();
            check_publish(&traces, "node-2");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_arrive_with_kind_temporality_attributes_and_resource() {
        for protocol in PROTOCOLS {
            let receiver = receiver().await;
            let telemetry = node(protocol, &receiver, "node-1");
            let meter = telemetry.meter();
            let ops = meter.u64_counter("p2p_operations_total").build();
            ops.add(
                2,
                &[
                    KeyValue::new("operation", "publish"),
                    KeyValue::new("status", "ok"),
                ],
            );
            ops.add(
                1,
                &[
                    KeyValue::new("operation", "search"),
                    KeyValue::new("status", "error"),
                ],
            );
            meter
                .f64_histogram("p2p_operation_duration_ms")
                .build()
                .record(12.5, &[KeyValue::new("operation", "publish")]);
            meter
                .f64_gauge("p2p_peer_reputation")
                .build()
                .record(0.75, &[KeyValue::new("peer_id", "peer-a")]);
            meter
                .i64_up_down_counter("p2p_connected_peers")
                .build()
                .add(-1, &[]);
            telemetry.flush().await.unwrap();

            let points = receiver
                .wait_for_metric("p2p_operations_total", WAIT, |p| {
                    p.attribute("operation") == Some(&Value::from("publish"))
                })
                .await
                .unwrap();
            let point = &points[0];
            assert_eq!(point.value, PointValue::Int(2), "{protocol:?}");
            assert_eq!(point.kind, MetricKind::Sum { monotonic: true });
            assert_eq!(point.temporality, Temporality::Cumulative);
            assert_eq!(point.attribute("status"), Some(&Value::from("ok")));
            assert_eq!(
                point.attribute("service.instance.id"),
                Some(&Value::from("node-1"))
            );
            assert_eq!(
                receiver.metric_points_named("p2p_operations_total").len(),
                2
            );

            let histogram = &receiver.metric_points_named("p2p_operation_duration_ms")[0];
            assert_eq!(histogram.kind, MetricKind::Histogram);
            assert_eq!(histogram.value.count(), Some(1));
            assert_eq!(histogram.value.as_f64(), Some(12.5));
            let gauge = &receiver.metric_points_named("p2p_peer_reputation")[0];
            assert_eq!(
                (gauge.kind, gauge.value.clone()),
                (MetricKind::Gauge, PointValue::Double(0.75))
            );
            let peers = &receiver.metric_points_named("p2p_connected_peers")[0];
            assert_eq!(peers.kind, MetricKind::Sum { monotonic: false });
            assert_eq!(peers.value, PointValue::Int(-1));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logs_arrive_with_body_severity_and_attributes() {
        for protocol in PROTOCOLS {
            let receiver = receiver().await;
            let telemetry = node(protocol, &receiver, "node-3");
            let logger = telemetry.logger_provider().logger("marketplace");
            let mut record = logger.create_log_record();
            record.set_body("peer connected".into());
            record.set_severity_number(Severity::Warn);
            record.set_severity_text("WARN");
            record.add_attribute("peer_id", "peer-b");
            record.add_attribute("attempt", 3);
            // OTLP 1.10's `event_name`, over every protocol.
            record.set_event_name("peer.connected");
            logger.emit(record);
            telemetry.flush().await.unwrap();
            let records = receiver.wait_for_log_records(1, WAIT).await.unwrap();
            let record = &records[0];
            assert_eq!(record.event_name, "peer.connected", "{protocol:?}");
            assert_eq!(
                record.body,
                Some(Value::from("peer connected")),
                "{protocol:?}"
            );
            assert_eq!(record.severity_text, "WARN");
            assert_eq!(record.severity_number, Severity::Warn as i32);
            assert_eq!(record.attributes["attempt"], Value::Int(3));
            assert_eq!(
                record.resource.attributes["service.instance.id"],
                Value::from("node-3")
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn captured_and_received_traces_render_to_the_same_snapshot() {
        let receiver = receiver().await;
        let telemetry = node(Protocol::Grpc, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        let received = receiver
            .wait_for_complete_trace("p2p_publish", WAIT)
            .await
            .unwrap();
        let captured = telemetry.capture().traces();
        assert_eq!(captured.render(), received.render());
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("publish_received_over_otlp", received.render());
        });
    }
}

/// A raw HTTP/1.1 request to the receiver.
async fn post(
    receiver: &OtlpReceiver,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(format!("{}{path}", receiver.http_endpoint()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status.as_u16(),
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

async fn get(receiver: &OtlpReceiver, path: &str) -> (u16, String) {
    common::http_get(&receiver.http_endpoint(), path).await
}

/// A raw gRPC unary call: one length-prefixed frame, optionally flagged compressed.
async fn grpc_raw(receiver: &OtlpReceiver, payload: &[u8], compressed: bool) -> (String, String) {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let encoding = compressed.then_some("gzip");
    let (_, status, message) = grpc_body(receiver, "application/grpc", encoding, frame).await;
    (status, message)
}

/// A raw HTTP/2 POST to the gRPC export method, body as given: the HTTP status, and
/// `grpc-status` and `grpc-message` from headers or trailers.
async fn grpc_body(
    receiver: &OtlpReceiver,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    grpc_call(receiver, export, content_type, encoding, body).await
}

/// Like [`grpc_body`], to any path.
async fn grpc_call(
    receiver: &OtlpReceiver,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(format!("{}{path}", receiver.grpc_endpoint()))
        .header("content-type", content_type)
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let http_status = response.status().as_u16();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let pick = |name: &str| {
        headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    (http_status, pick("grpc-status"), pick("grpc-message"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn span(trace: u8, id: u8, name: &str) -> SpanRecord {
    let mut span = SpanRecord::new(
        TraceId::from_bytes([trace; 16]),
        SpanId::from_bytes([id; 8]),
        name,
    );
    span.start_unix_nanos = 1_000;
    span.end_unix_nanos = Some(2_000);
    let mut resource = p2p_otel_testkit::model::Resource::default();
    resource
        .attributes
        .insert("service.name".into(), "raw-client".into());
    span.resource = std::sync::Arc::new(resource);
    span
}

fn request_of(spans: &[SpanRecord]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: spans_to_otlp(spans),
    }
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

mod bad_input {
    use super::*;

    /// After a bad request: nothing stored, and a good request still works.
    async fn still_serving_and_unchanged(receiver: &OtlpReceiver, stored_before: usize) {
        assert_eq!(
            receiver.spans().len(),
            stored_before,
            "a bad request stored something"
        );
        let good = request_of(&[span(9, 9, "after_bad_input")]).encode_to_vec();
        let (status, ..) = post(receiver, "/v1/traces", &[PROTOBUF], good).await;
        assert_eq!(status, 200);
        receiver
            .wait_until("the follow-up span", WAIT, |spans| {
                spans.iter().any(|s| s.name == "after_bad_input")
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn empty_requests_succeed_in_every_encoding() {
        let receiver = receiver().await;
        for headers in [[PROTOBUF], [JSON]] {
            let (status, response_headers, _) = post(&receiver, "/v1/traces", &headers, "").await;
            assert_eq!(status, 200);
            assert_eq!(
                response_headers["content-type"], headers[0].1,
                "answered in kind"
            );
        }
        let (status, _, body) = post(&receiver, "/v1/traces", &[JSON], "{}").await;
        assert_eq!((status, &body[..]), (200, &b"{}"[..]));
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        client
            .export(ExportTraceServiceRequest::default())
            .await
            .unwrap();
        assert!(receiver.spans().is_empty());
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_and_invalid_argument() {
        let receiver = receiver().await;
        let (status, headers, body) =
            post(&receiver, "/v1/traces", &[PROTOBUF], vec![0xff, 0xff, 0x01]).await;
        assert_eq!(status, 400);
        assert_eq!(headers["content-type"], "application/x-protobuf");
        let status_message = p2p_otel_testkit_rpc_status(&body);
        assert!(status_message.contains("malformed"), "{status_message}");
        let (status, _, body) =
            post(&receiver, "/v1/traces", &[JSON], "{\"resourceSpans\": 7}").await;
        assert_eq!(status, 400);
        assert!(
            String::from_utf8_lossy(&body).contains("\"code\":3"),
            "JSON google.rpc.Status"
        );

        let (grpc_status, message) = grpc_raw(&receiver, &[0xff, 0xff, 0x01], false).await;
        assert_eq!(grpc_status, "3", "INVALID_ARGUMENT: {message}");

        let mut bad_id = request_of(&[span(1, 1, "bad")]);
        bad_id.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let error = client.export(bad_id.clone()).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().contains("span id must be 8 bytes"),
            "{}",
            error.message()
        );
        let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], bad_id.encode_to_vec()).await;
        assert_eq!(status, 400);
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// Every way to get gRPC's length-prefixed framing wrong is the client's error:
    /// INVALID_ARGUMENT (not retryable), never INTERNAL; nothing is stored.
    #[tokio::test]
    async fn every_malformed_grpc_frame_is_invalid_argument() {
        let receiver = receiver().await;
        let message = request_of(&[span(1, 1, "framed")]).encode_to_vec();
        let frame = |flag: u8, declared: usize, payload: &[u8]| {
            let mut frame = vec![flag];
            frame.extend_from_slice(&(declared as u32).to_be_bytes());
            frame.extend_from_slice(payload);
            frame
        };
        let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            (
                "compressed flag without grpc-encoding",
                None,
                frame(1, message.len(), &message),
            ),
            (
                "compression flag 2",
                None,
                frame(2, message.len(), &message),
            ),
            (
                "frame shorter than declared",
                None,
                frame(0, 100, &message[..3]),
            ),
            ("half a frame header", None, vec![0, 0, 0]),
            (
                "gzip flag, payload not gzip",
                Some("gzip"),
                frame(1, 4, b"nope"),
            ),
            (
                "undecodable message",
                None,
                frame(0, 3, &[0xff, 0xff, 0x01]),
            ),
        ];
        for (case, encoding, body) in cases {
            let (http, status, detail) =
                grpc_body(&receiver, "application/grpc", encoding, body).await;
            assert_eq!((http, status.as_str()), (200, "3"), "{case}: {detail}");
        }
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// A method the trace service does not have, or a service the receiver does not serve,
    /// is UNIMPLEMENTED, as tonic's generated servers answer.
    #[tokio::test]
    async fn unknown_grpc_methods_are_unimplemented() {
        let receiver = receiver().await;
        for path in [
            "/opentelemetry.proto.collector.trace.v1.TraceService/Import",
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        ] {
            let (http, status, _) =
                grpc_call(&receiver, path, "application/grpc", None, vec![0; 5]).await;
            assert_eq!((http, status.as_str()), (200, "12"), "{path}");
        }
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// The gRPC port speaks gRPC only: OTLP/JSON or protobuf sent there is told where to
    /// go (HTTP 415, as the gRPC specification asks), and nothing is stored.
    #[tokio::test]
    async fn the_grpc_port_requires_application_grpc() {
        let receiver = receiver().await;
        let message = request_of(&[span(1, 1, "misdirected")]);
        for (content_type, body) in [
            ("application/json", serde_json::to_vec(&message).unwrap()),
            ("application/x-protobuf", message.encode_to_vec()),
            ("text/plain", b"hello".to_vec()),
        ] {
            let (http, _, _) = grpc_body(&receiver, content_type, None, body).await;
            assert_eq!(http, 415, "{content_type}");
        }
        still_serving_and_unchanged(&receiver, 0).await;
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        client.export(message).await.unwrap();
        receiver.wait_for_spans(1, WAIT).await.unwrap();
    }

    /// Log records' ids are optional but, when present, as strict as a span's: a 5-byte
    /// trace id is refused (400 / INVALID_ARGUMENT) and nothing is stored; empty or
    /// all-zero ids mean "outside a span".
    #[tokio::test]
    async fn log_records_with_malformed_ids_are_refused_like_spans() {
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let receiver = receiver().await;
        let request = |trace_id: Vec<u8>| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        trace_id,
                        severity_text: "INFO".into(),
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let (status, _, body) = post(
            &receiver,
            "/v1/logs",
            &[PROTOBUF],
            request(vec![1; 5]).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        let message = p2p_otel_testkit_rpc_status(&body);
        assert!(
            message.contains("trace id must be 16 bytes, got 5"),
            "{message}"
        );
        let mut client = LogsServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let error = client.export(request(vec![1; 5])).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            receiver.log_records().is_empty(),
            "nothing of a refused request"
        );
        for absent in [Vec::new(), vec![0; 16]] {
            client.export(request(absent)).await.unwrap();
        }
        let stored = receiver.log_records();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|r| r.trace_id.is_none()));
    }

    /// Metric points carry ids too (their exemplars'): as strict as a span's.
    #[tokio::test]
    async fn metric_exemplars_with_malformed_ids_are_refused_like_spans() {
        use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            metric, Exemplar, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        };
        let receiver = receiver().await;
        let request = |span_id: Vec<u8>| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "p2p_peers_connected".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                exemplars: vec![Exemplar {
                                    span_id,
                                    trace_id: vec![7; 16],
                                    ..Exemplar::default()
                                }],
                                ..NumberDataPoint::default()
                            }],
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let (status, _, body) = post(
            &receiver,
            "/v1/metrics",
            &[PROTOBUF],
            request(vec![1; 3]).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        let message = p2p_otel_testkit_rpc_status(&body);
        assert!(
            message.contains("p2p_peers_connected")
                && message.contains("span id must be 8 bytes, got 3"),
            "{message}"
        );
        let mut client = MetricsServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let error = client.export(request(vec![1; 3])).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            receiver.metric_points().is_empty(),
            "nothing of a refused request"
        );
        for fine in [Vec::new(), vec![0; 8], vec![2; 8]] {
            client.export(request(fine)).await.unwrap();
        }
        assert_eq!(receiver.metric_points().len(), 3);
    }

    /// An empty body is an empty export, gzip claimed or not: 200, nothing stored.
    #[tokio::test]
    async fn an_empty_gzip_body_is_an_empty_request() {
        let receiver = receiver().await;
        for content_type in [PROTOBUF, JSON] {
            let (status, ..) = post(
                &receiver,
                "/v1/traces",
                &[content_type, ("content-encoding", "gzip")],
                Vec::new(),
            )
            .await;
            assert_eq!(status, 200, "{content_type:?}");
        }
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// The message of a protobuf `google.rpc.Status` body (field 2).
    fn p2p_otel_testkit_rpc_status(body: &[u8]) -> String {
        #[derive(Clone, PartialEq, prost::Message)]
        struct RpcStatus {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        RpcStatus::decode(body)
            .map(|s| s.message)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn unsupported_content_type_and_encoding_are_415() {
        let receiver = receiver().await;
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[("content-type", "text/plain")],
            "hi",
        )
        .await;
        assert_eq!(status, 415);
        let (status, ..) = post(&receiver, "/v1/traces", &[], "hi").await;
        assert_eq!(status, 415);
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "br")],
            "hi",
        )
        .await;
        assert_eq!(status, 415);
        still_serving_and_unchanged(&receiver, 0).await;
    }

    #[tokio::test]
    async fn oversized_bodies_are_413_and_resource_exhausted() {
        let receiver = OtlpReceiver::start(Config::default().with_max_body_bytes(1024))
            .await
            .unwrap();
        let big: Vec<SpanRecord> = (1..=40)
            .map(|i| span(1, i, "padding_padding_padding"))
            .collect();
        let body = request_of(&big).encode_to_vec();
        assert!(body.len() > 1024);
        let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], body.clone()).await;
        assert_eq!(status, 413);
        let (grpc_status, message) = grpc_raw(&receiver, &body, false).await;
        assert_eq!(grpc_status, "8", "RESOURCE_EXHAUSTED: {message}");
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// `gzipped` is refused for its size once decompressed, not retryably: HTTP 413 with no
    /// `Retry-After`, gRPC `RESOURCE_EXHAUSTED`.
    async fn refused_once_decompressed(receiver: &OtlpReceiver, gzipped: &[u8]) {
        let (status, headers, body) = post(
            receiver,
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            gzipped.to_vec(),
        )
        .await;
        assert_eq!(status, 413);
        assert!(headers.get("retry-after").is_none(), "not retryable");
        assert!(p2p_otel_testkit_rpc_status(&body).contains("decompressed"));
        let (grpc_status, message) = grpc_raw(receiver, gzipped, true).await;
        assert_eq!(grpc_status, "8", "RESOURCE_EXHAUSTED: {message}");
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_stopped_while_decompressing() {
        let limit = 64 * 1024;
        let receiver = OtlpReceiver::start(Config::default().with_max_body_bytes(limit))
            .await
            .unwrap();
        // 64 MiB of zeroes gzip to about 64 KiB... too close to the limit; 16 MiB to ~16 KiB.
        let bomb = gzip(&vec![0u8; 16 << 20]);
        assert!(
            bomb.len() < limit,
            "the compressed bomb itself fits the limit"
        );
        refused_once_decompressed(&receiver, &bomb).await;
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// OTLP 1.10: a request over 64 MiB *after decompression* (the recommended limit, the
    /// default here) is refused, non-retryable: HTTP 413, gRPC `RESOURCE_EXHAUSTED`; one
    /// of 63 MiB passes the limit (it is then read and refused as the zeroes it is).
    #[tokio::test]
    async fn a_request_of_65_mib_decompressed_is_refused_at_the_default_limit() {
        let receiver = receiver().await;
        let bomb = gzip(&vec![0u8; 65 << 20]);
        refused_once_decompressed(&receiver, &bomb).await;
        let under = gzip(&vec![0u8; 63 << 20]);
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            under,
        )
        .await;
        assert_ne!(status, 413, "63 MiB is within the limit");
        still_serving_and_unchanged(&receiver, 0).await;
    }

    /// The protobuf JSON mapping lets a writer give enums by name (Python's
    /// `MessageToJson` does, and the Collector reads them): taken as their numbers; an
    /// unknown name is a 400 that lists the names.
    #[tokio::test]
    async fn json_enums_are_read_by_name_as_by_number() {
        let receiver = receiver().await;
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"named_enums","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1000","endTimeUnixNano":"2000",
            "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;
        let (status, _, body) = post(&receiver, "/v1/traces", &[JSON], json).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let traces = receiver.wait_for_spans(1, WAIT).await.unwrap();
        let span = traces.expect(&expect::span().named("named_enums")).unwrap();
        assert_eq!(span.record().kind, SpanKind::Server);
        assert_eq!(span.record().status.code, StatusCode::Error);
        let (status, _, body) = post(
            &receiver,
            "/v1/traces",
            &[JSON],
            json.replace("SPAN_KIND_SERVER", "SPAN_KIND_SERVERLESS"),
        )
        .await;
        assert_eq!(status, 400);
        // Answered in the request's encoding: a JSON `Status`.
        let message = String::from_utf8_lossy(&body);
        assert!(
            message.contains("SPAN_KIND_SERVERLESS") && message.contains("SPAN_KIND_CLIENT"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn gzip_and_chunked_json_without_length_are_accepted() {
        let receiver = receiver().await;
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"node-js"}}]},
            "scopeSpans":[{"scope":{"name":"js"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"from_node","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":2000,
            "attributes":[{"key":"as_string","value":{"intValue":"5"}},{"key":"as_number","value":{"intValue":6}}]}]}]}]}"#;
        // A streamed body: hyper sends it chunked, with no Content-Length, as Node's exporter does.
        let client = Client::builder(TokioExecutor::new()).build_http();
        let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = json
            .as_bytes()
            .chunks(50)
            .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let request = hyper::Request::post(format!("{}/v1/traces", receiver.http_endpoint()))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("content-length").is_some());
        let traces = receiver.wait_for_spans(1, WAIT).await.unwrap();
        let span = traces.expect(&expect::span().named("from_node")).unwrap();
        assert_eq!(span.attribute("as_string"), Some(&Value::Int(5)));
        assert_eq!(span.attribute("as_number"), Some(&Value::Int(6)));
        assert_eq!(span.record().kind, SpanKind::Server);

        let gzipped = gzip(&request_of(&[span_of_gzip()]).encode_to_vec());
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            gzipped,
        )
        .await;
        assert_eq!(status, 200);
        receiver.wait_for_spans(2, WAIT).await.unwrap();
    }

    fn span_of_gzip() -> SpanRecord {
        span(3, 3, "gzipped")
    }

    #[tokio::test]
    async fn a_full_store_refuses_loudly_and_counts() {
        let receiver = OtlpReceiver::start(Config::default().with_span_capacity(5))
            .await
            .unwrap();
        let first: Vec<SpanRecord> = (1..=4).map(|i| span(1, i, "fits")).collect();
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request_of(&first).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        let second: Vec<SpanRecord> = (10..=12).map(|i| span(1, i, "overflows")).collect();
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request_of(&second).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 429);
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let error = client.export(request_of(&second)).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        assert!(
            error.message().contains("capacity 5"),
            "{}",
            error.message()
        );
        assert_eq!(receiver.spans().len(), 4);
        assert_eq!(
            receiver.counter(Counter::RefusedSpans, Some("raw-client")),
            6
        );
        assert_eq!(receiver.counter(Counter::AcceptedSpans, None), 4);
    }

    /// A full store says when to retry: `Retry-After` on HTTP, RetryInfo on gRPC (which
    /// makes RESOURCE_EXHAUSTED retryable for OTLP exporters).
    #[tokio::test]
    async fn a_full_store_says_when_to_retry() {
        use tonic_types::StatusExt;
        let receiver = OtlpReceiver::start(Config::default().with_span_capacity(1))
            .await
            .unwrap();
        let two = request_of(&[span(1, 1, "a"), span(1, 2, "b")]);
        let (status, headers, _) =
            post(&receiver, "/v1/traces", &[PROTOBUF], two.encode_to_vec()).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "1");
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let error = client.export(two).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        let retry = error.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    }

    /// The byte capacity holds where the span count would not: one span with a hundred
    /// thousand attributes is refused whole, small spans still fit.
    #[tokio::test]
    async fn a_byte_capacity_refuses_huge_spans_that_the_count_lets_in() {
        let receiver = OtlpReceiver::start(Config::default().with_span_byte_capacity(4 << 20))
            .await
            .unwrap();
        let mut huge = span(1, 1, "huge");
        for i in 0..100_000 {
            huge.attributes
                .insert(format!("attribute.{i}"), Value::Int(i));
        }
        let (status, _, body) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request_of(&[huge]).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 429);
        let message = p2p_otel_testkit_rpc_status(&body);
        assert!(message.contains("byte(s)"), "{message}");
        let small: Vec<SpanRecord> = (2..=50).map(|i| span(2, i, "small")).collect();
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request_of(&small).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(receiver.span_count(), 49);
        assert!(receiver.span_store_bytes() < 4 << 20);
        assert_eq!(receiver.counter(Counter::RefusedSpans, None), 1);
    }

    /// Keeping the last N traces: the oldest make room, counted, and the newest are all
    /// there; a long-running receiver never refuses.
    #[tokio::test]
    async fn keeping_the_last_traces_evicts_the_oldest() {
        let receiver = OtlpReceiver::start(
            Config::default()
                .with_keep_last_traces(3)
                .with_span_capacity(8),
        )
        .await
        .unwrap();
        for trace in 1..=10u8 {
            let spans = [span(trace, 1, "root"), span(trace, 2, "child")];
            let (status, ..) = post(
                &receiver,
                "/v1/traces",
                &[PROTOBUF],
                request_of(&spans).encode_to_vec(),
            )
            .await;
            assert_eq!(status, 200, "trace {trace}");
        }
        let ids: Vec<TraceId> = receiver.trace_ids();
        assert_eq!(
            ids,
            (8..=10u8)
                .map(|t| TraceId::from_bytes([t; 16]))
                .collect::<Vec<_>>()
        );
        assert_eq!(receiver.span_count(), 6);
        assert_eq!(
            receiver.counter(Counter::EvictedSpans, Some("raw-client")),
            14
        );
        assert_eq!(receiver.counter(Counter::RefusedSpans, None), 0);
        // The span capacity makes room the same way: 5 spans in one trace, 8 at most.
        let big: Vec<SpanRecord> = (1..=5).map(|i| span(11, i, "wide")).collect();
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request_of(&big).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(receiver.span_count() <= 8, "{}", receiver.span_count());
        assert_eq!(
            receiver.trace(TraceId::from_bytes([11; 16])).span_count(),
            5
        );
    }

    #[tokio::test]
    async fn duplicates_are_counted_and_kept_once() {
        let receiver = receiver().await;
        let body = request_of(&[span(1, 1, "once"), span(1, 2, "twice")]).encode_to_vec();
        for _ in 0..2 {
            let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], body.clone()).await;
            assert_eq!(status, 200);
        }
        assert_eq!(receiver.spans().len(), 2);
        assert_eq!(receiver.counter(Counter::DuplicateSpans, None), 2);
        assert_eq!(receiver.counter(Counter::AcceptedSpans, None), 2);
    }

    /// The OTLP-JSON file never holds more than the store accepted: a span sent again, or
    /// twice in one request, is written once; a request of duplicates writes no line.
    #[tokio::test]
    async fn duplicates_are_written_to_the_file_once() {
        let (receiver, dir) = receiver_writing_files("dupes").await;
        let twice = request_of(&[span(1, 1, "once"), span(1, 2, "twice"), span(1, 2, "twice")]);
        for _ in 0..3 {
            let (status, ..) =
                post(&receiver, "/v1/traces", &[PROTOBUF], twice.encode_to_vec()).await;
            assert_eq!(status, 200);
        }
        let text = std::fs::read_to_string(dir.join("traces.jsonl")).unwrap();
        let in_file: usize = text
            .lines()
            .map(|line| {
                let request: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
                spans_from_otlp(&request.resource_spans).unwrap().len()
            })
            .sum();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(in_file, receiver.spans().len());
        assert_eq!(in_file, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

mod load {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_concurrent_exporters_times_ten_thousand_spans_lose_nothing() {
        const EXPORTERS: usize = 8;
        const SPANS: usize = 10_000;
        let receiver = receiver().await;
        let mut tasks = Vec::new();
        for exporter in 0..EXPORTERS {
            let protocol = PROTOCOLS[exporter % PROTOCOLS.len()];
            let telemetry = node(protocol, &receiver, &format!("exporter-{exporter}"));
            tasks.push(tokio::spawn(async move {
                let dispatch = telemetry.dispatch().clone();
                tokio::task::spawn_blocking(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for i in 0..SPANS {
                            info_span!("load", exporter, i).in_scope(|| {});
                        }
                    })
                })
                .await
                .unwrap();
                telemetry.flush().await.unwrap();
                telemetry.shutdown().await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let total = EXPORTERS * SPANS;
        let traces = receiver
            .wait_for_spans(total, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(receiver.spans().len(), total, "exactly, no more");
        assert_eq!(traces.duplicates(), 0);
        assert_eq!(
            receiver.counter(Counter::AcceptedSpans, Some("ggen-p2p")),
            total as u64
        );
        assert_eq!(receiver.counter(Counter::RefusedSpans, None), 0);
    }
}

mod waiting {
    use super::*;

    /// Three nodes: a call on node 0 handled on nodes 1 and 2, node 2's handler still
    /// working after the caller has finished. The barrier waits for it — over the nodes'
    /// captures, then over the wire — and the test counts nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_distributed_trace_barrier_waits_for_every_node_then_the_wire() {
        use p2p_otel_testkit::propagation::{set_parent, TraceContext};
        use p2p_otel_testkit::telemetry::PerNode;

        let receiver = receiver().await;
        let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", "0.1.0");
        let nodes: Vec<_> = ["node-a", "node-b", "node-c"]
            .iter()
            .enumerate()
            .map(|(i, id)| telemetry.node_telemetry(i, id).unwrap())
            .collect();
        let call = tracing::dispatcher::with_default(nodes[0].dispatch(), || {
            info_span!("call", otel.kind = "client")
        });
        let context = TraceContext::of(&call);
        let handle = |node: usize| {
            tracing::dispatcher::with_default(nodes[node].dispatch(), || {
                let span = info_span!("handle", otel.kind = "server");
                set_parent(&span, &context).map(|()| span)
            })
            .unwrap()
        };
        drop(handle(1));
        let slow = handle(2);
        drop(call);
        let early = telemetry
            .wait_for_distributed_trace("call", &receiver, Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            early.contains("waiting for a trace with a span named \"call\", done on every node"),
            "{early}"
        );
        drop(slow);
        let trace = telemetry
            .wait_for_distributed_trace("call", &receiver, WAIT)
            .await
            .unwrap();
        insta::assert_snapshot!(trace.render(), @r#"
        resource 1 { service.instance.id = [node 0], service.name = "ggen-p2p", service.version = "0.1.0" }
        resource 2 { service.instance.id = [node 1], service.name = "ggen-p2p", service.version = "0.1.0" }
        resource 3 { service.instance.id = [node 2], service.name = "ggen-p2p", service.version = "0.1.0" }
        scope 1 "p2p-otel-testkit" ""
        trace 1
        └─ call kind=client @resource 1
           ├─ handle kind=server @resource 2 (remote parent)
           └─ handle kind=server @resource 3 (remote parent)
        "#);
        // What the barrier returned came over the wire: the receiver holds it all.
        assert_eq!(receiver.traces().span_count(), 3);
    }

    #[tokio::test]
    async fn a_span_wait_timeout_shows_the_trees_that_arrived() {
        let receiver = receiver().await;
        let body = request_of(&[span(1, 1, "p2p_bootstrap")]).encode_to_vec();
        post(&receiver, "/v1/traces", &[PROTOBUF], body).await;
        let error = receiver
            .wait_for_complete_trace("p2p_publish", Duration::from_millis(50))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("a complete trace with a span named \"p2p_publish\""),
            "{message}"
        );
        assert!(message.contains("1 span(s) arrived"), "{message}");
        assert!(message.contains("└─ p2p_bootstrap"), "{message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_metric_wait_timeout_lists_the_metrics_that_arrived() {
        let receiver = receiver().await;
        let telemetry = node(Protocol::Grpc, &receiver, "n");
        telemetry
            .meter()
            .u64_counter("p2p_searches_total")
            .build()
            .add(1, &[]);
        telemetry.flush().await.unwrap();
        receiver
            .wait_for_metric("p2p_searches_total", WAIT, |_| true)
            .await
            .unwrap();
        let error = receiver
            .wait_for_metric("p2p_searches_total", Duration::from_millis(50), |p| {
                p.value.as_f64() == Some(99.0)
            })
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("p2p_searches_total: 1 point(s)"),
            "{error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_receivers_in_parallel_never_mix() {
        let (a, b) = (receiver().await, receiver().await);
        let (node_a, node_b) = (
            node(Protocol::Grpc, &a, "a"),
            node(Protocol::HttpJson, &b, "b"),
        );
        tracing::dispatcher::with_default(node_a.dispatch(), || {
            info_span!("only_a").in_scope(|| {})
        });
        tracing::dispatcher::with_default(node_b.dispatch(), || {
            info_span!("only_b").in_scope(|| {})
        });
        node_a.flush().await.unwrap();
        node_b.flush().await.unwrap();
        let on_a = a.wait_for_spans(1, WAIT).await.unwrap();
        let on_b = b.wait_for_spans(1, WAIT).await.unwrap();
        on_a.expect_only(&[expect::span().named("only_a")]).unwrap();
        on_b.expect_only(&[expect::span().named("only_b")]).unwrap();
    }
}

mod faults {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exporters_retry_through_injected_outages() {
        for protocol in PROTOCOLS {
            let receiver = receiver().await;
            receiver.inject(
                Fault::Unavailable {
                    retry_after: Duration::from_millis(10),
                },
                2,
            );
            let telemetry = node(protocol, &receiver, "retrying");
            emit_publish(telemetry.dispatch());
            telemetry.flush().await.unwrap();
            let traces = receiver
                .wait_for_complete_trace("p2p_publish", WAIT)
                .await
                .unwrap();
            assert_eq!(traces.span_count(), 3, "{protocol:?}");
            assert_eq!(receiver.counter(Counter::AcceptedSpans, None), 3);
        }
    }

    #[tokio::test]
    async fn unavailable_is_503_with_retry_after_and_stores_nothing() {
        let receiver = receiver().await;
        receiver.inject(
            Fault::Unavailable {
                retry_after: Duration::from_secs(2),
            },
            1,
        );
        let body = request_of(&[span(1, 1, "refused")]).encode_to_vec();
        let (status, headers, _) = post(&receiver, "/v1/traces", &[PROTOBUF], body.clone()).await;
        assert_eq!(status, 503);
        assert_eq!(headers["retry-after"], "2");
        assert!(receiver.spans().is_empty());
        let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], body).await;
        assert_eq!(status, 200, "only the next request was faulty");
    }

    #[tokio::test]
    async fn a_malformed_request_is_refused_as_such_and_takes_no_fault() {
        let receiver = receiver().await;
        receiver.inject(
            Fault::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            1,
        );
        let (status, _, body) = post(&receiver, "/v1/traces", &[PROTOBUF], vec![0x0a, 0x05]).await;
        assert_eq!(status, 400, "{body:?}");
        let (status, message) = grpc_raw(&receiver, &[0x0a, 0x05], false).await;
        assert_eq!((status.as_str(), message.is_empty()), ("3", false));
        let body = request_of(&[span(1, 1, "refused")]).encode_to_vec();
        let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], body).await;
        assert_eq!(
            status, 503,
            "the fault waited for a request it could apply to"
        );
    }

    #[tokio::test]
    async fn partial_success_rejects_the_last_items_and_says_so() {
        let receiver = receiver().await;
        receiver.inject(
            Fault::PartialSuccess {
                rejected: 2,
                message: "quota".into(),
            },
            1,
        );
        let spans: Vec<SpanRecord> = (1..=5).map(|i| span(1, i, "batch")).collect();
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        let response = client
            .export(request_of(&spans))
            .await
            .unwrap()
            .into_inner();
        let partial = response.partial_success.unwrap();
        assert_eq!(
            (partial.rejected_spans, partial.error_message.as_str()),
            (2, "quota")
        );
        assert_eq!(receiver.spans().len(), 3);
        assert_eq!(receiver.counter(Counter::RefusedSpans, None), 2);
    }

    #[tokio::test]
    async fn a_delay_delays_then_stores() {
        let receiver = receiver().await;
        receiver.inject(Fault::Delay(Duration::from_millis(100)), 1);
        let started = std::time::Instant::now();
        let body = request_of(&[span(1, 1, "slow")]).encode_to_vec();
        let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], body).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(receiver.spans().len(), 1);
    }
}

mod endpoints {
    use super::*;

    /// The next `event: changed` of a server-sent-events body (keep-alive comments
    /// skipped); `None` once the stream ended.
    async fn next_event(stream: &mut hyper::body::Incoming) -> Option<String> {
        loop {
            let frame = tokio::time::timeout(WAIT, stream.frame())
                .await
                .expect("an event within the wait")
                .map(|frame| frame.unwrap().into_data().unwrap_or_default());
            match frame {
                Some(data) if data.starts_with(b"event: changed") => {
                    return Some(String::from_utf8_lossy(&data).into_owned())
                }
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// The trace viewer: the page and its assets with a Content-Security-Policy that
    /// allows only themselves; nothing for a request addressed to another host name (DNS
    /// rebinding); `/api/stream` announces arrivals and ends when the receiver stops, so an
    /// open page never holds a shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_trace_viewer_is_served_safely_and_streams_arrivals() {
        let mut receiver =
            OtlpReceiver::start(Config::default().with_shutdown_grace(Duration::from_secs(120)))
                .await
                .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = |path: &str, host: Option<&str>| {
            let mut builder = http::Request::get(format!("{}{path}", receiver.http_endpoint()));
            if let Some(host) = host {
                builder = builder.header("host", host);
            }
            builder.body(Full::new(Bytes::new())).unwrap()
        };
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
        ] {
            let response = client.request(request(path, None)).await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["content-type"], content_type);
            let policy = response.headers()["content-security-policy"]
                .to_str()
                .unwrap();
            assert!(
                policy.starts_with("default-src 'none'; script-src 'self';"),
                "{policy}"
            );
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        }
        for path in ["/", "/api/search", "/api/stream", "/api/traces/1"] {
            let response = client
                .request(request(path, Some("rebound.example:4318")))
                .await
                .unwrap();
            assert_eq!(response.status(), 421, "{path} answered a foreign host");
        }
        let response = client
            .request(request("/", Some("localhost:4318")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        let mut stream = client
            .request(request("/api/stream", None))
            .await
            .unwrap()
            .into_body();
        assert_eq!(
            next_event(&mut stream).await.unwrap(),
            "event: changed\ndata: {\"traces\":0}\n\n"
        );
        let telemetry = node(Protocol::HttpJson, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        let announced = next_event(&mut stream).await.unwrap();
        assert_eq!(announced, "event: changed\ndata: {\"traces\":1}\n\n");
        // The stream ends on stop: the shutdown does not wait out its 120 s grace.
        tokio::time::timeout(WAIT, receiver.stop())
            .await
            .expect("the open stream did not hold the shutdown")
            .unwrap();
        assert_eq!(next_event(&mut stream).await, None);
    }

    /// Beside traces, the viewer reads the received metrics and logs, and with a
    /// contract its findings on one trace's spans and its coverage of everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_logs_and_contract_findings_for_the_viewer() {
        let contract = p2p_otel_testkit::contract::Contract::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/marketplace/contract"
        ))
        .unwrap();
        let receiver = OtlpReceiver::start(Config::default().with_contract(contract))
            .await
            .unwrap();
        let telemetry = node(Protocol::Grpc, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry
            .meter()
            .u64_counter("p2p_packages_published_total")
            .build()
            .add(3, &[KeyValue::new("operation", "publish")]);
        let logger = telemetry.logger_provider().logger("marketplace");
        let mut record = logger.create_log_record();
        record.set_body("published".into());
        record.set_severity_number(Severity::Info);
        logger.emit(record);
        telemetry.flush().await.unwrap();
        let traces = receiver.wait_for_spans(3, WAIT).await.unwrap();
        receiver.wait_for_log_records(1, WAIT).await.unwrap();
        receiver
            .wait_for_metric("p2p_packages_published_total", WAIT, |_| true)
            .await
            .unwrap();

        let json = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
        let (status, body) = get(&receiver, "/api/metrics").await;
        assert_eq!(status, 200, "{body}");
        let metrics = json(body);
        let point = &metrics["points"][0];
        assert_eq!(point["name"], "p2p_packages_published_total", "{metrics}");
        assert_eq!(point["attributes"]["operation"], "publish");
        assert_eq!(point["value"]["int"], 3);
        assert_eq!(point["node"], "node-1");

        let logs = json(get(&receiver, "/api/logs").await.1);
        assert_eq!(logs["records"][0]["body"], "published", "{logs}");
        assert_eq!(logs["records"][0]["service"], "ggen-p2p");

        // `gossipsub_announce` lacks what the contract requires: findings on its span.
        let id = traces.traces()[0].trace_id().to_string();
        let findings = json(get(&receiver, &format!("/api/findings/{id}")).await.1);
        assert_eq!(findings["contract"], true);
        let list = findings["findings"].as_array().unwrap();
        assert!(!list.is_empty(), "{findings}");
        for finding in list {
            assert_eq!(finding["span"]["trace_id"], id.as_str(), "{finding}");
        }
        let report = json(get(&receiver, "/api/contract").await.1);
        assert_eq!(report["contract"], true);
        assert_eq!(report["statistics"]["total_spans"], 3, "{report}");
        assert!(report["statistics"]["registry_coverage"].as_f64().unwrap() > 0.0);

        let plain = super::receiver().await;
        assert_eq!(
            json(get(&plain, "/api/contract").await.1)["contract"],
            false
        );
        assert_eq!(
            json(get(&plain, &format!("/api/findings/{id}")).await.1)["contract"],
            false
        );
    }

    /// `/api/search` answers TraceQL over what a real exporter sent, in the shape of
    /// Tempo's search response; a bad query is a 400 with the caret; `/api/traces/<id>`
    /// gives the trace back as OTLP/JSON.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traceql_search_and_trace_by_id() {
        let receiver = receiver().await;
        let telemetry = node(Protocol::Grpc, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        let traces = receiver.wait_for_spans(3, WAIT).await.unwrap();
        let query = "{ name = \"p2p_publish\" } > { status = error } | select(span:statusMessage)";
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let (status, body) = get(&receiver, &format!("/api/search?q={encoded}")).await;
        assert_eq!(status, 200, "{body}");
        let response: serde_json::Value = serde_json::from_str(&body).unwrap();
        let trace = &response["traces"][0];
        assert_eq!(trace["rootTraceName"], "p2p_publish", "{body}");
        assert_eq!(trace["rootServiceName"], "ggen-p2p");
        let span = &trace["spanSets"][0]["spans"][0];
        assert_eq!(span["name"], "gossipsub_announce");
        assert_eq!(span["attributes"][1]["key"], "span:statusMessage");
        assert_eq!(
            span["attributes"][1]["value"]["stringValue"],
            "\"no peers\""
        );
        assert_eq!(response["metrics"]["inspectedSpans"], "3");
        assert_eq!(response["traces"].as_array().unwrap().len(), 1);

        let nothing: String = form_urlencoded::byte_serialize(b"{ kind = server }").collect();
        let (status, body) = get(&receiver, &format!("/api/search?q={nothing}")).await;
        assert_eq!(
            (status, body.contains(r#""traces":[]"#)),
            (200, true),
            "{body}"
        );

        let broken: String = form_urlencoded::byte_serialize(b"{ name = }").collect();
        let (status, body) = get(&receiver, &format!("/api/search?q={broken}")).await;
        assert_eq!(status, 400);
        assert!(
            body.starts_with("invalid TraceQL query: expected a value"),
            "{body}"
        );
        assert!(body.ends_with("\n  { name = }\n           ^"), "{body}");

        let id = traces.traces()[0].trace_id().to_string();
        let (status, body) = get(&receiver, &format!("/api/traces/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let mut back = p2p_otel_testkit::model::Signals::default();
        let file =
            std::env::temp_dir().join(format!("p2p-otel-api-trace-{}.json", std::process::id()));
        std::fs::write(&file, &body).unwrap();
        back.read_file(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(TraceSet::new(back.spans).render(), traces.render());
        assert_eq!(get(&receiver, "/api/traces/00ff").await.0, 404);
        assert_eq!(get(&receiver, "/api/traces/not-hex").await.0, 400);
        assert_eq!(get(&receiver, "/api/search?limit=many").await.0, 400);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_self_metrics_and_received_metrics() {
        let receiver = receiver().await;
        assert_eq!(get(&receiver, "/health").await.0, 200);
        let telemetry = node(Protocol::HttpProtobuf, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry
            .meter()
            .u64_counter("p2p_packages_published_total")
            .build()
            .add(3, &[KeyValue::new("operation", "publish")]);
        telemetry.flush().await.unwrap();
        receiver.wait_for_spans(3, WAIT).await.unwrap();
        receiver
            .wait_for_metric("p2p_packages_published_total", WAIT, |_| true)
            .await
            .unwrap();

        let (status, text) = get(&receiver, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            text.contains(r#"otelcol_receiver_accepted_spans{receiver="otlp",transport="http",service_name="ggen-p2p"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("otelcol_receiver_accepted_metric_points{"),
            "{text}"
        );
        let (status, text) = get(&receiver, "/metrics/received").await;
        assert_eq!(status, 200);
        assert!(
            text.contains("# TYPE p2p_packages_published_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"p2p_packages_published_total{operation="publish",service_instance_id="node-1",service_name="ggen-p2p"} 3"#),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_lines_files_hold_one_request_per_line() {
        let (receiver, dir) = receiver_writing_files("jsonl").await;
        let telemetry = node(Protocol::Grpc, &receiver, "node-1");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        receiver.wait_for_spans(3, WAIT).await.unwrap();
        let text = std::fs::read_to_string(dir.join("traces.jsonl")).unwrap();
        let names: Vec<String> = text
            .lines()
            .flat_map(|line| {
                let request: serde_json::Value = serde_json::from_str(line).unwrap();
                request["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        for name in ["p2p_publish", "dht_put", "gossipsub_announce"] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {text}"
            );
        }
        assert!(text.contains("\"service.name\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Clients that hold connections open — a silent TCP connection on each port, half an
    /// HTTP request — do not keep the receiver from shutting down: past the grace period
    /// it closes them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_within_the_grace_period_whatever_clients_hold_open() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let receiver =
            OtlpReceiver::start(Config::default().with_shutdown_grace(Duration::from_millis(300)))
                .await
                .unwrap();
        let (grpc, http) = (receiver.grpc_addr(), receiver.http_addr());
        let silent_grpc = tokio::net::TcpStream::connect(grpc).await.unwrap();
        let _silent_http = tokio::net::TcpStream::connect(http).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(http).await.unwrap();
        half.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            .await
            .unwrap();
        let stalled = http2_client_that_stops_reading(grpc).await;
        // Bounded by far more than the grace period: this fails loudly instead of hanging.
        tokio::time::timeout(Duration::from_secs(20), receiver.shutdown())
            .await
            .expect("shutdown ended")
            .unwrap();
        for addr in [grpc, http] {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{addr} still accepts connections"
            );
        }
        tokio::time::timeout(Duration::from_secs(20), stalled)
            .await
            .expect("the HTTP/2 connection that stopped reading was closed")
            .unwrap();
        // Whatever the servers said last, every held connection ends (EOF or reset).
        for (what, mut stream) in [
            ("half-sent HTTP request", half),
            ("silent gRPC", silent_grpc),
        ] {
            let mut rest = Vec::new();
            let ended =
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
            assert!(ended.is_ok(), "the {what} connection is still open");
        }
    }

    /// An HTTP/2 client that sends an export and then never opens its receive window: the
    /// answer can never be sent. Returns the task driving the connection, which ends when
    /// the server closes it.
    async fn http2_client_that_stops_reading(
        grpc: std::net::SocketAddr,
    ) -> tokio::task::JoinHandle<()> {
        let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
        let (mut client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(format!(
            "http://{grpc}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        let message = request_of(&[span(1, 1, "unread")]).encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        body.send_data(Bytes::from(frame), true).unwrap();
        // The headers are not flow-controlled and arrive; the body never can.
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        std::mem::forget(client);
        driver
    }

    /// A connection on which nothing moves for the idle timeout is closed while the
    /// receiver keeps serving: a client that never sends its headers, or never reads the
    /// answer, cannot hold a connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_closed_while_serving() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let receiver = OtlpReceiver::start(
            Config::default().with_idle_timeout(Some(Duration::from_millis(300))),
        )
        .await
        .unwrap();
        let (grpc, http) = (receiver.grpc_addr(), receiver.http_addr());
        let mut half = tokio::net::TcpStream::connect(http).await.unwrap();
        half.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let silent = tokio::net::TcpStream::connect(grpc).await.unwrap();
        let stalled = http2_client_that_stops_reading(grpc).await;
        for (what, mut stream) in [("unfinished headers", half), ("silent gRPC", silent)] {
            let mut rest = Vec::new();
            let ended =
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
            assert!(ended.is_ok(), "the {what} connection is still open");
        }
        tokio::time::timeout(Duration::from_secs(20), stalled)
            .await
            .expect("the HTTP/2 connection that stopped reading was closed")
            .unwrap();
        // Still serving, and a busy exporter is not idle.
        let telemetry = node(Protocol::Grpc, &receiver, "after-idle");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        receiver.wait_for_spans(1, WAIT).await.unwrap();
    }

    /// A client that trickles its request headers a byte at a time moves bytes, so the
    /// idle timeout never fires; the header-read timeout closes its connection anyway,
    /// while an honest request on another connection is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_trickles_its_headers_loses_the_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let receiver = OtlpReceiver::start(
            Config::default().with_header_read_timeout(Some(Duration::from_millis(500))),
        )
        .await
        .unwrap();
        let mut slow = tokio::net::TcpStream::connect(receiver.http_addr())
            .await
            .unwrap();
        slow.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // The fault: one more header byte every 50 ms, for as long as the server listens.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut sent = 0usize;
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                tokio::select! {
                    read = slow.read_buf(&mut answer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    _ = tick.tick() => {
                        if slow.write_all(b"X").await.is_err() {
                            return;
                        }
                        sent += 1;
                    }
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the trickling client still holds its connection after {sent} bytes"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        // Still serving.
        let telemetry = node(Protocol::HttpProtobuf, &receiver, "after-trickle");
        emit_publish(telemetry.dispatch());
        telemetry.flush().await.unwrap();
        receiver.wait_for_spans(1, WAIT).await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_releases_the_ports_and_busy_ports_are_clear_errors() {
        let receiver = receiver().await;
        let (grpc, http) = (receiver.grpc_addr(), receiver.http_addr());
        let busy = OtlpReceiver::start(Config::default().with_http_addr(http))
            .await
            .unwrap_err();
        assert!(
            busy.to_string()
                .contains("could not bind the OTLP/HTTP listener"),
            "{busy}"
        );
        receiver.shutdown().await.unwrap();
        let again =
            OtlpReceiver::start(Config::default().with_grpc_addr(grpc).with_http_addr(http))
                .await
                .unwrap();
        assert_eq!((again.grpc_addr(), again.http_addr()), (grpc, http));
    }
}

mod environment {
    use super::*;

    const CHILD_GRPC: &str = "P2P_OTEL_TESTKIT_CHILD_GRPC";
    const CHILD_HTTP: &str = "P2P_OTEL_TESTKIT_CHILD_HTTP";

    /// Runs this test binary again, filtered to the child half below, with every
    /// `OTEL_EXPORTER_OTLP_*` variable pointing somewhere else or set to something hostile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn otel_exporter_variables_cannot_redirect_a_nodes_telemetry() {
        let receiver = receiver().await;
        let output = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "environment::child_half_exports_where_told",
                "--nocapture",
            ])
            .env(CHILD_GRPC, receiver.grpc_endpoint())
            .env(CHILD_HTTP, receiver.http_endpoint())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:9/v1/traces",
            )
            .env(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://127.0.0.1:9/v1/metrics",
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
            .env("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")
            .env("OTEL_EXPORTER_OTLP_HEADERS", "x-broken")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "1")
            .env("OTEL_TRACES_SAMPLER", "always_off")
            .env("OTEL_SERVICE_NAME", "hijacked")
            .env("OTEL_RESOURCE_ATTRIBUTES", "service.name=hijacked")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the child half did not run:\n{stdout}"
        );
        let traces = receiver
            .wait_until("the child's spans over gRPC and HTTP", WAIT, |spans| {
                ["child_grpc", "child_http"]
                    .iter()
                    .all(|n| spans.iter().any(|s| s.name == *n))
            })
            .await
            .unwrap();
        traces
            .expect(
                &expect::span()
                    .named("child_grpc")
                    .with_attr("service.name", "env-child"),
            )
            .unwrap();
        traces
            .expect(
                &expect::span()
                    .named("child_http")
                    .with_attr("service.name", "env-child"),
            )
            .unwrap();
    }

    /// The child half: does its work only when the parent above runs it (it reads, never
    /// sets, the environment). Run directly, it has no receiver to talk to and returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn child_half_exports_where_told() {
        let (Ok(grpc), Ok(http)) = (std::env::var(CHILD_GRPC), std::env::var(CHILD_HTTP)) else {
            return;
        };
        for (protocol, name) in [
            (Protocol::Grpc, "child_grpc"),
            (Protocol::HttpJson, "child_http"),
        ] {
            let telemetry = Telemetry::builder_for_endpoints(protocol, grpc.clone(), http.clone())
                .resource_attribute("service.name", "env-child")
                .build()
                .unwrap();
            tracing::dispatcher::with_default(telemetry.dispatch(), || {
                info_span!("child", otel.name = name).in_scope(|| {})
            });
            telemetry.flush().await.unwrap();
            telemetry.shutdown().await.unwrap();
        }
    }
}

/// OTLP 1.9 made an `AnyValue` with nothing set valid ("empty"). Every value shape —
/// empty, scalars, bytes, arrays and maps nested in each other, empties inside them —
/// sent over gRPC, HTTP protobuf and HTTP JSON comes back from the store exactly as sent
/// (model → OTLP again), and an empty one shows as `(empty)`.
mod empty_values {
    use std::collections::BTreeMap;

    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, KeyValue as OtlpKeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use proptest::prelude::*;

    use super::*;
    use p2p_otel_testkit::model::spans_to_otlp;

    fn some(value: any_value::Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn any_value_tree() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(AnyValue { value: None }),
            "[a-z ]{0,6}".prop_map(|s| some(any_value::Value::StringValue(s))),
            any::<bool>().prop_map(|b| some(any_value::Value::BoolValue(b))),
            any::<i64>().prop_map(|n| some(any_value::Value::IntValue(n))),
            (-1e9..1e9f64).prop_map(|x| some(any_value::Value::DoubleValue(x))),
            proptest::collection::vec(any::<u8>(), 0..4)
                .prop_map(|b| some(any_value::Value::BytesValue(b))),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3)
                    .prop_map(|values| some(any_value::Value::ArrayValue(ArrayValue { values }))),
                proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3).prop_map(|map| {
                    some(any_value::Value::KvlistValue(KeyValueList {
                        values: key_values(map),
                    }))
                }),
            ]
        })
    }

    fn key_values(map: BTreeMap<String, AnyValue>) -> Vec<OtlpKeyValue> {
        map.into_iter()
            .map(|(key, value)| OtlpKeyValue {
                key,
                value: Some(value),
                ..OtlpKeyValue::default()
            })
            .collect()
    }

    fn request(span_id: u8, attributes: &BTreeMap<String, AnyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![7; 16],
                        span_id: vec![span_id; 8],
                        name: format!("values_{span_id}"),
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        attributes: key_values(attributes.clone()),
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    /// The attributes of the stored span named `name`, as OTLP again.
    fn stored(receiver: &OtlpReceiver, name: &str) -> BTreeMap<String, AnyValue> {
        let spans: Vec<_> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        assert_eq!(spans.len(), 1, "{name}: {spans:?}");
        let otlp = spans_to_otlp(&spans);
        otlp[0].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_value_shape_comes_back_as_sent_over_every_protocol(
            attributes in proptest::collection::btree_map("[a-z]{1,6}", any_value_tree(), 0..5),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let receiver = receiver().await;
                let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint()).await.unwrap();
                grpc.export(request(1, &attributes)).await.unwrap();
                let (status, ..) = post(&receiver, "/v1/traces", &[PROTOBUF], request(2, &attributes).encode_to_vec()).await;
                assert_eq!(status, 200);
                let json = serde_json::to_vec(&request(3, &attributes)).unwrap();
                let (status, _, body) = post(&receiver, "/v1/traces", &[JSON], json).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                receiver.wait_for_spans(3, WAIT).await.unwrap();
                for (name, protocol) in [("values_1", "gRPC"), ("values_2", "HTTP protobuf"), ("values_3", "HTTP JSON")] {
                    assert_eq!(stored(&receiver, name), attributes, "over {protocol}");
                }
                receiver.shutdown().await.unwrap();
            });
        }
    }

    #[tokio::test]
    async fn an_empty_value_shows_as_empty_in_the_tree() {
        let receiver = receiver().await;
        let attributes = BTreeMap::from([
            ("nothing".to_owned(), AnyValue { value: None }),
            (
                "list".to_owned(),
                some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        some(any_value::Value::StringValue("a".into())),
                        AnyValue { value: None },
                    ],
                })),
            ),
        ]);
        let (status, ..) = post(
            &receiver,
            "/v1/traces",
            &[PROTOBUF],
            request(4, &attributes).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        let traces = receiver.wait_for_spans(1, WAIT).await.unwrap();
        let span = traces.expect(&expect::span().named("values_4")).unwrap();
        assert_eq!(span.attribute("nothing"), Some(&Value::Empty));
        let rendered = traces.render();
        assert!(rendered.contains("nothing = (empty)"), "{rendered}");
        assert!(rendered.contains(r#"list = ["a", (empty)]"#), "{rendered}");
    }
}

/// OTLP 1.11: a resource's entity references are kept with it — in the store, whichever
/// way the request came, and in `traces.jsonl`.
#[tokio::test]
async fn resource_entity_refs_are_kept_and_written() {
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, EntityRef as OtlpEntityRef, KeyValue as OtlpKeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let (receiver, dir) = receiver_writing_files("entities").await;
    let request = |span_id: u8| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(OtlpResource {
                attributes: vec![OtlpKeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("ggen-p2p".into())),
                    }),
                    ..OtlpKeyValue::default()
                }],
                entity_refs: vec![OtlpEntityRef {
                    r#type: "service".into(),
                    id_keys: vec!["service.name".into()],
                    ..OtlpEntityRef::default()
                }],
                ..OtlpResource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![9; 16],
                    span_id: vec![span_id; 8],
                    name: format!("with_entities_{span_id}"),
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 2,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .unwrap();
    grpc.export(request(1)).await.unwrap();
    let (status, ..) = post(
        &receiver,
        "/v1/traces",
        &[PROTOBUF],
        request(2).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    receiver.wait_for_spans(2, WAIT).await.unwrap();
    for span in receiver.spans() {
        let entities = &span.resource.entity_refs;
        assert_eq!(entities.len(), 1, "{}: {entities:?}", span.name);
        assert_eq!(entities[0].entity_type, "service");
        assert_eq!(entities[0].id_keys, ["service.name"]);
    }
    let text = std::fs::read_to_string(dir.join("traces.jsonl")).unwrap();
    assert_eq!(text.matches("\"entityRefs\"").count(), 2, "{text}");
    receiver.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
