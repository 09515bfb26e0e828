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

/// The README is the page a user reads first: the manual's length, with the architecture
/// and the benchmarks beside it.
#[test]
fn the_readme_stays_a_manual_with_its_companions_beside_it() {
    let readme = include_str!("../README.md");
    let lines = readme.lines().count();
    assert!(lines <= 400, "README.md has {lines} lines (at most 400)");
    for companion in ["ARCHITECTURE.md", "BENCHMARKS.md", "CHANGELOG.md"] {
        assert!(
            readme.contains(&format!("]({companion})")),
            "the README does not link {companion}"
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(companion);
        assert!(path.is_file(), "{companion} is missing");
    }
}

/// The README's public API list is what the crate exports: read from the sources with
/// `syn` (every public item reachable from `src/lib.rs`, and the inherent `pub fn`s of
/// each exported type and the methods of each exported trait), printed as the README
/// shows it, and compared with the lines between the README's markers. Not seen: methods
/// a macro generates (`TraceId`/`SpanId`'s constructors from `hex_id!`).
#[test]
fn the_readme_lists_every_public_item_and_nothing_else() {
    let readme = include_str!("../README.md");
    let (begin, end) = ("<!-- public-api:begin -->\n", "<!-- public-api:end -->");
    let start = readme
        .find(begin)
        .expect("the README has the API list's begin marker");
    let stop = readme
        .find(end)
        .expect("the README has the API list's end marker");
    let listed = &readme[start + begin.len()..stop];
    let exported = public_api::render(&public_api::Crate::read());
    if listed != exported {
        let listed_lines: BTreeSet<&str> = listed.lines().collect();
        let exported_lines: BTreeSet<&str> = exported.lines().collect();
        let missing: Vec<_> = exported_lines.difference(&listed_lines).collect();
        let extra: Vec<_> = listed_lines.difference(&exported_lines).collect();
        panic!(
            "the README's API list disagrees with the crate's exports\n\
             lines the README lacks: {missing:#?}\nlines the crate lacks: {extra:#?}\n\
             the list now (between the markers):\n{exported}"
        );
    }
}

mod public_api {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use syn::{Attribute, ImplItem, Item, TraitItem, UseTree, Visibility};

    /// What one module declares.
    #[derive(Default)]
    struct Module {
        public: bool,
        /// Items defined here: name → (public, deprecated).
        defs: BTreeMap<String, (bool, bool)>,
        /// Names brought in by `use`: name → (public, path as written).
        uses: BTreeMap<String, (bool, Vec<String>)>,
        /// Public child modules, in declaration order.
        children: Vec<String>,
    }

    /// The crate's modules by path (`[]` is the root), and the methods of each type by its
    /// defining module and name.
    pub(super) struct Crate {
        modules: BTreeMap<Vec<String>, Module>,
        methods: BTreeMap<(Vec<String>, String), BTreeSet<String>>,
        /// `impl` blocks seen: (module, type name as written, method names).
        impls: Vec<(Vec<String>, String, Vec<String>)>,
    }

    /// Compiled only for tests: a `cfg` naming `test` anywhere (`test`, `any(test, …)`).
    fn cfg_test(attrs: &[Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("cfg")
                && a.meta.require_list().is_ok_and(|l| {
                    l.tokens
                        .to_string()
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|word| word == "test")
                })
        })
    }

    fn hidden(attrs: &[Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("doc")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string() == "hidden")
        })
    }

    fn deprecated(attrs: &[Attribute]) -> bool {
        attrs.iter().any(|a| a.path().is_ident("deprecated"))
    }

    fn is_pub(vis: &Visibility) -> bool {
        matches!(vis, Visibility::Public(_))
    }

    /// `path` made absolute from module `at`: `crate::`, `super::`, `self::`, a child
    /// module's name, or else an external crate's (the context crate is read as the
    /// module `p2p_otel_context`).
    fn absolute(
        modules: &BTreeMap<Vec<String>, Module>,
        at: &[String],
        path: &[String],
    ) -> Vec<String> {
        let mut out: Vec<String> = at.to_vec();
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                out.clear();
                rest = &path[1..];
            }
            Some("self") => rest = &path[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    out.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let mut child = at.to_vec();
                child.push(first.to_owned());
                if !modules.contains_key(&child) {
                    out.clear();
                }
            }
            None => {}
        }
        out.extend(rest.iter().cloned());
        out
    }

    fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                flatten(&p.tree, prefix, out);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut path = prefix.clone();
                if name == "self" {
                    let last = path.last().cloned().unwrap_or_default();
                    out.push((last, path));
                } else {
                    path.push(name.clone());
                    out.push((name, path));
                }
            }
            UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                out.push((r.rename.to_string(), path));
            }
            UseTree::Group(g) => {
                for tree in &g.items {
                    flatten(tree, prefix, out);
                }
            }
            UseTree::Glob(_) => out.push(("*".to_owned(), prefix.clone())),
        }
    }

    impl Crate {
        pub(super) fn read() -> Crate {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
            let mut krate = Crate {
                modules: BTreeMap::new(),
                methods: BTreeMap::new(),
                impls: Vec::new(),
            };
            krate.module(Vec::new(), true, &root.join("lib.rs"), &root);
            let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/context/src");
            let name = vec!["p2p_otel_context".to_owned()];
            krate.module(name, false, &context.join("lib.rs"), &context);
            let impls = std::mem::take(&mut krate.impls);
            for (at, ty, names) in impls {
                if let Some(def) = krate.resolve(&at, &ty, 0) {
                    krate.methods.entry(def).or_default().extend(names);
                }
            }
            krate
        }

        fn module(&mut self, path: Vec<String>, public: bool, file: &Path, dir: &Path) {
            let text =
                std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let parsed =
                syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            self.items(path, public, &parsed.items, dir);
        }

        fn items(&mut self, path: Vec<String>, public: bool, items: &[Item], dir: &Path) {
            let mut module = Module {
                public,
                ..Module::default()
            };
            let mut define = |name: String, vis: &Visibility, attrs: &[Attribute]| {
                if !hidden(attrs) && !cfg_test(attrs) {
                    module.defs.insert(name, (is_pub(vis), deprecated(attrs)));
                }
            };
            let mut submodules = Vec::new();
            for item in items {
                match item {
                    Item::Struct(i) => define(i.ident.to_string(), &i.vis, &i.attrs),
                    Item::Enum(i) => define(i.ident.to_string(), &i.vis, &i.attrs),
                    Item::Fn(i) => define(i.sig.ident.to_string(), &i.vis, &i.attrs),
                    Item::Type(i) => define(i.ident.to_string(), &i.vis, &i.attrs),
                    Item::Const(i) => define(i.ident.to_string(), &i.vis, &i.attrs),
                    Item::Static(i) => define(i.ident.to_string(), &i.vis, &i.attrs),
                    Item::Trait(i) => {
                        define(i.ident.to_string(), &i.vis, &i.attrs);
                        let names = i
                            .items
                            .iter()
                            .filter_map(|item| match item {
                                TraitItem::Fn(f) if !hidden(&f.attrs) => {
                                    Some(f.sig.ident.to_string())
                                }
                                _ => None,
                            })
                            .collect();
                        self.impls.push((path.clone(), i.ident.to_string(), names));
                    }
                    Item::Use(u) => {
                        let mut flat = Vec::new();
                        flatten(&u.tree, &mut Vec::new(), &mut flat);
                        for (name, target) in flat {
                            assert!(
                                name != "*" || !is_pub(&u.vis),
                                "a public glob re-export ({}::*): name the items, so the API \
                                 list can see them",
                                target.join("::")
                            );
                            if name == "*" {
                                continue;
                            }
                            module.uses.insert(name, (is_pub(&u.vis), target));
                        }
                    }
                    Item::Impl(i) if i.trait_.is_none() && !cfg_test(&i.attrs) => {
                        let syn::Type::Path(ty) = &*i.self_ty else {
                            continue;
                        };
                        let Some(last) = ty.path.segments.last() else {
                            continue;
                        };
                        let names = i
                            .items
                            .iter()
                            .filter_map(|item| match item {
                                ImplItem::Fn(f) if is_pub(&f.vis) && !hidden(&f.attrs) => {
                                    let name = f.sig.ident.to_string();
                                    Some(if deprecated(&f.attrs) {
                                        format!("{name} (deprecated)")
                                    } else {
                                        name
                                    })
                                }
                                _ => None,
                            })
                            .collect();
                        self.impls
                            .push((path.clone(), last.ident.to_string(), names));
                    }
                    Item::Mod(m) if !cfg_test(&m.attrs) => {
                        submodules.push((m.ident.to_string(), public && is_pub(&m.vis), m));
                    }
                    _ => {}
                }
            }
            for (name, is_public, _) in &submodules {
                if *is_public {
                    module.children.push(name.clone());
                }
            }
            self.modules.insert(path.clone(), module);
            for (name, is_public, m) in submodules {
                let mut child = path.clone();
                child.push(name.clone());
                match &m.content {
                    Some((_, items)) => self.items(child, is_public, items, &dir.join(&name)),
                    None => {
                        let (file, sub): (PathBuf, PathBuf) = {
                            let flat = dir.join(format!("{name}.rs"));
                            if flat.exists() {
                                (flat, dir.join(&name))
                            } else {
                                (dir.join(&name).join("mod.rs"), dir.join(&name))
                            }
                        };
                        self.module(child, is_public, &file, &sub);
                    }
                }
            }
        }

        /// Where the item `name`, as seen from module `at`, is defined.
        fn resolve(
            &self,
            at: &[String],
            name: &str,
            depth: usize,
        ) -> Option<(Vec<String>, String)> {
            let module = self.modules.get(at)?;
            if depth > 16 {
                return None;
            }
            if module.defs.contains_key(name) {
                return Some((at.to_vec(), name.to_owned()));
            }
            let (_, written) = module.uses.get(name)?;
            let target = absolute(&self.modules, at, written);
            let (last, parent) = target.split_last()?;
            self.resolve(parent, last, depth + 1).or_else(|| {
                self.modules
                    .contains_key(&target)
                    .then(|| (target.clone(), String::new()))
            })
        }
    }

    /// The list as the README shows it: a bullet per public module, its items sorted, each
    /// type's methods in parentheses.
    pub(super) fn render(krate: &Crate) -> String {
        let mut out = String::new();
        let mut stack = vec![Vec::<String>::new()];
        let mut order = Vec::new();
        while let Some(path) = stack.pop() {
            if let Some(module) = krate.modules.get(&path) {
                for child in module.children.iter().rev() {
                    let mut child_path = path.clone();
                    child_path.push(child.clone());
                    stack.push(child_path);
                }
            }
            order.push(path);
        }
        for path in order {
            let Some(module) = krate.modules.get(&path) else {
                continue;
            };
            if !module.public {
                continue;
            }
            let mut items: BTreeMap<String, String> = BTreeMap::new();
            let names = module
                .defs
                .iter()
                .filter(|(_, (public, _))| *public)
                .map(|(name, (_, deprecated))| (name.clone(), *deprecated))
                .chain(
                    module
                        .uses
                        .iter()
                        .filter(|(_, (public, _))| *public)
                        .map(|(name, _)| (name.clone(), false)),
                );
            for (name, deprecated_here) in names {
                let def = krate.resolve(&path, &name, 0);
                let deprecated = deprecated_here
                    || def.as_ref().is_some_and(|(module, item)| {
                        krate.modules[module].defs.get(item).is_some_and(|d| d.1)
                    });
                // A re-exported module (`tree::attr`) shows its public items as a type
                // shows its methods.
                let members =
                    def.as_ref()
                        .filter(|(_, item)| item.is_empty())
                        .map(|(module, _)| {
                            krate.modules[module]
                                .defs
                                .iter()
                                .filter(|(_, (public, _))| *public)
                                .map(|(name, _)| name.clone())
                                .collect::<BTreeSet<String>>()
                        });
                let methods = members
                    .as_ref()
                    .or_else(|| def.and_then(|def| krate.methods.get(&def)))
                    .filter(|methods| !methods.is_empty());
                let mut shown = format!("`{name}`");
                if deprecated {
                    shown.push_str(" (deprecated)");
                }
                if let Some(methods) = methods {
                    let list: Vec<String> = methods
                        .iter()
                        .map(|m| match m.split_once(' ') {
                            Some((name, note)) => format!("`{name}` {note}"),
                            None => format!("`{m}`"),
                        })
                        .collect();
                    shown.push_str(&format!(" ({})", list.join(", ")));
                }
                items.insert(name, shown);
            }
            let title = if path.is_empty() {
                "crate root".to_owned()
            } else {
                format!("`{}`", path.join("::"))
            };
            let body: Vec<&str> = items.values().map(String::as_str).collect();
            out.push_str(&wrap(&format!("- {title}: {}", body.join(", "))));
        }
        out
    }

    /// Wraps a bullet at 100 columns, continuation lines indented by two.
    fn wrap(text: &str) -> String {
        let mut out = String::new();
        let mut line = String::new();
        for word in text.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > 100 {
                out.push_str(&line);
                out.push('\n');
                line = format!("  {word}");
            } else {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
            }
        }
        out.push_str(&line);
        out.push('\n');
        out
    }
}
