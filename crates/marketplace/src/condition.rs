//! What a driver waits for on one node: a state every field of which is an "at least",
//! checked against the node's [`NodeState`] — by a mesh in this process, or by a node
//! process's control API (`POST /wait`), so both wait the same way.

use libp2p::PeerId;
use p2p_otel_testkit::mesh::NodeState;

use crate::Observations;

/// A lower bound on a node's state; the default holds for every node.
///
/// ```
/// use p2p_otel_marketplace::NodeCondition;
/// let ready = NodeCondition { connected_peers: 2, ..NodeCondition::ready() };
/// assert_eq!(ready.routing_peers, 1);
/// assert!(ready.to_string().contains("2 connected peer(s)"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCondition {
    /// Peers it has a connection to.
    pub connected_peers: usize,
    /// Packages in its local index.
    pub packages: usize,
    /// Peers it knows to be subscribed to the packages topic.
    pub topic_peers: usize,
    /// Peers in its gossipsub mesh for the topic.
    pub mesh_peers: usize,
    /// Peers in its Kademlia routing table.
    pub routing_peers: usize,
    /// Peers it must be connected to.
    pub connected_to: Vec<PeerId>,
}

impl NodeCondition {
    /// Ready for the scenarios: a routing entry and a gossip mesh peer.
    pub fn ready() -> Self {
        NodeCondition {
            routing_peers: 1,
            mesh_peers: 1,
            ..NodeCondition::default()
        }
    }

    /// At least `packages` packages indexed.
    pub fn packages(packages: usize) -> Self {
        NodeCondition {
            packages,
            ..NodeCondition::default()
        }
    }

    /// Whether `state` satisfies it.
    pub fn holds(&self, state: &NodeState<Observations>) -> bool {
        let seen = &state.observations;
        state.alive
            && state.connected.len() >= self.connected_peers
            && seen.packages >= self.packages
            && seen.gossip_topic_peers >= self.topic_peers
            && seen.gossip_mesh_peers >= self.mesh_peers
            && seen.kad_routing_peers >= self.routing_peers
            && self
                .connected_to
                .iter()
                .all(|p| state.connected.contains(p))
    }
}

/// What it waits for, in words: "2 connected peer(s), 1 package(s)".
impl std::fmt::Display for NodeCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (count, what) in [
            (self.connected_peers, "connected peer(s)"),
            (self.packages, "package(s)"),
            (self.topic_peers, "topic subscriber(s)"),
            (self.mesh_peers, "gossip mesh peer(s)"),
            (self.routing_peers, "routing entr(ies)"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
        for peer in &self.connected_to {
            parts.push(format!("a connection to {peer}"));
        }
        if parts.is_empty() {
            return f.write_str("a running node");
        }
        f.write_str(&parts.join(", "))
    }
}
