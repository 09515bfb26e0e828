//! What a node is to the mesh: the logic that drives its behaviour, what its constructor
//! is given, and the state the mesh sees of it.

use std::collections::BTreeSet;
use std::fmt;

use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};

use super::{MeshBehaviour, MeshBehaviourEvent};

/// The swarm type every node logic works with.
pub type NodeSwarm<B> = Swarm<MeshBehaviour<B>>;

/// The swarm events a node logic receives.
pub type NodeEvent<B> = SwarmEvent<MeshBehaviourEvent<B>>;

/// The logic that drives one node's behaviour inside its event loop.
///
/// Everything the logic does runs under its node's dispatch (its capture or telemetry), and
/// so do libp2p's own tasks. A task the logic starts itself must take the dispatch along:
/// start it with [`spawn`], not `tokio::spawn` — a plain `tokio::spawn`ed task traces into
/// nobody's dispatch, so its spans are missing from the test (while in production, under a
/// global subscriber, they are there).
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

/// Starts `future` as a tokio task under the dispatch it is called under — inside a node's
/// logic, that node's: its spans go to the node's capture or telemetry, as the logic's own
/// do. `tokio::spawn(future.with_current_subscriber())` is the same; a bare `tokio::spawn`
/// loses the node's dispatch.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
/// let task = tracing::dispatcher::with_default(&dispatch, || {
///     p2p_otel_testkit::mesh::spawn(async { tracing::info_span!("background").in_scope(|| {}) })
/// });
/// task.await.unwrap();
/// assert_eq!(handle.spans()[0].name, "background");
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::instrument::WithSubscriber;
    tokio::spawn(future.with_current_subscriber())
}
