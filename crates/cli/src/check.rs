//! `check`: a telemetry contract against OTLP-JSON lines files — the kit's own, or what an
//! OpenTelemetry Collector's `file` exporter wrote — as text, JSON (Weaver live-check's
//! shape) or JUnit.

use std::io::Write;
use std::path::PathBuf;

use p2p_otel_testkit::contract::{Contract, CoverageGate};
use p2p_otel_testkit::model::{JsonLinesError, Signals};
use p2p_otel_testkit::TraceSet;

/// How `check` prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Findings, then coverage per group.
    Text,
    /// Weaver live-check's JSON shape: `findings` and `statistics`.
    Json,
    /// A JUnit document: a test case per declared group.
    Junit,
}

/// What `check` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// The loaded contract.
    pub contract: Contract,
    /// The OTLP-JSON lines files.
    pub files: Vec<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Least coverage of the whole contract and of each group.
    pub gate: CoverageGate,
}

/// Reads the files, checks them, prints the report; `Ok(true)` when no finding is a
/// violation.
pub fn run(options: &Options, out: &mut impl Write) -> Result<bool, JsonLinesError> {
    let mut telemetry = Signals::default();
    for file in &options.files {
        telemetry.read_file(file)?;
    }
    let traces = TraceSet::new(telemetry.spans);
    let report = options
        .contract
        .check(&traces, &telemetry.metrics, &telemetry.logs)
        .gate(options.gate);
    let text = match options.format {
        Format::Text => {
            let verdict = if report.has_violations() {
                "CONTRACT VIOLATED"
            } else {
                "CONTRACT KEPT"
            };
            format!("{report}{verdict}\n")
        }
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        ),
        Format::Junit => report.to_junit("p2p-otel-contract"),
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(!report.has_violations())
}
