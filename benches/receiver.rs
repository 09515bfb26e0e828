//! Ingestion throughput, in spans per second, in one run:
//! - pre-encoded `ExportTraceServiceRequest` batches of 512 spans sent by a tonic client
//!   (8 batches in flight per iteration, on one HTTP/2 connection) into
//!   (a) our `OtlpReceiver` — timed until all spans are stored and visible to a waiter —
//!   and (b) fake-opentelemetry-collector, drained concurrently by a task (its read side
//!   polls a bounded channel, which is part of what is compared);
//! - the full path: spans created with the OpenTelemetry API on a node's `Telemetry`,
//!   batched by opentelemetry_sdk, exported by opentelemetry-otlp over gRPC, stored —
//!   with gzip (the kit's default) and without (like for like with the ingest group); and
//!   beside them the SDK's own ceiling: the same spans and batch settings into an exporter
//!   that discards each batch, so nothing is encoded, sent or stored; and the receiver's
//!   ceiling for an exporter that, like the SDK's batch processor, sends one request at a
//!   time: the ingest group's pre-encoded batches, one in flight.
//!
//! - checking against a telemetry contract: the reference marketplace's
//!   (`crates/marketplace/contract`), on marketplace-shaped traces (a publish with its DHT
//!   write, announcement and a remote reception; a search with a remote handler), side by
//!   side with ingesting the same spans.
//!
//! - a TraceQL query with two filters and a structural operator
//!   (`{ name = "p2p_search" } >> { kind = server }`) over the same marketplace-shaped
//!   traces, side by side with finding the same spans with the matcher API
//!   (`expect::span().with_kind(Server).with_ancestor(expect::span().named("p2p_search"))`).
//!
//! Targets: (a) ≥ 500,000 spans/s on the 2-core reference machine and ≥ 3× (b); the
//! contract check ≥ 1,000,000 spans/s on one core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fake_opentelemetry_collector::FakeCollectorServer;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use p2p_otel_testkit::contract::Contract;
use p2p_otel_testkit::model::{
    spans_to_otlp, ParentRef, Resource, SpanId, SpanKind, SpanRecord, TraceId, Value,
};
use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
use p2p_otel_testkit::traceql::Query;
use p2p_otel_testkit::tree::expect;
use p2p_otel_testkit::TraceSet;
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

/// The bench's realistic span number `n`: a search with up to 5 attributes, in a trace of
/// its own (`tag` keeps the traces of different uses apart).
fn search_span(n: u64, tag: u8, attributes: usize, resource: &Arc<Resource>) -> SpanRecord {
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&n.to_be_bytes());
    trace[8] = tag;
    let mut span = SpanRecord::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(n.to_be_bytes()),
        "p2p_search",
    );
    span.start_unix_nanos = 1_700_000_000_000_000_000 + n;
    span.end_unix_nanos = Some(span.start_unix_nanos + 1_000);
    span.resource = Arc::clone(resource);
    for (key, value) in [
        ("operation", Value::from("search")),
        ("query_text", Value::from("serde")),
        ("query_limit", Value::Int(10)),
        ("cache_hit", Value::Bool(false)),
        ("total_latency_ms", Value::Double(1.5)),
    ]
    .into_iter()
    .take(attributes)
    {
        span.attributes.insert(key.into(), value);
    }
    span
}

fn node_resource() -> Arc<Resource> {
    let mut resource = Resource::default();
    resource
        .attributes
        .insert("service.name".into(), "ggen-p2p".into());
    resource
        .attributes
        .insert("service.instance.id".into(), "node-1".into());
    Arc::new(resource)
}

/// One encoded request of `SPANS_PER_BATCH` spans numbered from `first`.
fn encoded_batch(first: u64, tag: u8, attributes: usize, resource: &Arc<Resource>) -> Bytes {
    let spans: Vec<SpanRecord> = (first..first + SPANS_PER_BATCH as u64)
        .map(|n| search_span(n, tag, attributes, resource))
        .collect();
    Bytes::from(
        ExportTraceServiceRequest {
            resource_spans: spans_to_otlp(&spans),
        }
        .encode_to_vec(),
    )
}

/// Eight distinct batches of 512 realistic spans (5 attributes, a resource), encoded once.
fn batches() -> Vec<Bytes> {
    let resource = node_resource();
    (0..BATCHES_PER_ITERATION as u64)
        .map(|batch| encoded_batch(1 + batch * SPANS_PER_BATCH as u64, 0, 5, &resource))
        .collect()
}

/// A tonic channel to `endpoint`, connected.
fn connect(runtime: &Runtime, endpoint: String) -> Channel {
    runtime
        .block_on(Channel::from_shared(endpoint).expect("uri").connect())
        .expect("channel")
}

/// Sends one pre-encoded batch and waits for its answer.
async fn send_one(channel: &Channel, batch: &Bytes) -> Result<(), Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    client
        .unary(
            tonic::Request::new(batch.clone()),
            http::uri::PathAndQuery::from_static(EXPORT_PATH),
            PreEncoded,
        )
        .await
        .map(|_| ())
}

/// Sends every batch at once (8 in flight).
async fn send_all(channel: &Channel, batches: &[Bytes]) {
    let sends = batches.iter().map(|batch| send_one(channel, batch));
    for result in futures_util::future::join_all(sends).await {
        if let Err(status) = result {
            eprintln!("export failed: {status}");
        }
    }
}

/// Sends the batches one at a time, each after the answer to the one before, as the
/// SDK's batch span processor exports.
async fn send_one_at_a_time(channel: &Channel, batches: &[Bytes]) {
    for batch in batches {
        if let Err(status) = send_one(channel, batch).await {
            eprintln!("export failed: {status}");
        }
    }
}

/// Times `iters` rounds of sending `batches` (`spans` spans in all) into an emptied
/// receiver, each until every span is stored and visible to a waiter.
async fn ingest(
    receiver: &OtlpReceiver,
    channel: Channel,
    batches: &[Bytes],
    spans: usize,
    iters: u64,
) -> Duration {
    ingest_with(receiver, channel, batches, spans, iters, true).await
}

/// [`ingest`], with every batch in flight at once or (`concurrently` false) one at a time.
async fn ingest_with(
    receiver: &OtlpReceiver,
    channel: Channel,
    batches: &[Bytes],
    spans: usize,
    iters: u64,
    concurrently: bool,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        receiver.clear();
        let start = Instant::now();
        if concurrently {
            send_all(&channel, batches).await;
        } else {
            send_one_at_a_time(&channel, batches).await;
        }
        receiver
            .wait_for_span_count(spans, TIMEOUT)
            .await
            .expect("every span stored");
        elapsed += start.elapsed();
    }
    elapsed
}

fn ingestion(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let batches = batches();
    let mut group = c.benchmark_group("ingest_512_span_batches");
    group.throughput(Throughput::Elements(SPANS_PER_ITERATION as u64));

    let receiver = runtime
        .block_on(OtlpReceiver::start(Config::default()))
        .expect("receiver");
    let channel = connect(&runtime, receiver.grpc_endpoint());
    group.bench_function("a_otlp_receiver", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            ingest(
                &receiver,
                channel.clone(),
                &batches,
                SPANS_PER_ITERATION,
                iters,
            )
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
    let fake_channel = connect(&runtime, fake_endpoint);
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
    // Gzip on (the kit's default, as production exporters send) and off (like for like
    // with the ingest group's uncompressed batches); the kit's two exports in flight, and
    // the SDK's processor exporting serially as production runs it.
    for (name, gzip, exports) in [
        ("grpc_otel_api_to_receiver", true, 2),
        ("grpc_otel_api_to_receiver_no_gzip", false, 2),
        ("grpc_otel_api_to_receiver_no_gzip_serial", false, 1),
    ] {
        let telemetry = runtime.block_on(async {
            Telemetry::builder(Protocol::Grpc, &receiver)
                .resource_attribute("service.name", "ggen-p2p")
                .gzip(gzip)
                .max_concurrent_exports(exports)
                .build()
                .expect("telemetry")
        });
        let tracer = telemetry.tracer_provider().tracer("bench");
        group.bench_function(name, |b| {
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
    }
    // The same pre-encoded batches as the ingest group, sent one at a time as the SDK's
    // batch processor sends: the most any exporter that waits for each answer could
    // reach, converting and encoding nothing.
    group.bench_function("grpc_pre_encoded_one_batch_in_flight", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            ingest_with(
                &receiver,
                channel.clone(),
                &batches,
                SPANS_PER_ITERATION,
                iters,
                false,
            )
        })
    });
    // `Telemetry`'s batch settings (its queue, batch size and delay), so the ceiling
    // differs from the full path only in what happens to a batch.
    let discarding = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(DiscardingExporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(65_536)
                        .with_max_export_batch_size(512)
                        .with_scheduled_delay(Duration::from_millis(200))
                        .build(),
                )
                .build(),
        )
        .build();
    let tracer = discarding.tracer("bench");
    group.bench_function("otel_api_to_discarding_exporter", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (provider, tracer) = (&discarding, &tracer);
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for _ in 0..SPANS_PER_ITERATION {
                        tracer.in_span("p2p_search", |_| {});
                    }
                    tokio::task::block_in_place(|| provider.force_flush()).expect("flush");
                    elapsed += start.elapsed();
                }
                elapsed
            }
        })
    });
    group.finish();
}

/// Takes each batch and drops it: the SDK's own ceiling, with nothing encoded or sent.
#[derive(Debug)]
struct DiscardingExporter;

impl SpanExporter for DiscardingExporter {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// Resident memory of this process, from `/proc/self/statm` (Linux; 0 elsewhere).
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Sends one-span requests one after another; returns each one's latency.
async fn one_span_requests(channel: &Channel, first: u64, count: u64) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count as usize);
    for n in first..first + count {
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&n.to_be_bytes());
        trace[8] = 2;
        let mut span = SpanRecord::new(
            TraceId::from_bytes(trace),
            SpanId::from_bytes(n.to_be_bytes()),
            "p2p_publish",
        );
        span.start_unix_nanos = 1;
        span.end_unix_nanos = Some(2);
        span.attributes.insert("package_id".into(), "pkg".into());
        let body = Bytes::from(
            ExportTraceServiceRequest {
                resource_spans: spans_to_otlp(&[span]),
            }
            .encode_to_vec(),
        );
        let start = Instant::now();
        send_all(channel, &[body]).await;
        latencies.push(start.elapsed());
    }
    latencies
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[index]
}

/// Memory per stored span and request latency as the store grows from 10 thousand to a
/// million spans (target: ≤ 400 bytes per span, latency flat within 2×). Criterion times
/// a one-span request at each size; the p99 of 2,000 such requests and the bytes per
/// span are printed beside it.
fn store_growth(c: &mut Criterion) {
    const LARGE: u64 = 1_000_000;
    let runtime = Runtime::new().expect("a tokio runtime");
    // One case per process: memory freed by an earlier case would be reused unseen.
    for attributes in [5] {
        let receiver = runtime
            .block_on(OtlpReceiver::start(
                Config::default().with_span_capacity(2 * LARGE as usize),
            ))
            .expect("receiver");
        let channel = connect(&runtime, receiver.grpc_endpoint());
        let resource = node_resource();
        let wire = encoded_batch(1, 1, attributes, &resource).len() / SPANS_PER_BATCH;
        let before = resident_bytes();
        let mut filled = 0u64;
        let mut next_single = 0u64;
        let mut group = c.benchmark_group(format!("store_growth_{attributes}_attributes"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        for target in [10_000, LARGE] {
            runtime.block_on(async {
                while filled < target {
                    let batch: Vec<Bytes> = (0..BATCHES_PER_ITERATION as u64)
                        .map(|b| {
                            let first = 1 + filled + b * SPANS_PER_BATCH as u64;
                            encoded_batch(first, 1, attributes, &resource)
                        })
                        .collect();
                    send_all(&channel, &batch).await;
                    filled += SPANS_PER_ITERATION as u64;
                }
            });
            let stored = receiver.span_count();
            let resident = resident_bytes().saturating_sub(before);
            let mut latencies =
                runtime.block_on(one_span_requests(&channel, 1 << 40 | next_single, 2_000));
            next_single += 2_000;
            println!(
                "store_growth: {attributes} attribute(s), {wire} bytes/span on the wire, \
                 {stored} spans stored: {:.0} bytes/span resident, {:.0} bytes/span \
                 estimated; one-span request p50 {:?}, p99 {:?}",
                resident as f64 / stored as f64,
                receiver.span_store_bytes() as f64 / stored as f64,
                percentile(&mut latencies, 0.50),
                percentile(&mut latencies, 0.99),
            );
            // The same requests to an empty receiver in the same process: what the process
            // (allocator, caches) adds, apart from the store's size.
            let empty = runtime
                .block_on(OtlpReceiver::start(Config::default()))
                .expect("receiver");
            let empty_channel = connect(&runtime, empty.grpc_endpoint());
            let mut baseline = runtime.block_on(one_span_requests(&empty_channel, 1, 2_000));
            println!(
                "store_growth: beside it, an empty receiver: p50 {:?}, p99 {:?}",
                percentile(&mut baseline, 0.50),
                percentile(&mut baseline, 0.99),
            );
            drop(empty_channel);
            runtime.block_on(empty.shutdown()).expect("shutdown");
            let label = if target == LARGE { "1m" } else { "10k" };
            group.bench_function(format!("one_span_request_at_{label}_stored"), |b| {
                b.to_async(&runtime).iter_custom(|iters| {
                    let channel = channel.clone();
                    let first = 1 << 41 | next_single;
                    next_single += iters;
                    async move { one_span_requests(&channel, first, iters).await.iter().sum() }
                })
            });
        }
        group.finish();
        drop(channel);
        runtime
            .block_on(async { receiver.shutdown().await })
            .expect("shutdown");
    }
}

/// A node's resource, as the marketplace's nodes export it.
fn marketplace_node(instance: &str) -> Arc<Resource> {
    let mut resource = Resource::default();
    for (key, value) in [
        ("service.name", "ggen-p2p"),
        ("service.version", "0.1.0"),
        ("service.instance.id", instance),
    ] {
        resource.attributes.insert(key.into(), value.into());
    }
    Arc::new(resource)
}

/// Seven spans per step: a publish (DHT write, announcement, a remote reception) and a
/// search (a request, a remote handler), attributes as the marketplace records them.
fn marketplace_spans(steps: u64) -> Vec<SpanRecord> {
    let (a, b) = (marketplace_node("node-a"), marketplace_node("node-b"));
    let mut spans = Vec::new();
    for step in 0..steps {
        for (tag, tree) in [
            (
                1u8,
                vec![
                    (
                        "p2p_publish",
                        SpanKind::Internal,
                        None,
                        &a,
                        vec![
                            ("operation", Value::from("publish")),
                            ("peer_id", "node-a".into()),
                            ("package_id", "acme/tool".into()),
                            ("package_version", "1.0.0".into()),
                            ("dht_replication", Value::Int(3)),
                            ("gossipsub_peers", Value::Int(2)),
                        ],
                    ),
                    (
                        "dht_put",
                        SpanKind::Client,
                        Some((0, false)),
                        &a,
                        vec![
                            ("operation", "store_package".into()),
                            ("package_id", "acme/tool".into()),
                            ("dht_key", "/ggen/pkg/acme/tool/1.0.0".into()),
                            ("dht_replication", Value::Int(3)),
                            ("dht_query_id", "QueryId(7)".into()),
                        ],
                    ),
                    (
                        "gossipsub_announce",
                        SpanKind::Producer,
                        Some((0, false)),
                        &a,
                        vec![
                            ("operation", "announce_package".into()),
                            ("topic", "/ggen/packages/v1".into()),
                            ("message_id", "m-1".into()),
                            ("subscriber_count", Value::Int(2)),
                        ],
                    ),
                    (
                        "gossipsub_receive",
                        SpanKind::Consumer,
                        Some((2, true)),
                        &b,
                        vec![
                            ("operation", "receive_announcement".into()),
                            ("peer_id", "node-b".into()),
                            ("topic", "/ggen/packages/v1".into()),
                            ("message_id", "m-1".into()),
                            ("propagation_ms", Value::Double(1.2)),
                            ("package_id", "acme/tool".into()),
                        ],
                    ),
                ],
            ),
            (
                2u8,
                vec![
                    (
                        "p2p_search",
                        SpanKind::Internal,
                        None,
                        &a,
                        vec![
                            ("operation", Value::from("search")),
                            ("peer_id", "node-a".into()),
                            ("query_text", "tool".into()),
                            ("query_limit", Value::Int(10)),
                            ("local_results", Value::Int(1)),
                            ("remote_results", Value::Int(1)),
                            ("cache_hit", Value::Bool(false)),
                            ("total_latency_ms", Value::Double(2.5)),
                        ],
                    ),
                    (
                        "send_request",
                        SpanKind::Client,
                        Some((0, false)),
                        &a,
                        vec![
                            ("operation", "remote_search".into()),
                            ("target_peer", "node-b".into()),
                        ],
                    ),
                    (
                        "handle_dht_query",
                        SpanKind::Server,
                        Some((1, true)),
                        &b,
                        vec![
                            ("operation", "handle_search".into()),
                            ("peer_id", "node-b".into()),
                            ("query_text", "tool".into()),
                            ("results", Value::Int(1)),
                            ("remote_peer", "node-a".into()),
                        ],
                    ),
                ],
            ),
        ] {
            let mut trace = [0u8; 16];
            trace[..8].copy_from_slice(&step.to_be_bytes());
            trace[8] = tag;
            let id = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes[..6].copy_from_slice(&step.to_be_bytes()[2..]);
                bytes[6] = tag;
                bytes[7] = i as u8 + 1;
                SpanId::from_bytes(bytes)
            };
            for (i, (name, kind, parent, resource, attributes)) in tree.into_iter().enumerate() {
                let mut span = SpanRecord::new(TraceId::from_bytes(trace), id(i), name);
                span.kind = kind;
                span.parent = parent.map(|(p, remote)| ParentRef {
                    span_id: id(p),
                    remote: Some(remote),
                });
                span.start_unix_nanos = 1_700_000_000_000_000_000 + step * 100 + i as u64;
                span.end_unix_nanos = Some(span.start_unix_nanos + 50);
                span.resource = Arc::clone(resource);
                span.attributes
                    .extend(attributes.into_iter().map(|(k, v)| (k.to_owned(), v)));
                spans.push(span);
            }
        }
    }
    spans
}

/// Spans checked per second against the reference contract, beside ingesting the same
/// spans into the receiver over gRPC, in one run.
fn contract_check(c: &mut Criterion) {
    let contract = Contract::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/marketplace/contract"
    ))
    .expect("the reference contract");
    let spans = marketplace_spans(585);
    let count = spans.len();
    let traces = TraceSet::new(spans.clone());
    // Nothing to find: the bench measures checking, not reporting.
    assert!(!contract.check(&traces, &[], &[]).has_violations());
    let batches: Vec<Bytes> = spans
        .chunks(count.div_ceil(BATCHES_PER_ITERATION))
        .map(|chunk| {
            Bytes::from(
                ExportTraceServiceRequest {
                    resource_spans: spans_to_otlp(chunk),
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let runtime = Runtime::new().expect("a tokio runtime");
    let receiver = runtime
        .block_on(OtlpReceiver::start(Config::default()))
        .expect("receiver");
    let channel = connect(&runtime, receiver.grpc_endpoint());
    let mut group = c.benchmark_group("contract_check_vs_ingest");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("a_ingest_grpc", |b| {
        b.to_async(&runtime)
            .iter_custom(|iters| ingest(&receiver, channel.clone(), &batches, count, iters))
    });
    group.bench_function("b_check_reference_contract", |b| {
        b.iter(|| contract.check(&traces, &[], &[]))
    });
    group.finish();
}

/// Spans a structural TraceQL query walks per second, beside the matcher API finding the
/// same spans in the same traces, in one run.
fn traceql_query(c: &mut Criterion) {
    let traces = TraceSet::new(marketplace_spans(585));
    let count = traces.span_count();
    let query = Query::parse(r#"{ name = "p2p_search" } >> { kind = server }"#).expect("a query");
    let matcher = expect::span()
        .with_kind(SpanKind::Server)
        .with_ancestor(expect::span().named("p2p_search"));
    let by_query: usize = query
        .select(&traces)
        .iter()
        .map(|set| set.spans().len())
        .sum();
    assert_eq!(by_query, traces.find(&matcher).len());
    assert_eq!(by_query, 585, "one remote handler per search");
    let mut group = c.benchmark_group("traceql_vs_matchers");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("a_matcher_api", |b| b.iter(|| traces.find(&matcher)));
    group.bench_function("b_traceql_structural", |b| b.iter(|| query.select(&traces)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = ingestion, store_growth, contract_check, traceql_query
}
criterion_main!(benches);
