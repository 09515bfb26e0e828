//! `P2PRegistry`: the handle applications hold. `Clone + Send + Sync`; each method sends a
//! command with a `oneshot` reply to the node's task and awaits it, bounded in time.

use std::time::Duration;

use tokio::sync::oneshot;

use super::node::{Command, Op};
use super::{MarketplaceError, NodeStats, Package, PackageId, Query, Registry, Version};
use p2p_otel_testkit::mesh::NodeHandle;

/// A handle to one marketplace node running in a mesh.
///
/// ```
/// fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
/// assert_shareable::<p2p_otel_marketplace::P2PRegistry>();
/// ```
#[derive(Debug, Clone)]
pub struct P2PRegistry {
    node: NodeHandle<Command>,
    /// The longest a call waits for its node: the node's own network timeouts plus slack,
    /// so a wedged node is a typed error, not a hang.
    call_timeout: Duration,
}

// The handle is shared across tasks and threads: prove it at compile time.
const _: fn() = || {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<P2PRegistry>();
};

impl P2PRegistry {
    /// A handle to `node`; `call_timeout` bounds every call.
    pub fn new(node: NodeHandle<Command>, call_timeout: Duration) -> Self {
        P2PRegistry { node, call_timeout }
    }

    async fn call<T>(
        &self,
        operation: &str,
        make: impl FnOnce(oneshot::Sender<Result<T, MarketplaceError>>) -> Op,
    ) -> Result<T, MarketplaceError> {
        let (reply, answer) = oneshot::channel();
        self.node
            .send(Command(make(reply)))
            .await
            .map_err(|_| MarketplaceError::NodeStopped)?;
        match tokio::time::timeout(self.call_timeout, answer).await {
            Ok(Ok(result)) => result,
            // The node dropped the reply: it stopped while working on the call.
            Ok(Err(_)) => Err(MarketplaceError::NodeStopped),
            Err(_) => Err(MarketplaceError::Timeout {
                operation: operation.to_owned(),
                after: self.call_timeout,
            }),
        }
    }

    /// Dials the configured bootstrap peers under their own peer ids, runs a Kademlia
    /// bootstrap and returns how many peers the node is connected to.
    pub async fn bootstrap(&self) -> Result<usize, MarketplaceError> {
        self.call("bootstrap", |reply| Op::Bootstrap(None, reply))
            .await
    }

    /// Like [`bootstrap`](Self::bootstrap), from the given peers instead of the configured
    /// ones (addresses on the memory transport are only known once nodes listen).
    pub async fn bootstrap_from(
        &self,
        peers: Vec<(libp2p::PeerId, libp2p::Multiaddr)>,
    ) -> Result<usize, MarketplaceError> {
        self.call("bootstrap", |reply| Op::Bootstrap(Some(peers), reply))
            .await
    }

    /// The node's counters: connections, packages, cache hits and misses, malformed
    /// messages, per-peer reputation.
    pub async fn stats(&self) -> Result<NodeStats, MarketplaceError> {
        let (reply, answer) = oneshot::channel();
        self.node
            .send(Command(Op::Stats(reply)))
            .await
            .map_err(|_| MarketplaceError::NodeStopped)?;
        tokio::time::timeout(self.call_timeout, answer)
            .await
            .map_err(|_| MarketplaceError::Timeout {
                operation: "stats".to_owned(),
                after: self.call_timeout,
            })?
            .map_err(|_| MarketplaceError::NodeStopped)
    }
}

#[async_trait::async_trait]
impl Registry for P2PRegistry {
    async fn search(&self, query: &Query) -> Result<Vec<Package>, MarketplaceError> {
        let query = query.clone();
        self.call("search", |reply| Op::Search(query, reply)).await
    }

    async fn get_package(&self, id: &PackageId) -> Result<Package, MarketplaceError> {
        let versions = self.list_versions(id).await?;
        let latest = versions
            .last()
            .ok_or_else(|| MarketplaceError::NotFound(id.to_string()))?;
        self.get_package_version(id, latest).await
    }

    async fn get_package_version(
        &self,
        id: &PackageId,
        version: &Version,
    ) -> Result<Package, MarketplaceError> {
        let (id, version) = (id.clone(), version.clone());
        self.call("get_package_version", |reply| Op::Get(id, version, reply))
            .await
    }

    async fn list_versions(&self, id: &PackageId) -> Result<Vec<Version>, MarketplaceError> {
        let id = id.clone();
        self.call("list_versions", |reply| Op::ListVersions(id, reply))
            .await
    }

    async fn publish(&self, package: Package) -> Result<(), MarketplaceError> {
        self.call("publish", |reply| Op::Publish(package, reply))
            .await
    }

    async fn delete(&self, id: &PackageId) -> Result<(), MarketplaceError> {
        let id = id.clone();
        self.call("delete", |reply| Op::Delete(id, reply)).await
    }

    async fn exists(&self, id: &PackageId) -> Result<bool, MarketplaceError> {
        let id = id.clone();
        self.call("exists", |reply| Op::Exists(id, reply)).await
    }
}
