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
    /// Catch-up: "this is the digest of what I know; if yours differs, send me your
    /// index". See [`RegistryResponse::Index`].
    Sync {
        /// The asker's index digest: the sum of the FNV-1a hashes of its package versions
        /// and tombstones, so equal indexes have equal digests.
        digest: u64,
    },
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryResponse {
    /// Matching packages from the peer's local index.
    Hits(Vec<Package>),
    /// The request was refused (it was malformed); the reason.
    Rejected(String),
    /// The answer to a [`RegistryRequest::Sync`] whose digest equals the peer's own.
    InSync,
    /// The answer to a [`RegistryRequest::Sync`] whose digest differs: the peer's index,
    /// merged by the asker under the same last-writer-wins rules as announcements.
    Index {
        /// Every package version the peer holds, with the time its package was last
        /// published (newest first).
        packages: Vec<(Package, u64)>,
        /// Every deleted package the peer knows of, with the time of the delete.
        tombstones: Vec<(PackageId, u64)>,
        /// False when packages were left out to keep the answer under the response
        /// limit (the oldest ones).
        complete: bool,
    },
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

/// A digest of a node's index that two nodes holding the same package versions and
/// tombstones compute alike, whatever order they learned them in: the sum of each entry's
/// FNV-1a hash. Stable across builds and platforms (it crosses the wire).
pub(crate) fn index_digest<'a>(
    versions: impl IntoIterator<Item = (&'a PackageId, &'a Version)>,
    tombstones: impl IntoIterator<Item = (&'a PackageId, u64)>,
) -> u64 {
    /// FNV-1a over parts written in turn, each followed by a 0xff separator; ids and
    /// versions are written through `Display`, without a `String` each.
    struct Fnv1a(u64);
    impl Fnv1a {
        fn new() -> Self {
            Fnv1a(0xcbf2_9ce4_8422_2325)
        }
        fn bytes(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 ^= u64::from(*byte);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn part(mut self, part: impl std::fmt::Display) -> Self {
            // Writing into the hash cannot fail.
            let _ = std::fmt::Write::write_fmt(&mut self, format_args!("{part}"));
            self.bytes(&[0xff]);
            self
        }
    }
    impl std::fmt::Write for Fnv1a {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.bytes(text.as_bytes());
            Ok(())
        }
    }
    let versions = versions
        .into_iter()
        .map(|(id, version)| Fnv1a::new().part("v").part(id).part(version).0);
    let tombstones = tombstones.into_iter().map(|(id, at)| {
        let mut hash = Fnv1a::new().part("d").part(id);
        hash.bytes(&at.to_be_bytes());
        hash.bytes(&[0xff]);
        hash.0
    });
    versions.chain(tombstones).fold(0, u64::wrapping_add)
}
