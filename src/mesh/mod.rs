//! N libp2p nodes on the memory transport inside one test process, each `Swarm` owned by
//! its own task, with topologies, partitions, kills and restarts, and honest waits.
//!
//! A node is any [`NetworkBehaviour`] plus the logic that drives it (a [`Node`]): the mesh
//! runs one event loop per node that `select!`s over swarm events, commands and the
//! logic's next deadline — message passing, never a lock around the swarm. Every node also
//! gets libp2p's block list, which is how partitions are made and healed, and its allow
//! list, which holds a node to the edges the test connects unless the mesh was built with
//! [`Discovery::Open`].
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), p2p_otel_testkit::mesh::MeshError> {
//! use std::time::Duration;
//! use p2p_otel_testkit::mesh::{self, Mesh, Passive, Topology};
//!
//! let mut mesh = mesh::Builder::new(3)
//!     .start(|_ctx| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
//!     .await?;
//! mesh.connect_topology(Topology::Full, Duration::from_secs(5)).await?;
//! mesh.partition(&[&[0], &[1, 2]], Duration::from_secs(5)).await?;
//! mesh.heal(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

mod behaviour;
mod discovery;
mod node;
mod topology;
mod transport;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::allow_block_list;
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;

use crate::store::WaitError;
use crate::telemetry::PerNode;
pub use discovery::Discovery;
use node::{Control, EventLoop, PeerList};
pub use topology::Topology;
pub use transport::Security;

/// What caused a mesh error: the underlying error, kept whole as its `source()`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

pub(crate) fn cause(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
    Arc::from(error.into())
}

/// Errors of the mesh and its nodes. Every network wait ends in one of these, never a hang.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// A keypair or the secure channel could not be set up.
    #[error("identity could not be set up")]
    Identity(#[source] Cause),
    /// A node could not start listening.
    #[error("node {index} could not listen")]
    Listen {
        /// The node.
        index: usize,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The node constructor (or its telemetry) failed.
    #[error("node {index} could not be built")]
    Build {
        /// The node.
        index: usize,
        /// Why.
        #[source]
        source: Cause,
    },
    /// Dialing a peer failed.
    #[error("dialing {peer} failed: {source}")]
    Dial {
        /// The peer dialed.
        peer: PeerId,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The node's task is gone (killed, or its loop ended).
    #[error("node {index} is stopped")]
    NodeStopped {
        /// The node.
        index: usize,
    },
    /// There is no node with this index.
    #[error("there is no node {index} (the mesh has {len})")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many nodes there are.
        len: usize,
    },
    /// A wait ran out of time; the error shows every node's state when it gave up.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

pub use behaviour::{MeshBehaviour, MeshBehaviourEvent};

/// The swarm type every node logic works with.
pub type NodeSwarm<B> = Swarm<MeshBehaviour<B>>;

/// The swarm events a node logic receives.
pub type NodeEvent<B> = SwarmEvent<MeshBehaviourEvent<B>>;

/// The logic that drives one node's behaviour inside its event loop.
pub trait Node: Send + 'static {
    /// The application behaviour.
    type Behaviour: NetworkBehaviour + Send + 'static;
    /// Commands the node's handles send it.
    type Command: Send + 'static;
    /// What the logic reports about its node (routing table size, gossip peers…) for the
    /// mesh's waits to see; `()` when it reports nothing.
    type Observations: Clone + fmt::Debug + Default + PartialEq + Send + Sync + 'static;

    /// Handles one swarm event.
    fn on_swarm_event(
        &mut self,
        swarm: &mut NodeSwarm<Self::Behaviour>,
        event: NodeEvent<Self::Behaviour>,
    );

    /// Handles one command.
    fn on_command(&mut self, swarm: &mut NodeSwarm<Self::Behaviour>, command: Self::Command);

    /// When the logic next needs [`on_deadline`](Node::on_deadline) (pending timeouts).
    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// Called when [`next_deadline`](Node::next_deadline) has passed.
    fn on_deadline(&mut self, _swarm: &mut NodeSwarm<Self::Behaviour>) {}

    /// Updates the node's observations, after every event, for the mesh's waits.
    fn observe(&self, _swarm: &NodeSwarm<Self::Behaviour>, _observations: &mut Self::Observations) {
    }
}

/// A node logic that does nothing: for behaviours that need no driving.
#[derive(Debug)]
pub struct Passive<B>(std::marker::PhantomData<fn() -> B>);

impl<B> Default for Passive<B> {
    fn default() -> Self {
        Passive(std::marker::PhantomData)
    }
}

impl<B: NetworkBehaviour + Send + 'static> Node for Passive<B> {
    type Behaviour = B;
    type Command = ();
    type Observations = ();
    fn on_swarm_event(&mut self, _: &mut NodeSwarm<B>, _: NodeEvent<B>) {}
    fn on_command(&mut self, _: &mut NodeSwarm<B>, _: ()) {}
}

/// What the mesh knows about a node, updated by its task after every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState<O = ()> {
    /// The node's index in the mesh.
    pub index: usize,
    /// Its peer id.
    pub peer_id: Option<PeerId>,
    /// Whether its task runs.
    pub alive: bool,
    /// Its listen addresses.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers it has a connection to.
    pub connected: BTreeSet<PeerId>,
    /// What the node logic observed ([`Node::Observations`]).
    pub observations: O,
}

impl<O: fmt::Debug> fmt::Display for NodeState<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} {} alive={} connected={}",
            self.index,
            self.peer_id.map(|p| p.to_string()).unwrap_or_default(),
            self.alive,
            self.connected.len()
        )?;
        if std::mem::size_of::<O>() > 0 {
            write!(f, " {:?}", self.observations)?;
        }
        Ok(())
    }
}

/// How many dials `connect_topology` has in flight at once.
const CONCURRENT_DIALS: usize = 64;

/// What a node constructor is given.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node's index.
    pub index: usize,
    /// Its (seeded) keypair.
    pub keypair: Keypair,
    /// Its peer id.
    pub peer_id: PeerId,
}

type Constructor<N> =
    dyn Fn(&NodeContext) -> Result<(<N as Node>::Behaviour, N), MeshError> + Send + Sync;
type DispatchFactory = dyn Fn(usize, PeerId) -> Result<Dispatch, MeshError> + Send + Sync;

/// Configures a mesh. Defaults: seed 0, noise (plaintext without the `noise` feature),
/// connections only along the edges the test connects ([`Discovery::Off`]), connections
/// kept 1 hour when idle, 5 s to listen or dial.
#[must_use = "call .start(...) to start the mesh"]
pub struct Builder {
    nodes: usize,
    seed: u64,
    security: Security,
    discovery: Discovery,
    idle_timeout: Duration,
    timeout: Duration,
    dispatch: Option<Arc<DispatchFactory>>,
    listen: Vec<Multiaddr>,
    keypairs: BTreeMap<usize, libp2p::identity::Keypair>,
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

    /// The seed of the nodes' keypairs: the same seed gives the same peer ids.
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

    /// Starts every node, built by `constructor`, listening on the memory transport.
    pub async fn start<N, F>(self, constructor: F) -> Result<Mesh<N>, MeshError>
    where
        N: Node,
        F: Fn(&NodeContext) -> Result<(N::Behaviour, N), MeshError> + Send + Sync + 'static,
        Swarm<MeshBehaviour<N::Behaviour>>: Send,
    {
        let mut mesh = Mesh {
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

struct Slot<N: Node> {
    context: NodeContext,
    addr: Option<Multiaddr>,
    control: Option<mpsc::Sender<Control<N::Command>>>,
    /// Dropping (or sending on) it ends the node's loop.
    stop: Option<oneshot::Sender<()>>,
    state: Arc<watch::Sender<NodeState<N::Observations>>>,
    task: Option<JoinHandle<()>>,
}

/// A handle to one node, cheap to clone, for sending its logic commands.
#[derive(Debug)]
pub struct NodeHandle<C> {
    index: usize,
    sender: mpsc::Sender<Control<C>>,
}

impl<C> Clone for NodeHandle<C> {
    fn clone(&self) -> Self {
        NodeHandle {
            index: self.index,
            sender: self.sender.clone(),
        }
    }
}

impl<C: Send + 'static> NodeHandle<C> {
    /// Sends `command` to the node's logic; fails if the node is stopped.
    pub async fn send(&self, command: C) -> Result<(), MeshError> {
        self.sender
            .send(Control::App(command))
            .await
            .map_err(|_| MeshError::NodeStopped { index: self.index })
    }

    /// The node's index.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// A running mesh. Dropping it stops every node.
pub struct Mesh<N: Node> {
    slots: Vec<Slot<N>>,
    constructor: Arc<Constructor<N>>,
    config: Builder,
    /// Every edge connected so far, restored by `heal` and `restart`.
    edges: BTreeSet<(usize, usize)>,
    /// Pairs blocked by `partition`.
    blocked: BTreeSet<(usize, usize)>,
    /// Bumped after any node's state changed: one signal for the waits to wake on,
    /// however many nodes there are.
    changes: Arc<watch::Sender<u64>>,
}

impl<N: Node> fmt::Debug for Mesh<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("nodes", &self.slots.len())
            .field("edges", &self.edges)
            .field("blocked", &self.blocked)
            .finish_non_exhaustive()
    }
}

impl Mesh<Passive<libp2p::swarm::dummy::Behaviour>> {
    /// Moved to [`mesh::Builder::new`](Builder::new), which builds a mesh of any [`Node`].
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// use p2p_otel_testkit::mesh::Mesh;
    /// let builder = Mesh::builder(3).seed(7);
    /// # drop(builder);
    /// ```
    #[deprecated(since = "0.2.0", note = "use `mesh::Builder::new`")]
    pub fn builder(nodes: usize) -> Builder {
        Builder::new(nodes)
    }
}

impl<N: Node> Mesh<N>
where
    Swarm<MeshBehaviour<N::Behaviour>>: Send,
{
    /// How many nodes (alive or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the mesh has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, index: usize) -> Result<&Slot<N>, MeshError> {
        self.slots.get(index).ok_or(MeshError::NoSuchNode {
            index,
            len: self.slots.len(),
        })
    }

    /// A node's peer id.
    pub fn peer_id(&self, index: usize) -> Result<PeerId, MeshError> {
        Ok(self.slot(index)?.context.peer_id)
    }

    /// Every node's peer id, by index.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.slots.iter().map(|s| s.context.peer_id).collect()
    }

    /// A node's current listen address (it changes on restart).
    pub fn addr(&self, index: usize) -> Result<Multiaddr, MeshError> {
        self.slot(index)?
            .addr
            .clone()
            .ok_or(MeshError::NodeStopped { index })
    }

    /// Every address node `index` listens on (a TCP and a QUIC one, say), as bound.
    pub fn listen_addrs(&self, index: usize) -> Result<Vec<Multiaddr>, MeshError> {
        let slot = self.slot(index)?;
        if slot.addr.is_none() {
            return Err(MeshError::NodeStopped { index });
        }
        Ok(slot.state.borrow().listen_addrs.clone())
    }

    /// A handle for sending node `index` commands.
    pub fn node(&self, index: usize) -> Result<NodeHandle<N::Command>, MeshError> {
        let sender = self
            .slot(index)?
            .control
            .clone()
            .ok_or(MeshError::NodeStopped { index })?;
        Ok(NodeHandle { index, sender })
    }

    /// Whether node `index` runs.
    pub fn is_alive(&self, index: usize) -> bool {
        self.slots.get(index).is_some_and(|s| s.control.is_some())
    }

    /// Every node's current state.
    pub fn states(&self) -> Vec<NodeState<N::Observations>> {
        self.slots
            .iter()
            .map(|s| s.state.borrow().clone())
            .collect()
    }

    async fn spawn(&mut self, index: usize) -> Result<(), MeshError> {
        let timeout = self.config.timeout;
        let security = self.config.security;
        let idle = self.config.idle_timeout;
        let dispatch = self
            .config
            .dispatch
            .as_ref()
            .map(|make| make(index, self.slots[index].context.peer_id))
            .transpose()?;
        let context = self.slots[index].context.clone();
        let (behaviour, mut logic) = (self.constructor)(&context)?;
        let transport = transport::transport(&context.keypair, security, &self.config.listen)?;
        let neighbours = match self.config.discovery {
            Discovery::Off => Some(allow_block_list::Behaviour::default()),
            Discovery::Open => None,
        };
        let behaviour = MeshBehaviour {
            blocked: allow_block_list::Behaviour::default(),
            neighbours: neighbours.into(),
            app: behaviour,
        };
        let config = libp2p::swarm::Config::with_executor(transport::NodeExecutor {
            dispatch: dispatch.clone(),
        })
        .with_idle_connection_timeout(idle);
        let mut swarm = Swarm::new(transport, behaviour, context.peer_id, config);
        let mut waiting = std::collections::HashSet::new();
        for listen in &self.config.listen {
            let id = swarm
                .listen_on(listen.clone())
                .map_err(|e| MeshError::Listen {
                    index,
                    source: cause(format!("{listen}: {e}")),
                })?;
            waiting.insert(id);
        }
        // One address per listener (a listener on 0.0.0.0 may report several).
        let mut addrs = Vec::new();
        let all_addresses = async {
            while !waiting.is_empty() {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    } => {
                        waiting.remove(&listener_id);
                        addrs.push(address);
                    }
                    SwarmEvent::ListenerClosed {
                        listener_id,
                        reason: Err(error),
                        ..
                    }
                    | SwarmEvent::ListenerError { listener_id, error }
                        if waiting.contains(&listener_id) =>
                    {
                        return Err(cause(error));
                    }
                    other => logic.on_swarm_event(&mut swarm, other),
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, all_addresses)
            .await
            .map_err(|_| MeshError::Listen {
                index,
                source: cause(format!("no listen address within {timeout:?}")),
            })?
            .map_err(|source| MeshError::Listen { index, source })?;
        let addr = addrs.first().cloned().ok_or_else(|| MeshError::Listen {
            index,
            source: cause("no listen address"),
        })?;
        let (control, commands) = mpsc::channel(1024);
        let (stop, stopped) = oneshot::channel();
        let slot = &mut self.slots[index];
        slot.state.send_modify(|state| {
            state.alive = true;
            state.listen_addrs = addrs;
        });
        self.changes
            .send_modify(|version| *version = version.wrapping_add(1));
        let event_loop = EventLoop::new(
            swarm,
            logic,
            commands,
            Arc::clone(&slot.state),
            Arc::clone(&self.changes),
            stopped,
        )
        .run();
        slot.task = Some(match dispatch {
            Some(dispatch) => tokio::spawn(event_loop.with_subscriber(dispatch)),
            None => tokio::spawn(event_loop),
        });
        slot.addr = Some(addr);
        slot.control = Some(control);
        slot.stop = Some(stop);
        Ok(())
    }

    async fn control<R>(
        &self,
        index: usize,
        make: impl FnOnce(oneshot::Sender<R>) -> Control<N::Command>,
    ) -> Result<R, MeshError> {
        self.control_within(index, make, self.config.timeout).await
    }

    /// [`control`](Mesh::control), waiting `wait` for the answer.
    async fn control_within<R>(
        &self,
        index: usize,
        make: impl FnOnce(oneshot::Sender<R>) -> Control<N::Command>,
        wait: Duration,
    ) -> Result<R, MeshError> {
        let sender = self
            .slot(index)?
            .control
            .clone()
            .ok_or(MeshError::NodeStopped { index })?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(make(reply))
            .await
            .map_err(|_| MeshError::NodeStopped { index })?;
        tokio::time::timeout(wait, answer)
            .await
            .map_err(|_| self.timed_out(&format!("node {index} to answer a mesh command"), wait))?
            .map_err(|_| MeshError::NodeStopped { index })
    }

    /// Connects node `a` to node `b` (a dials b) and remembers the edge.
    pub async fn connect(&mut self, a: usize, b: usize) -> Result<(), MeshError> {
        self.update_peer_lists(PeerList::Neighbours, &[(a, b)], true)
            .await?;
        self.dial(a, b, self.config.timeout).await?;
        self.edges.insert((a.min(b), a.max(b)));
        Ok(())
    }

    /// `a` dials `b`; answered once connected or failed, within `wait`.
    async fn dial(&self, a: usize, b: usize, wait: Duration) -> Result<(), MeshError> {
        let peer = self.peer_id(b)?;
        let addr = self.addr(b)?;
        self.control_within(a, |reply| Control::Dial { peer, addr, reply }, wait)
            .await?
    }

    /// Dials `b` from `a` again after a failed attempt, a few times while the deadline
    /// allows: right after a restart, a dial can meet a connection the other side is
    /// still tearing down (seen on a loaded machine). Each retry follows the previous
    /// attempt's outcome event, so nothing here sleeps.
    async fn connect_retrying(
        &mut self,
        a: usize,
        b: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), MeshError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match self.connect(a, b).await {
                Err(MeshError::Dial { .. })
                    if attempt < ATTEMPTS && tokio::time::Instant::now() < deadline =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Connects every edge of `topology` and waits until both ends of each see the
    /// connection.
    pub async fn connect_topology(
        &mut self,
        topology: Topology,
        timeout: Duration,
    ) -> Result<(), MeshError> {
        let edges = topology.edges(self.len());
        let peers = self.peer_ids();
        self.update_peer_lists(PeerList::Neighbours, &edges, true)
            .await?;
        // Dials go out together (a bounded number at a time): one after the other, a
        // 1,024-node mesh would spend seconds on round trips to its node tasks. Each
        // waits for its answer until the call's deadline, not the mesh's per-dial timeout:
        // it shares the machine with the other dials in flight.
        let this = &*self;
        let deadline = tokio::time::Instant::now() + timeout;
        let dial = |(a, b): (usize, usize)| async move {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            this.dial(a, b, left.max(this.config.timeout)).await
        };
        futures::stream::iter(edges.iter().copied().map(dial))
            .buffer_unordered(CONCURRENT_DIALS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, MeshError>>()?;
        self.edges.extend(edges.iter().copied());
        self.wait_until(
            &format!("the {topology:?} edges to be connected"),
            timeout,
            |states| {
                edges.iter().all(|&(a, b)| {
                    states[a].connected.contains(&peers[b])
                        && states[b].connected.contains(&peers[a])
                })
            },
        )
        .await
        .map(drop)
    }

    /// Closes the connections between `a` and `b` and forgets the edge (with discovery
    /// off, neither may connect to the other again until connected by the test).
    pub async fn disconnect(&mut self, a: usize, b: usize) -> Result<(), MeshError> {
        let peer = self.peer_id(b)?;
        self.update_peer_lists(PeerList::Neighbours, &[(a, b)], false)
            .await?;
        self.control(a, |reply| Control::Disconnect { peer, reply })
            .await?;
        self.edges.remove(&(a.min(b), a.max(b)));
        Ok(())
    }

    /// Adds (or removes) each end of every pair to the other's `list`: one message per
    /// live node, however many pairs it is in (half of a 1,024-node mesh against the
    /// other is 262,144 pairs). Edges are kept only while discovery is off.
    async fn update_peer_lists(
        &self,
        list: PeerList,
        pairs: &[(usize, usize)],
        add: bool,
    ) -> Result<(), MeshError> {
        if list == PeerList::Neighbours && self.config.discovery == Discovery::Open {
            return Ok(());
        }
        let peers = self.peer_ids();
        let mut lists: Vec<Vec<PeerId>> = vec![Vec::new(); self.len()];
        for &(a, b) in pairs {
            self.slot(a.max(b))?;
            lists[a].push(peers[b]);
            lists[b].push(peers[a]);
        }
        for (index, peers) in lists.into_iter().enumerate() {
            if peers.is_empty() || !self.is_alive(index) {
                continue;
            }
            self.control(index, |reply| Control::PeerList {
                list,
                peers,
                add,
                reply,
            })
            .await?;
        }
        Ok(())
    }

    /// Blocks (or unblocks) `peers` on node `index` — any peers, in this mesh or outside
    /// it (nodes in other processes): libp2p's block list closes their connections and
    /// refuses new ones until they are unblocked.
    pub async fn block_peers(
        &self,
        index: usize,
        peers: Vec<PeerId>,
        blocked: bool,
    ) -> Result<(), MeshError> {
        self.control(index, |reply| Control::PeerList {
            list: PeerList::Blocked,
            peers,
            add: blocked,
            reply,
        })
        .await
    }

    /// Splits the mesh into `groups`: every pair of nodes in different groups blocks the
    /// other (libp2p's block list closes their connections and refuses new ones). Waits
    /// until no connection crosses groups.
    pub async fn partition(
        &mut self,
        groups: &[&[usize]],
        timeout: Duration,
    ) -> Result<(), MeshError> {
        let mut pairs = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            for other in &groups[i + 1..] {
                for &a in *group {
                    for &b in *other {
                        pairs.push((a.min(b), a.max(b)));
                    }
                }
            }
        }
        self.update_peer_lists(PeerList::Blocked, &pairs, true)
            .await?;
        self.blocked.extend(pairs);
        let mut group_of = vec![None; self.len()];
        for (i, group) in groups.iter().enumerate() {
            for &node in *group {
                group_of[node] = Some(i);
            }
        }
        let index_of: HashMap<PeerId, usize> = self
            .peer_ids()
            .into_iter()
            .enumerate()
            .map(|(index, peer)| (peer, index))
            .collect();
        // Checked per connection, not per pair: no node of a group is connected to a
        // node of another group.
        self.wait_until(
            "the partition to close crossing connections",
            timeout,
            |states| {
                states.iter().all(|state| {
                    let Some(group) = group_of[state.index] else {
                        return true;
                    };
                    state.connected.iter().all(|peer| {
                        index_of
                            .get(peer)
                            .is_none_or(|&other| group_of[other].is_none_or(|g| g == group))
                    })
                })
            },
        )
        .await
        .map(drop)
    }

    /// Lifts every block and reconnects the remembered edges that were cut; waits until
    /// they are connected again.
    pub async fn heal(&mut self, timeout: Duration) -> Result<(), MeshError> {
        let blocked = std::mem::take(&mut self.blocked);
        let pairs: Vec<(usize, usize)> = blocked.iter().copied().collect();
        self.update_peer_lists(PeerList::Blocked, &pairs, false)
            .await?;
        self.reconnect(|edge| blocked.contains(&edge), timeout)
            .await
    }

    async fn reconnect(
        &mut self,
        which: impl Fn((usize, usize)) -> bool,
        timeout: Duration,
    ) -> Result<(), MeshError> {
        let edges: Vec<(usize, usize)> = self
            .edges
            .iter()
            .copied()
            .filter(|&(a, b)| which((a, b)) && self.is_alive(a) && self.is_alive(b))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        for &(a, b) in &edges {
            self.connect_retrying(a, b, deadline).await?;
        }
        let peers = self.peer_ids();
        self.wait_until("cut edges to reconnect", timeout, |states| {
            edges.iter().all(|&(a, b)| {
                states[a].connected.contains(&peers[b]) && states[b].connected.contains(&peers[a])
            })
        })
        .await
        .map(drop)
    }

    /// Stops node `index`: its task ends and its swarm, connections and listener are
    /// gone; returns once every other node has seen its connections close.
    pub async fn kill(&mut self, index: usize) -> Result<(), MeshError> {
        let len = self.slots.len();
        let slot = self
            .slots
            .get_mut(index)
            .ok_or(MeshError::NoSuchNode { index, len })?;
        slot.control = None;
        slot.addr = None;
        // Handles elsewhere may still hold command senders: stop the loop explicitly.
        slot.stop = None;
        if let Some(task) = slot.task.take() {
            let _ = task.await;
        }
        slot.state.send_modify(|state| {
            state.alive = false;
            state.connected.clear();
            state.listen_addrs.clear();
        });
        self.changes
            .send_modify(|version| *version = version.wrapping_add(1));
        // Until the others notice, a dial to the restarted node could be answered by a
        // connection that is about to close: wait until no node lists it.
        let peer = slot.context.peer_id;
        self.wait_until(
            &format!("every node to see node {index} gone"),
            self.config.timeout,
            |states| states.iter().all(|s| !s.connected.contains(&peer)),
        )
        .await
        .map(drop)
    }

    /// Starts a killed node again with the same identity, on a new address; restores
    /// its side of any partition it was in, and reconnects its remembered edges that the
    /// partition does not cut.
    pub async fn restart(&mut self, index: usize, timeout: Duration) -> Result<(), MeshError> {
        if self.is_alive(index) {
            return Ok(());
        }
        self.spawn(index).await?;
        let blocked: Vec<(usize, usize)> = self
            .blocked
            .iter()
            .copied()
            .filter(|&(a, b)| a == index || b == index)
            .collect();
        self.update_peer_lists(PeerList::Blocked, &blocked, true)
            .await?;
        self.reconnect(
            |edge @ (a, b)| (a == index || b == index) && !blocked.contains(&edge),
            timeout,
        )
        .await
    }

    /// Render settings that name every node by its index, `[node 0]`, `[node 1]`, …,
    /// wherever its peer id appears (resources, attributes, messages), for trees,
    /// snapshots and failures that speak of nodes rather than peer ids.
    pub fn render_settings(&self) -> crate::tree::RenderSettings {
        crate::tree::RenderSettings::default().nodes(self.peer_ids())
    }

    /// Waits until `condition` holds over every node's state; on timeout the error lists
    /// every node's state. Wakes on each state change, never polls; only the nodes that
    /// changed are read again, so a wait over a large mesh costs what changed.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&[NodeState<N::Observations>]) -> bool,
    ) -> Result<Vec<NodeState<N::Observations>>, MeshError> {
        let mut changes = self.changes.subscribe();
        let mut receivers: Vec<watch::Receiver<NodeState<N::Observations>>> =
            self.slots.iter().map(|s| s.state.subscribe()).collect();
        let mut states: Vec<NodeState<N::Observations>> = receivers
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(&states) {
                return Ok(states);
            }
            // The sender lives in the mesh, so `changed` only ends on a change. Marked
            // seen before the states are read: a change after the read wakes the wait.
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(self.timed_out(what, timeout));
            }
            changes.borrow_and_update();
            for (state, receiver) in states.iter_mut().zip(&mut receivers) {
                if receiver.has_changed().unwrap_or(false) {
                    *state = receiver.borrow_and_update().clone();
                }
            }
        }
    }

    fn timed_out(&self, expected: &str, waited: Duration) -> MeshError {
        let states = self.states();
        MeshError::Wait(WaitError::Timeout {
            expected: expected.to_owned(),
            waited,
            arrived: states.len(),
            unit: "node state(s)",
            rendered: states.iter().map(|state| format!("  {state}\n")).collect(),
        })
    }

    /// Stops every node and waits for their tasks to end (all at once: unlike
    /// [`kill`](Mesh::kill), nobody is left to see a node go).
    pub async fn shutdown(mut self) {
        for slot in &mut self.slots {
            slot.control = None;
            slot.addr = None;
            slot.stop = None;
        }
        let tasks = self.slots.iter_mut().filter_map(|slot| slot.task.take());
        futures::future::join_all(tasks).await;
    }
}
