//! Packages, versions, queries — validated on construction, so bad input is a typed error
//! before anything is stored or sent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MarketplaceError;

/// The longest namespace or name accepted.
const MAX_SEGMENT: usize = 64;

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && segment
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A package identity, `namespace/name`: each part 1–64 characters of `a-z`, `0-9`, `-`,
/// `_`, starting with a letter or digit.
///
/// ```
/// use p2p_otel_marketplace::PackageId;
/// let id: PackageId = "acme/http-client".parse().unwrap();
/// assert_eq!(id.to_string(), "acme/http-client");
/// assert!("Acme/x".parse::<PackageId>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageId {
    namespace: String,
    name: String,
}

impl PackageId {
    /// Validates and builds an id.
    pub fn new(namespace: &str, name: &str) -> Result<Self, MarketplaceError> {
        if !valid_segment(namespace) || !valid_segment(name) {
            return Err(MarketplaceError::InvalidPackageId(format!(
                "{namespace}/{name}"
            )));
        }
        Ok(PackageId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for PackageId {
    type Err = MarketplaceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = text
            .split_once('/')
            .ok_or_else(|| MarketplaceError::InvalidPackageId(text.to_owned()))?;
        PackageId::new(namespace, name)
    }
}

impl TryFrom<String> for PackageId {
    type Error = MarketplaceError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<PackageId> for String {
    fn from(id: PackageId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A semantic version, `major.minor.patch[-pre-release][+build]`, parsed and ordered by the
/// `semver` crate: by SemVer 2.0.0's precedence (§11: a pre-release sorts before its
/// release, numeric pre-release identifiers compare as numbers, `beta.2 < beta.10`), and,
/// where precedence ties, by build metadata — so `1.0.0+a` and `1.0.0+b` are two versions
/// everywhere (index, digests, equality), never one key holding the other's package.
///
/// ```
/// use p2p_otel_marketplace::Version;
/// let beta: Version = "1.2.0-beta.2".parse().unwrap();
/// let later_beta: Version = "1.2.0-beta.10".parse().unwrap();
/// let release: Version = "1.2.0".parse().unwrap();
/// assert!(beta < later_beta && later_beta < release);
/// let built: Version = "1.2.0+build.7".parse().unwrap();
/// assert_ne!(built, release);
/// assert_eq!(built.as_semver().cmp_precedence(release.as_semver()), std::cmp::Ordering::Equal);
/// assert_eq!(built.to_string(), "1.2.0+build.7");
/// assert!("1.2".parse::<Version>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(semver::Version);

/// The longest version string accepted (a bound for what a peer can make a node store).
const MAX_VERSION_LEN: usize = 128;

impl Version {
    /// A release version.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version(semver::Version::new(major, minor, patch))
    }

    /// The same version with a pre-release label such as `beta.1`; `None` if the label is
    /// empty, not a valid SemVer pre-release, or makes the version longer than a peer
    /// accepts.
    pub fn with_pre_release(mut self, label: &str) -> Option<Self> {
        if label.is_empty() {
            return None;
        }
        self.0.pre = semver::Prerelease::new(label).ok()?;
        (self.0.to_string().len() <= MAX_VERSION_LEN).then_some(self)
    }

    /// The `semver` crate's form: major, minor, patch, pre-release and build metadata.
    pub fn as_semver(&self) -> &semver::Version {
        &self.0
    }
}

impl From<semver::Version> for Version {
    fn from(version: semver::Version) -> Self {
        Version(version)
    }
}

impl FromStr for Version {
    type Err = MarketplaceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_VERSION_LEN {
            return Err(MarketplaceError::InvalidVersion(text.to_owned()));
        }
        semver::Version::parse(text)
            .map(Version)
            .map_err(|_| MarketplaceError::InvalidVersion(text.to_owned()))
    }
}

impl TryFrom<String> for Version {
    type Error = MarketplaceError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Version> for String {
    fn from(version: Version) -> Self {
        version.to_string()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Descriptive metadata of a package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// A short title.
    pub title: String,
    /// A longer description.
    pub description: String,
    /// Categories such as `networking`.
    pub categories: Vec<String>,
    /// Tags such as `http`.
    pub tags: Vec<String>,
    /// SPDX license expression.
    pub license: String,
    /// Authors.
    pub authors: Vec<String>,
}

/// One version of a package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its identity.
    pub id: PackageId,
    /// Its version.
    pub version: Version,
    /// Its metadata.
    pub metadata: PackageMetadata,
    /// Dependencies: package and version requirement text.
    pub dependencies: Vec<(PackageId, String)>,
}

impl Package {
    /// A package with metadata `title` and nothing else.
    pub fn new(id: PackageId, version: Version, title: impl Into<String>) -> Self {
        Package {
            id,
            version,
            metadata: PackageMetadata {
                title: title.into(),
                ..PackageMetadata::default()
            },
            dependencies: Vec::new(),
        }
    }
}

/// A search query. `limit` and `offset` apply after ranking and merging.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Query {
    /// Free text: matched against names, titles, descriptions, tags and categories.
    pub text: String,
    /// Only packages in every one of these categories.
    pub categories: Vec<String>,
    /// Only packages with every one of these tags.
    pub tags: Vec<String>,
    /// At most this many results.
    pub limit: Option<usize>,
    /// Skip this many results first.
    pub offset: Option<usize>,
}

impl Query {
    /// A query for `text` with no filters, limit or offset.
    pub fn text(text: impl Into<String>) -> Self {
        Query {
            text: text.into(),
            ..Query::default()
        }
    }
}
