//! Waiting on every node's state, and the rendering that names nodes.

use std::time::Duration;

use libp2p::Swarm;
use tokio::sync::watch;

use super::{Mesh, MeshBehaviour, MeshError, Node, NodeState};
use crate::store::WaitError;

impl<N: Node> Mesh<N>
where
    Swarm<MeshBehaviour<N::Behaviour>>: Send,
{
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

    pub(super) fn timed_out(&self, expected: &str, waited: Duration) -> MeshError {
        let states = self.states();
        MeshError::Wait(WaitError::Timeout {
            expected: expected.to_owned(),
            waited,
            arrived: states.len(),
            unit: "node state(s)",
            rendered: states.iter().map(|state| format!("  {state}\n")).collect(),
        })
    }
}
