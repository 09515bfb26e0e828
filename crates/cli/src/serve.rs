//! `serve`: the receiver as a standalone local collector for other processes (a CLI
//! under test, another language's SDK), with no Docker.
//!
//! It prints a line per finished trace as it arrives, writes OTLP-JSON lines files, and
//! ends on Ctrl-C / SIGTERM (or, for scripts, once N spans arrived or at a timeout) with
//! a summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use p2p_otel_testkit::model::{TraceId, Value};
use p2p_otel_testkit::receiver::{Config, OtlpReceiver, ReceiverError};
use p2p_otel_testkit::tree::TraceSet;

/// What `serve` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// OTLP/gRPC address.
    pub grpc: SocketAddr,
    /// OTLP/HTTP address.
    pub http: SocketAddr,
    /// Allow binding addresses other than loopback.
    pub allow_non_loopback: bool,
    /// Folder for the OTLP-JSON lines files.
    pub out: PathBuf,
    /// Exit 0 once this many spans arrived.
    pub exit_after_spans: Option<usize>,
    /// Exit non-zero with a summary after this long.
    pub timeout: Option<Duration>,
}

/// Why `serve` stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ctrl-C or SIGTERM.
    Signalled,
    /// `--exit-after-spans` reached.
    EnoughSpans,
    /// `--timeout` passed first.
    TimedOut,
}

/// Errors before or while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without `--allow-non-loopback`.
    #[error("refusing to bind {0}: not a loopback address (pass --allow-non-loopback to accept connections from other machines)")]
    NotLoopback(SocketAddr),
    /// The receiver could not start.
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    /// Installing the SIGTERM handler failed.
    #[error("cannot listen for SIGTERM: {0}")]
    Signal(std::io::Error),
}

fn service_of(trace: &p2p_otel_testkit::tree::Trace) -> String {
    trace
        .spans()
        .find_map(|s| match s.attribute("service.name") {
            Some(Value::Str(name)) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown_service".to_owned())
}

/// Serves until a signal, enough spans, or the timeout; prints to `out`.
pub async fn run(options: &Options, out: &mut impl Write) -> Result<Outcome, ServeError> {
    for addr in [options.grpc, options.http] {
        if !options.allow_non_loopback && !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
    }
    let receiver = OtlpReceiver::start(
        Config::default()
            .with_grpc_addr(options.grpc)
            .with_http_addr(options.http)
            .with_json_lines_dir(&options.out),
    )
    .await?;
    let _ = writeln!(
        out,
        "listening grpc={} http={} files={}",
        receiver.grpc_endpoint(),
        receiver.http_endpoint(),
        options.out.display()
    );
    let _ = out.flush();
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    #[cfg(unix)]
    let terminated = async move { terminate.recv().await };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<Option<()>>();
    tokio::pin!(terminated);
    let deadline = options
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let mut printed: BTreeSet<TraceId> = BTreeSet::new();
    let mut seen = 0;
    let outcome = loop {
        if options.exit_after_spans.is_some_and(|n| seen >= n) {
            break Outcome::EnoughSpans;
        }
        let until_deadline = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
        });
        tokio::select! {
            arrived = receiver.wait_for_span_count(seen + 1, until_deadline) => match arrived {
                Ok(count) => {
                    seen = count;
                    report_finished(&receiver, &mut printed, out);
                }
                Err(_) if deadline.is_some() => break Outcome::TimedOut,
                Err(_) => {}
            },
            _ = tokio::signal::ctrl_c() => break Outcome::Signalled,
            _ = &mut terminated => break Outcome::Signalled,
        }
    };
    summary(&receiver, &outcome, options, out);
    let _ = receiver.shutdown().await;
    Ok(outcome)
}

/// Prints one line per trace that is complete (a root, no missing parent) and new.
fn report_finished(receiver: &OtlpReceiver, printed: &mut BTreeSet<TraceId>, out: &mut impl Write) {
    let traces = receiver.traces();
    for trace in traces.traces() {
        let roots = trace.roots();
        if printed.contains(&trace.trace_id()) || roots.is_empty() || !trace.is_complete() {
            continue;
        }
        printed.insert(trace.trace_id());
        let root = roots[0].record();
        let duration_ms = root.duration_nanos().unwrap_or(0) as f64 / 1e6;
        let errors = trace
            .spans()
            .filter(|s| s.record().status.code == p2p_otel_testkit::model::StatusCode::Error)
            .count();
        let _ = writeln!(
            out,
            "trace {} {} service={} spans={} errors={errors} duration_ms={duration_ms:.1}",
            trace.trace_id(),
            root.name,
            service_of(trace),
            trace.len()
        );
    }
    let _ = out.flush();
}

fn summary(receiver: &OtlpReceiver, outcome: &Outcome, options: &Options, out: &mut impl Write) {
    let traces: TraceSet = receiver.traces();
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for trace in traces.traces() {
        *by_service.entry(service_of(trace)).or_default() += trace.len();
    }
    let _ = writeln!(
        out,
        "summary: {outcome:?}: {} span(s) in {} trace(s), {} metric point(s), {} log record(s)",
        traces.span_count(),
        traces.traces().len(),
        receiver.metric_points().len(),
        receiver.log_records().len()
    );
    for (service, spans) in by_service {
        let _ = writeln!(out, "  service {service}: {spans} span(s)");
    }
    let _ = writeln!(
        out,
        "  files: {}",
        ["traces.jsonl", "metrics.jsonl", "logs.jsonl"]
            .iter()
            .map(|f| options.out.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = out.flush();
}
