//! A contract drafted from a run: what the telemetry did, written in the Weaver formats the
//! loader reads, for a team that would otherwise start from an empty folder.
//!
//! From spans: a group per span name with its kind, its attributes (required when every
//! span of the name had it, conditionally required when only failed spans had it — and
//! all of them —, recommended otherwise) and its structure under `annotations.structure`
//! (root, parents and whether the parent is remote, children with the least and most seen,
//! events every span had, attributes set on error). From metric points: a group per metric
//! with its instrument, unit and labels. From log records with an `event_name`: an event
//! group each. The registry declares every attribute with the type seen, string attributes
//! with few, short, repeated values as open enums of those values (never paths, names with
//! a namespace or numbers: `acme/tool`, `host:port`, `42`).
//!
//! The draft loads, and the telemetry it came from keeps it (no violation). It is a draft:
//! comments say what was seen (how many samples, how many distinct values) so a reader can
//! tighten or loosen it; briefs say `TODO`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Contract, ContractError};
use crate::model::{LogRecord, MetricKind, MetricPoint, SpanKind, StatusCode, Value};
use crate::tree::TraceSet;

/// At most this many distinct values make a string attribute an enum.
const ENUM_LIMIT: usize = 16;
/// Enum values are short tokens, not ids or sentences.
const ENUM_VALUE_LENGTH: usize = 32;

/// A drafted contract: its files, ready to write into a folder or to load.
///
/// ```
/// use p2p_otel_testkit::contract;
///
/// let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
/// tracing::dispatcher::with_default(&dispatch, || {
///     for package in ["acme/a", "acme/b"] {
///         tracing::info_span!("publish", package, replicas = 2).in_scope(|| {
///             tracing::info_span!("store", otel.kind = "client").in_scope(|| {});
///         });
///     }
/// });
/// let traces = handle.traces();
/// let draft = contract::infer(&traces, &[], &[], None).unwrap();
/// assert!(draft.files()[1].1.contains(r#"- ref: "replicas""#));
/// // The telemetry it came from keeps it.
/// let loaded = draft.load().unwrap();
/// assert!(!loaded.check(&traces, &[], &[]).has_violations());
/// ```
#[derive(Clone, Debug)]
pub struct Draft {
    files: Vec<(String, String)>,
    dependency: Option<PathBuf>,
}

impl Draft {
    /// The files, `(name, YAML)`: `registry.yaml` (attributes, Weaver's `definition/2`),
    /// `spans.yaml`, `metrics.yaml`, `events.yaml` (groups); a file with nothing to say is
    /// left out.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// How many lines the draft holds, all files together.
    pub fn line_count(&self) -> usize {
        self.files
            .iter()
            .map(|(_, text)| text.lines().count())
            .sum()
    }

    /// Writes the files into `folder` (created if missing); returns their paths.
    pub fn write(&self, folder: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(folder)?;
        let mut written = Vec::new();
        for (name, text) in &self.files {
            let path = folder.join(name);
            std::fs::write(&path, text)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Loads the draft as a contract (with the dependency it was drafted against).
    pub fn load(&self) -> Result<Contract, ContractError> {
        let mut loader = Contract::loader();
        if let Some(dependency) = &self.dependency {
            loader = loader.dependency(dependency.clone());
        }
        loader.load_sources(
            self.files
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        )
    }
}

/// Drafts a contract from what a run emitted. With a `dependency` registry (such as
/// OpenTelemetry's semantic conventions), attributes it defines are referred to, not
/// declared again.
pub fn infer(
    traces: &TraceSet,
    metrics: &[MetricPoint],
    logs: &[LogRecord],
    dependency: Option<&Path>,
) -> Result<Draft, ContractError> {
    let known: BTreeSet<String> = match dependency {
        Some(folder) => Contract::load(folder)?.attributes.keys().cloned().collect(),
        None => BTreeSet::new(),
    };
    let mut seen = Seen::default();
    let spans = span_groups(traces, &mut seen);
    let metric_groups = metric_groups(metrics, &mut seen);
    let events = event_groups(logs, &mut seen);
    let mut files = vec![("registry.yaml".to_owned(), registry(&seen, &known))];
    for (name, text) in [
        ("spans.yaml", spans),
        ("metrics.yaml", metric_groups),
        ("events.yaml", events),
    ] {
        if let Some(text) = text {
            files.push((name.to_owned(), text));
        }
    }
    Ok(Draft {
        files,
        dependency: dependency.map(Path::to_path_buf),
    })
}

/// A YAML double-quoted scalar: JSON's string syntax, with every character YAML does not
/// allow raw (DEL, C1 controls, non-characters) escaped too.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Ids made unique: the first use of a sanitised id keeps it, later ones get `_2`, `_3`…
#[derive(Default)]
struct UniqueIds(BTreeSet<String>);

impl UniqueIds {
    fn take(&mut self, id: String) -> String {
        let mut candidate = id.clone();
        let mut n = 2;
        while !self.0.insert(candidate.clone()) {
            candidate = format!("{id}_{n}");
            n += 1;
        }
        candidate
    }
}

/// An id segment: lowercase letters, digits, `_` and `.`.
fn id_of(text: &str) -> String {
    let id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "_".to_owned()
    } else {
        id
    }
}

// ---- what was seen of each attribute --------------------------------------------------

/// Every value an attribute took, wherever it appeared.
#[derive(Default)]
struct AttributeSeen {
    uses: usize,
    types: BTreeSet<&'static str>,
    /// Distinct string values, up to one more than an enum may have.
    strings: BTreeSet<String>,
    example: Option<String>,
}

#[derive(Default)]
struct Seen {
    attributes: BTreeMap<String, AttributeSeen>,
}

impl Seen {
    fn record(&mut self, key: &str, value: &Value) {
        let entry = self.attributes.entry(key.to_owned()).or_default();
        entry.uses += 1;
        entry.types.insert(type_of(value));
        if let Value::Str(text) = value {
            if entry.strings.len() <= ENUM_LIMIT {
                entry.strings.insert(text.clone());
            }
            if entry.example.is_none() {
                entry.example = Some(text.clone());
            }
        }
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Str(_) => "string",
        Value::Int(_) => "int",
        Value::Double(_) => "double",
        Value::Bool(_) => "boolean",
        Value::Array(items) => match items.first().map(type_of) {
            Some("string") if items.iter().all(|i| matches!(i, Value::Str(_))) => "string[]",
            Some("int") if items.iter().all(|i| matches!(i, Value::Int(_))) => "int[]",
            Some("double")
                if items
                    .iter()
                    .all(|i| matches!(i, Value::Double(_) | Value::Int(_))) =>
            {
                "double[]"
            }
            Some("boolean") if items.iter().all(|i| matches!(i, Value::Bool(_))) => "boolean[]",
            _ => "any",
        },
        Value::Bytes(_) | Value::Map(_) | Value::Empty => "any",
    }
}

/// The registry type of an attribute from every type it took: one type as is, ints and
/// doubles as double, anything else mixed as any.
fn registry_type(types: &BTreeSet<&'static str>) -> &'static str {
    let types: Vec<&str> = types.iter().copied().collect();
    match types.as_slice() {
        [one] => one,
        ["double", "int"] => "double",
        ["double[]", "int[]"] => "double[]",
        _ => "any",
    }
}

fn registry(seen: &Seen, known: &BTreeSet<String>) -> String {
    let mut out = String::from(
        "# Drafted by `p2p-otel-testkit contract infer` from a run: every attribute the run's\n\
         # spans, metric points and events carried, with the type seen. Review each brief;\n\
         # an enum lists the values seen and stays open (other values are information, not\n\
         # violations): make it a plain string if its values are open-ended.\n\
         file_format: definition/2\nattributes:\n",
    );
    for (key, attribute) in &seen.attributes {
        if known.contains(key) {
            let _ = writeln!(out, "  # {key}: defined by the dependency registry");
            continue;
        }
        let kind = registry_type(&attribute.types);
        let enum_like = kind == "string"
            && attribute.strings.len() <= ENUM_LIMIT
            && attribute.strings.len() * 3 <= attribute.uses
            && attribute.strings.iter().all(|value| {
                !value.is_empty()
                    && value.len() <= ENUM_VALUE_LENGTH
                    && !value.chars().any(char::is_whitespace)
                    // Paths, URLs, ids and names with a namespace (`acme/tool`,
                    // `host:port`) and numbers are open-ended, not members.
                    && !value.contains(['/', ':', '@'])
                    && !value.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            });
        let _ = writeln!(out, "  - key: {}", quoted(key));
        if enum_like {
            let _ = writeln!(
                out,
                "    # {} distinct values in {} uses",
                attribute.strings.len(),
                attribute.uses
            );
            out.push_str("    type:\n      members:\n");
            let mut ids = UniqueIds::default();
            for value in &attribute.strings {
                let _ = writeln!(
                    out,
                    "        - {{id: {}, value: {}, stability: development, brief: \"TODO\"}}",
                    quoted(&ids.take(id_of(value))),
                    quoted(value)
                );
            }
        } else {
            let _ = writeln!(out, "    type: {kind}");
        }
        out.push_str("    stability: development\n");
        let looks_standard = key.starts_with("service.")
            || key.starts_with("http.")
            || key.starts_with("net.")
            || key.starts_with("server.")
            || key.starts_with("process.")
            || key.starts_with("rpc.");
        let brief = if looks_standard {
            "TODO (looks like a semantic convention: with --dependency on a semantic-conventions registry it is referred to instead)"
        } else {
            "TODO"
        };
        let _ = writeln!(out, "    brief: {}", quoted(brief));
        if let (false, Some(example)) = (enum_like, &attribute.example) {
            let _ = writeln!(out, "    examples: [{}]", quoted(example));
        }
    }
    out
}

// ---- spans ----------------------------------------------------------------------------

#[derive(Default)]
struct SpanSeen {
    count: usize,
    errors: usize,
    kinds: BTreeMap<SpanKind, usize>,
    /// Per attribute: on how many spans, on how many failed spans.
    attributes: BTreeMap<String, (usize, usize)>,
    roots: usize,
    /// Spans whose parent is not in the trace.
    orphans: usize,
    remote_parents: usize,
    parents: BTreeSet<(String, SpanKind)>,
    /// Per child (name, kind): how many under each span of this name, in span order.
    children: BTreeMap<(String, SpanKind), Vec<usize>>,
    events: BTreeMap<String, usize>,
}

fn span_groups(traces: &TraceSet, seen: &mut Seen) -> Option<String> {
    let mut by_name: BTreeMap<String, SpanSeen> = BTreeMap::new();
    for span in traces.spans() {
        let record = span.record();
        let index = by_name.get(&record.name).map_or(0, |entry| entry.count);
        let entry = by_name.entry(record.name.clone()).or_default();
        entry.count += 1;
        let failed = record.status.code == StatusCode::Error;
        entry.errors += usize::from(failed);
        *entry.kinds.entry(record.kind).or_default() += 1;
        for (key, value) in &record.attributes {
            let counts = entry.attributes.entry(key.clone()).or_default();
            counts.0 += 1;
            counts.1 += usize::from(failed);
            seen.record(key, value);
        }
        for (key, value) in &record.resource.attributes {
            seen.record(key, value);
        }
        match (record.parent, span.parent()) {
            (None, _) => entry.roots += 1,
            (Some(parent), found) => {
                if parent.remote == Some(true) {
                    entry.remote_parents += 1;
                }
                match found {
                    Some(found) => {
                        entry
                            .parents
                            .insert((found.name().to_owned(), found.record().kind));
                    }
                    None => entry.orphans += 1,
                }
            }
        }
        let mut counts: BTreeMap<(String, SpanKind), usize> = BTreeMap::new();
        for child in span.children() {
            *counts
                .entry((child.name().to_owned(), child.record().kind))
                .or_default() += 1;
        }
        for (child, list) in entry.children.iter_mut() {
            list.push(counts.remove(child).unwrap_or(0));
        }
        for (child, count) in counts {
            // A child first seen now: the spans before had none of it.
            let mut list = vec![0; index];
            list.push(count);
            entry.children.insert(child, list);
        }
        let names: BTreeSet<&str> = record.events.iter().map(|e| e.name.as_str()).collect();
        for name in names {
            *entry.events.entry(name.to_owned()).or_default() += 1;
        }
    }
    if by_name.is_empty() {
        return None;
    }
    let mut out = String::from(
        "# Drafted from a run: a group per span name, its attributes required when every span\n\
         # of the name had them, and its structure as seen under `annotations.structure`.\n\
         groups:\n",
    );
    let mut ids = UniqueIds::default();
    for (name, span) in &by_name {
        let id = ids.take(format!("span.{}", id_of(name)));
        let _ = writeln!(out, "  - id: {}", quoted(&id));
        out.push_str("    type: span\n");
        let _ = writeln!(out, "    name: {}", quoted(name));
        let _ = writeln!(
            out,
            "    # {} span(s), {} failed{}",
            span.count,
            span.errors,
            if span.kinds.len() > 1 {
                format!(
                    "; kinds seen: {}",
                    span.kinds
                        .iter()
                        .map(|(kind, count)| format!("{kind} {count}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
        // One kind seen: declared. Several: left open (the comment above lists them).
        if let [(kind, _)] = span.kinds.iter().collect::<Vec<_>>().as_slice() {
            let _ = writeln!(out, "    span_kind: {kind}");
        }
        out.push_str("    stability: development\n    brief: \"TODO\"\n");
        let mut on_error = Vec::new();
        if !span.attributes.is_empty() {
            out.push_str("    attributes:\n");
            for (key, (on, on_failed)) in &span.attributes {
                let _ = writeln!(out, "      - ref: {}", quoted(key));
                if *on == span.count {
                    out.push_str("        requirement_level: required\n");
                } else if span.errors > 0 && *on == *on_failed && *on_failed == span.errors {
                    out.push_str(
                        "        requirement_level:\n          conditionally_required: when the span failed\n",
                    );
                    on_error.push(key.clone());
                } else {
                    let _ = writeln!(
                        out,
                        "        requirement_level: recommended  # on {on} of {}",
                        span.count
                    );
                }
            }
        }
        out.push_str("    annotations:\n      structure:\n");
        if span.roots == span.count {
            out.push_str("        root: true\n");
        } else if span.roots == 0 && span.orphans == 0 && !span.parents.is_empty() {
            let parents: Vec<String> = span
                .parents
                .iter()
                .map(|(parent, kind)| format!("{{span: {}, kind: {kind}}}", quoted(parent)))
                .collect();
            let _ = writeln!(out, "        parent: [{}]", parents.join(", "));
        }
        if span.count > 0 && span.orphans == 0 && span.remote_parents == span.count {
            out.push_str("        remote_parent: true\n");
        }
        if !span.children.is_empty() {
            out.push_str("        children:\n");
            for ((child, kind), counts) in &span.children {
                let min = counts.iter().copied().min().unwrap_or(0);
                let max = counts.iter().copied().max().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "          - {{span: {}, kind: {kind}, min: {min}, max: {max}}}",
                    quoted(child)
                );
            }
        }
        let always: Vec<String> = span
            .events
            .iter()
            .filter(|(_, count)| **count == span.count)
            .map(|(event, _)| quoted(event))
            .collect();
        if !always.is_empty() {
            let _ = writeln!(out, "        events: [{}]", always.join(", "));
        }
        if !on_error.is_empty() {
            let listed: Vec<String> = on_error.iter().map(|key| quoted(key)).collect();
            let _ = writeln!(out, "        on_error: [{}]", listed.join(", "));
        }
        out.push('\n');
    }
    Some(out)
}

// ---- metrics and events ---------------------------------------------------------------

fn metric_groups(points: &[MetricPoint], seen: &mut Seen) -> Option<String> {
    struct MetricSeen<'a> {
        first: &'a MetricPoint,
        count: usize,
        labels: BTreeMap<String, usize>,
    }
    let mut by_name: BTreeMap<&str, MetricSeen<'_>> = BTreeMap::new();
    for point in points {
        let entry = by_name.entry(point.name.as_str()).or_insert(MetricSeen {
            first: point,
            count: 0,
            labels: BTreeMap::new(),
        });
        entry.count += 1;
        for (key, value) in &point.attributes {
            *entry.labels.entry(key.clone()).or_default() += 1;
            seen.record(key, value);
        }
    }
    if by_name.is_empty() {
        return None;
    }
    let mut out = String::from(
        "# Drafted from a run: a group per metric with the instrument, unit and labels seen.\n\
         groups:\n",
    );
    let mut ids = UniqueIds::default();
    for (name, metric) in &by_name {
        let instrument = match metric.first.kind {
            MetricKind::Sum { monotonic: true } => "counter",
            MetricKind::Sum { monotonic: false } => "updowncounter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram | MetricKind::ExponentialHistogram | MetricKind::Summary => {
                "histogram"
            }
        };
        let _ = writeln!(
            out,
            "  - id: {}",
            quoted(&ids.take(format!("metric.{}", id_of(name))))
        );
        out.push_str("    type: metric\n");
        let _ = writeln!(out, "    metric_name: {}", quoted(name));
        let _ = writeln!(out, "    # {} point(s)", metric.count);
        let _ = writeln!(out, "    instrument: {instrument}");
        let _ = writeln!(out, "    unit: {}", quoted(&metric.first.unit));
        out.push_str("    stability: development\n");
        let brief = if metric.first.description.is_empty() {
            "TODO".to_owned()
        } else {
            metric.first.description.clone()
        };
        let _ = writeln!(out, "    brief: {}", quoted(&brief));
        if !metric.labels.is_empty() {
            out.push_str("    attributes:\n");
            for (label, on) in &metric.labels {
                let _ = writeln!(out, "      - ref: {}", quoted(label));
                if *on == metric.count {
                    out.push_str("        requirement_level: required\n");
                } else {
                    let _ = writeln!(
                        out,
                        "        requirement_level: recommended  # on {on} of {}",
                        metric.count
                    );
                }
            }
        }
        out.push('\n');
    }
    Some(out)
}

fn event_groups(logs: &[LogRecord], seen: &mut Seen) -> Option<String> {
    let mut by_name: BTreeMap<&str, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for record in logs.iter().filter(|record| !record.event_name.is_empty()) {
        let entry = by_name.entry(record.event_name.as_str()).or_default();
        entry.0 += 1;
        for (key, value) in &record.attributes {
            *entry.1.entry(key.clone()).or_default() += 1;
            seen.record(key, value);
        }
    }
    if by_name.is_empty() {
        return None;
    }
    let mut out = String::from("# Drafted from a run: a group per log event name.\ngroups:\n");
    let mut ids = UniqueIds::default();
    for (name, (count, attributes)) in &by_name {
        let id = ids.take(format!("event.{}", id_of(name)));
        let _ = writeln!(out, "  - id: {}", quoted(&id));
        out.push_str("    type: event\n");
        let _ = writeln!(out, "    name: {}", quoted(name));
        let _ = writeln!(out, "    # {count} record(s)");
        out.push_str("    stability: development\n    brief: \"TODO\"\n");
        if !attributes.is_empty() {
            out.push_str("    attributes:\n");
            for (key, on) in attributes {
                let _ = writeln!(out, "      - ref: {}", quoted(key));
                let level = if on == count {
                    "required"
                } else {
                    "recommended"
                };
                let _ = writeln!(out, "        requirement_level: {level}");
            }
        }
        out.push('\n');
    }
    Some(out)
}
