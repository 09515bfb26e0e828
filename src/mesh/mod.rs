//! N libp2p nodes inside one test process — on the memory transport, or on TCP and QUIC
//! with feature `network` — each `Swarm` owned by its own task, with topologies,
//! partitions, kills and restarts, and honest waits.
//!
//! A node is any [`NetworkBehaviour`](libp2p::swarm::NetworkBehaviour) plus the logic that
//! drives it (a [`Node`]): the mesh runs one event loop per node that `select!`s over swarm
//! events, commands and the logic's next deadline — message passing, never a lock around
//! the swarm. Every node also gets libp2p's block list, which is how partitions are made
//! and healed, and its allow list, which holds a node to the edges the test connects
//! unless the mesh was built with [`Discovery::Open`].
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

// The mesh, by file:
// - logic.rs: the `Node` trait (the logic driving a behaviour), `Passive`, `NodeContext`,
//   `NodeState`.
// - builder.rs: `Builder`, the configuration, and `start`.
// - running.rs: `Mesh` and its node slots, `NodeHandle`, accessors, a node's start.
// - connections.rs: edges, topologies, peer lists, blocks.
// - faults.rs: partitions, healing, kills, restarts.
// - waits.rs: `wait_until` over every node's state, node-naming render settings.
// - event_loop.rs: one node's task, the only owner of its `Swarm`.
// - behaviour.rs, transport.rs, discovery.rs, topology.rs: the behaviour every node wraps,
//   transports and keys, the discovery setting, topologies.
// - error.rs: `MeshError`.
// - simulation.rs: `simulate`, a run on a thread and paused runtime of its own;
//   entropy.rs: that thread's randomness from the seed (glibc's `getrandom`, defined here).

mod behaviour;
mod builder;
mod connections;
mod discovery;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod entropy;
mod error;
mod event_loop;
mod faults;
mod latency;
mod link;
mod logic;
mod running;
mod simulation;
mod topology;
mod transport;
mod waits;

pub use behaviour::{MeshBehaviour, MeshBehaviourEvent};
pub use builder::Builder;
pub use discovery::Discovery;
pub(crate) use error::cause;
pub use error::{Cause, MeshError};
pub use link::{Link, LinkStats};
pub use logic::{spawn, Node, NodeContext, NodeEvent, NodeState, NodeSwarm, Passive};
pub use running::{Mesh, NodeHandle};
pub use simulation::simulate;
pub use topology::Topology;
pub use transport::Security;
