//! What marketplace nodes say to each other: request-response messages (CBOR), gossip
//! announcements and DHT records (JSON), and the DHT keys.

use libp2p::kad::RecordKey;
use serde::{Deserialize, Serialize};

use super::instrumentation::TraceContext;
use super::{Package, PackageId, Query, Version};

/// The request-response protocol name.
pub const REGISTRY_PROTOCOL: &str = "/ggen/registry/1";

/// The Kademlia protocol name the nodes speak.
pub const KAD_PROTOCOL: &str = "/ggen/kad/1.0.0";

/// The gossipsub topic packages are announced on.
pub const PACKAGES_TOPIC: &str = "/ggen/packages/v1";

/// A request to another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryRequest {
    /// Search the peer's local index; `trace` is the caller's W3C trace context.
    Search {
        /// The query.
        query: Query,
        /// `traceparent` / `tracestate` of the caller's request span.
        trace: TraceContext,
    },
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryResponse {
    /// Matching packages from the peer's local index.
    Hits(Vec<Package>),
    /// The request was refused (it was malformed); the reason.
    Rejected(String),
}

/// A gossipsub message on the packages topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announcement {
    /// A version was published.
    Published {
        /// The package.
        package: Box<Package>,
        /// `traceparent` / `tracestate` of the announcing span.
        trace: TraceContext,
        /// When it was issued, microseconds since the Unix epoch on the publisher's
        /// hybrid clock: orders it against deletes (last writer wins) and gives
        /// `propagation_ms`.
        issued_at: u64,
    },
    /// A package was deleted.
    Deleted {
        /// The package.
        id: PackageId,
        /// `traceparent` / `tracestate` of the announcing span.
        trace: TraceContext,
        /// When it was issued, as for `Published`: a delete removes only what was
        /// published before it.
        issued_at: u64,
    },
}

/// The DHT index record of a package: its versions, or a tombstone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRecord {
    /// Versions published.
    pub versions: Vec<Version>,
    /// Set once the package is deleted.
    pub deleted: bool,
}

/// One DHT record per version: the key includes the version.
pub(crate) fn version_key(id: &PackageId, version: &Version) -> RecordKey {
    RecordKey::new(&format!("/ggen/pkg/{id}/{version}"))
}

/// The index record listing a package's versions.
pub(crate) fn index_key(id: &PackageId) -> RecordKey {
    RecordKey::new(&format!("/ggen/index/{id}"))
}
