//! `--otlp-endpoint`: forwards every request the receiver got, exactly as received
//! (replayed from the OTLP-JSON files), to an external collector over gRPC — for users
//! who outgrow one machine and run a real Collector or Jaeger.

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::de::DeserializeOwned;

use super::Check;

fn requests<T: DeserializeOwned>(file: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{}: {e}", file.display())))
        .collect()
}

async fn send_all(endpoint: &str, dir: &Path) -> Result<(usize, usize, usize), String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let traces: Vec<ExportTraceServiceRequest> = requests(&dir.join("traces.jsonl"))?;
    let metrics: Vec<ExportMetricsServiceRequest> = requests(&dir.join("metrics.jsonl"))?;
    let logs: Vec<ExportLogsServiceRequest> = requests(&dir.join("logs.jsonl"))?;
    let counts = (traces.len(), metrics.len(), logs.len());
    let mut trace_client = TraceServiceClient::new(channel.clone());
    for request in traces {
        trace_client
            .export(request)
            .await
            .map_err(|s| format!("traces: {s}"))?;
    }
    let mut metric_client = MetricsServiceClient::new(channel.clone());
    for request in metrics {
        metric_client
            .export(request)
            .await
            .map_err(|s| format!("metrics: {s}"))?;
    }
    let mut log_client = LogsServiceClient::new(channel);
    for request in logs {
        log_client
            .export(request)
            .await
            .map_err(|s| format!("logs: {s}"))?;
    }
    Ok(counts)
}

/// Forwards every received request to `endpoint`; the outcome is a check.
pub(super) async fn forward(endpoint: &str, dir: &Path) -> Check {
    let result = send_all(endpoint, dir).await;
    Check {
        section: "9.2",
        name: format!("everything forwarded to the external collector at {endpoint}"),
        passed: result.is_ok(),
        evidence: match result {
            Ok((t, m, l)) => format!("{t} trace, {m} metric and {l} log request(s) forwarded"),
            Err(error) => error,
        },
    }
}
