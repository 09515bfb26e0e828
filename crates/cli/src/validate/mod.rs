//! The end-to-end validation behind `cargo run --release`: the original plan's validation
//! script (start the collector, check health, clear the output, run the scenarios, verify
//! what was exported, report) done in-process in about a second.

mod forward;
mod html;
mod reports;
mod scenarios;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use p2p_otel_testkit::receiver::{self, OtlpReceiver};

/// What the validation run was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Nodes in the mesh (at least 3).
    pub nodes: usize,
    /// Output folder (recreated).
    pub out: PathBuf,
    /// Also forward everything received to this external OTLP/gRPC collector.
    pub otlp_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            out: PathBuf::from("target/p2p-otel-validation"),
            otlp_endpoint: None,
        }
    }
}

/// One success criterion of the plan, checked with evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The plan's section, e.g. "9.3".
    pub section: &'static str,
    /// What is checked.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was observed.
    pub evidence: String,
}

/// The outcome of a validation run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Spans received, by service.
    pub spans_by_service: std::collections::BTreeMap<String, u64>,
    /// Wall time of the run, milliseconds.
    pub duration_ms: u128,
    /// The rendered trace trees.
    pub traces: String,
    /// The contract check: findings and coverage in Weaver live-check's shape.
    pub contract: serde_json::Value,
    /// The contract check as text (findings, then coverage per group).
    #[serde(skip)]
    pub contract_text: String,
    /// The contract check's groups as JUnit test cases.
    #[serde(skip)]
    pub contract_junit: String,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Errors that stop the run before a report exists.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The output folder could not be prepared or written.
    #[error("output folder {path}: {source}")]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The receiver could not start.
    #[error(transparent)]
    Receiver(#[from] receiver::ReceiverError),
}

fn output(path: &Path) -> impl Fn(std::io::Error) -> ValidateError + '_ {
    move |source| ValidateError::Output {
        path: path.to_owned(),
        source,
    }
}

/// Runs the validation, printing progress to `out`, and writes the reports.
pub async fn run(options: &Options, out: &mut impl Write) -> Result<Report, ValidateError> {
    let started = Instant::now();
    let step = |out: &mut dyn Write, n: usize, what: &str| {
        let _ = writeln!(out, "[{n}/6] {what}");
        let _ = out.flush();
    };
    step(out, 1, "fresh output folder");
    if options.out.exists() {
        std::fs::remove_dir_all(&options.out).map_err(output(&options.out))?;
    }
    std::fs::create_dir_all(&options.out).map_err(output(&options.out))?;

    step(out, 2, "start the embedded OTLP receiver (gRPC + HTTP)");
    let otlp_dir = options.out.join("otlp");
    let receiver =
        OtlpReceiver::start(receiver::Config::default().with_json_lines_dir(&otlp_dir)).await?;
    let _ = writeln!(
        out,
        "      grpc={} http={}",
        receiver.grpc_endpoint(),
        receiver.http_endpoint()
    );

    step(out, 3, "check receiver health");
    let mut checks = vec![scenarios::health(&receiver).await];

    step(
        out,
        4,
        &format!(
            "run scenarios 1-6 on a {}-node memory mesh exporting over OTLP",
            options.nodes.max(3)
        ),
    );
    checks.extend(scenarios::run(&receiver, options.nodes.max(3)).await);

    step(out, 5, "verify exported telemetry");
    checks.extend(scenarios::verify(&receiver, &otlp_dir));
    let (contract_check, contract) = scenarios::contract(&receiver);
    checks.push(contract_check);
    if let Some(endpoint) = &options.otlp_endpoint {
        checks.push(forward::forward(endpoint, &otlp_dir).await);
    }

    step(out, 6, "report");
    let traces = receiver.traces();
    let report = Report {
        checks,
        spans_by_service: scenarios::spans_by_service(&receiver),
        duration_ms: started.elapsed().as_millis(),
        traces: traces.render(),
        contract: contract
            .as_ref()
            .map_or(serde_json::Value::Null, |c| c.to_json()),
        contract_text: contract
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        contract_junit: contract
            .as_ref()
            .map(|c| c.to_junit_suite("p2p-otel-contract"))
            .unwrap_or_default(),
    };
    reports::write_all(&options.out, &report, &traces).map_err(output(&options.out))?;
    reports::terminal(&report, out);
    let _ = writeln!(out, "reports in {}", options.out.display());
    let _ = receiver.shutdown().await;
    Ok(report)
}
