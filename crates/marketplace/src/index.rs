//! The local package store and its search: ranking, filters, offset and limit.

use std::collections::BTreeMap;

use super::{Package, PackageId, Query, Version};

/// How well a package matches a query's text: exact name > name prefix > title >
/// description > tag > category. `None` when it does not match.
pub(crate) fn rank(package: &Package, text: &str) -> Option<u32> {
    let text = text.trim().to_lowercase();
    if text.is_empty() {
        return Some(1);
    }
    let name = package.id.name();
    let full = package.id.to_string();
    let metadata = &package.metadata;
    let contains = |haystack: &str| haystack.to_lowercase().contains(&text);
    let equals = |items: &[String]| items.iter().any(|item| item.eq_ignore_ascii_case(&text));
    if name == text || full == text {
        Some(100)
    } else if name.starts_with(&text) || full.starts_with(&text) {
        Some(75)
    } else if contains(&metadata.title) {
        Some(50)
    } else if contains(&metadata.description) {
        Some(40)
    } else if equals(&metadata.tags) {
        Some(30)
    } else if equals(&metadata.categories) {
        Some(20)
    } else {
        None
    }
}

fn passes_filters(package: &Package, query: &Query) -> bool {
    let has_all = |wanted: &[String], present: &[String]| {
        wanted
            .iter()
            .all(|w| present.iter().any(|p| p.eq_ignore_ascii_case(w)))
    };
    has_all(&query.categories, &package.metadata.categories)
        && has_all(&query.tags, &package.metadata.tags)
}

/// Ranks the latest version of each package against `query`, best first (ties by id),
/// then applies `offset` and `limit`. Used on local results and on merged remote ones.
pub(crate) fn rank_all(
    candidates: impl IntoIterator<Item = Package>,
    query: &Query,
) -> Vec<Package> {
    let mut latest: BTreeMap<PackageId, Package> = BTreeMap::new();
    for package in candidates {
        match latest.get(&package.id) {
            Some(existing) if existing.version >= package.version => {}
            _ => {
                latest.insert(package.id.clone(), package);
            }
        }
    }
    let mut ranked: Vec<(u32, Package)> = latest
        .into_values()
        .filter(|p| passes_filters(p, query))
        .filter_map(|p| rank(&p, &query.text).map(|score| (score, p)))
        .collect();
    ranked.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then_with(|| a.id.cmp(&b.id)));
    ranked
        .into_iter()
        .map(|(_, p)| p)
        .skip(query.offset.unwrap_or(0))
        .take(query.limit.unwrap_or(usize::MAX))
        .collect()
}

/// Packages by id and version.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalIndex {
    packages: BTreeMap<PackageId, BTreeMap<Version, Package>>,
}

impl LocalIndex {
    pub(crate) fn insert(&mut self, package: Package) {
        self.packages
            .entry(package.id.clone())
            .or_default()
            .insert(package.version.clone(), package);
    }

    pub(crate) fn remove(&mut self, id: &PackageId) -> bool {
        self.packages.remove(id).is_some()
    }

    pub(crate) fn get(&self, id: &PackageId, version: &Version) -> Option<&Package> {
        self.packages.get(id)?.get(version)
    }

    pub(crate) fn latest(&self, id: &PackageId) -> Option<&Package> {
        self.packages.get(id)?.values().next_back()
    }

    pub(crate) fn versions(&self, id: &PackageId) -> Vec<Version> {
        self.packages
            .get(id)
            .map(|versions| versions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every stored version of every package.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Package> {
        self.packages.values().flat_map(BTreeMap::values)
    }

    pub(crate) fn contains(&self, id: &PackageId) -> bool {
        self.packages.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.packages.len()
    }

    /// Every stored version matching the query's text and filters (no offset/limit).
    pub(crate) fn candidates(&self, query: &Query) -> Vec<Package> {
        self.packages
            .values()
            .filter_map(|versions| versions.values().next_back())
            .filter(|p| passes_filters(p, query) && rank(p, &query.text).is_some())
            .cloned()
            .collect()
    }

    pub(crate) fn search(&self, query: &Query) -> Vec<Package> {
        rank_all(self.candidates(query), query)
    }
}
