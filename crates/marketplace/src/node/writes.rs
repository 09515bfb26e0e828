//! Writes: publish and delete — local store, DHT records with a quorum, gossip
//! announcements.

use super::*;

impl RegistryNode {
    /// Peers subscribed to the packages topic.
    pub(super) fn topic_peers<'s>(
        &self,
        swarm: &'s NodeSwarm<Behaviour>,
    ) -> impl Iterator<Item = &'s PeerId> + 's {
        let topic = self.topic.hash();
        swarm
            .behaviour()
            .app
            .gossipsub
            .all_peers()
            .filter(move |(_, topics)| topics.contains(&&topic))
            .map(|(peer, _)| peer)
    }

    pub(super) fn gossip_peers(&self, swarm: &NodeSwarm<Behaviour>) -> usize {
        self.topic_peers(swarm).count()
    }

    /// Publishes an announcement in a `gossipsub_announce` span (a child of `parent`).
    pub(super) fn announce(
        &self,
        swarm: &mut NodeSwarm<Behaviour>,
        parent: &Span,
        make: impl FnOnce(instrumentation::TraceContext) -> Announcement,
    ) {
        let span = step_span!(
            parent,
            "gossipsub_announce",
            otel.kind = "producer",
            operation = "announce_package",
            topic = self.config.topic.as_str(),
            subscriber_count = self.gossip_peers(swarm) as i64,
            message_id = field::Empty,
        );
        let announcement = make(inject(&span));
        let Ok(data) = encode(&announcement) else {
            return;
        };
        // No subscribed peer yet is not an error: the DHT records still replicate.
        match swarm
            .behaviour_mut()
            .app
            .gossipsub
            .publish(self.topic.clone(), data)
        {
            Ok(id) => {
                span.record("message_id", field::display(MessageIdText(&id)));
            }
            // Not fatal to the operation (the DHT records replicate on their own), but
            // visible: an announcement nobody received is an error of this span.
            Err(error) => {
                let message = format!("gossipsub publish failed: {error}");
                span.record("error", true);
                span.record("error_type", "gossip_publish");
                span.record("error_message", message.as_str());
                span.record("otel.status_code", "error");
                span.record("otel.status_description", message.as_str());
            }
        }
    }

    pub(super) fn publish(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        package: Package,
        reply: Reply<()>,
    ) {
        let span = operation_span!(
            "p2p_publish",
            "publish",
            self.peer_id,
            package_id = %package.id,
            package_version = %package.version,
            dht_replication = self.config.replication as i64,
            gossipsub_peers = self.gossip_peers(swarm) as i64,
        );
        let started = Instant::now();
        if let Err(error) = check_size(&package, self.config.max_package_bytes) {
            self.complete("publish", &span, started, Err(error), reply);
            return;
        }
        let issued_at = self.deletions.now(self.config.wall_clock);
        self.deletions.publish(&package.id, issued_at);
        self.index.insert(package.clone());
        self.clear_cache();
        if let Some(metrics) = &self.metrics {
            metrics.published();
        }
        let index = IndexRecord {
            versions: self.index.versions(&package.id),
            deleted: false,
        };
        let records = encode(&package).and_then(|value| {
            Ok(vec![
                Record::new(version_key(&package.id, &package.version), value),
                Record::new(index_key(&package.id), encode(&index)?),
            ])
        });
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                self.complete("publish", &span, started, Err(error), reply);
                return;
            }
        };
        let key = version_key(&package.id, &package.version);
        let step = self.dht_put_span(&span, "store_package", &package.id, &key);
        self.announce(swarm, &span, |trace| Announcement::Published {
            package: Box::new(package),
            trace,
            issued_at,
        });
        self.put_all(swarm, "publish", span, step, records, reply);
    }

    pub(super) fn dht_put_span(
        &self,
        parent: &Span,
        operation: &'static str,
        id: &PackageId,
        key: &kad::RecordKey,
    ) -> Span {
        step_span!(
            parent,
            "dht_put",
            otel.kind = "client",
            operation,
            package_id = %id,
            dht_key = %String::from_utf8_lossy(key.as_ref()),
            dht_replication = self.config.replication as i64,
            dht_query_id = field::Empty,
        )
    }

    pub(super) fn put_all(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        operation: &'static str,
        span: Span,
        step: Span,
        records: Vec<Record>,
        reply: Reply<()>,
    ) {
        let op = self.op(
            operation,
            span,
            Pending::Put {
                remaining: records.len(),
                failure: None,
                reply,
            },
            self.config.query_timeout,
        );
        let quorum = self.quorum();
        let mut query_ids = Vec::new();
        for record in records {
            match swarm.behaviour_mut().app.kad.put_record(record, quorum) {
                Ok(query) => {
                    self.kad_ops.insert(query, op);
                    query_ids.push(format!("{query:?}"));
                }
                Err(error) => {
                    self.put_done(op, Some(MarketplaceError::Replication(error.to_string())))
                }
            }
        }
        step.record("dht_query_id", query_ids.join(",").as_str());
        if let Some(pending) = self.pending.get_mut(&op) {
            pending.step = step;
        }
    }

    pub(super) fn put_done(&mut self, op: u64, failure: Option<MarketplaceError>) {
        let Some(InFlight {
            kind:
                Pending::Put {
                    remaining,
                    failure: first,
                    ..
                },
            ..
        }) = self.pending.get_mut(&op)
        else {
            return;
        };
        *remaining = remaining.saturating_sub(1);
        if first.is_none() {
            *first = failure;
        }
        if *remaining > 0 {
            return;
        }
        let Some(InFlight {
            operation,
            started,
            span,
            step,
            kind: Pending::Put { failure, reply, .. },
            ..
        }) = self.pending.remove(&op)
        else {
            return;
        };
        if let Some(metrics) = &self.metrics {
            metrics.dht_query("put_record", started.elapsed());
        }
        let result = match failure {
            None => Ok(()),
            Some(error) => Err(error),
        };
        record_outcome(&step, &result);
        drop(step);
        self.complete(operation, &span, started, result, reply);
    }

    pub(super) fn delete(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        id: PackageId,
        reply: Reply<()>,
    ) {
        let span = operation_span!("p2p_delete", "delete", self.peer_id, package_id = %id);
        let versions = self.index.versions(&id);
        let issued_at = self.deletions.now(self.config.wall_clock);
        self.deletions.delete(&id, issued_at);
        self.index.remove(&id);
        self.clear_cache();
        let kad = &mut swarm.behaviour_mut().app.kad;
        for version in &versions {
            kad.remove_record(&version_key(&id, version));
        }
        self.announce(swarm, &span, |trace| Announcement::Deleted {
            id: id.clone(),
            trace,
            issued_at,
        });
        let tombstone = IndexRecord {
            versions: Vec::new(),
            deleted: true,
        };
        let key = index_key(&id);
        let step = self.dht_put_span(&span, "store_tombstone", &id, &key);
        match encode(&tombstone) {
            Ok(value) => self.put_all(
                swarm,
                "delete",
                span,
                step,
                vec![Record::new(key, value)],
                reply,
            ),
            Err(error) => self.complete("delete", &span, Instant::now(), Err(error), reply),
        }
    }
}
