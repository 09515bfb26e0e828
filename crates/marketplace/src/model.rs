//! Packages, versions, queries — validated on construction, so bad input is a typed error
//! before anything is stored or sent.

use std::cmp::Ordering;
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

/// A semantic version `major.minor.patch[-pre_release]`; a pre-release sorts before its
/// release.
///
/// ```
/// use p2p_otel_marketplace::Version;
/// let beta: Version = "1.2.0-beta.1".parse().unwrap();
/// let release: Version = "1.2.0".parse().unwrap();
/// assert!(beta < release);
/// assert!("1.2".parse::<Version>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release label, e.g. `beta.1`.
    pub pre_release: Option<String>,
}

impl Version {
    /// A release version.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            pre_release: None,
        }
    }
}

impl FromStr for Version {
    type Err = MarketplaceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || MarketplaceError::InvalidVersion(text.to_owned());
        let (core, pre_release) = match text.split_once('-') {
            Some((core, pre)) => {
                let valid = !pre.is_empty()
                    && pre.len() <= MAX_SEGMENT
                    && pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
                if !valid {
                    return Err(invalid());
                }
                (core, Some(pre.to_owned()))
            }
            None => (text, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(invalid());
        };
        let number = |part: &str| -> Result<u64, MarketplaceError> {
            if part.is_empty() || (part.len() > 1 && part.starts_with('0')) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
            pre_release,
        })
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
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre_release {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre_release, &other.pre_release) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
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
