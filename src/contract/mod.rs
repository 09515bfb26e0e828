//! Telemetry contracts in OpenTelemetry Weaver's registry format: declare spans,
//! attributes, metrics and events once, in YAML the semantic-convention tools read, and
//! check what a system emits against them — in a test, in a validation run, or on a
//! Collector's output files.
//!
//! A contract is a folder of YAML files in either of Weaver's formats:
//!
//! - `groups:` — `attribute_group`, `span`, `metric` and `event` groups with `ref`,
//!   `extends`, `requirement_level` (`required`, `conditionally_required: <when>`,
//!   `recommended`, `opt_in`), types (`string`, `int`, `double`, `boolean`, arrays such as
//!   `string[]`, `template[string]`, enums with `members`), `span_kind`, `instrument`,
//!   `unit`, `stability` and `deprecated`;
//! - `file_format: definition/2` — `attributes: - key: …`, `attribute_groups` (with
//!   `ref_group`), `spans` (`type`, `kind`), `metrics` and `events`.
//!
//! A contract can depend on other registries — the official semantic conventions' `model/`
//! folder — and `ref:` their attributes ([`ContractLoader::dependency`]).
//!
//! What Weaver's format cannot say — trace structure (children with counts and kinds, a
//! parent, a remote parent on another node, events, the attributes an Error span must
//! carry), alerts and cardinality budgets — is written under a group's `annotations`, which Weaver keeps
//! without interpreting:
//!
//! ```yaml
//! - id: span.p2p_publish
//!   type: span
//!   span_kind: internal
//!   annotations:
//!     structure:
//!       root: true                 # no parent
//!       children:                  # checked on spans whose status is not Error
//!         - span: dht_put          # a child of this name…
//!           min: 1                 # …at least once (default 1)
//!           max: 1                 # …at most once (default: no limit)
//!           kind: client           # the child's span kind
//!       events: [package_stored]   # span events it must carry
//!       on_error: [error_type]     # attributes an Error span must carry
//! - id: span.handle_dht_query
//!   type: span
//!   span_kind: server
//!   annotations:
//!     structure:
//!       parent: {span: send_request, kind: client}   # or a name, or a list of either
//!       remote_parent: true        # the parent is on another node (context propagated)
//! - id: metric.p2p_operations_total
//!   type: metric
//!   metric_name: p2p_operations_total
//!   instrument: counter
//!   annotations:
//!     alerts:                      # for `generate::prometheus_rules`
//!       - alert: P2POperationErrorRateHigh
//!         error_rate: {status: error}   # on a counter: the share of the increase with these labels
//!         by: [operation]               # computed per operation
//!         above: 0.05
//!         for: 5m                       # also: window (5m), severity (warning), summary
//!       # on a histogram: `quantile: 0.95` and `above` in the metric's unit
//!     cardinality:                 # on any span, metric or event group: at most this many
//!       operation: 20              # distinct values of the attribute over a run, else
//!       status: 2                  # `cardinality_exceeded` (a violation) at the report
//! ```
//!
//! A span whose status is Error may miss a required attribute it never got: that is
//! information, not a violation; `on_error` says what it must carry instead.
//!
//! A span group's span name is its `name:`, else its id without the `span.` prefix; a
//! metric group's is its `metric_name:`.
//!
//! # Weaver's judgement, and where the kit differs
//!
//! A check judges what `weaver registry live-check` judges, with Weaver's finding ids and
//! levels: every attribute of a span, metric point, event and **resource** against the
//! registry (`missing_attribute`, `type_mismatch`, `undefined_enum_variant`,
//! `deprecated`), a group's requirement levels (`*_attribute_not_present`), metrics'
//! instrument and unit — and Weaver's built-in advice (`missing_namespace`, `not_stable`,
//! `invalid_format`, `illegal_namespace`, `extends_namespace`, `template_attribute`), which
//! [`Contract::with_advice(false)`](Contract::with_advice) (CLI: `--no-advice`) turns off.
//! A contract therefore declares, or `ref:`s from the semantic conventions, what its
//! resources carry (`service.name`, `service.instance.id`, …).
//!
//! Where the kit deliberately differs:
//! - **Spans are matched to their span groups** by name, so a span's requirement levels are
//!   checked (`*_attribute_not_present`); Weaver 0.25 matches only metrics and events to
//!   groups and judges a span's attributes one by one.
//! - **Structure** (`annotations.structure`): parents, remote parents, children, events and
//!   span kinds are checked (`missing_child`, `missing_remote_parent`,
//!   `unexpected_span_kind`, …); Weaver keeps annotations without reading them.
//! - **Cardinality budgets** (`cardinality_exceeded`) and **coverage** (per group, with a
//!   gate: `coverage_below_minimum`) are judged over the whole run.
//! - **A failed span** may miss a required attribute it never got (information, with
//!   `on_error` saying what it must carry instead); Weaver makes it a violation.
//! - **Counting**: a finding counts its samples — each span, span event, metric point or
//!   log event — and a resource once per distinct resource (a node); Weaver counts a
//!   resource once per export request that carries it, and a finding about a metric itself
//!   (`not_stable`) once per metric of a request, where the kit counts its points.
//! - **Undeclared spans** are one `undeclared_span` (information) each, undeclared metrics
//!   one `missing_metric` (violation) each; their attributes are not judged, since the
//!   contract says nothing of them (Weaver judges each one against the registry).
//!
//! ```
//! use p2p_otel_testkit::contract::Contract;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let contract = Contract::loader().load_sources([(
//!     "spans.yaml",
//!     r#"
//! groups:
//!   - id: registry.shop
//!     type: attribute_group
//!     brief: The shop's attributes.
//!     attributes:
//!       - id: shop.order_id
//!         type: string
//!         stability: development
//!         brief: The order.
//!   - id: span.checkout
//!     type: span
//!     span_kind: internal
//!     stability: development
//!     brief: A checkout.
//!     attributes:
//!       - ref: shop.order_id
//!         requirement_level: required
//! "#,
//! )])?;
//!
//! let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info_span!("checkout", shop.order_id = 42).in_scope(|| {});
//! });
//! let report = contract.check(&handle.traces(), &[], &[]);
//! let finding = &report.findings()[0];
//! assert_eq!(finding.id, "type_mismatch");
//! assert!(finding.message.contains("shop.order_id"));
//! assert!(report.assert_no_violations().is_err());
//! # Ok::<(), p2p_otel_testkit::contract::ContractError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod advice;
mod check;
mod files;
mod findings;
pub mod generate;
mod infer;
mod model;
mod resolve;
mod structure;

pub use check::Checker;
pub use findings::{Coverage, CoverageGate, Finding, GroupCoverage, Level, Report, SpanLocation};
pub use infer::{infer, Draft};

use model::{AttributeDef, GroupKind, NameMap, ResolvedGroup};

/// A loaded contract: the registry's attributes and the signals to check.
#[derive(Clone, Debug)]
pub struct Contract {
    attributes: HashMap<String, AttributeDef>,
    /// Template attributes (`template[T]`), matched by prefix.
    templates: Vec<AttributeDef>,
    groups: Vec<ResolvedGroup>,
    spans: NameMap<usize>,
    metrics: NameMap<usize>,
    events: NameMap<usize>,
    /// Weaver's built-in advice, unless turned off.
    advice: Option<advice::Registry>,
}

/// A problem in a contract's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given to the loader.
    pub path: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.path, self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.path, self.message),
            (line, column) => write!(f, "{}:{line}:{column}: {}", self.path, self.message),
        }
    }
}

/// Why a contract did not load.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// A file or folder could not be read.
    #[error("cannot read contract file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no `.yaml` or `.yml` file.
    #[error("{path} holds no .yaml or .yml file: a contract is a folder of registry files")]
    Empty {
        /// The folder.
        path: PathBuf,
    },
    /// The files were read, but something in them is wrong; every problem is listed,
    /// with its file and line.
    #[error("{} problem(s) in the contract:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

impl ContractError {
    /// The problems found in the files (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ContractError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// Loads contracts, with the registries they depend on.
#[derive(Clone, Debug, Default)]
pub struct ContractLoader {
    dependencies: Vec<PathBuf>,
}

impl ContractLoader {
    /// Adds a registry the contract can `ref:` attributes of (for example the official
    /// semantic conventions' `model/` folder). Its own spans and metrics are not checked.
    #[must_use]
    pub fn dependency(mut self, folder: impl Into<PathBuf>) -> Self {
        self.dependencies.push(folder.into());
        self
    }

    /// Loads every `.yaml`/`.yml` file under `folder` (recursively, in path order), with
    /// the dependencies — those given to [`dependency`](Self::dependency), and those a
    /// Weaver manifest in the folder (`manifest.yaml` or `registry_manifest.yaml`) names
    /// with a local `registry_path` (relative to the folder), so one folder loads the same
    /// way here and in `weaver registry check`.
    pub fn load(&self, folder: impl AsRef<Path>) -> Result<Contract, ContractError> {
        let folder = folder.as_ref();
        let mut sources = Vec::new();
        for dependency in self
            .dependencies
            .iter()
            .cloned()
            .chain(manifest_dependencies(folder)?)
        {
            read_folder(&dependency, true, &mut sources)?;
        }
        read_folder(folder, false, &mut sources)?;
        build(&sources)
    }

    /// Loads a contract from `(file name, YAML text)` pairs — for a contract embedded in
    /// a binary with `include_str!` — with the dependencies (read from disk).
    pub fn load_sources<N: AsRef<str>, T: AsRef<str>>(
        &self,
        files: impl IntoIterator<Item = (N, T)>,
    ) -> Result<Contract, ContractError> {
        let mut sources = Vec::new();
        for dependency in &self.dependencies {
            read_folder(dependency, true, &mut sources)?;
        }
        sources.extend(files.into_iter().map(|(name, text)| resolve::Source {
            path: name.as_ref().to_owned(),
            text: text.as_ref().to_owned(),
            dependency: false,
        }));
        build(&sources)
    }
}

/// The local registries a Weaver manifest in `folder` depends on.
fn manifest_dependencies(folder: &Path) -> Result<Vec<PathBuf>, ContractError> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(default)]
        dependencies: Vec<Dependency>,
    }
    #[derive(serde::Deserialize)]
    struct Dependency {
        #[serde(default)]
        name: String,
        registry_path: Option<String>,
    }
    let Some(path) = ["manifest.yaml", "registry_manifest.yaml"]
        .iter()
        .map(|name| folder.join(name))
        .find(|path| path.is_file())
    else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ContractError::Read {
        path: path.clone(),
        source,
    })?;
    let problem = |line: usize, message: String| {
        ContractError::Invalid(vec![Problem {
            path: path.display().to_string(),
            line,
            column: 0,
            message,
        }])
    };
    let manifest: Manifest = serde_yaml_ng::from_str(&text).map_err(|e| {
        problem(
            e.location().map_or(0, |at| at.line()),
            format!("not a registry manifest: {e}"),
        )
    })?;
    let mut folders = Vec::new();
    for dependency in manifest.dependencies {
        let Some(registry) = dependency.registry_path else {
            continue;
        };
        if registry.contains("://") {
            let line = files::line_of(&text, 1, "registry_path", &registry);
            return Err(problem(
                line,
                format!(
                    "dependency {:?} is fetched from {registry}: this loader reads local folders — download it and give its folder as registry_path, or with `dependency`/--dependency",
                    dependency.name
                ),
            ));
        }
        folders.push(folder.join(registry));
    }
    Ok(folders)
}

fn read_folder(
    folder: &Path,
    dependency: bool,
    sources: &mut Vec<resolve::Source>,
) -> Result<(), ContractError> {
    let mut paths = Vec::new();
    collect_yaml(folder, &mut paths)?;
    if paths.is_empty() {
        return Err(ContractError::Empty {
            path: folder.to_owned(),
        });
    }
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| ContractError::Read {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ContractError::Invalid(vec![Problem {
                path: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("not UTF-8 text: {e}"),
            }])
        })?;
        sources.push(resolve::Source {
            path: path.display().to_string(),
            text,
            dependency,
        });
    }
    Ok(())
}

fn collect_yaml(folder: &Path, paths: &mut Vec<PathBuf>) -> Result<(), ContractError> {
    let read = |source| ContractError::Read {
        path: folder.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(folder).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.is_dir() {
            collect_yaml(&path, paths)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml")
            // Weaver's manifest describes the registry; it declares no telemetry.
            && path.file_stem().is_some_and(|s| s != "registry_manifest" && s != "manifest")
        {
            paths.push(path);
        }
    }
    Ok(())
}

fn build(sources: &[resolve::Source]) -> Result<Contract, ContractError> {
    let resolved = resolve::resolve(sources).map_err(ContractError::Invalid)?;
    let mut contract = Contract {
        templates: resolved
            .attributes
            .values()
            .filter(|d| matches!(d.attribute_type, model::AttributeType::Template(_)))
            .cloned()
            .collect(),
        advice: Some(advice::Registry::new(resolved.attributes.values())),
        attributes: resolved.attributes,
        groups: Vec::new(),
        spans: NameMap::default(),
        metrics: NameMap::default(),
        events: NameMap::default(),
    };
    contract.groups = resolved
        .groups
        .into_iter()
        .filter(|g| g.kind != GroupKind::AttributeGroup)
        .collect();
    contract.groups.sort_by(|a, b| a.id.cmp(&b.id));
    for (index, group) in contract.groups.iter().enumerate() {
        let by_name = match group.kind {
            GroupKind::Span { .. } => &mut contract.spans,
            GroupKind::Metric { .. } => &mut contract.metrics,
            GroupKind::Event => &mut contract.events,
            GroupKind::AttributeGroup => continue,
        };
        by_name.insert(group.name.clone(), index);
    }
    Ok(contract)
}

impl Contract {
    /// A loader, to add dependencies before loading.
    pub fn loader() -> ContractLoader {
        ContractLoader::default()
    }

    /// Loads every `.yaml`/`.yml` file under `folder`.
    pub fn load(folder: impl AsRef<Path>) -> Result<Contract, ContractError> {
        ContractLoader::default().load(folder)
    }

    /// The span names the contract declares, sorted.
    pub fn span_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.spans.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The metric names the contract declares, sorted.
    pub fn metric_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.metrics.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The attributes the contract requires on spans named `name` (`requirement_level:
    /// required`), if it declares the span.
    pub fn required_attributes(&self, span: &str) -> Option<Vec<&str>> {
        let group = &self.groups[*self.spans.get(span)?];
        Some(
            group
                .attributes
                .iter()
                .filter(|u| u.requirement == model::Requirement::Required)
                .map(|u| u.def.key.as_str())
                .collect(),
        )
    }

    /// Whether checks add Weaver's built-in advice (on by default, as in `weaver registry
    /// live-check`): `missing_namespace`, `not_stable` (improvements), `invalid_format`,
    /// `illegal_namespace` (violations), `extends_namespace`, `template_attribute`
    /// (information). Off, a report holds only what the registry's own rules find.
    ///
    /// ```
    /// # use p2p_otel_testkit::contract::Contract;
    /// let contract = Contract::loader().load_sources([("r.yaml", r#"
    /// groups:
    ///   - id: span.work
    ///     type: span
    ///     span_kind: internal
    ///     stability: development
    ///     brief: Work.
    ///     attributes:
    ///       - id: job
    ///         type: string
    ///         stability: development
    ///         brief: The job.
    ///         requirement_level: required
    /// "#)])?;
    /// let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("work", job = "a").in_scope(|| {});
    /// });
    /// let advised = contract.check(&handle.traces(), &[], &[]);
    /// let ids: Vec<&str> = advised.findings().iter().map(|f| f.id.as_str()).collect();
    /// assert_eq!(ids, ["missing_namespace", "not_stable"]);
    ///
    /// let quiet = contract.with_advice(false).check(&handle.traces(), &[], &[]);
    /// assert!(quiet.findings().is_empty());
    /// # Ok::<(), p2p_otel_testkit::contract::ContractError>(())
    /// ```
    pub fn with_advice(mut self, on: bool) -> Contract {
        self.advice = on.then(|| advice::Registry::new(self.attributes.values()));
        self
    }

    /// A checker that accumulates findings and coverage over several calls (for a
    /// collector that checks traces as they finish).
    pub fn checker(&self) -> Checker<'_> {
        Checker::new(self)
    }

    /// Checks every span, metric point and log record against the contract: findings
    /// shaped like Weaver live-check's, and coverage of what the contract declares.
    pub fn check(
        &self,
        traces: &crate::TraceSet,
        metrics: &[crate::model::MetricPoint],
        logs: &[crate::model::LogRecord],
    ) -> Report {
        let mut checker = self.checker();
        checker.check_traces(traces);
        checker.check_metrics(metrics);
        checker.check_logs(logs);
        checker.finish()
    }

    fn attribute(&self, key: &str) -> Option<&AttributeDef> {
        self.attributes.get(key).or_else(|| {
            self.templates
                .iter()
                .find(|t| check::under_template(key, &t.key))
        })
    }
}
