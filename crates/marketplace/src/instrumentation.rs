//! What a marketplace node emits: the plan's metrics (section 4.2; names, instruments and
//! units as its contract, `contract/metrics.yaml`, declares them), W3C trace context
//! carried in messages (opentelemetry's `TraceContextPropagator`), and how operation
//! spans end.

use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;
use p2p_otel_testkit::propagation;
use tracing::Span;

use super::MarketplaceError;

pub use p2p_otel_testkit::propagation::TraceContext;

/// The W3C context of `span`, for a message (the kit's propagation, over opentelemetry's
/// `TraceContextPropagator`).
pub(crate) fn inject(span: &Span) -> TraceContext {
    TraceContext::of(span)
}

/// Makes the remote context in `carrier` the parent of `span` (before it is entered), for
/// the exporter and the capture alike. Without a valid `traceparent`, the span stays a root.
pub(crate) fn adopt(span: &Span, carrier: &TraceContext) {
    // A message without context (sent outside any span) leaves the handler a root.
    let _ = propagation::set_parent(span, carrier);
}

/// A gossipsub message id as its `Display` prints it (lower-case hex of its bytes), for a
/// span field: written in a few `write_str` calls where libp2p's formats byte by byte,
/// and only by a layer that records the field (nothing when telemetry is off).
pub(crate) struct MessageIdText<'a>(pub(crate) &'a gossipsub::MessageId);

impl std::fmt::Display for MessageIdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buffer = [0u8; 64];
        for chunk in self.0 .0.chunks(buffer.len() / 2) {
            for (pair, byte) in buffer.chunks_exact_mut(2).zip(chunk) {
                pair[0] = DIGITS[usize::from(byte >> 4)];
                pair[1] = DIGITS[usize::from(byte & 0x0f)];
            }
            let text =
                std::str::from_utf8(&buffer[..chunk.len() * 2]).map_err(|_| std::fmt::Error)?;
            f.write_str(text)?;
        }
        Ok(())
    }
}

/// The `error_type` attribute for an error.
pub(crate) fn error_type(error: &MarketplaceError) -> &'static str {
    match error {
        MarketplaceError::Timeout { .. } => "timeout",
        MarketplaceError::Replication(_) => "replication",
        MarketplaceError::NotFound(_) => "not_found",
        MarketplaceError::Network(_) => "network",
        MarketplaceError::NodeStopped => "node_stopped",
        MarketplaceError::Malformed(_) => "malformed",
        MarketplaceError::InvalidPackageId(_)
        | MarketplaceError::InvalidVersion(_)
        | MarketplaceError::PackageTooLarge { .. } => "invalid_input",
    }
}

/// Records the outcome on an operation span: on error, `error = true`, `error_type`,
/// `error_message` and an Error status (for tracing-opentelemetry too).
pub(crate) fn record_outcome<T>(span: &Span, result: &Result<T, MarketplaceError>) {
    if let Err(error) = result {
        let message = error.to_string();
        span.record("error", true);
        span.record("error_type", error_type(error));
        span.record("error_message", message.as_str());
        span.record("otel.status_code", "error");
        span.record("otel.status_description", message.as_str());
    }
}

/// The plan's metrics, created once per node from its meter.
#[derive(Debug, Clone)]
pub(crate) struct Instruments {
    operations: Counter<u64>,
    published: Counter<u64>,
    searches: Counter<u64>,
    dht_queries: Counter<u64>,
    operation_duration: Histogram<f64>,
    search_results: Histogram<u64>,
    dht_query_duration: Histogram<f64>,
    propagation: Histogram<f64>,
    connected_peers: Gauge<i64>,
    known_packages: Gauge<i64>,
    peer_reputation: Gauge<f64>,
    cache_size: Gauge<i64>,
    peer_response_time: Gauge<f64>,
    peer_success_rate: Gauge<f64>,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Instruments {
            operations: meter
                .u64_counter("p2p_operations_total")
                .with_unit("{operation}")
                .build(),
            published: meter
                .u64_counter("p2p_packages_published_total")
                .with_unit("{package}")
                .build(),
            searches: meter
                .u64_counter("p2p_searches_total")
                .with_unit("{search}")
                .build(),
            dht_queries: meter
                .u64_counter("p2p_dht_queries_total")
                .with_unit("{query}")
                .build(),
            operation_duration: meter
                .f64_histogram("p2p_operation_duration_ms")
                .with_unit("ms")
                .build(),
            search_results: meter
                .u64_histogram("p2p_search_results")
                .with_unit("{result}")
                .build(),
            dht_query_duration: meter
                .f64_histogram("p2p_dht_query_duration_ms")
                .with_unit("ms")
                .build(),
            propagation: meter
                .f64_histogram("p2p_gossipsub_propagation_ms")
                .with_unit("ms")
                .build(),
            connected_peers: meter
                .i64_gauge("p2p_connected_peers")
                .with_unit("{peer}")
                .build(),
            known_packages: meter
                .i64_gauge("p2p_known_packages")
                .with_unit("{package}")
                .build(),
            peer_reputation: meter
                .f64_gauge("p2p_peer_reputation")
                .with_unit("1")
                .build(),
            cache_size: meter
                .i64_gauge("p2p_cache_size_bytes")
                .with_unit("By")
                .build(),
            peer_response_time: meter
                .f64_gauge("peer_response_time_ms")
                .with_unit("ms")
                .build(),
            peer_success_rate: meter.f64_gauge("peer_success_rate").with_unit("1").build(),
        }
    }

    pub(crate) fn operation(&self, operation: &'static str, ok: bool, took: Duration) {
        let status = if ok { "ok" } else { "error" };
        self.operations.add(
            1,
            &[
                KeyValue::new("operation", operation),
                KeyValue::new("status", status),
            ],
        );
        self.operation_duration
            .record(ms(took), &[KeyValue::new("operation", operation)]);
    }

    pub(crate) fn published(&self) {
        self.published.add(1, &[]);
    }

    pub(crate) fn search(&self, cache_hit: bool, local: usize, remote: usize) {
        self.searches
            .add(1, &[KeyValue::new("cache_hit", cache_hit)]);
        self.search_results
            .record(local as u64, &[KeyValue::new("source", "local")]);
        self.search_results
            .record(remote as u64, &[KeyValue::new("source", "remote")]);
    }

    pub(crate) fn dht_query(&self, query_type: &'static str, took: Duration) {
        let labels = [KeyValue::new("query_type", query_type)];
        self.dht_queries.add(1, &labels);
        self.dht_query_duration.record(ms(took), &labels);
    }

    pub(crate) fn propagation(&self, took_ms: f64) {
        self.propagation.record(took_ms, &[]);
    }

    pub(crate) fn state(&self, connected: usize, packages: usize, cache_bytes: usize) {
        self.connected_peers.record(connected as i64, &[]);
        self.known_packages.record(packages as i64, &[]);
        self.cache_size.record(cache_bytes as i64, &[]);
    }

    pub(crate) fn peer(&self, peer: Arc<str>, score: f64, response_ms: f64, success_rate: f64) {
        let labels = [KeyValue::new("peer_id", peer)];
        self.peer_reputation.record(score, &labels);
        self.peer_response_time.record(response_ms, &labels);
        self.peer_success_rate.record(success_rate, &labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_reads_as_libp2p_prints_it() {
        for bytes in [
            Vec::new(),
            vec![0x00, 0x0f, 0xa5, 0xff],
            (0..=255).collect(),
        ] {
            let id = gossipsub::MessageId::new(&bytes);
            assert_eq!(MessageIdText(&id).to_string(), id.to_string());
        }
    }
}
