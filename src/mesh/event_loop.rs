//! One node's event loop: the task that owns its `Swarm`, `select!`ing over swarm events,
//! commands and the node logic's next deadline. Nothing else touches the swarm.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

use super::{MeshBehaviour, MeshError, Node, NodeState};

/// What the mesh (or a node's own handle) asks of a node's task.
#[derive(Debug)]
pub(crate) enum Control<C> {
    /// Dial `peer` at `addr`; answered once connected or failed.
    Dial {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    /// Close every connection to `peer`.
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    /// Add `peers` to one of the node's peer lists, or remove them.
    PeerList {
        list: PeerList,
        peers: Vec<PeerId>,
        add: bool,
        reply: oneshot::Sender<()>,
    },
    /// A command for the node logic.
    App(C),
}

/// The peer lists every mesh node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerList {
    /// Its edges: the allow list (closing a removed peer's connections). Absent, and
    /// left alone, when discovery is open.
    Neighbours,
    /// The block list partitions are made with (closing an added peer's connections).
    Blocked,
}

pub(crate) struct EventLoop<N: Node> {
    pub(crate) swarm: Swarm<MeshBehaviour<N::Behaviour>>,
    /// The swarm's listeners, closed when the loop ends ([`close_listeners`]).
    listeners: Vec<ListenerId>,
    pub(crate) node: N,
    pub(crate) commands: mpsc::Receiver<Control<N::Command>>,
    pub(crate) state: Arc<watch::Sender<NodeState<N::Observations>>>,
    /// Bumped whenever this node's (or any node's) state changes: what the mesh's waits
    /// wake on.
    changes: Arc<watch::Sender<u64>>,
    stop: oneshot::Receiver<()>,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), MeshError>>>>,
}

/// Removes `listeners` from `swarm`. Dropping a swarm is not enough: libp2p's memory
/// transport keeps a listener's port in a process-wide table until the listener is removed,
/// so a node stopped without this leaves its port taken for the life of the process — and
/// a simulation replaying from the same seed draws that port again, finds it taken, and
/// draws another, parting from the run before it.
pub(crate) fn close_listeners<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    listeners: &[ListenerId],
) {
    for id in listeners {
        swarm.remove_listener(*id);
    }
}

/// However the loop ends — stopped, killed, its task dropped with the runtime — the
/// node's listeners close.
impl<N: Node> Drop for EventLoop<N> {
    fn drop(&mut self) {
        close_listeners(&mut self.swarm, &self.listeners);
    }
}

impl<N: Node> EventLoop<N> {
    pub(crate) fn new(
        swarm: Swarm<MeshBehaviour<N::Behaviour>>,
        listeners: Vec<ListenerId>,
        node: N,
        commands: mpsc::Receiver<Control<N::Command>>,
        state: Arc<watch::Sender<NodeState<N::Observations>>>,
        changes: Arc<watch::Sender<u64>>,
        stop: oneshot::Receiver<()>,
    ) -> Self {
        EventLoop {
            swarm,
            listeners,
            node,
            commands,
            state,
            changes,
            stop,
            pending_dials: HashMap::new(),
        }
    }

    /// Runs until stopped (the node is killed, or the mesh dropped), even while handles
    /// to the node are still held elsewhere.
    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.node.next_deadline();
            // In a fixed order, not tokio's random one: a simulated mesh replays the same
            // choices. The deadline comes last, so a logic whose deadline stays in the past
            // cannot starve the swarm.
            tokio::select! {
                biased;
                _ = &mut self.stop => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                // Wakes the node logic at its own deadline (a request timeout, a cache
                // expiry): driven by the logic's state, never a fixed wait.
                () = until(deadline) => self.node.on_deadline(&mut self.swarm),
            }
            self.publish_state();
        }
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<
            <MeshBehaviour<N::Behaviour> as libp2p::swarm::NetworkBehaviour>::ToSwarm,
        >,
    ) {
        match &event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                for reply in self.pending_dials.remove(peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                for reply in self.pending_dials.remove(peer_id).unwrap_or_default() {
                    let _ = reply.send(Err(MeshError::Dial {
                        peer: *peer_id,
                        source: super::cause(error.to_string()),
                    }));
                }
            }
            _ => {}
        }
        self.node.on_swarm_event(&mut self.swarm, event);
    }

    fn on_command(&mut self, command: Control<N::Command>) {
        match command {
            Control::Dial { peer, addr, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
                match self.swarm.dial(opts) {
                    Ok(()) => self.pending_dials.entry(peer).or_default().push(reply),
                    // Already dialing: wait for that attempt's outcome.
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        self.pending_dials.entry(peer).or_default().push(reply)
                    }
                    Err(error) => {
                        let _ = reply.send(Err(MeshError::Dial {
                            peer,
                            source: super::cause(error),
                        }));
                    }
                }
            }
            Control::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(());
            }
            Control::PeerList {
                list,
                peers,
                add,
                reply,
            } => {
                let behaviour = self.swarm.behaviour_mut();
                for peer in peers {
                    match (list, add) {
                        (PeerList::Neighbours, true) => {
                            behaviour.neighbours.as_mut().map(|l| l.allow_peer(peer));
                        }
                        (PeerList::Neighbours, false) => {
                            behaviour.neighbours.as_mut().map(|l| l.disallow_peer(peer));
                        }
                        (PeerList::Blocked, true) => {
                            behaviour.blocked.block_peer(peer);
                        }
                        (PeerList::Blocked, false) => {
                            behaviour.blocked.unblock_peer(peer);
                        }
                    }
                }
                let _ = reply.send(());
            }
            Control::App(command) => self.node.on_command(&mut self.swarm, command),
        }
    }

    fn publish_state(&mut self) {
        let swarm = &self.swarm;
        let node = &self.node;
        let modified = self.state.send_if_modified(|state| {
            let mut modified = !state.alive;
            state.alive = true;
            // Connected peers come in hash order; the state keeps them sorted.
            let same_peers = swarm.connected_peers().count() == state.connected.len()
                && swarm
                    .connected_peers()
                    .all(|peer| state.connected.contains(peer));
            if !same_peers {
                state.connected = swarm.connected_peers().copied().collect();
                modified = true;
            }
            if !swarm.listeners().eq(state.listen_addrs.iter()) {
                state.listen_addrs = swarm.listeners().cloned().collect();
                modified = true;
            }
            let before = state.observations.clone();
            node.observe(swarm, &mut state.observations);
            modified || state.observations != before
        });
        if modified {
            self.changes
                .send_modify(|version| *version = version.wrapping_add(1));
        }
    }
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
