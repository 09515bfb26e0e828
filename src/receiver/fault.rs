//! Fault injection: making the next export requests fail or stall on purpose, to test an
//! exporter's retry behaviour.

use std::time::Duration;

use super::OtlpReceiver;

/// A fault to inject into the next requests, to test an exporter's retry behaviour. A
/// malformed or invalid request is refused as such and takes no fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Refuse the request as retryable: gRPC `UNAVAILABLE` with retry info, HTTP 503
    /// with `Retry-After`. Nothing is stored.
    Unavailable {
        /// The retry delay suggested to the client.
        retry_after: Duration,
    },
    /// Store all but the last `rejected` items and answer with an OTLP partial success.
    PartialSuccess {
        /// How many items to reject.
        rejected: u64,
        /// The error message in the partial success.
        message: String,
    },
    /// Delay the response, then handle the request normally.
    Delay(Duration),
}

impl OtlpReceiver {
    /// Applies `fault` to each of the next `times` export requests, of any signal and
    /// either transport, in arrival order.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.shared.inject(fault, times);
    }
}
