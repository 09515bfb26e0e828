//! A marketplace node's logic, run by the mesh inside the node's own event loop: it owns
//! the local index, the pending operations and the reputation table, and it alone drives
//! Kademlia, gossipsub and request-response. Handles talk to it through commands.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::kad::{self, store::MemoryStore, GetRecordOk, Mode, QueryResult, Quorum, Record};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, PeerId, StreamProtocol};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{field, info_span, Span};

use super::codec::{RegistryCodec, Wire};
use super::index::{rank_all, LocalIndex};
use super::instrumentation::{self, adopt, inject, record_outcome, Instruments};
use super::protocol::{
    index_key, version_key, Announcement, IndexRecord, RegistryRequest, RegistryResponse,
    REGISTRY_PROTOCOL,
};
use super::registry::check_size;
use super::reputation::Reputation;
use super::{Config, MarketplaceError, NodeStats, Package, PackageId, Query, Version};
use crate::mesh::{MeshError, Node, NodeContext, NodeEvent, NodeState, NodeSwarm};

/// The protocols a marketplace node speaks.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
#[allow(missing_docs)]
pub struct Behaviour {
    /// The DHT: one record per version, one index record per package.
    pub kad: kad::Behaviour<MemoryStore>,
    /// Announcements on the packages topic.
    pub gossipsub: gossipsub::Behaviour,
    /// Remote search.
    pub rr: request_response::Behaviour<RegistryCodec>,
    /// Exchanges listen addresses, which feed Kademlia's routing table.
    pub identify: identify::Behaviour,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

type Reply<T> = oneshot::Sender<Result<T, MarketplaceError>>;

/// A command for a marketplace node, opaque outside the crate: send them through
/// [`P2PRegistry`](super::P2PRegistry).
#[derive(Debug)]
pub struct Command(pub(crate) Op);

/// What a `P2PRegistry` asks of its node.
#[derive(Debug)]
pub(crate) enum Op {
    /// Bootstrap from these peers, or from the configured ones.
    Bootstrap(Option<Vec<(PeerId, libp2p::Multiaddr)>>, Reply<usize>),
    Publish(Package, Reply<()>),
    Search(Query, Reply<Vec<Package>>),
    Get(PackageId, Version, Reply<Package>),
    ListVersions(PackageId, Reply<Vec<Version>>),
    Delete(PackageId, Reply<()>),
    Exists(PackageId, Reply<bool>),
    Stats(oneshot::Sender<NodeStats>),
}

/// An operation in flight: what it waits for, its span, when it started and must end.
#[derive(Debug)]
struct InFlight {
    /// The `operation` label for metrics: "publish", "search", …
    operation: &'static str,
    deadline: Instant,
    started: Instant,
    /// The operation's span (`p2p_publish`, `p2p_search`, …), closed when the op ends.
    span: Span,
    /// The span of the network step it waits on (`dht_put`, `dht_get`), if any.
    step: Span,
    kind: Pending,
}

/// What an operation waits for.
#[derive(Debug)]
enum Pending {
    /// Waiting for `remaining` DHT puts; the first failure is kept.
    Put {
        remaining: usize,
        failure: Option<MarketplaceError>,
        reply: Reply<()>,
    },
    Get {
        id: PackageId,
        version: Version,
        reply: Reply<Package>,
    },
    ListVersions {
        id: PackageId,
        local: Vec<Version>,
        reply: Reply<Vec<Version>>,
    },
    Exists {
        reply: Reply<bool>,
    },
    Search {
        query: Query,
        found: Vec<Package>,
        /// How many of `found` came from the local index.
        local: usize,
        waiting: HashSet<OutboundRequestId>,
        reply: Reply<Vec<Package>>,
    },
    Bootstrap {
        reply: Reply<usize>,
    },
}

/// A marketplace node's logic. Build it (with its behaviour) through
/// [`node_constructor`](super::node_constructor).
#[derive(Debug)]
pub struct RegistryNode {
    config: Config,
    topic: IdentTopic,
    index: LocalIndex,
    tombstones: HashSet<PackageId>,
    reputation: Reputation,
    cache: HashMap<Query, (Vec<Package>, Instant)>,
    cache_hits: u64,
    cache_misses: u64,
    malformed: u64,
    next_op: u64,
    pending: HashMap<u64, InFlight>,
    kad_ops: HashMap<kad::QueryId, u64>,
    /// Remote search requests: their op, peer, send time and `send_request` span.
    outbound: HashMap<OutboundRequestId, (u64, PeerId, Instant, Span)>,
    /// Peers added to Kademlia's routing table.
    kad_peers: HashSet<PeerId>,
    peer_id: String,
    metrics: Option<Instruments>,
    /// Approximate bytes held by the search cache.
    cache_bytes: usize,
}

pub(crate) fn build(
    context: &NodeContext,
    config: Config,
) -> Result<(Behaviour, RegistryNode), MeshError> {
    let fail = |what: &str, error: String| MeshError::Build {
        index: context.index,
        reason: format!("{what}: {error}"),
    };
    let peer_id = context.peer_id;
    let mut kad_config = kad::Config::new(StreamProtocol::new("/ggen/kad/1.0.0"));
    kad_config.set_query_timeout(config.query_timeout);
    // The default store holds 1,024 records of at most 64 KiB: too few records for a
    // busy node, and too small for the packages the node accepts.
    let store = MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_records: config.max_dht_records,
            max_value_bytes: config.max_package_bytes + 4096,
            ..Default::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // On the memory transport nothing confirms an external address, so Kademlia would
    // stay a client forever: force server mode.
    kad.set_mode(Some(Mode::Server));
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        .heartbeat_initial_delay(config.gossip_heartbeat)
        .mesh_n_low(1)
        .mesh_n(2)
        .mesh_n_high(4)
        .mesh_outbound_min(0)
        .gossip_lazy(2)
        .max_transmit_size(config.max_package_bytes * 2)
        .build()
        .map_err(|e| fail("gossipsub config", e.to_string()))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(context.keypair.clone()),
        gossip_config,
    )
    .map_err(|e| fail("gossipsub", e.to_owned()))?;
    let topic = IdentTopic::new(config.topic.clone());
    gossipsub
        .subscribe(&topic)
        .map_err(|e| fail("gossipsub subscribe", e.to_string()))?;
    let rr = request_response::Behaviour::with_codec(
        RegistryCodec,
        [(
            StreamProtocol::new(REGISTRY_PROTOCOL),
            ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    let identify = identify::Behaviour::new(identify::Config::new(
        "/ggen/1.0.0".to_owned(),
        context.keypair.public(),
    ));
    let behaviour = Behaviour {
        kad,
        gossipsub,
        rr,
        identify,
    };
    let node = RegistryNode {
        config,
        topic,
        index: LocalIndex::default(),
        tombstones: HashSet::new(),
        reputation: Reputation::default(),
        cache: HashMap::new(),
        cache_hits: 0,
        cache_misses: 0,
        malformed: 0,
        next_op: 0,
        pending: HashMap::new(),
        kad_ops: HashMap::new(),
        outbound: HashMap::new(),
        kad_peers: HashSet::new(),
        peer_id: peer_id.to_string(),
        metrics: None,
        cache_bytes: 0,
    };
    let node = RegistryNode {
        metrics: node.config.meter.as_ref().map(Instruments::new),
        ..node
    };
    Ok((behaviour, node))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, MarketplaceError> {
    serde_json::to_vec(value).map_err(|e| MarketplaceError::Malformed(e.to_string()))
}

/// An operation span with the attributes every operation carries, plus the error fields
/// recorded if it fails.
macro_rules! operation_span {
    ($name:literal, $operation:literal, $peer:expr $(, $($fields:tt)*)?) => {
        info_span!(
            $name,
            otel.kind = "internal",
            operation = $operation,
            peer_id = %$peer,
            error = field::Empty,
            error_type = field::Empty,
            error_message = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
            $($($fields)*)?
        )
    };
}

/// A child span that can record a failure (error fields and status declared up front:
/// tracing silently drops a `record()` of an undeclared field).
macro_rules! step_span {
    ($parent:expr, $name:literal, $($fields:tt)*) => {
        info_span!(
            parent: $parent,
            $name,
            error = field::Empty,
            error_type = field::Empty,
            error_message = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
            $($fields)*
        )
    };
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RegistryNode {
    fn op(
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
    fn complete<T>(
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

    fn quorum(&self) -> Quorum {
        NonZeroUsize::new(self.config.replication).map_or(Quorum::One, Quorum::N)
    }

    fn gossip_peers(&self, swarm: &NodeSwarm<Behaviour>) -> usize {
        let topic = self.topic.hash();
        swarm
            .behaviour()
            .app
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic))
            .count()
    }

    /// Publishes an announcement in a `gossipsub_announce` span (a child of `parent`).
    fn announce(
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
            topic = %self.config.topic,
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
                span.record("message_id", id.to_string().as_str());
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

    fn publish(&mut self, swarm: &mut NodeSwarm<Behaviour>, package: Package, reply: Reply<()>) {
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
        self.tombstones.remove(&package.id);
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
            sent_unix_ms: unix_ms(),
        });
        self.put_all(swarm, "publish", span, step, records, reply);
    }

    fn dht_put_span(
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

    fn put_all(
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

    fn put_done(&mut self, op: u64, failure: Option<MarketplaceError>) {
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

    fn delete(&mut self, swarm: &mut NodeSwarm<Behaviour>, id: PackageId, reply: Reply<()>) {
        let span = operation_span!("p2p_delete", "delete", self.peer_id, package_id = %id);
        let versions = self.index.versions(&id);
        self.index.remove(&id);
        self.tombstones.insert(id.clone());
        self.clear_cache();
        let kad = &mut swarm.behaviour_mut().app.kad;
        for version in &versions {
            kad.remove_record(&version_key(&id, version));
        }
        self.announce(swarm, &span, |trace| Announcement::Deleted {
            id: id.clone(),
            trace,
            sent_unix_ms: unix_ms(),
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

    /// Starts a DHT read for an operation whose span is `span`.
    fn get_record(
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
            dht_query_id = %format!("{query:?}"),
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

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    fn search(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        query: Query,
        reply: Reply<Vec<Package>>,
    ) {
        let span = operation_span!(
            "p2p_search",
            "search",
            self.peer_id,
            query_text = %query.text,
            query_limit = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
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
            let request_span = step_span!(
                &span,
                "send_request",
                otel.kind = "client",
                operation = "remote_search",
                target_peer = %peer,
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

    fn finish_search_if_done(&mut self, op: u64) {
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
    fn finish_search(&mut self, op: u64) {
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

    fn on_search_answer(
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
            Err(_) => self.reputation.failure(peer),
        }
        self.report_peer(&peer);
        let tombstones = &self.tombstones;
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
                    .filter(|p| !tombstones.contains(&p.id)),
            );
        }
        self.finish_search_if_done(op);
    }

    fn report_peer(&self, peer: &PeerId) {
        if let (Some(metrics), Some(stats)) = (&self.metrics, self.reputation.snapshot().get(peer))
        {
            metrics.peer(
                &peer.to_string(),
                stats.score(),
                stats.response_ms,
                stats.success_rate(),
            );
        }
    }

    fn on_kad(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: kad::Event) {
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

    fn on_record(&mut self, op: u64, value: Option<Vec<u8>>, peers_asked: u32) {
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
                    .filter(|p| !self.tombstones.contains(&p.id))
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
    fn on_gossip(&mut self, data: &[u8], message_id: &gossipsub::MessageId) {
        let announcement = match serde_json::from_slice::<Announcement>(data) {
            Ok(announcement) => announcement,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        let (trace, sent_unix_ms, package_id) = match &announcement {
            Announcement::Published {
                package,
                trace,
                sent_unix_ms,
            } => (trace, *sent_unix_ms, package.id.to_string()),
            Announcement::Deleted {
                id,
                trace,
                sent_unix_ms,
            } => (trace, *sent_unix_ms, id.to_string()),
        };
        let propagation_ms = unix_ms().saturating_sub(sent_unix_ms) as f64;
        let span = info_span!(
            "gossipsub_receive",
            otel.kind = "consumer",
            operation = "receive_announcement",
            peer_id = %self.peer_id,
            topic = %self.config.topic,
            message_id = %message_id,
            package_id = %package_id,
            propagation_ms,
        );
        adopt(&span, trace);
        let _entered = span.enter();
        if let Some(metrics) = &self.metrics {
            metrics.propagation(propagation_ms);
        }
        match announcement {
            Announcement::Published { package, .. } => {
                if check_size(&package, self.config.max_package_bytes).is_ok() {
                    self.tombstones.remove(&package.id);
                    self.index.insert(*package);
                    self.clear_cache();
                } else {
                    self.malformed += 1;
                }
            }
            Announcement::Deleted { id, .. } => {
                self.index.remove(&id);
                self.tombstones.insert(id);
                self.clear_cache();
            }
        }
    }

    /// Answers a peer's search in a `handle_dht_query` span whose parent is the caller's
    /// request span, carried in the request as W3C trace context.
    fn on_inbound_search(
        &mut self,
        query: Query,
        trace: &instrumentation::TraceContext,
        from: &PeerId,
    ) -> RegistryResponse {
        let span = info_span!(
            "handle_dht_query",
            otel.kind = "server",
            operation = "handle_search",
            peer_id = %self.peer_id,
            remote_peer = %from,
            query_text = %query.text,
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

    /// Ends the operation `op` with `error` (see [`end_with_error`](Self::end_with_error)).
    fn fail(&mut self, op: u64, error: MarketplaceError) {
        if let Some(in_flight) = self.pending.remove(&op) {
            self.end_with_error(in_flight, error);
        }
        self.kad_ops.retain(|_, id| *id != op);
    }

    /// Ends an operation with `error`, recorded on its step and its span. A search is
    /// the exception: peers that did not answer lose reputation, and the caller still
    /// gets what did arrive (local results at least) rather than nothing.
    fn end_with_error(&mut self, in_flight: InFlight, error: MarketplaceError) {
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
                    if let Some((_, peer, _, request_span)) = self.outbound.remove(&request) {
                        record_outcome::<()>(&request_span, &Err(error.clone()));
                        self.reputation.failure(peer);
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
impl Node for RegistryNode {
    type Behaviour = Behaviour;
    type Command = Command;

    fn on_swarm_event(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: NodeEvent<Behaviour>) {
        use crate::mesh::MeshBehaviourEvent as Mesh;
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if endpoint.is_dialer() => {
                let addr = endpoint.get_remote_address().clone();
                swarm.behaviour_mut().app.kad.add_address(&peer_id, addr);
                self.kad_peers.insert(peer_id);
            }
            SwarmEvent::Behaviour(Mesh::App(BehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. },
            ))) => {
                for addr in info.listen_addrs {
                    swarm.behaviour_mut().app.kad.add_address(&peer_id, addr);
                }
                self.kad_peers.insert(peer_id);
            }
            SwarmEvent::Behaviour(Mesh::App(BehaviourEvent::Kad(event))) => {
                self.on_kad(swarm, event)
            }
            SwarmEvent::Behaviour(Mesh::App(BehaviourEvent::Gossipsub(
                gossipsub::Event::Message {
                    message,
                    message_id,
                    ..
                },
            ))) => self.on_gossip(&message.data, &message_id),
            SwarmEvent::Behaviour(Mesh::App(BehaviourEvent::Rr(event))) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let response = match request {
                            Wire::Valid(RegistryRequest::Search { query, trace }) => {
                                self.on_inbound_search(query, &trace, &peer)
                            }
                            // Counted and refused; the node carries on.
                            Wire::Malformed(reason) => {
                                self.malformed += 1;
                                RegistryResponse::Rejected(reason)
                            }
                        };
                        let _ = swarm
                            .behaviour_mut()
                            .app
                            .rr
                            .send_response(channel, Wire::Valid(response));
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        let answer = match response {
                            Wire::Valid(RegistryResponse::Hits(hits)) => Ok(hits),
                            Wire::Valid(RegistryResponse::Rejected(reason)) => Err(
                                MarketplaceError::Network(format!("request rejected: {reason}")),
                            ),
                            Wire::Malformed(reason) => {
                                self.malformed += 1;
                                Err(MarketplaceError::Malformed(reason))
                            }
                        };
                        self.on_search_answer(request_id, answer);
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    let error = match error {
                        request_response::OutboundFailure::Timeout => MarketplaceError::Timeout {
                            operation: "remote search request".to_owned(),
                            after: self.config.request_timeout,
                        },
                        other => MarketplaceError::Network(other.to_string()),
                    };
                    self.on_search_answer(request_id, Err(error));
                }
                request_response::Event::InboundFailure { .. }
                | request_response::Event::ResponseSent { .. } => {}
            },
            _ => {}
        }
    }

    fn on_command(&mut self, swarm: &mut NodeSwarm<Behaviour>, Command(op): Command) {
        match op {
            Op::Bootstrap(peers, reply) => {
                let peers = peers.unwrap_or_else(|| self.config.bootstrap_peers.clone());
                let span = operation_span!(
                    "p2p_bootstrap",
                    "bootstrap",
                    self.peer_id,
                    bootstrap_node_count = peers.len() as i64,
                    bootstrap_success = field::Empty,
                    connected_peers = field::Empty,
                );
                let kad = &mut swarm.behaviour_mut().app.kad;
                for (peer, addr) in &peers {
                    kad.add_address(peer, addr.clone());
                    self.kad_peers.insert(*peer);
                }
                for (peer, addr) in peers {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .build();
                    let _ = swarm.dial(opts);
                }
                match swarm.behaviour_mut().app.kad.bootstrap() {
                    Ok(query) => {
                        let op = self.op(
                            "bootstrap",
                            span,
                            Pending::Bootstrap { reply },
                            self.config.query_timeout,
                        );
                        self.kad_ops.insert(query, op);
                    }
                    Err(_) => {
                        span.record("bootstrap_success", false);
                        span.record("connected_peers", swarm.connected_peers().count() as i64);
                        let error = MarketplaceError::Network(
                            "no known peers to bootstrap from".to_owned(),
                        );
                        self.complete("bootstrap", &span, Instant::now(), Err(error), reply);
                    }
                }
            }
            Op::Publish(package, reply) => self.publish(swarm, package, reply),
            Op::Search(query, reply) => self.search(swarm, query, reply),
            Op::Get(id, version, reply) => {
                let span = operation_span!(
                    "p2p_get",
                    "get",
                    self.peer_id,
                    package_id = %id,
                    package_version = %version,
                );
                match self.index.get(&id, &version) {
                    Some(package) => {
                        let package = package.clone();
                        self.complete("get", &span, Instant::now(), Ok(package), reply);
                    }
                    None if self.tombstones.contains(&id) => {
                        let error = MarketplaceError::NotFound(format!("{id}@{version}"));
                        self.complete("get", &span, Instant::now(), Err(error), reply);
                    }
                    None => {
                        let key = version_key(&id, &version);
                        self.get_record(
                            swarm,
                            "get",
                            span,
                            key,
                            Pending::Get { id, version, reply },
                        );
                    }
                }
            }
            Op::ListVersions(id, reply) => {
                let span = operation_span!("p2p_list_versions", "list_versions", self.peer_id, package_id = %id);
                if self.tombstones.contains(&id) {
                    let error = MarketplaceError::NotFound(id.to_string());
                    self.complete("list_versions", &span, Instant::now(), Err(error), reply);
                    return;
                }
                let local = self.index.versions(&id);
                let key = index_key(&id);
                self.get_record(
                    swarm,
                    "list_versions",
                    span,
                    key,
                    Pending::ListVersions { id, local, reply },
                );
            }
            Op::Delete(id, reply) => self.delete(swarm, id, reply),
            Op::Exists(id, reply) => {
                let span = operation_span!("p2p_exists", "exists", self.peer_id, package_id = %id);
                if self.tombstones.contains(&id) {
                    self.complete("exists", &span, Instant::now(), Ok(false), reply);
                } else if self.index.contains(&id) {
                    self.complete("exists", &span, Instant::now(), Ok(true), reply);
                } else {
                    let key = index_key(&id);
                    self.get_record(swarm, "exists", span, key, Pending::Exists { reply });
                }
            }
            Op::Stats(reply) => {
                let _ = reply.send(self.stats(swarm));
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|op| op.deadline).min()
    }

    fn on_deadline(&mut self, _swarm: &mut NodeSwarm<Behaviour>) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, op)| op.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(kind) = self.pending.get(&id).map(|op| &op.kind) else {
                continue;
            };
            let (what, after) = match kind {
                Pending::Search { .. } => ("remote search request", self.config.request_timeout),
                Pending::Put { .. } => ("DHT put", self.config.query_timeout),
                Pending::Bootstrap { .. } => ("Kademlia bootstrap", self.config.query_timeout),
                Pending::Get { .. } | Pending::ListVersions { .. } | Pending::Exists { .. } => {
                    ("DHT query", self.config.query_timeout)
                }
            };
            let timeout = MarketplaceError::Timeout {
                operation: what.to_owned(),
                after,
            };
            self.fail(id, timeout);
        }
    }

    fn observe(&self, swarm: &NodeSwarm<Behaviour>, state: &mut NodeState) {
        let app = &swarm.behaviour().app;
        let connected = swarm.connected_peers().count();
        if let Some(metrics) = &self.metrics {
            metrics.state(connected, self.index.len(), self.cache_bytes);
        }
        let observations = &mut state.observations;
        observations.insert("packages".into(), self.index.len() as i64);
        observations.insert("kad_routing_peers".into(), self.kad_peers.len() as i64);
        observations.insert("malformed_messages".into(), self.malformed as i64);
        observations.insert(
            "gossip_mesh_peers".into(),
            app.gossipsub.mesh_peers(&self.topic.hash()).count() as i64,
        );
        observations.insert("gossip_topic_peers".into(), self.gossip_peers(swarm) as i64);
    }
}
