//! `serve`: the receiver as a standalone local collector for other processes (a CLI
//! under test, another language's SDK), with no Docker.
//!
//! It prints a line per finished trace as it arrives, writes OTLP-JSON lines files, and
//! ends on Ctrl-C / SIGTERM (or, for scripts, once N spans arrived or at a timeout) with
//! a summary.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use p2p_otel_testkit::contract::{Checker, Contract, Finding};
use p2p_otel_testkit::model::{SpanId, TraceId, Value};
use p2p_otel_testkit::receiver::{Config, Counter, OtlpReceiver, ReceiverError};
use p2p_otel_testkit::tree::{Trace, TraceSet};

use crate::printer::Printer;

/// How many touched traces are looked at between two checks for a signal.
const PRINT_SLICE: usize = 256;

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
    /// Most spans stored.
    pub span_capacity: usize,
    /// Most bytes the span store holds.
    pub span_byte_capacity: usize,
    /// Keep only the last N traces, evicting the oldest.
    pub keep_last: Option<usize>,
    /// How long requests in flight may finish once stopping.
    pub shutdown_grace: Duration,
    /// Closes connections on which nothing moved this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// How long an OTLP/HTTP client may take to send its headers (`None`: no limit).
    pub header_read_timeout: Option<Duration>,
    /// A contract to check every finished trace against, and the metrics and logs at exit.
    pub contract: Option<Contract>,
}

/// How `serve` ended.
#[derive(Debug)]
pub struct Finished {
    /// Why it stopped.
    pub outcome: Outcome,
    /// Whether a contract finding was a violation.
    pub violations: bool,
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
    /// The thread that writes the output could not start.
    #[error("cannot start the output thread")]
    Output(#[source] std::io::Error),
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

/// Serves until a signal, enough spans, or the timeout; prints to `out` from a thread of
/// its own, so a reader that stops reading never stalls serving (trace lines it is too
/// far behind for are dropped and counted in the summary). The summary is computed once
/// the servers stopped, so it counts everything acknowledged — exactly what the files
/// hold.
pub async fn run(
    options: &Options,
    out: impl std::io::Write + Send + 'static,
) -> Result<Finished, ServeError> {
    for addr in [options.grpc, options.http] {
        if !options.allow_non_loopback && !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
    }
    let mut config = Config::default()
        .with_grpc_addr(options.grpc)
        .with_http_addr(options.http)
        .with_json_lines_dir(&options.out)
        .with_span_capacity(options.span_capacity)
        .with_span_byte_capacity(options.span_byte_capacity)
        .with_shutdown_grace(options.shutdown_grace)
        .with_idle_timeout(options.idle_timeout)
        .with_header_read_timeout(options.header_read_timeout);
    if let Some(traces) = options.keep_last {
        config = config.with_keep_last_traces(traces);
    }
    if let Some(contract) = &options.contract {
        // The viewer shows its findings on the spans and its coverage.
        config = config.with_contract(contract.clone());
    }
    // Signal handlers before the `listening` line: a script that reads it and sends
    // SIGTERM at once must get a summary, not the default action's silent death.
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    #[cfg(unix)]
    let terminated = async move { terminate.recv().await };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<Option<()>>();
    tokio::pin!(terminated);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut receiver = OtlpReceiver::start(config).await?;
    let mut watch = receiver.watch_traces();
    // How long a line that must not be dropped, and the end of the output, may wait for a
    // slow reader: as long as clients get to finish their requests.
    let patience = options.shutdown_grace;
    let mut out = Printer::start(out).map_err(ServeError::Output)?;
    out.line(
        format!(
            "listening grpc={} http={} files={} viewer={}/\n",
            receiver.grpc_endpoint(),
            receiver.http_endpoint(),
            options.out.display(),
            receiver.http_endpoint()
        ),
        patience,
    )
    .await;
    let deadline = async {
        match options.timeout {
            // The user's --timeout: a deadline for the run, not a wait for a condition.
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut checker = options.contract.as_ref().map(|contract| Checking {
        checker: contract.checker(),
        checked: HashMap::new(),
    });
    let mut printed: HashSet<TraceId> = HashSet::new();
    let mut pending: VecDeque<TraceId> = VecDeque::new();
    let outcome = loop {
        // Accepted, not stored: with --keep-last the store may hold fewer than arrived.
        // Checked once what arrived is printed, so the last traces get their lines.
        let accepted = receiver.counter(Counter::AcceptedSpans, None);
        if pending.is_empty()
            && options
                .exit_after_spans
                .is_some_and(|n| accepted >= n as u64)
        {
            break Outcome::EnoughSpans;
        }
        // Signals and the deadline first, and the printing in slices: however far behind
        // the printing is, a signal is answered within one slice.
        tokio::select! {
            biased;
            _ = &mut terminated => break Outcome::Signalled,
            _ = &mut interrupted => break Outcome::Signalled,
            () = &mut deadline => break Outcome::TimedOut,
            touched = watch.changed(), if pending.is_empty() => pending.extend(touched),
            () = std::future::ready(()), if !pending.is_empty() => {
                let slice = pending.len().min(PRINT_SLICE);
                report_finished(&receiver, pending.drain(..slice), &mut printed, &mut out, checker.as_mut());
                tokio::task::yield_now().await;
            }
        }
    };
    // Stopped within the grace period whatever clients hold open; from here on nothing
    // is acknowledged, so the summary is final.
    let stopped = receiver.stop().await;
    if outcome == Outcome::EnoughSpans {
        // Everything acknowledged is announced by now: print the traces it finished.
        report_finished(
            &receiver,
            pending.drain(..),
            &mut printed,
            &mut out,
            checker.as_mut(),
        );
        while let Ok(touched) = tokio::time::timeout(Duration::ZERO, watch.changed()).await {
            report_finished(&receiver, touched, &mut printed, &mut out, checker.as_mut());
        }
    }
    summary(&receiver, &outcome, options, &out, patience).await;
    let violations = match checker {
        Some(checker) => {
            let written = options.out.join("contract.json");
            contract_summary(&receiver, checker, &mut out, &written, patience).await
        }
        None => false,
    };
    out.finish(patience).await;
    stopped?;
    Ok(Finished {
        outcome,
        violations,
    })
}

fn finding_line(finding: &Finding) -> String {
    format!("finding {finding}\n")
}

/// Checks what was not checked as it arrived (traces that never completed, metrics,
/// logs), prints those findings and the contract's summary, and writes the report as
/// JSON (Weaver live-check's shape) to `json`; returns whether any finding is a
/// violation.
async fn contract_summary(
    receiver: &OtlpReceiver,
    checking: Checking<'_>,
    out: &mut Printer,
    json: &std::path::Path,
    patience: Duration,
) -> bool {
    let Checking {
        mut checker,
        mut checked,
    } = checking;
    let all = receiver.traces();
    let mut new = Vec::new();
    for trace in all.traces() {
        let spans = checked.entry(trace.trace_id()).or_default();
        new.extend(checker.check_new_spans(trace, &all, spans));
    }
    new.extend(checker.check_metrics(&receiver.metric_points()));
    new.extend(checker.check_logs(&receiver.log_records()));
    let report = checker.finish();
    let mut text: String = new.iter().map(finding_line).collect();
    text.push_str(&format!("contract: {report}"));
    let written = serde_json::to_vec_pretty(&report.to_json())
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(json, bytes));
    text.push_str(&match written {
        Ok(()) => format!("\ncontract report: {}", json.display()),
        Err(error) => format!(
            "\ncontract report not written to {}: {error}",
            json.display()
        ),
    });
    out.line(text, patience).await;
    report.has_violations()
}

/// The contract's checker, and the spans of each trace it has checked: a trace is
/// checked once complete, and the spans that arrive later when they do.
struct Checking<'c> {
    checker: Checker<'c>,
    checked: HashMap<TraceId, HashSet<SpanId>>,
}

impl Checking<'_> {
    fn check(&mut self, trace: &Trace, set: &TraceSet) -> Vec<Finding> {
        let spans = self.checked.entry(trace.trace_id()).or_default();
        self.checker.check_new_spans(trace, set, spans)
    }
}

/// Prints one line per touched trace that is complete (a root, no missing parent) and
/// not printed before: reads only those traces.
fn report_finished(
    receiver: &OtlpReceiver,
    touched: impl IntoIterator<Item = TraceId>,
    printed: &mut HashSet<TraceId>,
    out: &mut Printer,
    mut checking: Option<&mut Checking<'_>>,
) {
    for trace_id in touched {
        if printed.contains(&trace_id) {
            // A distributed trace's later spans (a remote handler's, exported by its node
            // after the caller's) are checked as they arrive — once their parents are there
            // too, so a span is never judged an orphan for arriving first (what is still
            // incomplete at exit is checked then).
            if let Some(checking) = checking.as_deref_mut() {
                let set = receiver.trace(trace_id);
                if let Some(trace) = set.traces().first().filter(|t| t.is_complete()) {
                    for finding in checking.check(trace, &set) {
                        out.trace_line(finding_line(&finding));
                    }
                }
            }
            continue;
        }
        let set = receiver.trace(trace_id);
        let Some(trace) = set.traces().first() else {
            continue;
        };
        let roots = trace.roots();
        if roots.is_empty() || !trace.is_complete() {
            continue;
        }
        printed.insert(trace_id);
        let root = roots[0].record();
        let duration_ms = root.duration_nanos().unwrap_or(0) as f64 / 1e6;
        let errors = trace
            .spans()
            .filter(|s| s.record().status.code == p2p_otel_testkit::model::StatusCode::Error)
            .count();
        out.trace_line(format!(
            "trace {} {} service={} spans={} errors={errors} duration_ms={duration_ms:.1}\n",
            trace.trace_id(),
            root.name,
            service_of(trace),
            trace.len()
        ));
        if let Some(checking) = checking.as_deref_mut() {
            for finding in checking.check(trace, &set) {
                out.trace_line(finding_line(&finding));
            }
        }
    }
}

async fn summary(
    receiver: &OtlpReceiver,
    outcome: &Outcome,
    options: &Options,
    out: &Printer,
    patience: Duration,
) {
    let mut text = format!(
        "summary: {outcome:?}: {} span(s) in {} trace(s), {} metric point(s), {} log record(s)\n",
        receiver.span_count(),
        receiver.trace_count(),
        receiver.metric_points().len(),
        receiver.log_records().len()
    );
    for (service, spans) in receiver.span_counts_by_service() {
        text.push_str(&format!("  service {service}: {spans} span(s)\n"));
    }
    let refused = receiver.counter(Counter::RefusedSpans, None);
    let evicted = receiver.counter(Counter::EvictedSpans, None);
    let duplicates = receiver.counter(Counter::DuplicateSpans, None);
    if refused + evicted + duplicates > 0 {
        text.push_str(&format!(
            "  spans refused (store full): {refused}, evicted (--keep-last): {evicted}, \
             duplicates kept once: {duplicates}\n"
        ));
    }
    if out.dropped() > 0 {
        text.push_str(&format!(
            "  trace lines not printed (the output was not read fast enough): {}\n",
            out.dropped()
        ));
    }
    text.push_str(&format!(
        "  files: {}\n",
        ["traces.jsonl", "metrics.jsonl", "logs.jsonl"]
            .iter()
            .map(|f| options.out.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.line(text, patience).await;
}
