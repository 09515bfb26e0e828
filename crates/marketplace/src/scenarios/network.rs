//! Where a scenario's nodes run. A [`Launcher`] starts them — [`InProcess`] as a mesh in
//! this process on the memory transport; the CLI's as node processes over TCP or QUIC —
//! and the scenarios drive them through [`Network`], so the same scenario, with the same
//! checks, runs in one process or across many.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use p2p_otel_testkit::mesh::{self, Discovery, LinkStats, Mesh, Security, Topology};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::telemetry::{PerNode, Protocol};

use super::{ScenarioError, SERVICE};
use crate::{
    registry, silent_peer, start_mesh, wait_ready, Config, MarketplaceError, NodeCondition,
    P2PRegistry, Registry, RegistryNode, SilentPeer,
};

/// Started nodes, each exporting its spans and metrics to the scenario's receiver under
/// the service [`SERVICE`] with its peer id as `service.instance.id`.
#[async_trait::async_trait]
pub trait Network: Send + Sync + fmt::Debug {
    /// Every node's peer id, in order.
    fn peer_ids(&self) -> Vec<PeerId>;

    /// Node `node`'s peer id and an address to dial it at.
    fn peer(&self, node: usize) -> Result<(PeerId, Multiaddr), ScenarioError>;

    /// Node `node`'s registry.
    fn registry(&self, node: usize) -> Result<&dyn Registry, ScenarioError>;

    /// Node `node` bootstraps from `peers`; the number it connected to.
    async fn bootstrap(
        &self,
        node: usize,
        peers: Vec<(PeerId, Multiaddr)>,
    ) -> Result<usize, MarketplaceError>;

    /// Connects every node to every other, then waits until each has a routing entry and
    /// a gossip mesh peer.
    async fn connect_all(&mut self, timeout: Duration) -> Result<(), ScenarioError>;

    /// Waits until node `node`'s state satisfies `condition` (woken by its changes,
    /// never polled); on timeout the error says what the node's state was.
    async fn wait_for(
        &self,
        node: usize,
        condition: &NodeCondition,
        timeout: Duration,
    ) -> Result<(), ScenarioError>;

    /// Exports every node's buffered spans and metrics now.
    async fn flush(&self) -> Result<(), ScenarioError>;

    /// Stops every node, its telemetry flushed.
    async fn shutdown(self: Box<Self>);
}

/// Starts a scenario's nodes and the misbehaving peers scenarios 5 and 6 put next to
/// them.
#[async_trait::async_trait]
pub trait Launcher: Send + Sync + fmt::Debug {
    /// Starts `nodes` nodes (identities from `seed`) with `config`'s timings, exporting
    /// to `receiver`; not yet connected to each other.
    async fn start(
        &self,
        receiver: &OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: &Config,
    ) -> Result<Box<dyn Network>, ScenarioError>;

    /// A peer, in this process, silent on `protocol` and reachable from this launcher's
    /// nodes (same transport).
    async fn silent_peer(
        &self,
        protocol: &'static str,
        seed: u64,
    ) -> Result<Mesh<SilentPeer>, ScenarioError>;

    /// How many times the usual time healthy nodes are given: the scenarios' waits and
    /// scenario 5's request timeout, the one deadline a healthy peer races against a
    /// provoked fault. 1 by default; a loaded machine (a CI runner with parallel jobs, a
    /// debug build) sets more, so a slow healthy node is not mistaken for a faulty one.
    fn time_scale(&self) -> u32 {
        1
    }
}

/// Nodes in this process: one mesh on the memory transport, with noise, free to dial
/// what Kademlia learns of, as in production.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use p2p_otel_marketplace::scenarios::{InProcess, Launcher};
/// use p2p_otel_marketplace::Config;
/// use p2p_otel_testkit::receiver::{Config as ReceiverConfig, OtlpReceiver};
///
/// let receiver = OtlpReceiver::start(ReceiverConfig::default()).await?;
/// let network = InProcess::default()
///     .start(&receiver, 2, 1, &Config::for_tests())
///     .await?;
/// assert_eq!(network.peer_ids().len(), 2);
/// network.shutdown().await;
///
/// // On a loaded machine, healthy nodes get three times the usual time.
/// assert_eq!(InProcess::with_time_scale(3).time_scale(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct InProcess {
    time_scale: u32,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess { time_scale: 1 }
    }
}

impl InProcess {
    /// Nodes in this process, given `factor` times the usual time (see
    /// [`Launcher::time_scale`]; 0 counts as 1).
    pub const fn with_time_scale(factor: u32) -> Self {
        InProcess {
            time_scale: if factor == 0 { 1 } else { factor },
        }
    }
}

#[async_trait::async_trait]
impl Launcher for InProcess {
    async fn start(
        &self,
        receiver: &OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: &Config,
    ) -> Result<Box<dyn Network>, ScenarioError> {
        let telemetry =
            PerNode::new(Protocol::Grpc, receiver).service(SERVICE, env!("CARGO_PKG_VERSION"));
        let network = MemoryNetwork::start(memory_mesh(nodes, seed), telemetry, config).await?;
        Ok(Box::new(network))
    }

    async fn silent_peer(
        &self,
        protocol: &'static str,
        seed: u64,
    ) -> Result<Mesh<SilentPeer>, ScenarioError> {
        Ok(silent_peer(protocol, seed, Security::Noise).await?)
    }

    fn time_scale(&self) -> u32 {
        self.time_scale
    }
}

#[derive(Debug)]
pub(super) struct MemoryNetwork {
    telemetry: PerNode,
    mesh: Mesh<RegistryNode>,
    registries: Vec<P2PRegistry>,
    /// Where a simulated network records what its links carried, under its seed, at
    /// shutdown.
    links: Option<(u64, LinkRecord)>,
}

/// What the links of each simulated mesh carried, by the mesh's seed.
pub(super) type LinkRecord = Arc<Mutex<Vec<(u64, LinkStats)>>>;

/// A mesh of `nodes` on the memory transport with noise, free to dial what it learns of.
pub(super) fn memory_mesh(nodes: usize, seed: u64) -> mesh::Builder {
    // The scenarios walk production paths: a bootstrap from addresses, DHT peers reached
    // through lookups, a silent peer outside the mesh. Kademlia must be free to dial what
    // it learns of, as in production.
    mesh::Builder::new(nodes)
        .seed(seed)
        .security(Security::Noise)
        .discovery(Discovery::Open)
}

impl MemoryNetwork {
    /// Starts the mesh `builder` describes, every node with its telemetry
    /// from `telemetry`.
    pub(super) async fn start(
        builder: mesh::Builder,
        telemetry: PerNode,
        config: &Config,
    ) -> Result<Self, ScenarioError> {
        let mesh = start_mesh(builder, config.clone(), Some(&telemetry)).await?;
        let registries = (0..mesh.len())
            .map(|i| registry(&mesh, i, config))
            .collect::<Result<_, _>>()?;
        Ok(MemoryNetwork {
            telemetry,
            mesh,
            registries,
            links: None,
        })
    }

    /// Records what the mesh's links carried into `record`, under `seed`, at shutdown.
    pub(super) fn recording_links(mut self, seed: u64, record: LinkRecord) -> Self {
        self.links = Some((seed, record));
        self
    }

    fn handle(&self, node: usize) -> Result<&P2PRegistry, ScenarioError> {
        self.registries
            .get(node)
            .ok_or(ScenarioError::NoSuchNode(node))
    }
}

#[async_trait::async_trait]
impl Network for MemoryNetwork {
    fn peer_ids(&self) -> Vec<PeerId> {
        self.mesh.peer_ids()
    }

    fn peer(&self, node: usize) -> Result<(PeerId, Multiaddr), ScenarioError> {
        Ok((self.mesh.peer_id(node)?, self.mesh.addr(node)?))
    }

    fn registry(&self, node: usize) -> Result<&dyn Registry, ScenarioError> {
        Ok(self.handle(node)?)
    }

    async fn bootstrap(
        &self,
        node: usize,
        peers: Vec<(PeerId, Multiaddr)>,
    ) -> Result<usize, MarketplaceError> {
        match self.registries.get(node) {
            Some(registry) => registry.bootstrap_from(peers).await,
            None => Err(MarketplaceError::NodeStopped),
        }
    }

    async fn connect_all(&mut self, timeout: Duration) -> Result<(), ScenarioError> {
        self.mesh.connect_topology(Topology::Full, timeout).await?;
        wait_ready(&self.mesh, timeout).await?;
        Ok(())
    }

    async fn wait_for(
        &self,
        node: usize,
        condition: &NodeCondition,
        timeout: Duration,
    ) -> Result<(), ScenarioError> {
        let what = format!("node {node} to reach {condition}");
        self.mesh
            .wait_until(&what, timeout, |states| {
                states.get(node).is_some_and(|s| condition.holds(s))
            })
            .await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), ScenarioError> {
        Ok(self.telemetry.flush().await?)
    }

    async fn shutdown(self: Box<Self>) {
        if let Some((seed, record)) = &self.links {
            let stats = self.mesh.link_stats();
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((*seed, stats));
        }
        self.mesh.shutdown().await;
    }
}
