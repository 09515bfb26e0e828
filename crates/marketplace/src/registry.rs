//! The `Registry` trait every marketplace backend implements, and the in-memory one.

use std::sync::Mutex;

use super::index::LocalIndex;
use super::{MarketplaceError, Package, PackageId, PackageMetadata, Query, Version};

/// A package registry. Every method is async and every failure a [`MarketplaceError`].
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// Packages matching `query`, ranked, with its offset and limit applied.
    async fn search(&self, query: &Query) -> Result<Vec<Package>, MarketplaceError>;
    /// The latest version of a package.
    async fn get_package(&self, id: &PackageId) -> Result<Package, MarketplaceError>;
    /// One version of a package.
    async fn get_package_version(
        &self,
        id: &PackageId,
        version: &Version,
    ) -> Result<Package, MarketplaceError>;
    /// Every version of a package, ascending.
    async fn list_versions(&self, id: &PackageId) -> Result<Vec<Version>, MarketplaceError>;
    /// Publishes one version.
    async fn publish(&self, package: Package) -> Result<(), MarketplaceError>;
    /// Deletes every version of a package.
    async fn delete(&self, id: &PackageId) -> Result<(), MarketplaceError>;
    /// Whether any version of a package exists.
    async fn exists(&self, id: &PackageId) -> Result<bool, MarketplaceError>;
    /// The latest version's metadata.
    async fn metadata(&self, id: &PackageId) -> Result<PackageMetadata, MarketplaceError> {
        Ok(self.get_package(id).await?.metadata)
    }
}

/// A package's encoded (JSON) size.
pub(crate) fn encoded_size(package: &Package) -> Result<usize, MarketplaceError> {
    serde_json::to_vec(package)
        .map(|json| json.len())
        .map_err(|e| MarketplaceError::Malformed(e.to_string()))
}

/// Checks a package's encoded size against `limit`.
pub(crate) fn check_size(package: &Package, limit: usize) -> Result<(), MarketplaceError> {
    let size = encoded_size(package)?;
    if size > limit {
        return Err(MarketplaceError::PackageTooLarge { size, limit });
    }
    Ok(())
}

/// An in-memory registry, for tests and as the reference behaviour of `P2PRegistry`.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), p2p_otel_marketplace::MarketplaceError> {
/// use p2p_otel_marketplace::{LocalRegistry, Package, Query, Registry};
/// let registry = LocalRegistry::default();
/// registry.publish(Package::new("acme/tool".parse()?, "1.0.0".parse()?, "A tool")).await?;
/// assert_eq!(registry.search(&Query::text("tool")).await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalRegistry {
    index: Mutex<LocalIndex>,
    max_package_bytes: usize,
}

impl Default for LocalRegistry {
    fn default() -> Self {
        LocalRegistry {
            index: Mutex::new(LocalIndex::default()),
            max_package_bytes: super::DEFAULT_MAX_PACKAGE_BYTES,
        }
    }
}

impl LocalRegistry {
    fn index(&self) -> std::sync::MutexGuard<'_, LocalIndex> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Registry for LocalRegistry {
    async fn search(&self, query: &Query) -> Result<Vec<Package>, MarketplaceError> {
        Ok(self.index().search(query))
    }

    async fn get_package(&self, id: &PackageId) -> Result<Package, MarketplaceError> {
        self.index()
            .latest(id)
            .cloned()
            .ok_or_else(|| MarketplaceError::NotFound(id.to_string()))
    }

    async fn get_package_version(
        &self,
        id: &PackageId,
        version: &Version,
    ) -> Result<Package, MarketplaceError> {
        self.index()
            .get(id, version)
            .cloned()
            .ok_or_else(|| MarketplaceError::NotFound(format!("{id}@{version}")))
    }

    async fn list_versions(&self, id: &PackageId) -> Result<Vec<Version>, MarketplaceError> {
        let versions = self.index().versions(id);
        if versions.is_empty() {
            return Err(MarketplaceError::NotFound(id.to_string()));
        }
        Ok(versions)
    }

    async fn publish(&self, package: Package) -> Result<(), MarketplaceError> {
        check_size(&package, self.max_package_bytes)?;
        self.index().insert(package);
        Ok(())
    }

    async fn delete(&self, id: &PackageId) -> Result<(), MarketplaceError> {
        if self.index().remove(id) {
            Ok(())
        } else {
            Err(MarketplaceError::NotFound(id.to_string()))
        }
    }

    async fn exists(&self, id: &PackageId) -> Result<bool, MarketplaceError> {
        Ok(self.index().contains(id))
    }
}
