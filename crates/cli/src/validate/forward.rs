//! `--otlp-endpoint`: forwards every request the receiver got, exactly as received
//! (replayed from the OTLP-JSON files), to an external collector over OTLP/gRPC or
//! OTLP/HTTP (protobuf or JSON bodies, to `/v1/traces`, `/v1/metrics`, `/v1/logs`) — for
//! users who outgrow one machine and run a real Collector or Jaeger.

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::de::DeserializeOwned;

use super::Criterion;

fn requests<T: DeserializeOwned>(file: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{}: {e}", file.display())))
        .collect()
}

/// How requests go to the external collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Forwarding {
    /// OTLP/gRPC (`http://host:4317`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http://host:4318`).
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies (`http://host:4318`).
    HttpJson,
}

/// One request as an OTLP/HTTP body.
fn http_body<T: prost::Message + serde::Serialize>(
    request: &T,
    forwarding: Forwarding,
) -> Result<(Vec<u8>, &'static str), String> {
    match forwarding {
        Forwarding::HttpJson => serde_json::to_vec(request)
            .map(|body| (body, "application/json"))
            .map_err(|e| e.to_string()),
        _ => Ok((request.encode_to_vec(), "application/x-protobuf")),
    }
}

async fn post_all<T: prost::Message + serde::Serialize>(
    client: &opentelemetry_http::hyper::HyperClient,
    url: &str,
    requests: &[T],
    forwarding: Forwarding,
) -> Result<(), String> {
    use opentelemetry_http::HttpClient;
    for request in requests {
        let (body, content_type) = http_body(request, forwarding)?;
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(bytes::Bytes::from(body))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = client
            .send_bytes(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "{url}: {} {}",
                response.status(),
                String::from_utf8_lossy(response.body())
            ));
        }
    }
    Ok(())
}

async fn send_all_http(
    endpoint: &str,
    dir: &Path,
    forwarding: Forwarding,
) -> Result<(usize, usize, usize), String> {
    let traces: Vec<ExportTraceServiceRequest> = requests(&dir.join("traces.jsonl"))?;
    let metrics: Vec<ExportMetricsServiceRequest> = requests(&dir.join("metrics.jsonl"))?;
    let logs: Vec<ExportLogsServiceRequest> = requests(&dir.join("logs.jsonl"))?;
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(
        std::time::Duration::from_secs(30),
        None,
    );
    let base = endpoint.trim_end_matches('/');
    post_all(&client, &format!("{base}/v1/traces"), &traces, forwarding).await?;
    post_all(&client, &format!("{base}/v1/metrics"), &metrics, forwarding).await?;
    post_all(&client, &format!("{base}/v1/logs"), &logs, forwarding).await?;
    Ok((traces.len(), metrics.len(), logs.len()))
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
pub(super) async fn forward(endpoint: &str, forwarding: Forwarding, dir: &Path) -> Criterion {
    let result = match forwarding {
        Forwarding::Grpc => send_all(endpoint, dir).await,
        http => send_all_http(endpoint, dir, http).await,
    };
    let protocol = match forwarding {
        Forwarding::Grpc => "OTLP/gRPC",
        Forwarding::HttpProtobuf => "OTLP/HTTP protobuf",
        Forwarding::HttpJson => "OTLP/HTTP JSON",
    };
    Criterion::new(
        "9.2",
        format!("everything forwarded to the external collector at {endpoint} over {protocol}"),
        result.is_ok(),
        match result {
            Ok((t, m, l)) => format!("{t} trace, {m} metric and {l} log request(s) forwarded"),
            Err(error) => error,
        },
    )
}
