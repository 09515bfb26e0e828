//! The mesh's errors: every network wait ends in one of these, never a hang.

use std::sync::Arc;

use libp2p::PeerId;

use crate::store::WaitError;

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
    /// A simulation's thread or runtime could not be started ([`simulate`](super::simulate)).
    #[error("the simulation's thread or runtime could not be started")]
    Simulation(#[source] Cause),
}
