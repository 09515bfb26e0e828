//! Following traces as they grow, at the cost of what changed: each request announces the
//! traces it touched, and a watcher reads just those through the store's index.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::ingest::Shared;
use crate::model::TraceId;

/// Which traces gained spans, request after request, from the moment the watch began
/// ([`OtlpReceiver::watch_traces`](super::OtlpReceiver::watch_traces)).
///
/// Read each touched trace with [`OtlpReceiver::trace`](super::OtlpReceiver::trace): a
/// watcher's cost is the spans of the traces that changed, never the whole store — what
/// `serve` uses to print each trace as it completes.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
///
/// let receiver = OtlpReceiver::start(Config::default()).await?;
/// let mut watch = receiver.watch_traces();
/// // … an exporter sends spans to receiver.grpc_endpoint() …
/// let nothing_yet = tokio::time::timeout(Duration::from_millis(10), watch.changed()).await;
/// assert!(nothing_yet.is_err());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TraceWatch {
    shared: Arc<Shared>,
    updates: broadcast::Receiver<Arc<[TraceId]>>,
}

impl TraceWatch {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let updates = shared.spans.subscribe();
        TraceWatch { shared, updates }
    }

    /// Waits until requests add spans, then returns the traces they touched since the last
    /// call, each once, in the order first touched. A watcher that fell far behind (more
    /// than a few thousand requests unread) gets every stored trace instead, so it never
    /// misses one.
    pub async fn changed(&mut self) -> Vec<TraceId> {
        let mut touched: Vec<TraceId> = match self.updates.recv().await {
            Ok(ids) => ids.to_vec(),
            Err(RecvError::Lagged(_)) => return self.everything(),
            // The sender lives in `shared`, which this watch holds: it cannot close.
            Err(RecvError::Closed) => return std::future::pending().await,
        };
        loop {
            match self.updates.try_recv() {
                Ok(ids) => touched.extend(ids.iter()),
                Err(TryRecvError::Lagged(_)) => return self.everything(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let mut once = std::collections::HashSet::new();
        touched.retain(|id| once.insert(*id));
        touched
    }

    fn everything(&mut self) -> Vec<TraceId> {
        self.updates = self.updates.resubscribe();
        self.shared.spans.trace_ids()
    }
}
