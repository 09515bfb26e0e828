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

/// Every request the receiver got, read once from its files: each collector gets the same.
pub(super) struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

impl Received {
    /// Reads the OTLP-JSON files in `dir`.
    pub(super) fn read(dir: &Path) -> Result<Received, String> {
        Ok(Received {
            traces: requests(&dir.join("traces.jsonl"))?,
            metrics: requests(&dir.join("metrics.jsonl"))?,
            logs: requests(&dir.join("logs.jsonl"))?,
        })
    }

    fn counts(&self) -> (usize, usize, usize) {
        (self.traces.len(), self.metrics.len(), self.logs.len())
    }
}

async fn send_all_http(
    endpoint: &str,
    received: &Received,
    forwarding: Forwarding,
) -> Result<(usize, usize, usize), String> {
    let Received {
        traces,
        metrics,
        logs,
    } = received;
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(
        std::time::Duration::from_secs(30),
        None,
    );
    let base = endpoint.trim_end_matches('/');
    post_all(&client, &format!("{base}/v1/traces"), traces, forwarding).await?;
    post_all(&client, &format!("{base}/v1/metrics"), metrics, forwarding).await?;
    post_all(&client, &format!("{base}/v1/logs"), logs, forwarding).await?;
    Ok(received.counts())
}

async fn send_all(endpoint: &str, received: &Received) -> Result<(usize, usize, usize), String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let mut trace_client = TraceServiceClient::new(channel.clone());
    for request in received.traces.iter().cloned() {
        trace_client
            .export(request)
            .await
            .map_err(|s| format!("traces: {s}"))?;
    }
    let mut metric_client = MetricsServiceClient::new(channel.clone());
    for request in received.metrics.iter().cloned() {
        metric_client
            .export(request)
            .await
            .map_err(|s| format!("metrics: {s}"))?;
    }
    let mut log_client = LogsServiceClient::new(channel);
    for request in received.logs.iter().cloned() {
        log_client
            .export(request)
            .await
            .map_err(|s| format!("logs: {s}"))?;
    }
    Ok(received.counts())
}

/// Forwards every received request to `endpoint`; the outcome is a check.
pub(super) async fn forward(
    endpoint: &str,
    forwarding: Forwarding,
    received: &Result<Received, String>,
) -> Criterion {
    let result = match (received, forwarding) {
        (Err(error), _) => Err(error.clone()),
        (Ok(received), Forwarding::Grpc) => send_all(endpoint, received).await,
        (Ok(received), http) => send_all_http(endpoint, received, http).await,
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
