//! Faults: partitions and healing, kills and restarts.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{PeerId, Swarm};

use super::event_loop::PeerList;
use super::{Mesh, MeshBehaviour, MeshError, Node};

impl<N: Node> Mesh<N>
where
    Swarm<MeshBehaviour<N::Behaviour>>: Send,
{
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

    pub(super) async fn reconnect(
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
}
