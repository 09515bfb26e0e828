//! Strategies for valid and invalid marketplace inputs and operation sequences.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::{Package, PackageId, PackageMetadata, Query, Version};

/// Names sequences draw packages from: few enough that operations collide on purpose.
pub const PACKAGE_NAMES: [&str; 4] = ["acme/tool", "acme/toolkit", "net/http", "net/kit"];

/// A valid id segment: 1–12 characters of `[a-z0-9_-]`, starting alphanumeric.
fn arb_segment() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,11}"
}

/// Valid package ids.
pub fn arb_package_id() -> impl Strategy<Value = PackageId> {
    (arb_segment(), arb_segment())
        .prop_filter_map("valid id", |(ns, name)| PackageId::new(&ns, &name).ok())
}

/// Strings that are not valid package ids: no slash, empty parts, upper case, bad
/// characters, too long.
pub fn arb_invalid_package_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "/[a-z]{1,8}",
        "[a-z]{1,8}/",
        "[A-Z][a-z]{0,6}/[a-z]{1,6}",
        "[a-z]{1,6}/[a-z]{0,3}[ @!.][a-z]{0,3}",
        "[a-z]{65,70}/[a-z]{1,3}",
        "-[a-z]{1,6}/[a-z]{1,6}",
        "[a-z]{1,4}/[a-z]{1,4}/[a-z]{1,4}",
    ]
}

/// Valid versions, with and without a pre-release.
pub fn arb_version() -> impl Strategy<Value = Version> {
    (
        0u64..5,
        0u64..20,
        0u64..20,
        proptest::option::of("[a-z]{1,5}(\\.[0-9])?"),
    )
        .prop_map(|(major, minor, patch, pre_release)| {
            let release = Version::new(major, minor, patch);
            match pre_release {
                // The pattern only makes valid labels.
                Some(label) => release.clone().with_pre_release(&label).unwrap_or(release),
                None => release,
            }
        })
}

/// Strings that are not valid versions.
pub fn arb_invalid_version() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,3}",
        "[0-9]{1,3}\\.[0-9]{1,3}",
        "[0-9]\\.[0-9]\\.[0-9]\\.[0-9]",
        "0[0-9]\\.1\\.2",
        "[0-9]\\.[a-z]\\.[0-9]",
        "1\\.2\\.3-",
        "1\\.2\\.3-[@!#]",
    ]
}

/// Valid packages with metadata.
pub fn arb_package() -> impl Strategy<Value = Package> {
    (
        arb_package_id(),
        arb_version(),
        "[a-zA-Z ]{0,20}",
        "[a-zA-Z ]{0,40}",
        vec("[a-z]{1,8}", 0..3),
        vec("[a-z]{1,8}", 0..3),
    )
        .prop_map(
            |(id, version, title, description, categories, tags)| Package {
                id,
                version,
                metadata: PackageMetadata {
                    title,
                    description,
                    categories,
                    tags,
                    license: "MIT".to_owned(),
                    authors: Vec::new(),
                },
                dependencies: Vec::new(),
            },
        )
}

/// Queries over the names sequences use, with filters, limits and offsets.
pub fn arb_query() -> impl Strategy<Value = Query> {
    (
        prop_oneof![
            Just(String::new()),
            Just("tool".to_owned()),
            Just("net".to_owned()),
            Just("acme/tool".to_owned()),
            "[a-z]{1,4}"
        ],
        proptest::option::of(1usize..5),
        proptest::option::of(0usize..3),
    )
        .prop_map(|(text, limit, offset)| Query {
            text,
            limit,
            offset,
            ..Query::default()
        })
}

/// One step of a sequence over an N-node mesh. Node indices are taken modulo the mesh
/// size when run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `publish` a version of one of [`PACKAGE_NAMES`].
    Publish {
        /// The node.
        node: usize,
        /// Index into [`PACKAGE_NAMES`].
        package: usize,
        /// Minor version.
        minor: u64,
    },
    /// `search`.
    Search {
        /// The node.
        node: usize,
        /// The query.
        query: Query,
    },
    /// `get_package_version`.
    Get {
        /// The node.
        node: usize,
        /// Index into [`PACKAGE_NAMES`].
        package: usize,
        /// Minor version.
        minor: u64,
    },
    /// `list_versions`.
    ListVersions {
        /// The node.
        node: usize,
        /// Index into [`PACKAGE_NAMES`].
        package: usize,
    },
    /// `exists`.
    Exists {
        /// The node.
        node: usize,
        /// Index into [`PACKAGE_NAMES`].
        package: usize,
    },
    /// `delete`.
    Delete {
        /// The node.
        node: usize,
        /// Index into [`PACKAGE_NAMES`].
        package: usize,
    },
    /// `bootstrap` from every other node.
    Bootstrap {
        /// The node.
        node: usize,
    },
    /// Kill a node.
    Kill {
        /// The node.
        node: usize,
    },
    /// Restart a killed node.
    Restart {
        /// The node.
        node: usize,
    },
    /// Cut one node off from the others.
    Partition {
        /// The node isolated.
        node: usize,
    },
    /// Lift every partition.
    Heal,
}

/// Operation sequences of `1..=max_len` steps over `nodes` nodes; data operations
/// dominate, faults are rarer.
pub fn arb_operations(nodes: usize, max_len: usize) -> impl Strategy<Value = Vec<Operation>> {
    let node = 0..nodes;
    let package = 0..PACKAGE_NAMES.len();
    let operation = prop_oneof![
        4 => (node.clone(), package.clone(), 0u64..3).prop_map(|(node, package, minor)| Operation::Publish { node, package, minor }),
        4 => (node.clone(), arb_query()).prop_map(|(node, query)| Operation::Search { node, query }),
        2 => (node.clone(), package.clone(), 0u64..3).prop_map(|(node, package, minor)| Operation::Get { node, package, minor }),
        2 => (node.clone(), package.clone()).prop_map(|(node, package)| Operation::ListVersions { node, package }),
        2 => (node.clone(), package.clone()).prop_map(|(node, package)| Operation::Exists { node, package }),
        2 => (node.clone(), package).prop_map(|(node, package)| Operation::Delete { node, package }),
        1 => node.clone().prop_map(|node| Operation::Bootstrap { node }),
        1 => node.clone().prop_map(|node| Operation::Kill { node }),
        1 => node.clone().prop_map(|node| Operation::Restart { node }),
        1 => node.prop_map(|node| Operation::Partition { node }),
        1 => Just(Operation::Heal),
    ];
    vec(operation, 1..=max_len)
}
