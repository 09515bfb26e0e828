//! Cost per span with 5 fields, created, entered, exited and closed, under:
//! (a) a bare `tracing_subscriber::registry()`,
//! (b) registry + `SpanCaptureLayer`,
//! (c) registry + tracing-opentelemetry layer + opentelemetry_sdk `InMemorySpanExporter`
//!     (simple processor, so each span is exported when it ends, as (b) stores it).
//! Target: (b) ≤ 1 µs per span and ≥ 3× faster than (c).
//!
//! Stored spans are dropped between samples, outside the timed region, so memory stays flat.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use p2p_otel_testkit::SpanCaptureLayer;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn one_span() {
    tracing::info_span!(
        "p2p_search",
        operation = "search",
        query_text = "serde",
        query_limit = 10,
        cache_hit = false,
        total_latency_ms = 1.5,
    )
    .in_scope(|| {});
}

/// Times `iters` spans under `dispatch`, then runs `reset` untimed.
fn timed(dispatch: &Dispatch, iters: u64, reset: impl Fn()) -> Duration {
    let elapsed = tracing::dispatcher::with_default(dispatch, || {
        let start = Instant::now();
        for _ in 0..iters {
            one_span();
        }
        start.elapsed()
    });
    reset();
    elapsed
}

fn per_span(c: &mut Criterion) {
    let mut group = c.benchmark_group("span_with_5_fields");

    let bare = Dispatch::new(tracing_subscriber::registry());
    group.bench_function("a_registry", |b| b.iter_custom(|iters| timed(&bare, iters, || {})));

    let (layer, handle) = SpanCaptureLayer::new();
    let capture = Dispatch::new(tracing_subscriber::registry().with(layer));
    group.bench_function("b_registry_capture_layer", |b| {
        b.iter_custom(|iters| timed(&capture, iters, || handle.clear()))
    });

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let otel = Dispatch::new(tracing_subscriber::registry().with(otel_layer));
    group.bench_function("c_registry_otel_in_memory_exporter", |b| {
        b.iter_custom(|iters| timed(&otel, iters, || exporter.reset()))
    });

    group.finish();
}

criterion_group!(benches, per_span);
criterion_main!(benches);
