//! Ingestion throughput, in spans per second, in one run:
//! - pre-encoded `ExportTraceServiceRequest` batches of 512 spans sent by a tonic client
//!   (8 batches in flight per iteration, on one HTTP/2 connection) into
//!   (a) our `OtlpReceiver` — timed until all spans are stored and visible to a waiter —
//!   and (b) fake-opentelemetry-collector, drained concurrently by a task (its read side
//!   polls a bounded channel, which is part of what is compared);
//! - the full path: spans created with the OpenTelemetry API on a node's `Telemetry`,
//!   batched by opentelemetry_sdk, exported by opentelemetry-otlp over gRPC, stored.
//!
//! Target: (a) ≥ 500,000 spans/s on the 2-core reference machine and ≥ 3× (b).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fake_opentelemetry_collector::FakeCollectorServer;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use p2p_otel_testkit::model::{spans_to_otlp, Resource, SpanId, SpanRecord, TraceId, Value};
use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
use prost::Message;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Status;

const SPANS_PER_BATCH: usize = 512;
const BATCHES_PER_ITERATION: usize = 8;
const SPANS_PER_ITERATION: usize = SPANS_PER_BATCH * BATCHES_PER_ITERATION;
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends already-encoded protobuf bytes and ignores the response body.
#[derive(Clone, Copy, Default)]
struct PreEncoded;

struct RawEncoder;
struct IgnoreDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for IgnoreDecoder {
    type Item = ();
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = IgnoreDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

/// Eight distinct batches of 512 realistic spans (5 attributes, a resource), encoded once.
fn batches() -> Vec<Bytes> {
    let mut resource = Resource::default();
    resource
        .attributes
        .insert("service.name".into(), "ggen-p2p".into());
    resource
        .attributes
        .insert("service.instance.id".into(), "node-1".into());
    let resource = Arc::new(resource);
    (0..BATCHES_PER_ITERATION)
        .map(|batch| {
            let spans: Vec<SpanRecord> = (0..SPANS_PER_BATCH)
                .map(|i| {
                    let n = (batch * SPANS_PER_BATCH + i + 1) as u64;
                    let mut trace = [0u8; 16];
                    trace[..8].copy_from_slice(&n.to_be_bytes());
                    let mut span = SpanRecord::new(
                        TraceId::from_bytes(trace),
                        SpanId::from_bytes(n.to_be_bytes()),
                        "p2p_search",
                    );
                    span.start_unix_nanos = 1_700_000_000_000_000_000 + n;
                    span.end_unix_nanos = Some(span.start_unix_nanos + 1_000);
                    span.resource = Arc::clone(&resource);
                    for (key, value) in [
                        ("operation", Value::from("search")),
                        ("query_text", Value::from("serde")),
                        ("query_limit", Value::Int(10)),
                        ("cache_hit", Value::Bool(false)),
                        ("total_latency_ms", Value::Double(1.5)),
                    ] {
                        span.attributes.insert(key.into(), value);
                    }
                    span
                })
                .collect();
            let request = ExportTraceServiceRequest {
                resource_spans: spans_to_otlp(&spans),
            };
            Bytes::from(request.encode_to_vec())
        })
        .collect()
}

async fn send_all(channel: &Channel, batches: &[Bytes]) {
    let sends = batches.iter().map(|batch| {
        let mut client = tonic::client::Grpc::new(channel.clone());
        let batch = batch.clone();
        async move {
            client
                .ready()
                .await
                .map_err(|e| Status::unknown(e.to_string()))?;
            client
                .unary(
                    tonic::Request::new(batch),
                    http::uri::PathAndQuery::from_static(EXPORT_PATH),
                    PreEncoded,
                )
                .await
        }
    });
    for result in futures_util::future::join_all(sends).await {
        if let Err(status) = result {
            eprintln!("export failed: {status}");
        }
    }
}

fn ingestion(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let batches = batches();
    let mut group = c.benchmark_group("ingest_512_span_batches");
    group.throughput(Throughput::Elements(SPANS_PER_ITERATION as u64));

    let receiver = runtime
        .block_on(OtlpReceiver::start(Config::default()))
        .expect("receiver");
    let channel = runtime
        .block_on(
            Channel::from_shared(receiver.grpc_endpoint())
                .expect("uri")
                .connect(),
        )
        .expect("channel");
    group.bench_function("a_otlp_receiver", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (receiver, channel, batches) = (&receiver, channel.clone(), &batches);
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    receiver.clear();
                    let start = Instant::now();
                    send_all(&channel, batches).await;
                    receiver
                        .wait_for_span_count(SPANS_PER_ITERATION, TIMEOUT)
                        .await
                        .expect("every span stored");
                    elapsed += start.elapsed();
                }
                elapsed
            }
        })
    });

    let drained = Arc::new(AtomicUsize::new(0));
    let drained_signal = Arc::new(Notify::new());
    let fake_endpoint = runtime.block_on(async {
        let mut server = FakeCollectorServer::start().await.expect("fake collector");
        let endpoint = server.endpoint();
        let (drained, signal) = (Arc::clone(&drained), Arc::clone(&drained_signal));
        tokio::spawn(async move {
            loop {
                let spans = server.exported_spans(1, Duration::from_millis(1)).await;
                if !spans.is_empty() {
                    drained.fetch_add(spans.len(), Ordering::SeqCst);
                    signal.notify_waiters();
                }
            }
        });
        endpoint
    });
    let fake_channel = runtime
        .block_on(Channel::from_shared(fake_endpoint).expect("uri").connect())
        .expect("channel");
    group.bench_function("b_fake_opentelemetry_collector", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (channel, batches) = (fake_channel.clone(), &batches);
            let (drained, signal) = (Arc::clone(&drained), Arc::clone(&drained_signal));
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let target = drained.load(Ordering::SeqCst) + SPANS_PER_ITERATION;
                    let start = Instant::now();
                    send_all(&channel, batches).await;
                    while drained.load(Ordering::SeqCst) < target {
                        let notified = signal.notified();
                        if drained.load(Ordering::SeqCst) >= target {
                            break;
                        }
                        let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("full_path_otlp_batch_exporter");
    group.throughput(Throughput::Elements(SPANS_PER_ITERATION as u64));
    let telemetry = runtime.block_on(async {
        Telemetry::builder(Protocol::Grpc, &receiver)
            .resource_attribute("service.name", "ggen-p2p")
            .build()
            .expect("telemetry")
    });
    let tracer = telemetry.tracer_provider().tracer("bench");
    group.bench_function("grpc_otel_api_to_receiver", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (receiver, telemetry, tracer) = (&receiver, &telemetry, &tracer);
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    receiver.clear();
                    let start = Instant::now();
                    for _ in 0..SPANS_PER_ITERATION {
                        tracer.in_span("p2p_search", |_| {});
                    }
                    telemetry.flush().await.expect("flush");
                    receiver
                        .wait_for_span_count(SPANS_PER_ITERATION, TIMEOUT)
                        .await
                        .expect("every span stored");
                    elapsed += start.elapsed();
                }
                elapsed
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = ingestion
}
criterion_main!(benches);
