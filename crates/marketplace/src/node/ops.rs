//! Operations in flight: starting them, and ending them with a result or an error,
//! on their spans and in the metrics.

use super::*;

impl RegistryNode {
    pub(super) fn op(
        &mut self,
        operation: &'static str,
        span: Span,
        kind: Pending,
        timeout: std::time::Duration,
    ) -> u64 {
        self.next_op += 1;
        let now = Instant::now();
        self.pending.insert(
            self.next_op,
            InFlight {
                operation,
                deadline: now + timeout,
                started: now,
                span,
                step: Span::none(),
                kind,
            },
        );
        self.next_op
    }

    /// Ends an operation: records its outcome on its span and in the metrics, replies.
    pub(super) fn complete<T>(
        &self,
        operation: &'static str,
        span: &Span,
        started: Instant,
        result: Result<T, MarketplaceError>,
        reply: Reply<T>,
    ) {
        record_outcome(span, &result);
        if let Some(metrics) = &self.metrics {
            metrics.operation(operation, result.is_ok(), started.elapsed());
        }
        let _ = reply.send(result);
    }

    pub(super) fn quorum(&self) -> Quorum {
        NonZeroUsize::new(self.config.replication).map_or(Quorum::One, Quorum::N)
    }

    pub(super) fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// Ends the operation `op` with `error` (see [`end_with_error`](Self::end_with_error)).
    pub(super) fn fail(&mut self, op: u64, error: MarketplaceError) {
        if let Some(in_flight) = self.pending.remove(&op) {
            self.end_with_error(in_flight, error);
        }
        self.kad_ops.retain(|_, id| *id != op);
    }

    /// Ends an operation with `error`, recorded on its step and its span. A search is
    /// the exception: peers that did not answer lose reputation, and the caller still
    /// gets what did arrive (local results at least) rather than nothing.
    pub(super) fn end_with_error(&mut self, in_flight: InFlight, error: MarketplaceError) {
        let InFlight {
            operation,
            started,
            span,
            step,
            kind,
            ..
        } = in_flight;
        record_outcome::<()>(&step, &Err(error.clone()));
        drop(step);
        match kind {
            Pending::Search {
                query,
                found,
                local,
                waiting,
                reply,
            } => {
                for request in waiting {
                    if let Some((_, peer, sent, request_span)) = self.outbound.remove(&request) {
                        record_outcome::<()>(&request_span, &Err(error.clone()));
                        self.reputation.failure(peer, sent.elapsed());
                        self.report_peer(&peer);
                    }
                }
                let remote = found.len().saturating_sub(local);
                span.record("remote_results", remote as i64);
                span.record("total_latency_ms", started.elapsed().as_secs_f64() * 1000.0);
                if let Some(metrics) = &self.metrics {
                    metrics.search(false, local, remote);
                }
                self.complete(
                    operation,
                    &span,
                    started,
                    Ok(rank_all(found, &query)),
                    reply,
                );
            }
            Pending::Put { reply, .. } => {
                self.complete(operation, &span, started, Err(error), reply)
            }
            Pending::Get { reply, .. } => {
                self.complete(operation, &span, started, Err(error), reply)
            }
            Pending::ListVersions { reply, .. } => {
                self.complete(operation, &span, started, Err(error), reply)
            }
            Pending::Exists { reply } => {
                self.complete(operation, &span, started, Err(error), reply)
            }
            Pending::Bootstrap { reply } => {
                span.record("bootstrap_success", false);
                span.record("connected_peers", 0i64);
                self.complete(operation, &span, started, Err(error), reply)
            }
        }
    }

    pub(crate) fn stats(&self, swarm: &NodeSwarm<Behaviour>) -> NodeStats {
        NodeStats {
            connected_peers: swarm.connected_peers().count(),
            packages: self.index.len(),
            cache_hits: self.cache_hits,
            cache_misses: self.cache_misses,
            malformed_messages: self.malformed,
            reputation: self.reputation.snapshot(),
        }
    }
}
