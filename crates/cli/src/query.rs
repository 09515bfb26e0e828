//! `query`: a TraceQL query over OTLP-JSON lines files — the kit's own or a Collector's
//! `file` exporter output — printing the matching spansets as trees or as Tempo's search
//! JSON.

use std::io::Write;
use std::path::PathBuf;

use p2p_otel_testkit::model::{JsonLinesError, Signals, Value};
use p2p_otel_testkit::traceql::{Query, QueryError};
use p2p_otel_testkit::tree::RenderSettings;
use p2p_otel_testkit::TraceSet;

/// How `query` prints what matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Each spanset as the part of its trace's tree that leads to the matches (`◀`).
    Text,
    /// Tempo's search API response (`traces`, each with its `spanSets`).
    Json,
}

/// Why `query` could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryCommandError {
    /// The query is not TraceQL the kit understands.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// A file could not be read.
    #[error(transparent)]
    File(#[from] JsonLinesError),
}

/// Runs the query over the files and prints the result; `Ok(true)` when something matched.
pub fn run(
    text: &str,
    files: &[PathBuf],
    format: Format,
    out: &mut impl Write,
) -> Result<bool, QueryCommandError> {
    // The query first: a typo is reported before any file is read.
    let query = Query::parse(text)?;
    let mut signals = Signals::default();
    for file in files {
        signals.read_file(file)?;
    }
    // Peer ids are long: name each node `[node N]` (first seen first), with a legend.
    let mut nodes: Vec<String> = Vec::new();
    let mut by_start: Vec<_> = signals.spans.iter().collect();
    by_start.sort_by_key(|span| span.start_unix_nanos);
    for span in by_start {
        if let Some(Value::Str(id)) = span.resource.attributes.get("service.instance.id") {
            if !nodes.contains(id) {
                nodes.push(id.clone());
            }
        }
    }
    let traces = TraceSet::new(signals.spans)
        .with_render_settings(RenderSettings::default().nodes(nodes.iter()));
    let found = query.select(&traces);
    let printed = match format {
        Format::Text => {
            let mut printed: String = found.iter().map(|set| format!("{set}\n")).collect();
            let trace_count = {
                let mut ids: Vec<_> = found.iter().map(|set| set.trace().trace_id()).collect();
                ids.dedup();
                ids.len()
            };
            let mut legend: Vec<String> = Vec::new();
            for (index, node) in nodes.iter().enumerate() {
                if printed.contains(&format!("[node {index}]")) {
                    legend.push(format!("[node {index}] = {node}\n"));
                }
            }
            printed.push_str(&legend.concat());
            printed.push_str(&format!(
                "{} spanset(s) in {trace_count} of {} trace(s) ({} spans) matched {}\n",
                found.len(),
                traces.traces().len(),
                traces.span_count(),
                query.text()
            ));
            printed
        }
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&query.search_response(&traces)).unwrap_or_default()
        ),
    };
    let _ = out.write_all(printed.as_bytes());
    let _ = out.flush();
    Ok(!found.is_empty())
}
