//! The mesh's configuration, and starting it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::watch;
use tracing::Dispatch;

use super::running::Slot;
use super::transport::{self, Security};
use super::{cause, Discovery, Link, Mesh, MeshBehaviour, MeshError, Node, NodeContext, NodeState};
use crate::telemetry::PerNode;

pub(super) type Constructor<N> =
    dyn Fn(&NodeContext) -> Result<(<N as Node>::Behaviour, N), MeshError> + Send + Sync;
pub(super) type DispatchFactory =
    dyn Fn(usize, PeerId) -> Result<Dispatch, MeshError> + Send + Sync;

/// Configures a mesh. Defaults: seed 0, noise (plaintext without the `noise` feature),
/// connections only along the edges the test connects ([`Discovery::Off`]), connections
/// kept 1 hour when idle, 5 s to listen or dial.
#[must_use = "call .start(...) to start the mesh"]
pub struct Builder {
    pub(super) nodes: usize,
    pub(super) seed: u64,
    pub(super) security: Security,
    pub(super) discovery: Discovery,
    pub(super) idle_timeout: Duration,
    pub(super) timeout: Duration,
    pub(super) dispatch: Option<Arc<DispatchFactory>>,
    pub(super) listen: Vec<Multiaddr>,
    pub(super) keypairs: BTreeMap<usize, libp2p::identity::Keypair>,
    pub(super) link: Option<Link>,
    pub(super) uplinks: BTreeMap<usize, Link>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("nodes", &self.nodes)
            .field("seed", &self.seed)
            .field("security", &self.security)
            .field("discovery", &self.discovery)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder for a mesh of `nodes` nodes, with the defaults above.
    pub fn new(nodes: usize) -> Builder {
        Builder {
            nodes,
            seed: 0,
            security: Security::default(),
            discovery: Discovery::Off,
            idle_timeout: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            dispatch: None,
            listen: vec![Multiaddr::empty().with(libp2p::multiaddr::Protocol::Memory(0))],
            keypairs: BTreeMap::new(),
            link: None,
            uplinks: BTreeMap::new(),
        }
    }

    /// Where every node listens: by default the memory transport (`/memory/0`); TCP and
    /// QUIC addresses such as `/ip4/127.0.0.1/tcp/0` and `/ip4/127.0.0.1/udp/0/quic-v1`
    /// (feature `network`) give nodes that other processes reach over the real wire (port
    /// 0: the OS picks one, [`Mesh::listen_addrs`] tells which). Memory and network
    /// addresses cannot be mixed; without the `network` feature a network address is a
    /// [`MeshError::Listen`] that names the feature.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use p2p_otel_testkit::mesh::{self, Passive};
    ///
    /// # #[cfg(feature = "network")] {
    /// let mesh = mesh::Builder::new(1)
    ///     .listen_on(vec!["/ip4/127.0.0.1/tcp/0".parse()?, "/ip4/127.0.0.1/udp/0/quic-v1".parse()?])
    ///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
    ///     .await?;
    /// let addrs = mesh.listen_addrs(0)?;
    /// assert!(addrs.iter().any(|a| a.to_string().contains("/tcp/")));
    /// assert!(addrs.iter().any(|a| a.to_string().ends_with("/quic-v1")));
    /// mesh.shutdown().await;
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn listen_on(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.listen = addrs;
        self
    }

    /// Node `index`'s identity, instead of the one derived from the seed (a node process
    /// started from a key file keeps its peer id across restarts).
    pub fn keypair(mut self, index: usize, keypair: libp2p::identity::Keypair) -> Self {
        self.keypairs.insert(index, keypair);
        self
    }

    /// The seed of the nodes' keypairs and of the [`link`](Self::link)'s draws: the same
    /// seed gives the same peer ids and the same delays and losses.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Noise (the default with the `noise` feature) or plaintext.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Whether nodes may connect to peers the test did not connect them to (see
    /// [`Discovery`]); off by default.
    pub fn discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// Every connection between nodes on the memory transport carries each byte `one_way`
    /// later in each direction, on tokio's clock: in a paused runtime
    /// (`#[tokio::test(start_paused = true)]`) that is virtual time, so a request's round
    /// trip lasts exactly twice `one_way` per exchange and costs no wall time. No latency by
    /// default. The same as `link(Link::new(one_way))`: it replaces a link set before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use p2p_otel_testkit::mesh::{self, Passive, Topology};
    ///
    /// let mut mesh = mesh::Builder::new(2)
    ///     .latency(Duration::from_millis(100))
    ///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
    ///     .await?;
    /// let start = tokio::time::Instant::now();
    /// mesh.connect_topology(Topology::Full, Duration::from_secs(10)).await?;
    /// assert!(start.elapsed() >= Duration::from_millis(200), "handshakes take round trips");
    /// mesh.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn latency(self, one_way: Duration) -> Self {
        self.link(Link::new(one_way))
    }

    /// Every connection between nodes on the memory transport behaves as `link` in each
    /// direction — latency, jitter, bandwidth, loss with retransmissions — on tokio's clock
    /// (virtual time in a paused runtime), its random draws from the mesh's
    /// [`seed`](Self::seed): the same seed, the same delays. [`Mesh::link_stats`] counts
    /// what the links carried and retransmitted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use p2p_otel_testkit::mesh::{self, Link, Passive, Topology};
    ///
    /// let link = Link::new(Duration::from_millis(30)).jitter(Duration::from_millis(5)).loss(0.05);
    /// let mut mesh = mesh::Builder::new(3)
    ///     .seed(7)
    ///     .link(link)
    ///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
    ///     .await?;
    /// mesh.connect_topology(Topology::Full, Duration::from_secs(60)).await?;
    /// assert!(mesh.link_stats().segments > 0);
    /// mesh.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn link(mut self, link: Link) -> Self {
        self.link = Some(link);
        self
    }

    /// Node `index` writes through `link` instead of the mesh's [`link`](Self::link) — its
    /// uplink: an edge between two nodes carries each one's uplink in the direction it
    /// sends, so one node on a slow or lossy line makes every edge it has asymmetric.
    /// Without a mesh-wide link, the other nodes write without delay.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use p2p_otel_testkit::mesh::{self, Link, Passive, Topology};
    ///
    /// let mut mesh = mesh::Builder::new(3)
    ///     .latency(Duration::from_millis(10))
    ///     .node_link(2, Link::new(Duration::from_millis(150)).loss(0.02))
    ///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
    ///     .await?;
    /// mesh.connect_topology(Topology::Full, Duration::from_secs(60)).await?;
    /// mesh.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn node_link(mut self, index: usize, link: Link) -> Self {
        self.uplinks.insert(index, link);
        self
    }

    /// How long to wait to listen or dial before a typed error.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Gives each node its own tracing dispatch, made from its index and peer id (again
    /// on restart): the node's task and every task libp2p spawns for it run with it.
    pub fn dispatch_per_node(
        mut self,
        make: impl Fn(usize, PeerId) -> Result<Dispatch, MeshError> + Send + Sync + 'static,
    ) -> Self {
        self.dispatch = Some(Arc::new(make));
        self
    }

    /// Gives each node its own in-process capture from `captures` (resource
    /// `service.instance.id` = the node's peer id): no exporter, no receiver. The node's
    /// task and every task libp2p spawns for it run with that capture's dispatch; read
    /// and await every node's spans through `captures`.
    pub fn capture_per_node(self, captures: &crate::capture::PerNode) -> Self {
        let captures = captures.clone();
        self.dispatch_per_node(move |index, peer| {
            Ok(captures.node_dispatch(index, &peer.to_string()).0)
        })
    }

    /// Gives each node its own [`Telemetry`](crate::telemetry::Telemetry) from
    /// `telemetry` (resource `service.instance.id` = the node's peer id), exporting to
    /// its receiver; the node's dispatch is that telemetry's.
    pub fn telemetry_per_node(self, telemetry: &PerNode) -> Self {
        let telemetry = telemetry.clone();
        self.dispatch_per_node(move |index, peer| {
            telemetry
                .node_telemetry(index, &peer.to_string())
                .map(|node| node.dispatch().clone())
                .map_err(|e| MeshError::Build {
                    index,
                    source: cause(e),
                })
        })
    }

    /// Starts every node, built by `constructor`, listening on the addresses of
    /// [`listen_on`](Self::listen_on) (by default the memory transport).
    pub async fn start<N, F>(self, constructor: F) -> Result<Mesh<N>, MeshError>
    where
        N: Node,
        F: Fn(&NodeContext) -> Result<(N::Behaviour, N), MeshError> + Send + Sync + 'static,
        Swarm<MeshBehaviour<N::Behaviour>>: Send,
    {
        let mut mesh = Mesh {
            network: (self.link.is_some() || !self.uplinks.is_empty()).then(|| {
                Arc::new(super::link::Network::new(
                    self.link.unwrap_or(Link::new(Duration::ZERO)),
                    self.uplinks.clone(),
                    self.seed,
                ))
            }),
            slots: Vec::with_capacity(self.nodes),
            constructor: Arc::new(constructor),
            config: self,
            edges: BTreeSet::new(),
            blocked: BTreeSet::new(),
            changes: Arc::new(watch::Sender::new(0)),
        };
        let memory = mesh
            .config
            .listen
            .iter()
            .filter(|a| transport::is_memory(a))
            .count();
        if mesh.config.listen.is_empty() || (memory > 0 && memory < mesh.config.listen.len()) {
            return Err(MeshError::Listen {
                index: 0,
                source: cause(format!(
                    "listen addresses {:?}: give memory addresses or network ones, not both and not none",
                    mesh.config.listen
                )),
            });
        }
        for index in 0..mesh.config.nodes {
            let keypair = match mesh.config.keypairs.get(&index) {
                Some(keypair) => keypair.clone(),
                None => transport::seeded_keypair(mesh.config.seed, index)?,
            };
            let context = NodeContext {
                index,
                peer_id: keypair.public().to_peer_id(),
                keypair,
            };
            let state = Arc::new(watch::Sender::new(NodeState {
                index,
                peer_id: Some(context.peer_id),
                ..NodeState::default()
            }));
            mesh.slots.push(Slot {
                context,
                addr: None,
                control: None,
                stop: None,
                state,
                task: None,
            });
            mesh.spawn(index).await?;
        }
        Ok(mesh)
    }
}
