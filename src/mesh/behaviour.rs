//! The behaviour every mesh node runs. In a module of its own because the derive
//! generates an event enum whose variants cannot carry doc comments.
#![allow(missing_docs)]

use std::fmt;

use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;

/// Every mesh node's behaviour: libp2p's block list (partitions), its allow list (the
/// node's edges, when [`Discovery::Off`](super::Discovery::Off)) and the application's.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct MeshBehaviour<B: NetworkBehaviour> {
    /// The block list partitions are made with.
    pub blocked: allow_block_list::Behaviour<BlockedPeers>,
    /// The peers the node may be connected to: its edges. Disabled with
    /// [`Discovery::Open`](super::Discovery::Open).
    pub neighbours: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    /// The application's behaviour.
    pub app: B,
}

impl<B: NetworkBehaviour> fmt::Debug for MeshBehaviour<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshBehaviour")
            .field("blocked", &self.blocked.blocked_peers())
            .field(
                "neighbours",
                &self.neighbours.as_ref().map(|list| list.allowed_peers()),
            )
            .finish_non_exhaustive()
    }
}
