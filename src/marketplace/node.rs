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

use super::codec::{RegistryCodec, Wire};
use super::index::{rank_all, LocalIndex};
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

/// An operation waiting on the network, with its deadline.
#[derive(Debug)]
enum Pending {
    /// Waiting for `remaining` DHT puts; the first failure is kept.
    Put {
        remaining: usize,
        failure: Option<String>,
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
    pending: HashMap<u64, (Instant, Pending)>,
    kad_ops: HashMap<kad::QueryId, u64>,
    outbound: HashMap<OutboundRequestId, (u64, PeerId, Instant)>,
    /// Peers added to Kademlia's routing table.
    kad_peers: HashSet<PeerId>,
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
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
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
    };
    Ok((behaviour, node))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, MarketplaceError> {
    serde_json::to_vec(value).map_err(|e| MarketplaceError::Malformed(e.to_string()))
}

impl RegistryNode {
    fn op(&mut self, pending: Pending, timeout: std::time::Duration) -> u64 {
        self.next_op += 1;
        self.pending
            .insert(self.next_op, (Instant::now() + timeout, pending));
        self.next_op
    }

    fn quorum(&self) -> Quorum {
        NonZeroUsize::new(self.config.replication).map_or(Quorum::One, Quorum::N)
    }

    fn publish(&mut self, swarm: &mut NodeSwarm<Behaviour>, package: Package, reply: Reply<()>) {
        if let Err(error) = check_size(&package, self.config.max_package_bytes) {
            let _ = reply.send(Err(error));
            return;
        }
        self.tombstones.remove(&package.id);
        self.index.insert(package.clone());
        self.cache.clear();
        let records = (|| -> Result<Vec<Record>, MarketplaceError> {
            let index = IndexRecord {
                versions: self.index.versions(&package.id),
                deleted: false,
            };
            Ok(vec![
                Record::new(
                    version_key(&package.id, &package.version),
                    encode(&package)?,
                ),
                Record::new(index_key(&package.id), encode(&index)?),
            ])
        })();
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        if let Ok(announcement) = encode(&Announcement::Published(Box::new(package))) {
            // No subscribed peer yet is not an error: the DHT records still replicate.
            let _ = swarm
                .behaviour_mut()
                .app
                .gossipsub
                .publish(self.topic.clone(), announcement);
        }
        self.put_all(swarm, records, reply);
    }

    fn put_all(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        records: Vec<Record>,
        reply: Reply<()>,
    ) {
        let op = self.op(
            Pending::Put {
                remaining: records.len(),
                failure: None,
                reply,
            },
            self.config.query_timeout,
        );
        let quorum = self.quorum();
        for record in records {
            match swarm.behaviour_mut().app.kad.put_record(record, quorum) {
                Ok(query) => {
                    self.kad_ops.insert(query, op);
                }
                Err(error) => self.put_done(op, Some(error.to_string())),
            }
        }
    }

    fn put_done(&mut self, op: u64, failure: Option<String>) {
        let Some((
            _,
            Pending::Put {
                remaining,
                failure: first,
                ..
            },
        )) = self.pending.get_mut(&op)
        else {
            return;
        };
        *remaining = remaining.saturating_sub(1);
        if first.is_none() {
            *first = failure;
        }
        if *remaining == 0 {
            if let Some((_, Pending::Put { failure, reply, .. })) = self.pending.remove(&op) {
                let _ = reply.send(match failure {
                    None => Ok(()),
                    Some(reason) => Err(MarketplaceError::Replication(reason)),
                });
            }
        }
    }

    fn delete(&mut self, swarm: &mut NodeSwarm<Behaviour>, id: PackageId, reply: Reply<()>) {
        let versions = self.index.versions(&id);
        self.index.remove(&id);
        self.tombstones.insert(id.clone());
        self.cache.clear();
        let kad = &mut swarm.behaviour_mut().app.kad;
        for version in &versions {
            kad.remove_record(&version_key(&id, version));
        }
        if let Ok(announcement) = encode(&Announcement::Deleted(id.clone())) {
            let _ = swarm
                .behaviour_mut()
                .app
                .gossipsub
                .publish(self.topic.clone(), announcement);
        }
        let tombstone = IndexRecord {
            versions: Vec::new(),
            deleted: true,
        };
        match encode(&tombstone) {
            Ok(value) => self.put_all(swarm, vec![Record::new(index_key(&id), value)], reply),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn get_record(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        key: kad::RecordKey,
        pending: Pending,
    ) {
        let op = self.op(pending, self.config.query_timeout);
        let query = swarm.behaviour_mut().app.kad.get_record(key);
        self.kad_ops.insert(query, op);
    }

    fn search(
        &mut self,
        swarm: &mut NodeSwarm<Behaviour>,
        query: Query,
        reply: Reply<Vec<Package>>,
    ) {
        if let Some((hits, at)) = self.cache.get(&query) {
            if at.elapsed() < self.config.cache_ttl {
                self.cache_hits += 1;
                let _ = reply.send(Ok(hits.clone()));
                return;
            }
        }
        self.cache_misses += 1;
        let found = self.index.candidates(&query);
        let peers = self
            .reputation
            .best(swarm.connected_peers().copied(), self.config.search_fanout);
        let remote_query = Query {
            limit: None,
            offset: None,
            ..query.clone()
        };
        let op = self.op(
            Pending::Search {
                query,
                found,
                waiting: HashSet::new(),
                reply,
            },
            self.config.request_timeout,
        );
        let mut sent = Vec::new();
        for peer in peers {
            let request = swarm.behaviour_mut().app.rr.send_request(
                &peer,
                Wire::Valid(RegistryRequest::Search(remote_query.clone())),
            );
            self.outbound.insert(request, (op, peer, Instant::now()));
            sent.push(request);
        }
        if let Some((_, Pending::Search { waiting, .. })) = self.pending.get_mut(&op) {
            waiting.extend(sent);
        }
        self.finish_search_if_done(op);
    }

    fn finish_search_if_done(&mut self, op: u64) {
        let done = matches!(self.pending.get(&op), Some((_, Pending::Search { waiting, .. })) if waiting.is_empty());
        if done {
            self.finish_search(op);
        }
    }

    /// Answers a search with what it has: local results merged with every remote answer
    /// that arrived. Peers that did not answer were already charged a failure.
    fn finish_search(&mut self, op: u64) {
        if let Some((
            _,
            Pending::Search {
                query,
                found,
                reply,
                ..
            },
        )) = self.pending.remove(&op)
        {
            let hits = rank_all(found, &query);
            self.cache.insert(query, (hits.clone(), Instant::now()));
            let _ = reply.send(Ok(hits));
        }
    }

    fn on_search_answer(&mut self, request: OutboundRequestId, answer: Option<Vec<Package>>) {
        let Some((op, peer, sent)) = self.outbound.remove(&request) else {
            return;
        };
        match &answer {
            Some(_) => self.reputation.success(peer, sent.elapsed()),
            None => self.reputation.failure(peer),
        }
        if let Some((_, Pending::Search { found, waiting, .. })) = self.pending.get_mut(&op) {
            waiting.remove(&request);
            found.extend(
                answer
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !self.tombstones.contains(&p.id)),
            );
        }
        self.finish_search_if_done(op);
    }

    fn on_kad(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
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
                self.put_done(op, result.err().map(|e| e.to_string()));
            }
            QueryResult::Bootstrap(_) if step.last => {
                if let Some((_, Pending::Bootstrap { reply })) = self.pending.remove(&op) {
                    let _ = reply.send(Ok(swarm.connected_peers().count()));
                }
            }
            QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                self.kad_ops.remove(&id);
                if let Some(mut query) = swarm.behaviour_mut().app.kad.query_mut(&id) {
                    query.finish();
                }
                self.on_record(op, Some(found.record.value));
            }
            QueryResult::GetRecord(_) if step.last => self.on_record(op, None),
            _ => {}
        }
    }

    fn on_record(&mut self, op: u64, value: Option<Vec<u8>>) {
        let Some((_, pending)) = self.pending.remove(&op) else {
            return;
        };
        match pending {
            Pending::Get { id, version, reply } => {
                let package = value
                    .and_then(|v| serde_json::from_slice::<Package>(&v).ok())
                    .filter(|p| !self.tombstones.contains(&p.id));
                let _ = reply.send(
                    package.ok_or_else(|| MarketplaceError::NotFound(format!("{id}@{version}"))),
                );
            }
            Pending::ListVersions {
                id,
                mut local,
                reply,
            } => {
                let record = value.and_then(|v| serde_json::from_slice::<IndexRecord>(&v).ok());
                if record.as_ref().is_some_and(|r| r.deleted) && local.is_empty() {
                    let _ = reply.send(Err(MarketplaceError::NotFound(id.to_string())));
                    return;
                }
                local.extend(record.map(|r| r.versions).unwrap_or_default());
                local.sort();
                local.dedup();
                let _ = reply.send(if local.is_empty() {
                    Err(MarketplaceError::NotFound(id.to_string()))
                } else {
                    Ok(local)
                });
            }
            Pending::Exists { reply } => {
                let record = value.and_then(|v| serde_json::from_slice::<IndexRecord>(&v).ok());
                let _ = reply.send(Ok(
                    record.is_some_and(|r| !r.deleted && !r.versions.is_empty())
                ));
            }
            other => {
                self.pending.insert(op, (Instant::now(), other));
            }
        }
    }

    fn on_gossip(&mut self, data: &[u8]) {
        match serde_json::from_slice::<Announcement>(data) {
            Ok(Announcement::Published(package)) => {
                if check_size(&package, self.config.max_package_bytes).is_ok() {
                    self.tombstones.remove(&package.id);
                    self.index.insert(*package);
                    self.cache.clear();
                } else {
                    self.malformed += 1;
                }
            }
            Ok(Announcement::Deleted(id)) => {
                self.index.remove(&id);
                self.tombstones.insert(id);
                self.cache.clear();
            }
            Err(_) => self.malformed += 1,
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
                gossipsub::Event::Message { message, .. },
            ))) => self.on_gossip(&message.data),
            SwarmEvent::Behaviour(Mesh::App(BehaviourEvent::Rr(event))) => match event {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let response = match request {
                            Wire::Valid(RegistryRequest::Search(query)) => {
                                RegistryResponse::Hits(self.index.search(&Query {
                                    limit: Some(query.limit.unwrap_or(100).min(100)),
                                    ..query
                                }))
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
                        let hits = match response {
                            Wire::Valid(RegistryResponse::Hits(hits)) => Some(hits),
                            Wire::Valid(RegistryResponse::Rejected(_)) => None,
                            Wire::Malformed(_) => {
                                self.malformed += 1;
                                None
                            }
                        };
                        self.on_search_answer(request_id, hits);
                    }
                },
                request_response::Event::OutboundFailure { request_id, .. } => {
                    self.on_search_answer(request_id, None);
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
                        let op = self.op(Pending::Bootstrap { reply }, self.config.query_timeout);
                        self.kad_ops.insert(query, op);
                    }
                    Err(_) => {
                        let _ = reply.send(Err(MarketplaceError::Network(
                            "no known peers to bootstrap from".to_owned(),
                        )));
                    }
                }
            }
            Op::Publish(package, reply) => self.publish(swarm, package, reply),
            Op::Search(query, reply) => self.search(swarm, query, reply),
            Op::Get(id, version, reply) => match self.index.get(&id, &version) {
                Some(package) => {
                    let _ = reply.send(Ok(package.clone()));
                }
                None if self.tombstones.contains(&id) => {
                    let _ = reply.send(Err(MarketplaceError::NotFound(format!("{id}@{version}"))));
                }
                None => {
                    let key = version_key(&id, &version);
                    self.get_record(swarm, key, Pending::Get { id, version, reply });
                }
            },
            Op::ListVersions(id, reply) => {
                if self.tombstones.contains(&id) {
                    let _ = reply.send(Err(MarketplaceError::NotFound(id.to_string())));
                    return;
                }
                let local = self.index.versions(&id);
                let key = index_key(&id);
                self.get_record(swarm, key, Pending::ListVersions { id, local, reply });
            }
            Op::Delete(id, reply) => self.delete(swarm, id, reply),
            Op::Exists(id, reply) => {
                if self.tombstones.contains(&id) {
                    let _ = reply.send(Ok(false));
                } else if self.index.contains(&id) {
                    let _ = reply.send(Ok(true));
                } else {
                    self.get_record(swarm, index_key(&id), Pending::Exists { reply });
                }
            }
            Op::Stats(reply) => {
                let _ = reply.send(self.stats(swarm));
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(deadline, _)| *deadline).min()
    }

    fn on_deadline(&mut self, _swarm: &mut NodeSwarm<Behaviour>) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(op, _)| *op)
            .collect();
        for op in expired {
            let Some((_, pending)) = self.pending.remove(&op) else {
                continue;
            };
            let timeout = |operation: &str| MarketplaceError::Timeout {
                operation: operation.to_owned(),
                after: self.config.query_timeout,
            };
            match pending {
                Pending::Search {
                    query,
                    found,
                    waiting,
                    reply,
                } => {
                    // Peers that never answered lose reputation; the caller gets what did
                    // arrive (local results at least) rather than nothing.
                    for request in waiting {
                        if let Some((_, peer, _)) = self.outbound.remove(&request) {
                            self.reputation.failure(peer);
                        }
                    }
                    let _ = reply.send(Ok(rank_all(found, &query)));
                }
                Pending::Put { reply, .. } => {
                    let _ = reply.send(Err(timeout("DHT put")));
                }
                Pending::Get { reply, .. } => {
                    let _ = reply.send(Err(timeout("DHT get")));
                }
                Pending::ListVersions { reply, .. } => {
                    let _ = reply.send(Err(timeout("DHT get index")));
                }
                Pending::Exists { reply } => {
                    let _ = reply.send(Err(timeout("DHT get index")));
                }
                Pending::Bootstrap { reply } => {
                    let _ = reply.send(Err(timeout("Kademlia bootstrap")));
                }
            }
        }
        self.kad_ops.retain(|_, op| self.pending.contains_key(op));
    }

    fn observe(&self, swarm: &NodeSwarm<Behaviour>, state: &mut NodeState) {
        let app = &swarm.behaviour().app;
        let observations = &mut state.observations;
        observations.insert("packages".into(), self.index.len() as i64);
        observations.insert("kad_routing_peers".into(), self.kad_peers.len() as i64);
        observations.insert("malformed_messages".into(), self.malformed as i64);
        observations.insert(
            "gossip_mesh_peers".into(),
            app.gossipsub.mesh_peers(&self.topic.hash()).count() as i64,
        );
        observations.insert(
            "gossip_topic_peers".into(),
            app.gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&self.topic.hash()))
                .count() as i64,
        );
    }
}
