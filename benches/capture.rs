//! Cost per span with 5 fields, created, entered, exited and closed, under:
//! (a) a bare `tracing_subscriber::registry()`,
//! (b) registry + `SpanCaptureLayer`,
//! (b2) `capture::dispatch()`: (b) behind the capture's level and target filter (`INFO`),
//!     the set-up tests use — within 10 % of (b) is the target,
//! (b3) `capture::Builder::opentelemetry_layer(true)`: (b2) with tracing-opentelemetry's
//!     layer beside it (exporting nowhere), what a mesh's per-node capture runs so code
//!     that propagates with the standard OpenTelemetry API shows its remote parents,
//! (c) registry + tracing-opentelemetry layer + opentelemetry_sdk `InMemorySpanExporter`
//!     (simple processor, so each span is exported when it ends, as (b) stores it);
//! (d) a `Telemetry` dispatch, as a node of a mesh runs under: the OpenTelemetry layer,
//!     the wire tap, the batch processor (exporting over OTLP/gRPC to an embedded receiver
//!     on the runtime's threads, untimed) and the capture — what each span costs the
//!     thread that closes it (batches only: the SDK's queue bounds a retained run).
//! Target: (b) ≤ 1 µs per span and ≥ 3× faster than (c).
//!
//! Time is the benchmarking thread's CPU time (user and system, so page faults count),
//! not wall time: the ratios hold on a busy machine, where wall time also counts the time
//! the thread waited for a core.
//!
//! Before them, `print_retained_split` prints steadier figures for the capture's ratio to
//! the bare registry with spans retained: criterion's retained samples differ in size (so in
//! how much fresh memory each touches) and move by ±30 % between runs on a small virtual
//! machine. The split runs fixed rounds of `SPLIT_SPANS` retained spans, registry and
//! capture alternating which goes first, and prints the medians twice: on one registry and
//! one capture cleared between rounds (buffers reused, as in criterion's samples), and on
//! a fresh registry or capture each round (every span's memory new to the process, page
//! faults included); and, cleared between rounds, the capture behind `capture::dispatch()`'s
//! level filter against the bare layer.
//!
//! Two regimes, each for all three set-ups:
//! - `span_with_5_fields`: stored spans are dropped every 1,000 spans, outside the timed
//!   region — the size of a real test's capture;
//! - `span_with_5_fields_retained`: spans pile up for a whole sample (up to millions), so
//!   the figure includes growing the heap, as a very long capture would.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
use p2p_otel_testkit::{CaptureHandle, SpanCaptureLayer};
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

/// Spans per batch between untimed resets in the `span_with_5_fields` regime.
const BATCH: u64 = 1_000;

/// CPU time the calling thread has used, user and system.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Times `iters` spans under `dispatch` (thread CPU time), running `reset` untimed after
/// every `batch`.
fn timed(dispatch: &Dispatch, iters: u64, batch: u64, reset: &dyn Fn()) -> Duration {
    tracing::dispatcher::with_default(dispatch, || {
        let mut elapsed = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(batch);
            let start = thread_cpu_time();
            for _ in 0..n {
                one_span();
            }
            elapsed += thread_cpu_time().saturating_sub(start);
            reset();
            left -= n;
        }
        elapsed
    })
}

/// Spans per round, and rounds, of `print_retained_split`.
const SPLIT_SPANS: u64 = 200_000;
const SPLIT_ROUNDS: usize = 21;

/// Times `SPLIT_SPANS` spans retained under `dispatch`; then checks that `capture` (if any)
/// kept every one, and empties it for the next round.
fn retained_round(dispatch: &Dispatch, capture: Option<&CaptureHandle>) -> Duration {
    let elapsed = timed(dispatch, SPLIT_SPANS, u64::MAX, &|| {});
    if let Some(capture) = capture {
        assert_eq!(capture.len() as u64, SPLIT_SPANS, "every span retained");
        capture.clear();
    }
    elapsed
}

/// Medians of fixed rounds of retained spans, the bare registry against the capture: each
/// round on a fresh registry or capture (every span's memory is new to the process), and
/// each on one registry or capture cleared between rounds (its buffers are reused, as
/// criterion's retained samples reuse them).
fn print_retained_split() {
    let fresh = |with_capture: bool| -> Duration {
        if with_capture {
            let (layer, handle) = SpanCaptureLayer::new();
            let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
            retained_round(&dispatch, Some(&handle))
        } else {
            retained_round(&Dispatch::new(tracing_subscriber::registry()), None)
        }
    };
    let bare = Dispatch::new(tracing_subscriber::registry());
    let (layer, handle) = SpanCaptureLayer::new();
    let capture = Dispatch::new(tracing_subscriber::registry().with(layer));
    let reused = |with_capture: bool| -> Duration {
        if with_capture {
            retained_round(&capture, Some(&handle))
        } else {
            retained_round(&bare, None)
        }
    };
    // The capture behind `capture::dispatch()`'s level filter, against the bare layer.
    let (filtered, filtered_handle) = p2p_otel_testkit::capture::dispatch();
    let filter_cost = |filtered_round: bool| -> Duration {
        if filtered_round {
            retained_round(&filtered, Some(&filtered_handle))
        } else {
            retained_round(&capture, Some(&handle))
        }
    };
    // The capture with tracing-opentelemetry's layer beside it, against `capture::dispatch()`.
    let (with_otel, with_otel_handle) = p2p_otel_testkit::capture::Builder::default()
        .opentelemetry_layer(true)
        .dispatch();
    let otel_cost = |otel_round: bool| -> Duration {
        if otel_round {
            retained_round(&with_otel, Some(&with_otel_handle))
        } else {
            retained_round(&filtered, Some(&filtered_handle))
        }
    };
    let line = |what: &str, (first, second): (&str, &str), round: &dyn Fn(bool) -> Duration| {
        let (mut bare, mut captured) = (Vec::new(), Vec::new());
        for i in 0..SPLIT_ROUNDS + 2 {
            let (first, second) = if i % 2 == 0 {
                (round(false), round(true))
            } else {
                let captured = round(true);
                (round(false), captured)
            };
            // The first two rounds warm the allocator and the caches up.
            if i >= 2 {
                bare.push(first);
                captured.push(second);
            }
        }
        let per_span = |samples: &mut Vec<Duration>| {
            samples.sort_unstable();
            samples[samples.len() / 2].as_secs_f64() * 1e9 / SPLIT_SPANS as f64
        };
        let (bare, captured) = (per_span(&mut bare), per_span(&mut captured));
        format!(
            "{what}: {first} {bare:.0} ns, {second} {captured:.0} ns ({:.2}×)",
            captured / bare
        )
    };
    let layer = ("registry", "+ capture layer");
    eprintln!(
        "span_with_5_fields_retained split, medians of {SPLIT_ROUNDS} rounds of {SPLIT_SPANS} \
         spans: {}; {}; {}; {}",
        line("cleared between rounds", layer, &reused),
        line("fresh each round", layer, &fresh),
        line(
            "the level filter, cleared between rounds",
            ("capture layer", "capture::dispatch()"),
            &filter_cost
        ),
        line(
            "the OpenTelemetry layer, cleared between rounds",
            ("capture::dispatch()", "+ opentelemetry_layer(true)"),
            &otel_cost
        ),
    );
}

fn per_span(c: &mut Criterion) {
    print_retained_split();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (receiver, telemetry) = runtime.block_on(async {
        let receiver = OtlpReceiver::start(receiver::Config::default())
            .await
            .expect("receiver");
        let telemetry = Telemetry::builder(Protocol::Grpc, &receiver)
            .build()
            .expect("telemetry");
        (receiver, telemetry)
    });
    regime(
        c,
        "span_with_5_fields",
        BATCH,
        Some((&runtime, &receiver, &telemetry)),
    );
    regime(c, "span_with_5_fields_retained", u64::MAX, None);
}

/// The runtime, receiver and telemetry of (d).
type Exporting<'a> = (&'a tokio::runtime::Runtime, &'a OtlpReceiver, &'a Telemetry);

fn regime(c: &mut Criterion, group_name: &str, batch: u64, exporting: Option<Exporting<'_>>) {
    let mut group = c.benchmark_group(group_name);

    let bare = Dispatch::new(tracing_subscriber::registry());
    group.bench_function("a_registry", |b| {
        b.iter_custom(|iters| timed(&bare, iters, batch, &|| {}))
    });

    let (layer, handle) = SpanCaptureLayer::new();
    let capture = Dispatch::new(tracing_subscriber::registry().with(layer));
    group.bench_function("b_registry_capture_layer", |b| {
        b.iter_custom(|iters| timed(&capture, iters, batch, &|| handle.clear()))
    });

    let (filtered, filtered_handle) = p2p_otel_testkit::capture::dispatch();
    group.bench_function("b2_capture_dispatch_level_filter", |b| {
        b.iter_custom(|iters| timed(&filtered, iters, batch, &|| filtered_handle.clear()))
    });

    let (with_otel, with_otel_handle) = p2p_otel_testkit::capture::Builder::default()
        .opentelemetry_layer(true)
        .dispatch();
    group.bench_function("b3_capture_dispatch_opentelemetry_layer", |b| {
        b.iter_custom(|iters| timed(&with_otel, iters, batch, &|| with_otel_handle.clear()))
    });

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let otel = Dispatch::new(tracing_subscriber::registry().with(otel_layer));
    group.bench_function("c_registry_otel_in_memory_exporter", |b| {
        b.iter_custom(|iters| timed(&otel, iters, batch, &|| exporter.reset()))
    });

    if let Some((runtime, receiver, telemetry)) = exporting {
        group.bench_function("d_telemetry_dispatch", |b| {
            b.iter_custom(|iters| {
                timed(telemetry.dispatch(), iters, batch, &|| {
                    runtime.block_on(telemetry.flush()).expect("spans exported");
                    telemetry.capture().clear();
                    receiver.clear();
                })
            })
        });
    }

    group.finish();
}

criterion_group!(benches, per_span);
criterion_main!(benches);
