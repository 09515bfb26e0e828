//! A whole validation in virtual time: scenarios 1–6 and the lifecycle on [`Simulated`]
//! nodes, on a paused current-thread runtime of a thread of its own, with a receiver in the
//! simulation — and what the run did written out as a transcript whose digest two runs
//! of one seed share byte for byte.

use std::fmt::Write as _;
use std::time::Duration;

use p2p_otel_testkit::mesh;
use p2p_otel_testkit::model::{LogRecord, MetricPoint};
use p2p_otel_testkit::receiver::{Config as ReceiverConfig, OtlpReceiver};
use p2p_otel_testkit::tree::TraceSet;
use sha2::{Digest as _, Sha256};

use super::{all, Run, ScenarioError, Simulated};

/// One simulated validation: every scenario's run, how long it took in virtual and in
/// wall time, and its transcript.
#[derive(Debug)]
pub struct Simulation {
    /// The run's seed.
    pub seed: u64,
    /// Scenarios 1–6 and the lifecycle, in the plan's order.
    pub runs: Vec<Run>,
    /// Virtual time from the first node's start to the last scenario's end.
    pub virtual_time: Duration,
    /// The wall time the run took.
    pub wall_time: Duration,
    /// Everything the receiver got, in a deterministic order and with nothing redacted:
    /// every scenario's checks and rendering, every span's virtual start and end, node,
    /// ids and parent, every metric point's time and value, every log record, what each
    /// scenario mesh's links carried.
    pub transcript: String,
}

/// Where two simulations part: the first transcript line that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The line's number, from 1.
    pub line: usize,
    /// The line in the first run (empty when it ended first).
    pub first: String,
    /// The line in the second run (empty when it ended first).
    pub second: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the runs part at transcript line {}:\n  first:  {}\n  second: {}",
            self.line, self.first, self.second
        )
    }
}

impl Simulation {
    /// Whether every scenario passed every check.
    pub fn passed(&self) -> bool {
        self.runs.iter().all(Run::passed)
    }

    /// The transcript's SHA-256, in hex: equal for two runs of one seed, on an idle or a
    /// busy machine.
    pub fn digest(&self) -> String {
        digest(&self.transcript)
    }

    /// The first line where this run's transcript and `other`'s differ, if any.
    pub fn first_divergence(&self, other: &Simulation) -> Option<Divergence> {
        first_divergence(&self.transcript, &other.transcript)
    }
}

/// The first line where two transcripts differ (a line missing from the one that ended
/// first is empty), if any.
pub fn first_divergence(first: &str, second: &str) -> Option<Divergence> {
    let (mut first, mut second) = (first.lines(), second.lines());
    (1..).find_map(|line| match (first.next(), second.next()) {
        (None, None) => Some(None),
        (a, b) if a == b => None,
        (a, b) => Some(Some(Divergence {
            line,
            first: a.unwrap_or_default().to_owned(),
            second: b.unwrap_or_default().to_owned(),
        })),
    })?
}

/// Runs scenarios 1–6 and the lifecycle on simulated nodes (`nodes` for the bootstrap and
/// the distributed search, at least 3) with `seed`, on a thread and a paused runtime of
/// their own whose every random draw comes from `seed` ([`mesh::simulate`]), so that
/// nothing else this process does reaches the run.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let first = p2p_otel_marketplace::scenarios::simulate(7, 3)?;
/// let second = p2p_otel_marketplace::scenarios::simulate(7, 3)?;
/// assert!(first.passed());
/// assert_eq!(first.first_divergence(&second), None);
/// assert_eq!(first.digest(), second.digest());
/// # Ok(()) }
/// ```
pub fn simulate(seed: u64, nodes: usize) -> Result<Simulation, ScenarioError> {
    let wall = std::time::Instant::now();
    mesh::simulate(seed, move || async move {
        let receiver = OtlpReceiver::start(ReceiverConfig::default())
            .await
            .map_err(|e| ScenarioError::Driver(Box::new(e)))?;
        let network = Simulated::new(seed);
        let started = tokio::time::Instant::now();
        let runs = all(&network, &receiver, nodes).await;
        let virtual_time = started.elapsed();
        let transcript = transcript(&network, &runs, &receiver);
        let _ = receiver.shutdown().await;
        Ok(Simulation {
            seed,
            runs,
            virtual_time,
            wall_time: wall.elapsed(),
            transcript,
        })
    })
    .map_err(|e| ScenarioError::Driver(Box::new(e)))?
}

/// A transcript's SHA-256, in hex.
pub fn digest(transcript: &str) -> String {
    Sha256::digest(transcript.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What a run of scenarios on `network` did, as `receiver` got it, in an order that
/// depends on nothing but what happened and with nothing redacted: each scenario's checks,
/// rendering and timeline (virtual start and end of every span), then every span's ids
/// and parent, every metric point's time and value, every log record, and what each
/// scenario mesh's links carried with the digest of every delivery.
pub fn transcript(network: &Simulated, runs: &[Run], receiver: &OtlpReceiver) -> String {
    let mut out = format!("seed {}\n", network.seed());
    for run in runs {
        let _ = writeln!(out, "== {} ({})", run.scenario, run.section);
        let _ = writeln!(out, "{}", run.evidence());
        out.push_str(&run.render());
        out.push_str(&run.traces.timeline());
    }
    out.push_str("== every span: start end trace span parent name\n");
    push_sorted(&mut out, span_lines(&receiver.traces()));
    out.push_str("== every metric point: time name instance attributes value\n");
    let points: Vec<String> = receiver.metric_points().iter().map(point).collect();
    push_sorted(&mut out, points);
    out.push_str("== every log record: time severity trace span body\n");
    let records: Vec<String> = receiver.log_records().iter().map(log_record).collect();
    push_sorted(&mut out, records);
    out.push_str(
        "== every scenario mesh's links: seed segments bytes retransmissions deliveries\n",
    );
    for (seed, links) in network.link_stats() {
        let _ = writeln!(
            out,
            "{seed} {} {} {} {:016x}",
            links.segments, links.bytes, links.retransmissions, links.deliveries_digest
        );
    }
    out
}

fn push_sorted(out: &mut String, mut lines: Vec<String>) {
    lines.sort();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
}

fn log_record(record: &LogRecord) -> String {
    format!(
        "{} {} {:?} {:?} {:?}",
        record.time_unix_nanos,
        record.severity_number,
        record.trace_id,
        record.span_id,
        record.body
    )
}

fn span_lines(traces: &TraceSet) -> Vec<String> {
    traces
        .spans()
        .map(|span| {
            let span = span.record();
            format!(
                "{} {} {} {} {} {}",
                span.start_unix_nanos,
                span.end_unix_nanos.unwrap_or_default(),
                span.trace_id,
                span.span_id,
                span.parent
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| p.span_id.to_string()),
                span.name
            )
        })
        .collect()
}

fn point(point: &MetricPoint) -> String {
    let instance = point
        .attribute("service.instance.id")
        .map(ToString::to_string)
        .unwrap_or_default();
    format!(
        "{} {} {instance} {:?} {:?}",
        point.time_unix_nanos, point.name, point.attributes, point.value
    )
}
