//! A marketplace node's logic, run by the mesh inside the node's own event loop: it owns
//! the local index, the pending operations and the reputation table, and it alone drives
//! Kademlia, gossipsub and request-response. Handles talk to it through commands.
//!
//! This file is the node's core — its behaviour, its state, its construction and the
//! `Node` implementation that dispatches to the files below (about 600 lines); each
//! operation's handling lives in a file of its own.

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
use super::instrumentation::{self, adopt, inject, record_outcome, Instruments, MessageIdText};
use super::protocol::{
    index_key, version_key, Announcement, IndexRecord, RegistryRequest, RegistryResponse,
    KAD_PROTOCOL, REGISTRY_PROTOCOL,
};
use super::registry::check_size;
use super::reputation::Reputation;
use super::{Config, MarketplaceError, NodeStats, Package, PackageId, Query, Version};
use deletions::Deletions;
use labels::PeerLabels;
use p2p_otel_testkit::mesh::{MeshError, Node, NodeContext, NodeEvent, NodeSwarm};

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
    deletions: Deletions,
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
    /// Remote peers' ids as text, for spans and metrics.
    labels: PeerLabels,
    metrics: Option<Instruments>,
    /// Approximate bytes held by the search cache.
    cache_bytes: usize,
    /// When the next catch-up request is due (see `sync`).
    sync_due: Instant,
    /// Which subscribed peer the next catch-up asks, counting round.
    sync_turn: usize,
    /// Catch-up requests in flight (at most one).
    syncs: HashSet<OutboundRequestId>,
    /// Package versions learned by catch-up rather than by gossip.
    caught_up: u64,
}

pub(crate) fn build(
    context: &NodeContext,
    config: Config,
) -> Result<(Behaviour, RegistryNode), MeshError> {
    let fail = |what: &str, error: String| MeshError::Build {
        index: context.index,
        source: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
            "{what}: {error}"
        ))),
    };
    let peer_id = context.peer_id;
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(config.query_timeout);
    kad_config
        .set_kbucket_size(NonZeroUsize::new(config.routing_bucket_size).unwrap_or(kad::K_VALUE));
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
    // Gossip (IHAVE/IWANT) is what reaches a node outside the publisher's mesh paths; it
    // covers the last `history_gossip` heartbeats. Keep that window at least the
    // default's 3 s whatever the heartbeat, so a fast test heartbeat on a busy machine
    // does not let a message leave the cache before a slow peer asked for it.
    let gossip_heartbeats = gossip_window_heartbeats(config.gossip_heartbeat);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        .heartbeat_initial_delay(config.gossip_heartbeat)
        .history_gossip(gossip_heartbeats)
        .history_length(gossip_heartbeats + 2)
        .mesh_n_low(1)
        .mesh_n(2)
        // A node refuses a GRAFT from a peer that dialed it once its mesh holds
        // mesh_n_high peers, and a node is pruned with a minute's backoff. At 4, a node
        // whose neighbours it dialed all held 4 mesh peers stayed outside the mesh for good
        // (seen: 1 node of a 1,024-node mesh of degree 4–9, no mesh peer after 300 s).
        // Gossipsub's own default, 12, is above any test topology's degree.
        .mesh_n_high(12)
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
    let sync_due = Instant::now() + config.sync_interval;
    let node = RegistryNode {
        config,
        topic,
        index: LocalIndex::default(),
        deletions: Deletions::default(),
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
        labels: PeerLabels::default(),
        metrics: None,
        cache_bytes: 0,
        sync_due,
        sync_turn: 0,
        syncs: HashSet::new(),
        caught_up: 0,
    };
    let node = RegistryNode {
        metrics: node.config.meter.as_ref().map(Instruments::new),
        ..node
    };
    Ok((behaviour, node))
}

/// How many heartbeats cover gossipsub's default 3 s gossip window (3 at the default
/// 1 s heartbeat, as gossipsub's own defaults).
fn gossip_window_heartbeats(heartbeat: std::time::Duration) -> usize {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(3);
    let heartbeat = heartbeat.max(std::time::Duration::from_millis(1));
    usize::try_from(WINDOW.as_nanos().div_ceil(heartbeat.as_nanos()))
        .unwrap_or(usize::MAX)
        .max(3)
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
            peer_id = $peer.as_str(),
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

mod deletions;
mod labels;
mod ops;
mod reads;
mod search;
mod sync;
mod writes;

/// What a marketplace node reports to the mesh's waits after every event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observations {
    /// Packages in its local index.
    pub packages: usize,
    /// Peers in its Kademlia routing table.
    pub kad_routing_peers: usize,
    /// Peer messages it could not decode (answered with `Rejected`).
    pub malformed_messages: u64,
    /// Peers in its gossipsub mesh for the packages topic.
    pub gossip_mesh_peers: usize,
    /// Peers subscribed to the packages topic.
    pub gossip_topic_peers: usize,
    /// Package versions it learned by catch-up (a peer's index) rather than by gossip.
    pub packages_caught_up: u64,
}

impl Node for RegistryNode {
    type Behaviour = Behaviour;
    type Command = Command;
    type Observations = Observations;

    fn on_swarm_event(&mut self, swarm: &mut NodeSwarm<Behaviour>, event: NodeEvent<Behaviour>) {
        use p2p_otel_testkit::mesh::MeshBehaviourEvent as Mesh;
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
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.labels.forget(&peer_id),
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
                            Wire::Valid(RegistryRequest::Sync { digest }) => {
                                self.on_sync_request(digest)
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
                    } if self.is_sync(&request_id) => {
                        if let Wire::Valid(answer) = response {
                            self.on_sync_answer(answer);
                        }
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
                            Wire::Valid(
                                RegistryResponse::InSync | RegistryResponse::Index { .. },
                            ) => Err(MarketplaceError::Malformed(
                                "a catch-up answer to a search".to_owned(),
                            )),
                            Wire::Malformed(reason) => {
                                self.malformed += 1;
                                Err(MarketplaceError::Malformed(reason))
                            }
                        };
                        self.on_search_answer(request_id, answer);
                    }
                },
                // A failed catch-up is dropped: the next turn asks another peer.
                request_response::Event::OutboundFailure { request_id, .. }
                    if self.is_sync(&request_id) => {}
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
                    None if self.deletions.is_deleted(&id) => {
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
                if self.deletions.is_deleted(&id) {
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
                if self.deletions.is_deleted(&id) {
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
        let operations = self.pending.values().map(|op| op.deadline);
        operations.chain(self.next_sync()).min()
    }

    fn on_deadline(&mut self, swarm: &mut NodeSwarm<Behaviour>) {
        let now = Instant::now();
        if self.next_sync().is_some_and(|due| due <= now) {
            self.sync(swarm);
        }
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

    fn observe(&self, swarm: &NodeSwarm<Behaviour>, observations: &mut Observations) {
        let app = &swarm.behaviour().app;
        let connected = swarm.connected_peers().count();
        if let Some(metrics) = &self.metrics {
            metrics.state(connected, self.index.len(), self.cache_bytes);
        }
        *observations = Observations {
            packages: self.index.len(),
            kad_routing_peers: self.kad_peers.len(),
            malformed_messages: self.malformed,
            gossip_mesh_peers: app.gossipsub.mesh_peers(&self.topic.hash()).count(),
            gossip_topic_peers: self.gossip_peers(swarm),
            packages_caught_up: self.caught_up,
        };
    }
}
