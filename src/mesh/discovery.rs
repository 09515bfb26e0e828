//! Whether mesh nodes connect only along the edges a test asks for.

/// Which connections a mesh's nodes may have besides the edges the test connects
/// ([`Mesh::connect`](super::Mesh::connect), [`connect_topology`](super::Mesh::connect_topology)).
///
/// Behaviours such as Kademlia dial every peer they learn of: bootstrap and lookups walk
/// the network, and an idle Kademlia node re-bootstraps whenever a peer joins its routing
/// table while it holds fewer than 20. In a test that asked for a sparse topology this
/// turns the mesh into nearly all-to-all within seconds (measured: a 64-node mesh of
/// degree 4 reached ~60 connections per node, a 256-node one ~245), and the mesh's cost
/// grows with the square of its size. [`Discovery::Off`], the default, keeps a node's
/// connections to its edges: a dial to any other peer is denied (`DialError::Denied`, which
/// Kademlia treats as an unreachable peer) and so is such a peer's inbound connection.
/// That includes peers outside the mesh: a mesh whose nodes talk to another mesh's (a
/// silent peer, a raw client) or bootstrap from addresses needs [`Discovery::Open`].
///
/// ```
/// use p2p_otel_testkit::mesh::{self, Discovery};
///
/// // Production-like: Kademlia may connect nodes the topology did not.
/// let builder = mesh::Builder::new(16).discovery(Discovery::Open);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Discovery {
    /// Nodes are connected only along the edges the test connects (the default). A
    /// lookup that needs a peer the topology did not connect fails as it would for an
    /// unreachable peer.
    #[default]
    Off,
    /// Behaviours may dial any peer they learn of, as production nodes do (Kademlia
    /// bootstrap from addresses, lookups across the network).
    Open,
}
