//! From registry files to a [`Contract`](super::Contract): definitions collected, `ref`,
//! `ref_group` and `extends` followed, signals named. Every problem is collected with its
//! file and line, so one load reports all of them.
//!
//! One job in one file (~720 lines): the resolver walks one registry graph, and its
//! passes — collect, follow `ref`/`extends`/`ref_group`, name signals — share its tables
//! and its problem list; split, each piece would take the whole resolver as an argument.

use std::collections::HashMap;

use serde_yaml_ng::Value as Yaml;

use super::files::{self, AttributeEntry, Group, RegistryFile, RequirementSpec, TypeSpec};
use super::model::{
    AttributeDef, AttributeType, AttributeUse, GroupKind, Instrument, Requirement, ResolvedGroup,
};
use super::structure;
use super::Problem;
use crate::model::{SpanKind, Value};

/// One file to load: its name for messages, its text, and whether it belongs to a
/// dependency (whose attributes can be referenced but whose signals are not checked).
pub(super) struct Source {
    pub path: String,
    pub text: String,
    pub dependency: bool,
}

/// A group as read, with where it came from.
struct Located {
    group: Group,
    file: usize,
    line: usize,
}

pub(super) struct Resolved {
    pub attributes: HashMap<String, AttributeDef>,
    pub groups: Vec<ResolvedGroup>,
}

struct Resolver<'a> {
    sources: &'a [Source],
    groups: Vec<Located>,
    by_id: HashMap<String, usize>,
    attributes: HashMap<String, AttributeDef>,
    problems: Vec<Problem>,
    /// Attribute lists already resolved, by group index.
    done: HashMap<usize, Vec<AttributeUse>>,
}

pub(super) fn resolve(sources: &[Source]) -> Result<Resolved, Vec<Problem>> {
    let mut resolver = Resolver {
        sources,
        groups: Vec::new(),
        by_id: HashMap::new(),
        attributes: HashMap::new(),
        problems: Vec::new(),
        done: HashMap::new(),
    };
    for (index, source) in sources.iter().enumerate() {
        match files::parse(&source.text) {
            Ok(file) => resolver.read(index, file),
            Err(error) => {
                let (line, column) = error
                    .location()
                    .map_or((0, 0), |at| (at.line(), at.column()));
                resolver.problems.push(Problem {
                    path: source.path.clone(),
                    line,
                    column,
                    message: error.to_string(),
                });
            }
        }
    }
    let mut groups = Vec::new();
    for index in 0..resolver.groups.len() {
        // A dependency's groups are resolved only as far as the contract's use them.
        if sources[resolver.groups[index].file].dependency {
            continue;
        }
        let attributes = resolver.attributes_of(index, &mut Vec::new());
        if let Some(group) = resolver.signal(index, attributes) {
            groups.push(group);
        }
    }
    let mut names: HashMap<(&'static str, &str), &str> = HashMap::new();
    let mut duplicates = Vec::new();
    for group in &groups {
        if matches!(group.kind, GroupKind::AttributeGroup) {
            continue;
        }
        if let Some(first) = names.insert((group.signal_type(), &group.name), &group.defined_at) {
            duplicates.push((
                group.defined_at.clone(),
                format!(
                "{} {:?} is declared twice (first at {first}): telemetry can match only one group",
                group.signal_type(),
                group.name
            ),
            ));
        }
    }
    for (at, message) in duplicates {
        let (path, line) = at.rsplit_once(':').unwrap_or((&at, "0"));
        resolver.problems.push(Problem {
            path: path.to_owned(),
            line: line.parse().unwrap_or(0),
            column: 0,
            message,
        });
    }
    if resolver.problems.is_empty() {
        Ok(Resolved {
            attributes: resolver.attributes,
            groups,
        })
    } else {
        resolver
            .problems
            .sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        Err(resolver.problems)
    }
}

fn deprecation(value: &Option<Yaml>) -> Option<String> {
    match value.as_ref()? {
        Yaml::Null => None,
        Yaml::String(text) => Some(text.trim().to_owned()),
        Yaml::Mapping(map) => {
            let field = |name: &str| {
                map.get(name)
                    .and_then(Yaml::as_str)
                    .map(|s| s.trim().to_owned())
            };
            let mut why = field("reason").unwrap_or_else(|| "deprecated".into());
            if let Some(to) = field("renamed_to") {
                why = format!("{why}: use {to} instead");
            }
            if let Some(note) = field("note") {
                why = format!("{why} ({note})");
            }
            Some(why)
        }
        other => Some(format!("{other:?}")),
    }
}

fn yaml_value(value: &Yaml) -> Option<Value> {
    match value {
        Yaml::String(s) => Some(Value::Str(s.clone())),
        Yaml::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_f64().map(Value::Double)),
        Yaml::Bool(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}

impl Resolver<'_> {
    fn problem(&mut self, file: usize, line: usize, message: String) {
        self.problems.push(Problem {
            path: self.sources[file].path.clone(),
            line,
            column: 0,
            message,
        });
    }

    fn text(&self, file: usize) -> &str {
        &self.sources[file].text
    }

    /// Collects a file's groups and attribute definitions.
    fn read(&mut self, file: usize, registry: RegistryFile) {
        match registry.file_format.as_deref() {
            None | Some("definition/2") => {}
            Some(other) => {
                let line = files::line_of(self.text(file), 1, "file_format", other);
                self.problem(
                    file,
                    line,
                    format!("unknown file_format {other:?}: this loader reads `groups:` files and definition/2"),
                );
            }
        }
        for entry in &registry.attributes {
            let line = self.entry_line(file, 1, entry);
            if entry.key.is_none() {
                self.problem(
                    file,
                    line,
                    "a definition/2 `attributes:` entry defines an attribute: give its `key:`"
                        .into(),
                );
                continue;
            }
            self.define(file, line, "", entry);
        }
        let mut groups: Vec<Group> = registry.groups;
        groups.extend(registry.attribute_groups.into_iter().map(|mut group| {
            group
                .group_type
                .get_or_insert_with(|| "attribute_group".into());
            group
        }));
        for signal in registry.spans {
            let Some(id) = signal.signal_type.clone() else {
                let line = files::line_of(self.text(file), 1, "spans", "");
                self.problem(file, line, "a definition/2 span needs its `type:`".into());
                continue;
            };
            let name = match &signal.name {
                Some(Yaml::String(name)) => name.clone(),
                _ => id.clone(),
            };
            self.check_signal_level(file, ("span", "type", &id), &signal);
            groups.push(v2_group(format!("span.{id}"), "span", name, signal));
        }
        for (kind, list) in [("metric", registry.metrics), ("event", registry.events)] {
            for signal in list {
                let Some(Yaml::String(name)) = signal.name.clone() else {
                    let line = files::line_of(self.text(file), 1, &format!("{kind}s"), "");
                    self.problem(
                        file,
                        line,
                        format!("a definition/2 {kind} needs its `name:`"),
                    );
                    continue;
                };
                self.check_signal_level(file, (kind, "name", &name), &signal);
                let mut group = v2_group(format!("{kind}.{name}"), kind, name.clone(), signal);
                if kind == "metric" {
                    group.metric_name = Some(name);
                }
                groups.push(group);
            }
        }
        for group in groups {
            let line = self.group_line(file, &group.id);
            for entry in &group.attributes {
                if entry.id.is_some() || entry.key.is_some() {
                    let at = self.entry_line(file, line, entry);
                    self.define(file, at, &group.prefix, entry);
                }
            }
            if let Some(&first) = self.by_id.get(&group.id) {
                let previous = &self.groups[first];
                let message = format!(
                    "group {:?} is defined twice (first in {}:{})",
                    group.id, self.sources[previous.file].path, previous.line
                );
                self.problem(file, line, message);
                continue;
            }
            self.by_id.insert(group.id.clone(), self.groups.len());
            self.groups.push(Located { group, file, line });
        }
    }

    /// A definition/2 signal's own `requirement_level` is `recommended` or `opt_in`, as
    /// Weaver's schema says (`required` belongs to attributes).
    fn check_signal_level(
        &mut self,
        file: usize,
        (kind, field, value): (&str, &str, &str),
        signal: &files::V2Signal,
    ) {
        let Some(level) = &signal.requirement_level else {
            return;
        };
        if level == "recommended" || level == "opt_in" {
            return;
        }
        let text = self.text(file);
        let from = files::line_of(text, 1, field, value);
        let line = files::line_of(text, from, "requirement_level", level);
        self.problem(
            file,
            line,
            format!("{kind} {value}: requirement_level {level:?} — a definition/2 signal is `recommended` or `opt_in` (Weaver's rule; `required` belongs to attributes)"),
        );
    }

    fn group_line(&self, file: usize, id: &str) -> usize {
        let text = self.text(file);
        let bare = id.split_once('.').map_or(id, |(_, rest)| rest);
        files::find_line(text, 1, "id", id)
            .or_else(|| files::find_line(text, 1, "type", bare))
            .or_else(|| files::find_line(text, 1, "name", bare))
            .unwrap_or(1)
    }

    fn entry_line(&self, file: usize, from: usize, entry: &AttributeEntry) -> usize {
        let text = self.text(file);
        let (field, value) = if let Some(v) = &entry.id {
            ("id", v)
        } else if let Some(v) = &entry.key {
            ("key", v)
        } else if let Some(v) = &entry.reference {
            ("ref", v)
        } else if let Some(v) = &entry.ref_group {
            ("ref_group", v)
        } else {
            return from;
        };
        files::line_of(text, from, field, value)
    }

    /// Adds an attribute definition (`id:` or `key:`) to the registry.
    fn define(&mut self, file: usize, line: usize, prefix: &str, entry: &AttributeEntry) {
        let Some(name) = entry.id.as_ref().or(entry.key.as_ref()) else {
            return;
        };
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let attribute_type = match &entry.attribute_type {
            None => {
                self.problem(
                    file,
                    line,
                    format!("attribute {key} has no `type:` (string, int, double, boolean, an array such as string[], template[string] or an enum's members)"),
                );
                return;
            }
            Some(TypeSpec::Name(text)) => match AttributeType::parse(text) {
                Some(t) => t,
                None => {
                    self.problem(
                        file,
                        line,
                        format!("attribute {key} has an unknown type {text:?}: use string, int, double, boolean, any, their arrays (string[]…), template[…] or enum members"),
                    );
                    return;
                }
            },
            Some(TypeSpec::Enum(spec)) => {
                let mut members = Vec::new();
                for member in &spec.members {
                    match yaml_value(&member.value) {
                        Some(value @ (Value::Str(_) | Value::Int(_))) => members.push(value),
                        _ => {
                            self.problem(
                                file,
                                line,
                                format!(
                                    "enum member {} of {key} needs a string or int `value:`",
                                    member.id
                                ),
                            );
                            return;
                        }
                    }
                }
                if members.windows(2).any(|pair| {
                    std::mem::discriminant(&pair[0]) != std::mem::discriminant(&pair[1])
                }) {
                    self.problem(
                        file,
                        line,
                        format!("the members of enum {key} mix strings and ints: use one type"),
                    );
                    return;
                }
                AttributeType::Enum {
                    members,
                    open: spec.allow_custom_values.unwrap_or(true),
                }
            }
        };
        let def = AttributeDef {
            key: key.clone(),
            attribute_type,
            deprecated: deprecation(&entry.deprecated),
            stability: entry.stability.clone(),
            defined_at: format!("{}:{line}", self.sources[file].path),
        };
        if let Some(previous) = self.attributes.get(&key) {
            let message = format!(
                "attribute {key} is defined twice (first at {}): define it once and `ref:` it elsewhere",
                previous.defined_at
            );
            self.problem(file, line, message);
            return;
        }
        self.attributes.insert(key, def);
    }

    /// A group's attributes: those of the group it extends, then its own entries (a
    /// later entry of the same key refines an earlier one).
    fn attributes_of(&mut self, index: usize, path: &mut Vec<usize>) -> Vec<AttributeUse> {
        if let Some(done) = self.done.get(&index) {
            return done.clone();
        }
        if path.contains(&index) {
            let (file, line) = (self.groups[index].file, self.groups[index].line);
            let cycle: Vec<String> = path
                .iter()
                .chain([&index])
                .map(|&i| self.groups[i].group.id.clone())
                .collect();
            self.problem(
                file,
                line,
                format!(
                    "groups include each other in a cycle: {}",
                    cycle.join(" → ")
                ),
            );
            return Vec::new();
        }
        path.push(index);
        let (file, line) = (self.groups[index].file, self.groups[index].line);
        let mut uses: Vec<AttributeUse> = Vec::new();
        if let Some(parent) = self.groups[index].group.extends.clone() {
            match self.by_id.get(&parent).copied() {
                Some(parent_index) => uses = self.attributes_of(parent_index, path),
                None => {
                    let at = files::line_of(self.text(file), line, "extends", &parent);
                    let message = self.unknown_group_message("extends", &parent);
                    self.problem(file, at, message);
                }
            }
        }
        let prefix = self.groups[index].group.prefix.clone();
        let entries = std::mem::take(&mut self.groups[index].group.attributes);
        for entry in &entries {
            let at = self.entry_line(file, line, entry);
            let kinds = [&entry.id, &entry.key, &entry.reference, &entry.ref_group]
                .iter()
                .filter(|field| field.is_some())
                .count();
            if kinds != 1 {
                self.problem(
                    file,
                    at,
                    "an attribute entry needs exactly one of `id:` (groups) or `key:` (definition/2) to define, `ref:` to use, `ref_group:` to include".into(),
                );
                continue;
            }
            if let Some(group) = &entry.ref_group {
                match self.by_id.get(group).copied() {
                    Some(included) => {
                        for included in self.attributes_of(included, path) {
                            merge(&mut uses, included);
                        }
                    }
                    None => {
                        let message = self.unknown_group_message("ref_group", group);
                        self.problem(file, at, message);
                    }
                }
                continue;
            }
            let key = match (&entry.reference, entry.id.as_ref().or(entry.key.as_ref())) {
                (Some(reference), _) => reference.clone(),
                (None, Some(name)) if !prefix.is_empty() => format!("{prefix}.{name}"),
                (None, Some(name)) => name.clone(),
                (None, None) => continue,
            };
            let Some(mut def) = self.attributes.get(&key).cloned() else {
                if entry.reference.is_some() {
                    let message = self.unknown_attribute_message(&key);
                    self.problem(file, at, message);
                }
                // A definition that failed is reported where it was read.
                continue;
            };
            if entry.reference.is_some() {
                if let Some(why) = deprecation(&entry.deprecated) {
                    def.deprecated = Some(why);
                }
            }
            let requirement = match &entry.requirement_level {
                None => uses
                    .iter()
                    .find(|u| u.def.key == key)
                    .map_or(Requirement::Recommended, |u| u.requirement.clone()),
                Some(spec) => match requirement(spec) {
                    Ok(level) => level,
                    Err(message) => {
                        self.problem(file, at, format!("{key}: {message}"));
                        continue;
                    }
                },
            };
            merge(&mut uses, AttributeUse { def, requirement });
        }
        self.groups[index].group.attributes = entries;
        path.pop();
        self.done.insert(index, uses.clone());
        uses
    }

    fn unknown_group_message(&self, field: &str, id: &str) -> String {
        format!(
            "{field}: no group {id:?} in the contract or its dependencies{}",
            suggestion(id, self.by_id.keys())
        )
    }

    fn unknown_attribute_message(&self, key: &str) -> String {
        format!(
            "ref: no attribute {key:?} in the contract or its dependencies{}",
            suggestion(key, self.attributes.keys())
        )
    }

    /// The checked signal a group declares, or `None` for attribute groups and types
    /// this checker has nothing to say about (resources, scopes, entities).
    fn signal(&mut self, index: usize, attributes: Vec<AttributeUse>) -> Option<ResolvedGroup> {
        let located = &self.groups[index];
        let (file, line) = (located.file, located.line);
        let group = &located.group;
        let defined_at = format!("{}:{line}", self.sources[file].path);
        let group_type = group.group_type.clone().unwrap_or_default();
        let strip = |prefix: &str| {
            group
                .id
                .strip_prefix(prefix)
                .unwrap_or(&group.id)
                .to_owned()
        };
        let mut problems = Vec::new();
        let kind = match group_type.as_str() {
            "span" => {
                let kind = match group.span_kind.as_deref().map(|k| (k, SpanKind::parse(k))) {
                    None => None,
                    Some((_, Some(kind))) => Some(kind),
                    Some((text, None)) => {
                        problems.push(format!("span_kind {text:?}: use internal, server, client, producer or consumer"));
                        None
                    }
                };
                GroupKind::Span { kind }
            }
            "metric" => {
                let instrument = match group
                    .instrument
                    .as_deref()
                    .map(|i| (i, Instrument::parse(i)))
                {
                    Some((_, Some(instrument))) => instrument,
                    Some((text, None)) => {
                        problems.push(format!(
                            "instrument {text:?}: use counter, updowncounter, gauge or histogram"
                        ));
                        Instrument::Counter
                    }
                    None => {
                        problems.push("a metric group needs its `instrument:`".into());
                        Instrument::Counter
                    }
                };
                if group.metric_name.is_none() {
                    problems.push("a metric group needs its `metric_name:`".into());
                }
                GroupKind::Metric {
                    instrument,
                    unit: group.unit.clone().unwrap_or_default(),
                }
            }
            "event" => GroupKind::Event,
            "attribute_group" => GroupKind::AttributeGroup,
            "" => {
                problems.push(
                    "a group needs its `type:` (attribute_group, span, metric, event)".into(),
                );
                GroupKind::AttributeGroup
            }
            "resource" | "scope" | "entity" | "metric_group" => return None,
            other => {
                problems.push(format!(
                    "unknown group type {other:?}: use attribute_group, span, metric or event"
                ));
                GroupKind::AttributeGroup
            }
        };
        let name = match &kind {
            GroupKind::Span { .. } => group.name.clone().unwrap_or_else(|| strip("span.")),
            GroupKind::Metric { .. } => group.metric_name.clone().unwrap_or_default(),
            GroupKind::Event => group.name.clone().unwrap_or_else(|| strip("event.")),
            GroupKind::AttributeGroup => group.id.clone(),
        };
        let mut structure = structure::Structure::default();
        let mut alerts = Vec::new();
        if let Some(value) = group.annotations.get("structure") {
            match (&kind, structure::structure(value)) {
                (GroupKind::Span { .. }, Ok(found)) => structure = found,
                (GroupKind::Span { .. }, Err(message)) => problems.push(message),
                _ => problems.push("annotations.structure applies to span groups only".into()),
            }
        }
        if let Some(value) = group.annotations.get("alerts") {
            match (&kind, structure::alerts(value)) {
                (GroupKind::Metric { instrument, .. }, Ok(found)) => {
                    for alert in &found {
                        if alert.error_rate.is_some() && *instrument != Instrument::Counter {
                            problems
                                .push(format!("alert {}: error_rate needs a counter", alert.alert));
                        }
                        if alert.quantile.is_some() && *instrument != Instrument::Histogram {
                            problems
                                .push(format!("alert {}: quantile needs a histogram", alert.alert));
                        }
                    }
                    alerts = found;
                }
                (GroupKind::Metric { .. }, Err(message)) => problems.push(message),
                _ => problems.push("annotations.alerts applies to metric groups only".into()),
            }
        }
        let mut cardinality = Vec::new();
        if let Some(value) = group.annotations.get("cardinality") {
            match (&kind, structure::cardinality(value)) {
                (GroupKind::AttributeGroup, _) => problems.push(
                    "annotations.cardinality applies to span, metric and event groups".into(),
                ),
                (_, Ok(found)) => {
                    // A budget on a key the group does not carry would never be counted.
                    for (key, _) in &found {
                        if !attributes.iter().any(|used| &used.def.key == key) {
                            problems.push(format!(
                                "annotations.cardinality: {key} is not an attribute of this group: \
                                 add it to the group's attributes or remove its budget"
                            ));
                        }
                    }
                    cardinality = found;
                }
                (_, Err(message)) => problems.push(message),
            }
        }
        let resolved = ResolvedGroup {
            id: group.id.clone(),
            name,
            kind,
            brief: group.brief.trim().to_owned(),
            deprecated: deprecation(&group.deprecated),
            stability: group.stability.clone(),
            attribute_index: attributes
                .iter()
                .enumerate()
                .map(|(i, u)| (u.def.key.clone(), i))
                .collect(),
            attributes,
            structure,
            alerts,
            cardinality,
            defined_at,
        };
        let id = group.id.clone();
        for message in problems {
            self.problem(file, line, format!("group {id}: {message}"));
        }
        Some(resolved)
    }
}

/// Adds `new`, replacing an earlier use of the same key (a refinement).
fn merge(uses: &mut Vec<AttributeUse>, new: AttributeUse) {
    match uses.iter_mut().find(|u| u.def.key == new.def.key) {
        Some(existing) => *existing = new,
        None => uses.push(new),
    }
}

fn requirement(spec: &RequirementSpec) -> Result<Requirement, String> {
    const HELP: &str =
        "requirement_level: use required, recommended, opt_in, or `conditionally_required: <when>`";
    match spec {
        RequirementSpec::Plain(text) => match text.as_str() {
            "required" => Ok(Requirement::Required),
            "recommended" => Ok(Requirement::Recommended),
            "opt_in" => Ok(Requirement::OptIn),
            "conditionally_required" => Err(format!("{HELP} (say when)")),
            other => Err(format!("{other:?} — {HELP}")),
        },
        RequirementSpec::WithText(map) => {
            let mut entries = map.iter();
            match (entries.next(), entries.next()) {
                (Some((level, when)), None) => match level.as_str() {
                    "conditionally_required" => {
                        Ok(Requirement::ConditionallyRequired(when.clone()))
                    }
                    "recommended" => Ok(Requirement::Recommended),
                    "required" => Ok(Requirement::Required),
                    "opt_in" => Ok(Requirement::OptIn),
                    other => Err(format!("{other:?} — {HELP}")),
                },
                _ => Err(HELP.into()),
            }
        }
    }
}

/// ", did you mean X?" for the closest known name, if one is close.
fn suggestion<'a>(wanted: &str, known: impl Iterator<Item = &'a String>) -> String {
    known
        .map(|k| (distance(wanted, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" — did you mean {k:?}?"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (row[j] + 1)
                .min(current + 1)
                .min(previous + usize::from(ca != *cb));
            previous = current;
        }
    }
    row[b.len()]
}

fn v2_group(id: String, kind: &str, name: String, signal: files::V2Signal) -> Group {
    Group {
        id,
        group_type: Some(kind.to_owned()),
        brief: signal.brief,
        note: None,
        prefix: String::new(),
        extends: None,
        stability: signal.stability,
        deprecated: signal.deprecated,
        attributes: signal.attributes,
        span_kind: signal.kind,
        events: Vec::new(),
        metric_name: None,
        instrument: signal.instrument,
        unit: signal.unit,
        name: Some(name),
        display_name: None,
        body: None,
        annotations: signal.annotations,
        entity_associations: None,
        include_groups: None,
        visibility: None,
    }
}
