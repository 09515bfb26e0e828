//! A reference model of the marketplace: what each operation may and must return given
//! what was published and deleted, by whom, and which nodes are alive.
//!
//! Gossip and the DHT are eventually consistent, so most remote outcomes are "may": the
//! model pins down what a node must see of its own writes, what no node may ever see
//! (packages never published), and what a stopped node must answer.

use std::collections::{BTreeMap, BTreeSet};

use super::generators::{Operation, PACKAGE_NAMES};
use crate::{MarketplaceError, Package, PackageId, Version};

/// What an operation returned, as the model checks it.
#[derive(Debug)]
// A short-lived value per step of a test: boxing the package would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// `publish`, `delete`, or a mesh operation.
    Unit(Result<(), String>),
    /// `search`.
    Hits(Result<Vec<Package>, MarketplaceError>),
    /// `get_package_version`.
    Package(Result<Package, MarketplaceError>),
    /// `list_versions`.
    Versions(Result<Vec<Version>, MarketplaceError>),
    /// `exists`.
    Exists(Result<bool, MarketplaceError>),
    /// `bootstrap`.
    Bootstrap(Result<usize, MarketplaceError>),
    /// A registry call on a stopped node.
    Stopped(MarketplaceError),
}

impl Outcome {
    /// Whether the operation failed.
    pub fn is_err(&self) -> bool {
        match self {
            Outcome::Unit(r) => r.is_err(),
            Outcome::Hits(r) => r.is_err(),
            Outcome::Package(r) => r.is_err(),
            Outcome::Versions(r) => r.is_err(),
            Outcome::Exists(r) => r.is_err(),
            Outcome::Bootstrap(r) => r.is_err(),
            Outcome::Stopped(_) => true,
        }
    }
}

/// What the model requires of one outcome (for messages).
pub type Expectation = Result<(), String>;

#[derive(Debug, Default, Clone)]
struct NodeModel {
    alive: bool,
    /// Versions this node published itself, since its last restart.
    own: BTreeMap<PackageId, BTreeSet<Version>>,
    /// Packages this node deleted, with the step of the delete.
    deleted: BTreeMap<PackageId, usize>,
}

/// The reference model. Feed it every operation and its outcome, in order.
#[derive(Debug)]
pub struct Model {
    nodes: Vec<NodeModel>,
    /// Every version ever published.
    published: BTreeMap<PackageId, BTreeSet<Version>>,
    /// Step of the last publish and last delete of each id, by anyone.
    last_publish: BTreeMap<PackageId, usize>,
    last_delete: BTreeMap<PackageId, usize>,
    step: usize,
}

/// The package id and version an operation's indices name.
pub fn package_of(package: usize, minor: u64) -> Result<(PackageId, Version), MarketplaceError> {
    let id = PACKAGE_NAMES[package % PACKAGE_NAMES.len()].parse()?;
    Ok((id, Version::new(1, minor, 0)))
}

impl Model {
    /// A model of `nodes` live nodes with nothing published.
    pub fn new(nodes: usize) -> Self {
        Model {
            nodes: vec![
                NodeModel {
                    alive: true,
                    ..NodeModel::default()
                };
                nodes
            ],
            published: BTreeMap::new(),
            last_publish: BTreeMap::new(),
            last_delete: BTreeMap::new(),
            step: 0,
        }
    }

    /// Whether node `index` runs.
    pub fn alive(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|n| n.alive)
    }

    /// Whether `node` must still hold `id` in its local index: it published it itself
    /// since its last restart, and nobody deleted it since.
    fn must_hold(&self, node: usize, id: &PackageId) -> bool {
        let Some(model) = self.nodes.get(node) else {
            return false;
        };
        model.own.contains_key(id)
            && self
                .last_delete
                .get(id)
                .is_none_or(|&d| self.last_publish.get(id).is_some_and(|&p| p > d))
    }

    /// Whether `node` must not show `id`: it deleted it and nobody published it since.
    fn must_hide(&self, node: usize, id: &PackageId) -> bool {
        let Some(deleted_at) = self.nodes.get(node).and_then(|n| n.deleted.get(id)) else {
            return false;
        };
        self.last_publish.get(id).is_none_or(|&p| p < *deleted_at)
    }

    /// Checks `outcome` against what `operation` may and must return, then applies it.
    pub fn apply(&mut self, operation: &Operation, outcome: &Outcome) -> Expectation {
        self.step += 1;
        let step = self.step;
        let node = node_of(operation).map(|n| n % self.nodes.len().max(1));
        if let (Some(n), false) = (
            node,
            matches!(
                operation,
                Operation::Kill { .. } | Operation::Restart { .. } | Operation::Partition { .. }
            ),
        ) {
            if !self.alive(n) {
                return match outcome {
                    Outcome::Stopped(MarketplaceError::NodeStopped) => Ok(()),
                    other => Err(format!(
                        "node {n} is stopped, yet {operation:?} returned {other:?}"
                    )),
                };
            }
        }
        match (operation, outcome) {
            (Operation::Publish { package, minor, .. }, Outcome::Unit(result)) => {
                let n = node.unwrap_or(0);
                let (id, version) = package_of(*package, *minor).map_err(|e| e.to_string())?;
                if let Err(error) = result {
                    if !(error.contains("replication") || error.contains("timed out")) {
                        return Err(format!("publish failed unexpectedly: {error}"));
                    }
                }
                self.nodes[n]
                    .own
                    .entry(id.clone())
                    .or_default()
                    .insert(version.clone());
                self.nodes[n].deleted.remove(&id);
                self.published
                    .entry(id.clone())
                    .or_default()
                    .insert(version);
                self.last_publish.insert(id, step);
                Ok(())
            }
            (Operation::Search { query, .. }, Outcome::Hits(result)) => {
                let n = node.unwrap_or(0);
                let hits = result.as_ref().map_err(|e| format!("search failed: {e}"))?;
                for hit in hits {
                    let ever = self
                        .published
                        .get(&hit.id)
                        .is_some_and(|v| v.contains(&hit.version));
                    if !ever {
                        return Err(format!(
                            "search returned {}@{}, never published",
                            hit.id, hit.version
                        ));
                    }
                    if self.must_hide(n, &hit.id) {
                        return Err(format!(
                            "search on node {n} returned {}, which it deleted",
                            hit.id
                        ));
                    }
                }
                if let Some(limit) = query.limit {
                    if hits.len() > limit {
                        return Err(format!("{} hits over the limit of {limit}", hits.len()));
                    }
                }
                let ids: BTreeSet<&PackageId> = hits.iter().map(|h| &h.id).collect();
                if ids.len() != hits.len() {
                    return Err("duplicate packages in the results".to_owned());
                }
                if query.limit.is_none()
                    && query.offset.unwrap_or(0) == 0
                    && query.categories.is_empty()
                    && query.tags.is_empty()
                {
                    for (id, versions) in &self.nodes[n].own {
                        let latest = versions.iter().next_back();
                        let matches = latest.is_some_and(|v| {
                            crate::matches_text(
                                &Package::new(id.clone(), v.clone(), ""),
                                &query.text,
                            )
                        });
                        if matches && self.must_hold(n, id) && !ids.contains(id) {
                            return Err(format!(
                                "search {:?} on node {n} missed its own {id}",
                                query.text
                            ));
                        }
                    }
                }
                Ok(())
            }
            (Operation::Get { package, minor, .. }, Outcome::Package(result)) => {
                let n = node.unwrap_or(0);
                let (id, version) = package_of(*package, *minor).map_err(|e| e.to_string())?;
                match result {
                    Ok(found) if found.id != id || found.version != version => Err(format!(
                        "asked for {id}@{version}, got {}@{}",
                        found.id, found.version
                    )),
                    Ok(_) if self.must_hide(n, &id) => {
                        Err(format!("node {n} returned {id}, which it deleted"))
                    }
                    Err(error)
                        if self.must_hold(n, &id)
                            && self.nodes[n]
                                .own
                                .get(&id)
                                .is_some_and(|v| v.contains(&version)) =>
                    {
                        Err(format!("node {n} lost its own {id}@{version}: {error}"))
                    }
                    _ => Ok(()),
                }
            }
            (Operation::ListVersions { package, .. }, Outcome::Versions(result)) => {
                let n = node.unwrap_or(0);
                let (id, _) = package_of(*package, 0).map_err(|e| e.to_string())?;
                match result {
                    Ok(versions) => {
                        if self.must_hide(n, &id) {
                            return Err(format!(
                                "node {n} listed versions of {id}, which it deleted"
                            ));
                        }
                        let ever = self.published.get(&id).cloned().unwrap_or_default();
                        match versions.iter().find(|v| !ever.contains(v)) {
                            Some(v) => Err(format!("listed {id}@{v}, never published")),
                            None => Ok(()),
                        }
                    }
                    Err(error) if self.must_hold(n, &id) => {
                        Err(format!("node {n} cannot list its own {id}: {error}"))
                    }
                    Err(_) => Ok(()),
                }
            }
            (Operation::Exists { package, .. }, Outcome::Exists(result)) => {
                let n = node.unwrap_or(0);
                let (id, _) = package_of(*package, 0).map_err(|e| e.to_string())?;
                match result {
                    Ok(true) if self.must_hide(n, &id) => {
                        Err(format!("node {n} says {id} exists after deleting it"))
                    }
                    Ok(false) if self.must_hold(n, &id) => {
                        Err(format!("node {n} says its own {id} does not exist"))
                    }
                    _ => Ok(()),
                }
            }
            (Operation::Delete { package, .. }, Outcome::Unit(result)) => {
                let n = node.unwrap_or(0);
                let (id, _) = package_of(*package, 0).map_err(|e| e.to_string())?;
                if let Err(error) = result {
                    if !(error.contains("replication") || error.contains("timed out")) {
                        return Err(format!("delete failed unexpectedly: {error}"));
                    }
                }
                self.nodes[n].own.remove(&id);
                self.nodes[n].deleted.insert(id.clone(), step);
                self.last_delete.insert(id, step);
                Ok(())
            }
            (Operation::Bootstrap { .. }, Outcome::Bootstrap(_)) => Ok(()),
            (Operation::Kill { .. }, Outcome::Unit(result)) => {
                let n = node.unwrap_or(0);
                result.clone().map_err(|e| format!("kill failed: {e}"))?;
                self.nodes[n] = NodeModel::default();
                Ok(())
            }
            (Operation::Restart { .. }, Outcome::Unit(result)) => {
                let n = node.unwrap_or(0);
                result.clone().map_err(|e| format!("restart failed: {e}"))?;
                if !self.nodes[n].alive {
                    self.nodes[n] = NodeModel {
                        alive: true,
                        ..NodeModel::default()
                    };
                }
                Ok(())
            }
            (Operation::Partition { .. } | Operation::Heal, Outcome::Unit(result)) => result
                .clone()
                .map_err(|e| format!("{operation:?} failed: {e}")),
            (operation, outcome) => Err(format!("{operation:?} cannot produce {outcome:?}")),
        }
    }
}

/// The node an operation runs on, if any (before taking it modulo the mesh size).
pub fn node_of(operation: &Operation) -> Option<usize> {
    match operation {
        Operation::Publish { node, .. }
        | Operation::Search { node, .. }
        | Operation::Get { node, .. }
        | Operation::ListVersions { node, .. }
        | Operation::Exists { node, .. }
        | Operation::Delete { node, .. }
        | Operation::Bootstrap { node }
        | Operation::Kill { node }
        | Operation::Restart { node }
        | Operation::Partition { node } => Some(*node),
        Operation::Heal => None,
    }
}
