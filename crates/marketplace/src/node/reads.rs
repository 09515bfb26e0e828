//! Reads and what arrives: DHT queries and their results, gossip announcements.

use super::*;

impl RegistryNode {
    /// Starts a DHT read for an operation whose span is `span`.
    pub(super) fn get_record(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        operation: &'static str,
        span: Span,
        key: kad::RecordKey,
        pending: Pending,
    ) {
        let query = swarm.behaviour_mut().app.kad.get_record(key.clone());
        let step = step_span!(
            &span,
            "dht_get",
            otel.kind = "client",
            operation = "get_record",
            dht_query_id = ?query,
            dht_key = %String::from_utf8_lossy(key.as_ref()),
            dht_providers = field::Empty,
            dht_closest_peers = field::Empty,
        );
        let op = self.op(operation, span, pending, self.config.query_timeout);
        if let Some(pending) = self.pending.get_mut(&op) {
            pending.step = step;
        }
        self.kad_ops.insert(query, op);
    }

    pub(super) fn on_kad(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id,
            result,
            step,
            stats,
            ..
        } = event
        else {
            return;
        };
        let Some(&op) = self.kad_ops.get(&id) else {
            return;
        };
        if step.last {
            self.kad_ops.remove(&id);
        }
        match result {
            QueryResult::PutRecord(result) => {
                self.kad_ops.remove(&id);
                let failure = result.err().map(|error| match error {
                    kad::PutRecordError::Timeout { .. } => MarketplaceError::Timeout {
                        operation: "DHT put".to_owned(),
                        after: self.config.query_timeout,
                    },
                    other => MarketplaceError::Replication(other.to_string()),
                });
                self.put_done(op, failure);
            }
            QueryResult::Bootstrap(Err(_)) if step.last => {
                let timeout = MarketplaceError::Timeout {
                    operation: "Kademlia bootstrap".to_owned(),
                    after: self.config.query_timeout,
                };
                self.fail(op, timeout);
            }
            QueryResult::Bootstrap(_) if step.last => {
                if let Some(InFlight {
                    operation,
                    started,
                    span,
                    kind: Pending::Bootstrap { reply },
                    ..
                }) = self.pending.remove(&op)
                {
                    let connected = swarm.connected_peers().count();
                    span.record("bootstrap_success", connected > 0);
                    span.record("connected_peers", connected as i64);
                    if let Some(metrics) = &self.metrics {
                        metrics.dht_query("bootstrap", started.elapsed());
                    }
                    self.complete(operation, &span, started, Ok(connected), reply);
                }
            }
            QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                self.kad_ops.remove(&id);
                if let Some(mut query) = swarm.behaviour_mut().app.kad.query_mut(&id) {
                    query.finish();
                }
                self.on_record(op, Some(found.record.value), stats.num_requests());
            }
            QueryResult::GetRecord(Err(kad::GetRecordError::Timeout { .. })) if step.last => {
                let timeout = MarketplaceError::Timeout {
                    operation: "DHT query".to_owned(),
                    after: self.config.query_timeout,
                };
                self.fail(op, timeout);
            }
            QueryResult::GetRecord(_) if step.last => {
                self.on_record(op, None, stats.num_requests())
            }
            _ => {}
        }
    }

    pub(super) fn on_record(&mut self, op: u64, value: Option<Vec<u8>>, peers_asked: u32) {
        let Some(InFlight {
            operation,
            started,
            span,
            step,
            kind,
            ..
        }) = self.pending.remove(&op)
        else {
            return;
        };
        step.record("dht_providers", i64::from(value.is_some()));
        step.record("dht_closest_peers", i64::from(peers_asked));
        drop(step);
        if let Some(metrics) = &self.metrics {
            metrics.dht_query("get_record", started.elapsed());
        }
        match kind {
            Pending::Get { id, version, reply } => {
                let package = value
                    .and_then(|v| serde_json::from_slice::<Package>(&v).ok())
                    .filter(|p| !self.deletions.is_deleted(&p.id))
                    .ok_or_else(|| MarketplaceError::NotFound(format!("{id}@{version}")));
                self.complete(operation, &span, started, package, reply);
            }
            Pending::ListVersions {
                id,
                mut local,
                reply,
            } => {
                let record = value.and_then(|v| serde_json::from_slice::<IndexRecord>(&v).ok());
                let deleted = record.as_ref().is_some_and(|r| r.deleted);
                local.extend(record.map(|r| r.versions).unwrap_or_default());
                local.sort();
                local.dedup();
                let result = if local.is_empty() || (deleted && self.index.versions(&id).is_empty())
                {
                    Err(MarketplaceError::NotFound(id.to_string()))
                } else {
                    Ok(local)
                };
                self.complete(operation, &span, started, result, reply);
            }
            Pending::Exists { reply } => {
                let record = value.and_then(|v| serde_json::from_slice::<IndexRecord>(&v).ok());
                let exists = record.is_some_and(|r| !r.deleted && !r.versions.is_empty());
                self.complete(operation, &span, started, Ok(exists), reply);
            }
            other => {
                // Not a read: keep waiting for its own completion.
                self.pending.insert(
                    op,
                    InFlight {
                        operation,
                        deadline: started + self.config.query_timeout,
                        started,
                        span,
                        step: Span::none(),
                        kind: other,
                    },
                );
            }
        }
    }

    /// Receives an announcement in a `gossipsub_receive` span parented by the announcing
    /// span, with how long the message took to arrive.
    pub(super) fn on_gossip(&mut self, data: &[u8], message_id: &gossipsub::MessageId) {
        let announcement = match serde_json::from_slice::<Announcement>(data) {
            Ok(announcement) => announcement,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        let (trace, issued_at, package_id) = match &announcement {
            Announcement::Published {
                package,
                trace,
                issued_at,
            } => (trace, *issued_at, package.id.to_string()),
            Announcement::Deleted {
                id,
                trace,
                issued_at,
            } => (trace, *issued_at, id.to_string()),
        };
        let propagation_ms = self
            .config
            .wall_clock
            .unix_micros()
            .saturating_sub(issued_at) as f64
            / 1000.0;
        let span = info_span!(
            "gossipsub_receive",
            otel.kind = "consumer",
            operation = "receive_announcement",
            peer_id = self.peer_id.as_str(),
            topic = self.config.topic.as_str(),
            message_id = %MessageIdText(message_id),
            package_id = package_id.as_str(),
            propagation_ms,
        );
        adopt(&span, trace);
        let _entered = span.enter();
        if let Some(metrics) = &self.metrics {
            metrics.propagation(propagation_ms);
        }
        match announcement {
            Announcement::Published { package, .. } => {
                self.apply_published(*package, issued_at);
            }
            Announcement::Deleted { id, .. } => {
                self.apply_deleted(&id, issued_at);
            }
        }
    }

    /// Indexes a version published at `issued_at`, unless it is too large (counted as
    /// malformed) or a later delete is known. Whether it was indexed.
    pub(super) fn apply_published(&mut self, package: Package, issued_at: u64) -> bool {
        if check_size(&package, self.config.max_package_bytes).is_err() {
            self.malformed += 1;
            return false;
        }
        if !self.deletions.publish(&package.id, issued_at) {
            return false;
        }
        self.index.insert(package);
        self.clear_cache();
        true
    }

    /// Removes a package deleted at `issued_at`, unless a later publish is known (the
    /// announcements crossed: the delete is stale). Whether it was removed.
    pub(super) fn apply_deleted(&mut self, id: &PackageId, issued_at: u64) -> bool {
        if !self.deletions.delete(id, issued_at) {
            return false;
        }
        self.index.remove(id);
        self.clear_cache();
        true
    }
}
