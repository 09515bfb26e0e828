//! The reference P2P package marketplace of
//! [p2p-otel-testkit](p2p_otel_testkit): the first user of the kit, and the shape of
//! the crates it tests.
//!
//! - [`PackageId`], [`Version`], [`Package`], [`Query`]: validated models.
//! - [`Registry`]: the async trait; [`LocalRegistry`] in memory; [`P2PRegistry`] over a
//!   libp2p node.
//! - A node ([`RegistryNode`]) runs Kademlia (server mode, memory store; one record per
//!   version plus an index record per package, replicated to a configurable quorum),
//!   gossipsub on `/ggen/packages/v1` (publish and delete announcements, which peers index),
//!   request-response (CBOR) for remote search, identify, and the mesh's block list.
//! - Announcements carry the time they were issued (a hybrid clock: wall-clock
//!   microseconds, never behind what the node has seen), and between a publish and a
//!   delete of the same package the later one wins, whatever order they arrive in.
//! - Search merges local results with those of the best-reputed peers, asked in
//!   parallel; de-duplicates (latest version per package); ranks exact name > prefix >
//!   title > description > tag > category; applies filters, then `offset` and `limit`;
//!   and caches results for `cache_ttl`.
//! - **Partitions**: a search whose peers cannot answer ends when `request_timeout`
//!   passes, with the local results (possibly none) — never an error, never a hang — and
//!   the silent peers lose reputation. Writes (`publish`, `delete`) apply locally, then
//!   return `MarketplaceError::Replication` if the DHT quorum could not be met.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use p2p_otel_marketplace::{self as marketplace, Package, Query, Registry};
//! use p2p_otel_testkit::mesh::{self, Mesh, Topology};
//!
//! let mut mesh = mesh::Builder::new(3)
//!     .start(marketplace::node_constructor(|_| marketplace::Config::for_tests()))
//!     .await?;
//! mesh.connect_topology(Topology::Full, Duration::from_secs(5)).await?;
//! let a = marketplace::registry(&mesh, 0, &marketplace::Config::for_tests())?;
//! a.publish(Package::new("acme/tool".parse()?, "1.0.0".parse()?, "A tool")).await?;
//! let c = marketplace::registry(&mesh, 2, &marketplace::Config::for_tests())?;
//! assert_eq!(c.search(&Query::text("acme/tool")).await?.len(), 1);
//! # Ok(()) }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod clock;
mod codec;
mod condition;
mod handle;
mod index;
mod instrumentation;
mod model;
mod node;
mod protocol;
mod registry;
mod reputation;
pub mod scenarios;
mod silent;
pub mod strategy;

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use p2p_otel_testkit::mesh::{Mesh, MeshError, NodeContext};

pub use clock::WallClock;
pub use codec::{RegistryCodec, Wire};
pub use condition::NodeCondition;
pub use handle::P2PRegistry;
pub use instrumentation::TraceContext;
pub use model::{Package, PackageId, PackageMetadata, Query, Version};
pub use node::{Behaviour, Command, Observations, RegistryNode};
pub use protocol::{
    Announcement, IndexRecord, RegistryRequest, RegistryResponse, KAD_PROTOCOL, PACKAGES_TOPIC,
    REGISTRY_PROTOCOL,
};
pub use registry::{LocalRegistry, Registry};
pub use reputation::{PeerStats, Reputation};
pub use silent::{silent_peer, silent_peer_listening, SilentPeer};

/// The largest package accepted by default (its JSON encoding), 256 KiB.
pub const DEFAULT_MAX_PACKAGE_BYTES: usize = 256 * 1024;

/// Errors of the marketplace. Every variant is a distinct, typed outcome.
///
/// It crosses process boundaries as JSON — `{"kind": "timeout", "detail": {"operation":
/// …, "after": …}}` — so a driver of a node process gets back the error the node had.
///
/// ```
/// use p2p_otel_marketplace::MarketplaceError;
/// let error = MarketplaceError::NotFound("acme/tool".into());
/// let json = serde_json::to_value(&error)?;
/// assert_eq!(json["kind"], "not_found");
/// assert_eq!(serde_json::from_value::<MarketplaceError>(json)?, error);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum MarketplaceError {
    /// A package id was not `namespace/name` with valid characters.
    #[error("invalid package id {0:?}: expected namespace/name of a-z, 0-9, '-', '_' (1-64 each)")]
    InvalidPackageId(String),
    /// A version was not a SemVer version, `major.minor.patch[-pre-release][+build]`.
    #[error(
        "invalid version {0:?}: expected a SemVer version, major.minor.patch[-pre-release][+build]"
    )]
    InvalidVersion(String),
    /// A package was larger than the node accepts.
    #[error("package of {size} bytes exceeds the limit of {limit} bytes")]
    PackageTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No such package or version.
    #[error("not found: {0}")]
    NotFound(String),
    /// A network operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: String,
        /// The timeout.
        after: Duration,
    },
    /// A write applied locally but did not reach its DHT replication quorum.
    #[error("replication failed: {0}")]
    Replication(String),
    /// Nothing to talk to, or the network refused.
    #[error("network: {0}")]
    Network(String),
    /// Data from a peer (or for one) could not be encoded or decoded.
    #[error("malformed data: {0}")]
    Malformed(String),
    /// The node's task is gone.
    #[error("the node is stopped")]
    NodeStopped,
}

/// A node's settings. [`Default`] is production-like (30 s query timeout); tests use
/// [`Config::for_tests`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Peers `bootstrap` dials, under their own ids.
    pub bootstrap_peers: Vec<(PeerId, Multiaddr)>,
    /// The gossipsub topic.
    pub topic: String,
    /// Kademlia query timeout (and DHT operation deadline).
    pub query_timeout: Duration,
    /// Remote search request timeout.
    pub request_timeout: Duration,
    /// DHT replication quorum for writes.
    pub replication: usize,
    /// How many peers a search asks.
    pub search_fanout: usize,
    /// How long search results are cached.
    pub cache_ttl: Duration,
    /// The largest package accepted (the DHT store takes values this large).
    pub max_package_bytes: usize,
    /// How many DHT records a node stores (its own and replicas).
    pub max_dht_records: usize,
    /// The gossipsub heartbeat.
    pub gossip_heartbeat: Duration,
    /// Peers per Kademlia k-bucket (Kademlia's k, 20 by default). Kademlia reserves room
    /// for a full table up front — 256 buckets of this many entries, about 1 MB per node
    /// at 20 — whatever the table holds.
    pub routing_bucket_size: usize,
    /// How often the node compares its index with a peer's and catches up on what it
    /// missed (gossip repairs a missed announcement only for a few seconds);
    /// `Duration::ZERO` turns catch-up off.
    pub sync_interval: Duration,
    /// Where the node records the plan's metrics (`p2p_operations_total`, …); none by
    /// default. Give each node its own (see [`PerNode`](p2p_otel_testkit::telemetry::PerNode)).
    pub meter: Option<opentelemetry::metrics::Meter>,
    /// Where the node reads the time of day (announcements' issue times): the system's by
    /// default, the virtual time line in a simulation.
    pub wall_clock: WallClock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bootstrap_peers: Vec::new(),
            topic: PACKAGES_TOPIC.to_owned(),
            query_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            replication: 1,
            search_fanout: 3,
            cache_ttl: Duration::from_secs(30),
            max_package_bytes: DEFAULT_MAX_PACKAGE_BYTES,
            max_dht_records: 65_536,
            gossip_heartbeat: Duration::from_secs(1),
            routing_bucket_size: libp2p::kad::K_VALUE.get(),
            sync_interval: Duration::from_secs(10),
            meter: None,
            wall_clock: WallClock::System,
        }
    }
}

impl Config {
    /// For tests on the memory transport: a fast gossip heartbeat (50 ms), catch-up every
    /// 2 s, and no result cache, so tests see each change at once — but the production
    /// timeouts (30 s DHT queries, 10 s requests): a busy CI machine must not turn a slow
    /// answer into a failure. A test about timeouts sets a short one itself and provokes
    /// it with a fault (a silent peer), never by hoping the machine is fast.
    ///
    /// K-buckets of 8 peers instead of 20: a test mesh's nodes have a handful of
    /// neighbours, fewer than 8 per bucket, so the table holds the same peers in 40 % of
    /// the memory Kademlia reserves (0.43 MB per node instead of 1.1 MB) — what lets a
    /// 1,024-node mesh stay under 2 MB per node. A test of routing in a mesh where nodes
    /// know dozens of peers sets it back to 20.
    pub fn for_tests() -> Self {
        Config {
            cache_ttl: Duration::ZERO,
            gossip_heartbeat: Duration::from_millis(50),
            routing_bucket_size: 8,
            sync_interval: Duration::from_secs(2),
            ..Config::default()
        }
    }

    /// The longest a handle waits for any call: DHT and request timeouts plus slack.
    pub fn call_timeout(&self) -> Duration {
        self.query_timeout.max(self.request_timeout) * 2 + Duration::from_secs(1)
    }
}

/// A node's counters, from [`P2PRegistry::stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStats {
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Packages in the local index.
    pub packages: usize,
    /// Searches answered from the cache.
    pub cache_hits: u64,
    /// Searches that went to the network.
    pub cache_misses: u64,
    /// Malformed messages received (and dropped).
    pub malformed_messages: u64,
    /// Reputation of every peer asked.
    pub reputation: HashMap<PeerId, PeerStats>,
}

/// The marketplace's telemetry contract, as YAML in Weaver's registry formats: its
/// attribute registry, its spans with the plan's required attributes (section 4.1) and the
/// trace structure of scenarios 2 and 4, its metrics (section 4.2 and scenario 5) with
/// instruments, units, labels and alerts. The files are in the crate's `contract/` folder
/// (for `p2p-otel-testkit check --contract`); these are the same files, embedded.
pub const CONTRACT_FILES: [(&str, &str); 3] = [
    (
        "contract/registry.yaml",
        include_str!("../contract/registry.yaml"),
    ),
    (
        "contract/spans.yaml",
        include_str!("../contract/spans.yaml"),
    ),
    (
        "contract/metrics.yaml",
        include_str!("../contract/metrics.yaml"),
    ),
];

/// The marketplace's telemetry contract ([`CONTRACT_FILES`], loaded); check traces,
/// metrics and logs with [`Contract::check`](p2p_otel_testkit::contract::Contract::check).
///
/// ```
/// let contract = p2p_otel_marketplace::contract()?;
/// assert!(contract.span_names().contains(&"p2p_publish"));
/// assert_eq!(
///     contract.required_attributes("p2p_search").map(|a| a.contains(&"query_text")),
///     Some(true)
/// );
/// # Ok::<(), p2p_otel_testkit::contract::ContractError>(())
/// ```
pub fn contract(
) -> Result<p2p_otel_testkit::contract::Contract, p2p_otel_testkit::contract::ContractError> {
    p2p_otel_testkit::contract::Contract::loader().load_sources(CONTRACT_FILES)
}

/// Whether `package` matches a query's free text the way search ranks it.
pub fn matches_text(package: &Package, text: &str) -> bool {
    index::rank(package, text).is_some()
}

/// A mesh node constructor for marketplace nodes, with each node's config from
/// `config_for`.
pub fn node_constructor(
    config_for: impl Fn(&NodeContext) -> Config + Send + Sync + 'static,
) -> impl Fn(&NodeContext) -> Result<(Behaviour, RegistryNode), MeshError> + Send + Sync + 'static {
    move |context| node::build(context, config_for(context))
}

/// Starts a marketplace mesh from `builder`, every node with `config`; with
/// `telemetry`, each node also gets its own tracing dispatch and meter from it.
pub async fn start_mesh(
    builder: p2p_otel_testkit::mesh::Builder,
    config: Config,
    telemetry: Option<&p2p_otel_testkit::telemetry::PerNode>,
) -> Result<Mesh<RegistryNode>, MeshError> {
    let builder = match telemetry {
        Some(telemetry) => builder.telemetry_per_node(telemetry),
        None => builder,
    };
    let meters = telemetry.cloned();
    builder
        .start(node_constructor(move |ctx| Config {
            meter: meters.as_ref().and_then(|t| t.meter(ctx.index)),
            ..config.clone()
        }))
        .await
}

/// Waits until every live node has Kademlia routing entries and a gossipsub mesh peer:
/// before that, a write may miss its quorum and an announcement may reach nobody.
pub async fn wait_ready(mesh: &Mesh<RegistryNode>, timeout: Duration) -> Result<(), MeshError> {
    mesh.wait_until(
        "routing entries and gossip meshes on every node",
        timeout,
        |states| {
            states.iter().filter(|s| s.alive).all(|s| {
                s.observations.kad_routing_peers >= 1 && s.observations.gossip_mesh_peers >= 1
            })
        },
    )
    .await
    .map(drop)
}

/// A [`P2PRegistry`] for node `index` of a marketplace mesh.
pub fn registry(
    mesh: &Mesh<RegistryNode>,
    index: usize,
    config: &Config,
) -> Result<P2PRegistry, MeshError> {
    Ok(P2PRegistry::new(mesh.node(index)?, config.call_timeout()))
}
