//! Property-based tests of the kit: decoding arbitrary bytes, rendering in any arrival
//! order, OTLP protobuf and JSON round trips. (Operation sequences over a mesh are the
//! marketplace crate's `tests/properties.rs`.)
//!
//! `PROPTEST_CASES=N` raises the depth (defaults are sized for CI); failures shrink to the
//! smallest failing input and are persisted in `proptest-regressions/properties.txt`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use p2p_otel_testkit::model::{spans_from_otlp, spans_to_otlp, SpanRecord};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::strategy::{self, arb_span_set};
use p2p_otel_testkit::TraceSet;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use prost::Message;

/// CI-sized defaults; `PROPTEST_CASES` raises them.
fn config(cases: u32) -> ProptestConfig {
    strategy::config(cases, "proptest-regressions/properties.txt")
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
}
