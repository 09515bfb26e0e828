//! Reading OTLP-JSON lines files — what the kit's receiver writes, and what an
//! OpenTelemetry Collector's `file` exporter writes: one export request per line, each
//! holding `resourceSpans`, `resourceMetrics` or `resourceLogs` (a file may mix them).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;

use super::{
    log_records_from_otlp, metric_points_from_otlp, spans_from_otlp_owned, LogRecord, MetricPoint,
    ModelError, SpanRecord,
};

/// The signals — spans, metric points, log records — read from OTLP-JSON lines files.
/// (Not to be confused with [`telemetry::Telemetry`](crate::telemetry::Telemetry), one
/// node's exporting providers.)
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// The spans, in file order.
    pub spans: Vec<SpanRecord>,
    /// The metric data points.
    pub metrics: Vec<MetricPoint>,
    /// The log records.
    pub logs: Vec<LogRecord>,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonLinesError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an OTLP-JSON export request.
    #[error("{path}:{line}: not an OTLP-JSON export request: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A line holds ids OTLP does not allow.
    #[error("{path}:{line}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        #[source]
        source: ModelError,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyRequest {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
    #[serde(default)]
    resource_metrics: Vec<ResourceMetrics>,
    #[serde(default)]
    resource_logs: Vec<ResourceLogs>,
}

/// Renamed [`Signals`]: `telemetry::Telemetry` is one node's exporting providers.
///
/// ```
/// # #![allow(deprecated)]
/// let read = p2p_otel_testkit::model::Telemetry::default();
/// assert!(read.spans.is_empty());
/// ```
#[deprecated(since = "0.2.0", note = "renamed `model::Signals`")]
pub type Telemetry = Signals;

impl Signals {
    /// Reads one file, adding what it holds. Blank lines are skipped.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("p2p-otel-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("traces.jsonl");
    /// std::fs::write(&path, r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"checkout","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#)?;
    /// let mut signals = p2p_otel_testkit::model::Signals::default();
    /// signals.read_file(&path)?;
    /// assert_eq!(signals.spans[0].name, "checkout");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_file(&mut self, path: &Path) -> Result<(), JsonLinesError> {
        let read = |source| JsonLinesError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(read)?;
            if line.trim().is_empty() {
                continue;
            }
            let at = index + 1;
            let request: AnyRequest =
                super::otlp_json::from_slice(line.as_bytes()).map_err(|source| {
                    JsonLinesError::Json {
                        path: path.to_owned(),
                        line: at,
                        source,
                    }
                })?;
            let model = |source| JsonLinesError::Model {
                path: path.to_owned(),
                line: at,
                source,
            };
            self.spans
                .extend(spans_from_otlp_owned(request.resource_spans).map_err(model)?);
            self.metrics
                .extend(metric_points_from_otlp(&request.resource_metrics));
            self.logs
                .extend(log_records_from_otlp(&request.resource_logs).map_err(model)?);
        }
        Ok(())
    }
}
