//! What the README claims about the crate, checked against the crate: the feature table's
//! dependency counts (from `cargo tree`), and the default build staying light.

use std::collections::BTreeSet;
use std::process::Command;

/// The unique crates of the kit's normal dependency tree with `features` (cargo tree's
/// arguments), the kit included.
fn tree(features: &[&str]) -> BTreeSet<String> {
    tree_of("normal", features)
}

/// The same over the dependency kinds `edges` (`normal,build` adds build scripts' own).
fn tree_of(edges: &str, features: &[&str]) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            edges,
            "--prefix",
            "none",
        ])
        .args(["--manifest-path", manifest, "-p", "p2p-otel-testkit"])
        .args(features)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim_end_matches(" (*)")
                .trim_end_matches(" (proc-macro)")
                .to_owned()
        })
        .collect()
}

/// The README's feature table: each row's first cell names the features, the last one the
/// crate count.
const ROWS: [(&str, &[&str]); 6] = [
    ("| (none) |", &["--no-default-features"]),
    ("| `mesh` |", &["--no-default-features", "-F", "mesh"]),
    (
        "| `proptest` |",
        &["--no-default-features", "-F", "proptest"],
    ),
    ("| `noise` |", &["--no-default-features", "-F", "noise"]),
    ("| `network` |", &["--no-default-features", "-F", "network"]),
    ("| default |", &[]),
];

#[test]
fn the_feature_table_counts_what_cargo_tree_counts() {
    let readme = include_str!("../README.md");
    let mut expected = String::new();
    let mut wrong = Vec::new();
    for (start, features) in ROWS {
        let count = tree(features).len();
        let row = readme
            .lines()
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("the README's feature table has no row {start}"));
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let claimed = cells.last().copied().unwrap_or_default();
        expected.push_str(&format!("{start} … | {count} |\n"));
        if claimed != count.to_string() {
            wrong.push(format!("{start} says {claimed}, cargo tree counts {count}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the README's feature table is stale:\n{}\nthe counts now:\n{expected}",
        wrong.join("\n")
    );
}

#[test]
fn the_default_build_is_light_and_compiles_no_c() {
    let default = tree_of("normal,build", &[]);
    let normal = tree(&[]);
    assert!(
        normal.len() <= 225,
        "the default features pull {} crates (at most 225)",
        normal.len()
    );
    for heavy in ["quinn", "rustls", "ring", "aws-lc-sys", "aws-lc-rs", "cc"] {
        let found: Vec<&String> = default
            .iter()
            .filter(|krate| krate.split(' ').next() == Some(heavy))
            .collect();
        assert!(found.is_empty(), "the default features pull {found:?}");
    }
}
