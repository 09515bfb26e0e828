//! A running mesh: its nodes' slots and handles, the accessors, starting a node's task,
//! asking a node for an answer, and shutdown.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::allow_block_list;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use super::builder::Constructor;
use super::event_loop::{close_listeners, Control, EventLoop};
use super::{
    cause, transport, Builder, Discovery, MeshBehaviour, MeshError, Node, NodeContext, NodeState,
    Passive,
};

pub(super) struct Slot<N: Node> {
    pub(super) context: NodeContext,
    pub(super) addr: Option<Multiaddr>,
    pub(super) control: Option<mpsc::Sender<Control<N::Command>>>,
    /// Dropping (or sending on) it ends the node's loop.
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) state: Arc<watch::Sender<NodeState<N::Observations>>>,
    pub(super) task: Option<JoinHandle<()>>,
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
    pub(super) slots: Vec<Slot<N>>,
    pub(super) constructor: Arc<Constructor<N>>,
    pub(super) config: Builder,
    /// The link model every memory connection is wrapped in, if any.
    pub(super) network: Option<Arc<super::link::Network>>,
    /// Every edge connected so far, restored by `heal` and `restart`.
    pub(super) edges: BTreeSet<(usize, usize)>,
    /// Pairs blocked by `partition`.
    pub(super) blocked: BTreeSet<(usize, usize)>,
    /// Bumped after any node's state changed: one signal for the waits to wake on,
    /// however many nodes there are.
    pub(super) changes: Arc<watch::Sender<u64>>,
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

    pub(super) fn slot(&self, index: usize) -> Result<&Slot<N>, MeshError> {
        self.slots.get(index).ok_or(MeshError::NoSuchNode {
            index,
            len: self.slots.len(),
        })
    }

    /// A node's peer id.
    pub fn peer_id(&self, index: usize) -> Result<PeerId, MeshError> {
        Ok(self.slot(index)?.context.peer_id)
    }

    /// What the links of a [`Builder::link`](super::Builder::link) (or
    /// [`latency`](super::Builder::latency)) mesh carried so far: segments, bytes, and
    /// retransmissions the model caused; zeros without a link model.
    pub fn link_stats(&self) -> super::LinkStats {
        self.network
            .as_ref()
            .map(|network| network.stats())
            .unwrap_or_default()
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

    pub(super) async fn spawn(&mut self, index: usize) -> Result<(), MeshError> {
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
        let transport = transport::transport(
            &context.keypair,
            security,
            &self.config.listen,
            self.network.clone().map(|network| (network, index)),
        )?;
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
        // Every listener opened is closed again if the node does not start: libp2p's memory
        // transport would keep its port taken for the life of the process.
        let mut listeners = Vec::new();
        let listened = async {
            let mut waiting = std::collections::HashSet::new();
            for listen in &self.config.listen {
                let id = swarm
                    .listen_on(listen.clone())
                    .map_err(|e| MeshError::Listen {
                        index,
                        source: cause(format!("{listen}: {e}")),
                    })?;
                waiting.insert(id);
                listeners.push(id);
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
            Ok::<_, MeshError>((addr, addrs))
        }
        .await;
        let (addr, addrs) = match listened {
            Ok(listened) => listened,
            Err(error) => {
                close_listeners(&mut swarm, &listeners);
                return Err(error);
            }
        };
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
            listeners,
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

    pub(super) async fn control<R>(
        &self,
        index: usize,
        make: impl FnOnce(oneshot::Sender<R>) -> Control<N::Command>,
    ) -> Result<R, MeshError> {
        self.control_within(index, make, self.config.timeout).await
    }

    /// [`control`](Mesh::control), waiting `wait` for the answer.
    pub(super) async fn control_within<R>(
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
