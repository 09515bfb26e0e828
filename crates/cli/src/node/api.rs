//! The control API's request bodies, typed once: the node's server decodes them and the
//! drivers (the validation's process network and testnet) encode them, so a renamed
//! field breaks the build rather than a run. A field a request may leave out decodes to
//! its default when absent, and an unset optional field is not sent.

use serde::{Deserialize, Serialize};

use p2p_otel_marketplace::{NodeCondition, Package, PackageMetadata, Query};

/// `POST /wait`: lower bounds on the node's state, answered once they hold.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wait {
    #[serde(default)]
    pub(crate) connected_peers: usize,
    #[serde(default)]
    pub(crate) packages: usize,
    #[serde(default)]
    pub(crate) topic_peers: usize,
    #[serde(default)]
    pub(crate) mesh_peers: usize,
    #[serde(default)]
    pub(crate) routing_peers: usize,
    #[serde(default)]
    pub(crate) connected_to: Vec<String>,
    pub(crate) timeout_ms: u64,
}

/// `POST /bootstrap`, `/block`, `/unblock`: multiaddrs or peer ids.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Peers {
    pub(crate) peers: Vec<String>,
}

/// `POST /publish`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    pub(crate) id: String,
    pub(crate) version: String,
    /// Sets `metadata.title` (and is all most callers give).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<PackageMetadata>,
    #[serde(default)]
    pub(crate) dependencies: Vec<(String, String)>,
}

/// `POST /search`: a query.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    #[serde(default)]
    pub(crate) text: String,
    #[serde(default)]
    pub(crate) categories: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) offset: Option<usize>,
}

/// `POST /list_versions`, `/exists`, `/delete`: a package.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Id {
    pub(crate) id: String,
}

/// `POST /get`: a package version.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdVersion {
    pub(crate) id: String,
    pub(crate) version: String,
}

impl Wait {
    /// The condition, waited for up to `timeout_ms`.
    pub(crate) fn new(condition: &NodeCondition, timeout_ms: u64) -> Self {
        Wait {
            connected_peers: condition.connected_peers,
            packages: condition.packages,
            topic_peers: condition.topic_peers,
            mesh_peers: condition.mesh_peers,
            routing_peers: condition.routing_peers,
            connected_to: condition
                .connected_to
                .iter()
                .map(ToString::to_string)
                .collect(),
            timeout_ms,
        }
    }
}

impl From<&Package> for Publish {
    fn from(package: &Package) -> Self {
        Publish {
            id: package.id.to_string(),
            version: package.version.to_string(),
            title: None,
            metadata: Some(package.metadata.clone()),
            dependencies: package
                .dependencies
                .iter()
                .map(|(id, requirement)| (id.to_string(), requirement.clone()))
                .collect(),
        }
    }
}

impl From<&Query> for Search {
    fn from(query: &Query) -> Self {
        Search {
            text: query.text.clone(),
            categories: query.categories.clone(),
            tags: query.tags.clone(),
            limit: query.limit,
            offset: query.offset,
        }
    }
}
