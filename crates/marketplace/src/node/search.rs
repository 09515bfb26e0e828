//! Search: local results merged with those of the best-reputed peers, and answering
//! other peers' searches.

use super::*;

impl RegistryNode {
    pub(super) fn search(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        query: Query,
        reply: Reply<Vec<Package>>,
    ) {
        let span = operation_span!(
            "p2p_search",
            "search",
            self.peer_id,
            query_text = query.text.as_str(),
            query_limit = query
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            local_results = field::Empty,
            remote_results = field::Empty,
            cache_hit = field::Empty,
            total_latency_ms = field::Empty,
        );
        let started = Instant::now();
        if let Some((hits, at)) = self.cache.get(&query) {
            if at.elapsed() < self.config.cache_ttl {
                self.cache_hits += 1;
                let hits = hits.clone();
                span.record("cache_hit", true);
                span.record("local_results", hits.len() as i64);
                span.record("remote_results", 0);
                span.record("total_latency_ms", started.elapsed().as_secs_f64() * 1000.0);
                if let Some(metrics) = &self.metrics {
                    metrics.search(true, hits.len(), 0);
                }
                self.complete("search", &span, started, Ok(hits), reply);
                return;
            }
        }
        self.cache_misses += 1;
        span.record("cache_hit", false);
        let found = self.index.candidates(&query);
        span.record("local_results", found.len() as i64);
        let peers = self
            .reputation
            .best(swarm.connected_peers().copied(), self.config.search_fanout);
        let remote_query = Query {
            limit: None,
            offset: None,
            ..query.clone()
        };
        let local = found.len();
        let mut waiting = HashSet::new();
        let mut requests = Vec::new();
        for peer in peers {
            let target_peer = self.labels.get(&peer);
            let request_span = step_span!(
                &span,
                "send_request",
                otel.kind = "client",
                operation = "remote_search",
                target_peer = &*target_peer,
            );
            let request = RegistryRequest::Search {
                query: remote_query.clone(),
                trace: inject(&request_span),
            };
            let id = swarm
                .behaviour_mut()
                .app
                .rr
                .send_request(&peer, Wire::Valid(request));
            waiting.insert(id);
            requests.push((id, peer, request_span));
        }
        let op = self.op(
            "search",
            span,
            Pending::Search {
                query,
                found,
                local,
                waiting,
                reply,
            },
            self.config.request_timeout,
        );
        for (id, peer, request_span) in requests {
            self.outbound
                .insert(id, (op, peer, Instant::now(), request_span));
        }
        self.finish_search_if_done(op);
    }

    pub(super) fn finish_search_if_done(&mut self, op: u64) {
        let done = matches!(
            self.pending.get(&op),
            Some(InFlight { kind: Pending::Search { waiting, .. }, .. }) if waiting.is_empty()
        );
        if done {
            self.finish_search(op);
        }
    }

    /// Answers a search with what it has: local results merged with every remote answer
    /// that arrived. Peers that did not answer were already charged a failure.
    pub(super) fn finish_search(&mut self, op: u64) {
        let Some(InFlight {
            started,
            span,
            kind:
                Pending::Search {
                    query,
                    found,
                    local,
                    reply,
                    ..
                },
            ..
        }) = self.pending.remove(&op)
        else {
            return;
        };
        let remote = found.len().saturating_sub(local);
        let hits = rank_all(found, &query);
        span.record("remote_results", remote as i64);
        span.record("total_latency_ms", started.elapsed().as_secs_f64() * 1000.0);
        if let Some(metrics) = &self.metrics {
            metrics.search(false, local, remote);
        }
        if self.config.cache_ttl > std::time::Duration::ZERO {
            self.cache_bytes += hits
                .iter()
                .map(|p| encode(p).map_or(0, |b| b.len()))
                .sum::<usize>();
            self.cache.insert(query, (hits.clone(), Instant::now()));
        }
        self.complete("search", &span, started, Ok(hits), reply);
    }

    pub(super) fn on_search_answer(
        &mut self,
        request: OutboundRequestId,
        answer: Result<Vec<Package>, MarketplaceError>,
    ) {
        let Some((op, peer, sent, request_span)) = self.outbound.remove(&request) else {
            return;
        };
        record_outcome(&request_span, &answer);
        drop(request_span);
        match &answer {
            Ok(_) => self.reputation.success(peer, sent.elapsed()),
            Err(_) => self.reputation.failure(peer, sent.elapsed()),
        }
        self.report_peer(&peer);
        let deletions = &self.deletions;
        if let Some(InFlight {
            kind: Pending::Search { found, waiting, .. },
            ..
        }) = self.pending.get_mut(&op)
        {
            waiting.remove(&request);
            found.extend(
                answer
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !deletions.is_deleted(&p.id)),
            );
        }
        self.finish_search_if_done(op);
    }

    pub(super) fn report_peer(&mut self, peer: &PeerId) {
        if let (Some(metrics), Some(stats)) = (&self.metrics, self.reputation.stats(peer)) {
            metrics.peer(
                self.labels.get(peer),
                stats.score(),
                stats.response_ms,
                stats.success_rate(),
            );
        }
    }

    /// Answers a peer's search in a `handle_dht_query` span whose parent is the caller's
    /// request span, carried in the request as W3C trace context.
    pub(super) fn on_inbound_search(
        &mut self,
        query: Query,
        trace: &instrumentation::TraceContext,
        from: &PeerId,
    ) -> RegistryResponse {
        let remote_peer = self.labels.get(from);
        let span = info_span!(
            "handle_dht_query",
            otel.kind = "server",
            operation = "handle_search",
            peer_id = self.peer_id.as_str(),
            remote_peer = &*remote_peer,
            query_text = query.text.as_str(),
            results = field::Empty,
        );
        adopt(&span, trace);
        let _entered = span.enter();
        let hits = self.index.search(&Query {
            limit: Some(query.limit.unwrap_or(100).min(100)),
            ..query
        });
        span.record("results", hits.len() as i64);
        RegistryResponse::Hits(hits)
    }
}
