//! Checking telemetry against a contract: each span, metric point and log record once,
//! findings aggregated by what they are about, coverage counted as it goes.
//!
//! One job in one file (~700 lines): the `Checker` and its per-signal checks share the
//! findings it aggregates and the coverage it counts; each check is a method of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::advice::Advice;
use super::findings::{sort, Coverage, Finding, GroupCoverage, Level, Report, SpanLocation};
use super::model::{
    AttributeDef, AttributeType, AttributeUse, GroupKind, Instrument, Requirement, ResolvedGroup,
};
use super::Contract;
use crate::model::{
    Attributes, LogRecord, MetricKind, MetricPoint, Resource, SpanId, StatusCode, Value,
};
use crate::tree::{SpanRef, Trace, TraceSet};

/// How many traces with violations a report renders.
const RENDERED_TRACES: usize = 3;

/// Checks telemetry against a [`Contract`] over several calls, accumulating findings and
/// coverage; [`finish`](Self::finish) gives the [`Report`]. Each `check_*` call returns the
/// findings it saw first, for printing them as they arise.
///
/// ```
/// # use p2p_otel_testkit::contract::Contract;
/// # let contract = Contract::loader().load_sources([("m.yaml", "groups: []")])?;
/// let mut checker = contract.checker();
/// let new = checker.check_metrics(&[]);
/// assert!(new.is_empty());
/// assert!(checker.finish().findings().is_empty());
/// # Ok::<(), p2p_otel_testkit::contract::ContractError>(())
/// ```
#[derive(Debug)]
pub struct Checker<'a> {
    contract: &'a Contract,
    findings: Vec<Finding>,
    by_key: HashMap<(&'static str, Level, String, String), usize>,
    /// The finding each absent attribute of each group became, for a failed span and
    /// not: the common case (an optional attribute absent on every span) counts without
    /// building a key.
    absent_findings: Vec<Vec<[Option<usize>; 2]>>,
    /// Scratch: which of a group's attributes the sample being checked carries.
    present: Vec<bool>,
    /// Occurrences of violations so far.
    violations: u64,
    samples: Vec<u64>,
    seen: Vec<Vec<bool>>,
    spans: u64,
    metric_points: u64,
    logs: u64,
    rendered: Vec<String>,
    /// Per group and budget (`annotations.cardinality`): the distinct values seen, kept up
    /// to a bound past the budget, and the first sample that went past it.
    distinct: Vec<Vec<Distinct>>,
    /// Per group: the advice findings each attribute key became (Weaver's advice depends on
    /// the key and its definition only, so it is worked out once per group and key).
    advised: Vec<HashMap<String, Vec<usize>>>,
    /// Per group: the advice findings about the metric or event itself.
    signal_advised: Vec<Option<Vec<usize>>>,
    /// The resources checked so far, by content.
    resources: HashSet<u64>,
    /// The last resource checked: spans of one node share one.
    last_resource: Option<std::sync::Arc<Resource>>,
}

/// The distinct values one attribute of one group took.
#[derive(Debug, Default)]
struct Distinct {
    values: HashSet<String>,
    /// More values than `values` holds were seen (it stopped growing at its bound).
    more: bool,
    /// Where the budget was first exceeded: the sample's name, trace and span ids.
    first_over: Option<(String, Option<SpanLocation>)>,
}

/// How many values past its budget a `Distinct` keeps (the rest are only "more").
const DISTINCT_BOUND_OVER_BUDGET: usize = 1_000;

/// Where the sample being checked came from, for a finding's first example.
struct Sample<'s> {
    signal_type: &'static str,
    signal_name: &'s str,
    span: Option<SpanRef<'s>>,
    traces: Option<&'s TraceSet>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(contract: &'a Contract) -> Self {
        Checker {
            contract,
            findings: Vec::new(),
            by_key: HashMap::new(),
            samples: vec![0; contract.groups.len()],
            seen: contract
                .groups
                .iter()
                .map(|g| vec![false; g.attributes.len()])
                .collect(),
            present: Vec::new(),
            violations: 0,
            absent_findings: contract
                .groups
                .iter()
                .map(|g| vec![[None; 2]; g.attributes.len()])
                .collect(),
            spans: 0,
            metric_points: 0,
            logs: 0,
            rendered: Vec::new(),
            distinct: contract
                .groups
                .iter()
                .map(|g| g.cardinality.iter().map(|_| Distinct::default()).collect())
                .collect(),
            advised: vec![HashMap::new(); contract.groups.len()],
            signal_advised: vec![None; contract.groups.len()],
            resources: HashSet::new(),
            last_resource: None,
        }
    }

    /// Counts the values of the attributes with a cardinality budget.
    fn count_distinct(&mut self, index: usize, sample: &Sample<'_>, attributes: &Attributes) {
        let group = &self.contract.groups[index];
        for (budget_index, (key, max)) in group.cardinality.iter().enumerate() {
            let Some(value) = attributes.get(key) else {
                continue;
            };
            let distinct = &mut self.distinct[index][budget_index];
            let text = match value {
                Value::Str(text) => text.clone(),
                other => other.to_string(),
            };
            if distinct.values.contains(&text) {
                continue;
            }
            if distinct.values.len() >= max.saturating_add(DISTINCT_BOUND_OVER_BUDGET) {
                distinct.more = true;
                continue;
            }
            distinct.values.insert(text);
            if distinct.values.len() > *max && distinct.first_over.is_none() {
                let location = sample.span.map(|span| SpanLocation {
                    trace_id: span.record().trace_id.to_string(),
                    span_id: span.record().span_id.to_string(),
                    node: instance(&span.record().resource)
                        .unwrap_or("unknown node")
                        .to_owned(),
                });
                distinct.first_over = Some((sample.signal_name.to_owned(), location));
            }
        }
    }

    /// Checks every trace of `traces`.
    pub fn check_traces(&mut self, traces: &TraceSet) -> Vec<Finding> {
        let mut new = Vec::new();
        for trace in traces.traces() {
            new.extend(self.check_trace(trace, traces));
        }
        new
    }

    /// Checks one trace (of `traces`, whose render settings name the nodes).
    pub fn check_trace(&mut self, trace: &Trace, traces: &TraceSet) -> Vec<Finding> {
        self.check_trace_where(trace, traces, |_| true)
    }

    /// Checks the spans of `trace` that are not in `checked`, and adds them to it: for a
    /// collector where a distributed trace's spans arrive from its nodes over time, so
    /// spans that arrive after the trace was first checked are checked too, once each.
    ///
    /// ```
    /// # use std::collections::HashSet;
    /// # use p2p_otel_testkit::contract::Contract;
    /// # use p2p_otel_testkit::model::{SpanId, SpanRecord, TraceId};
    /// # let contract = Contract::loader().load_sources([("m.yaml", "groups: []")])?;
    /// let trace_id = TraceId::from_bytes([1; 16]);
    /// let root = SpanRecord::new(trace_id, SpanId::from_bytes([1; 8]), "search");
    /// let mut checker = contract.checker();
    /// let mut checked = HashSet::new();
    /// let first = p2p_otel_testkit::TraceSet::new([root.clone()]);
    /// checker.check_new_spans(&first.traces()[0], &first, &mut checked);
    /// // The remote handler's span arrives later: only it is checked now.
    /// let mut handler = SpanRecord::new(trace_id, SpanId::from_bytes([2; 8]), "handle");
    /// handler.parent = Some(p2p_otel_testkit::model::ParentRef { span_id: root.span_id, remote: Some(true) });
    /// let later = p2p_otel_testkit::TraceSet::new([root, handler]);
    /// checker.check_new_spans(&later.traces()[0], &later, &mut checked);
    /// assert_eq!(checked.len(), 2);
    /// assert_eq!(checker.finish().samples().0, 2);
    /// # Ok::<(), p2p_otel_testkit::contract::ContractError>(())
    /// ```
    pub fn check_new_spans(
        &mut self,
        trace: &Trace,
        traces: &TraceSet,
        checked: &mut HashSet<SpanId>,
    ) -> Vec<Finding> {
        self.check_trace_where(trace, traces, |span| checked.insert(span))
    }

    fn check_trace_where(
        &mut self,
        trace: &Trace,
        traces: &TraceSet,
        mut take: impl FnMut(SpanId) -> bool,
    ) -> Vec<Finding> {
        let first_new = self.findings.len();
        let violations_before = self.violations;
        for span in trace.spans() {
            if take(span.record().span_id) {
                self.check_span(span, traces);
            }
        }
        if self.violations > violations_before && self.rendered.len() < RENDERED_TRACES {
            let one = TraceSet::new(trace.spans().map(|s| s.record().clone()))
                .with_render_settings(traces.render_settings());
            self.rendered.push(one.render());
        }
        self.findings[first_new..].to_vec()
    }

    fn check_span(&mut self, span: SpanRef<'_>, traces: &TraceSet) {
        self.spans += 1;
        let record = span.record();
        self.check_resource(&record.resource);
        let sample = Sample {
            signal_type: "span",
            signal_name: &record.name,
            span: Some(span),
            traces: Some(traces),
        };
        let contract = self.contract;
        let Some(&index) = contract.spans.get(&record.name) else {
            self.report(
                &sample,
                "undeclared_span",
                Level::Information,
                String::new(),
                || format!("span {} is not declared in the contract: declare a span group for it (id span.{0}) or stop emitting it", record.name),
                BTreeMap::new,
            );
            return;
        };
        let group = &contract.groups[index];
        self.samples[index] += 1;
        self.deprecated_signal(&sample, group);
        if let GroupKind::Span { kind: Some(kind) } = group.kind {
            if record.kind != kind {
                self.report(
                    &sample,
                    "unexpected_span_kind",
                    Level::Violation,
                    record.kind.to_string(),
                    || format!("span {} has kind {}, the contract declares {kind}: set otel.kind = \"{kind}\"", record.name, record.kind),
                    || context(&[("expected", kind.to_string()), ("found", record.kind.to_string())]),
                );
            }
        }
        self.check_attributes(
            index,
            &sample,
            &record.attributes,
            Some(&record.resource),
            &record.unrecorded_fields,
        );
        self.count_distinct(index, &sample, &record.attributes);
        self.check_event_attributes(index, &sample, span);
        let structure = &group.structure;
        if !structure.is_empty() {
            self.check_structure(index, &sample, span);
        }
    }

    fn check_structure(&mut self, index: usize, sample: &Sample<'_>, span: SpanRef<'_>) {
        let contract = self.contract;
        let group = &contract.groups[index];
        let structure = &group.structure;
        let record = span.record();
        let name = &record.name;
        let parent = span.parent();
        if structure.root && record.parent.is_some() {
            let found = parent_name(parent);
            self.report(sample, "unexpected_parent", Level::Violation, found.clone(), || {
                format!("span {name} must be a root, but its parent is {found}: start it outside any span (or with `parent: None`)")
            }, || context(&[("expected", "no parent".into()), ("found", found.clone())]));
        }
        if !structure.parent.is_empty() {
            let ok = parent.is_some_and(|p| {
                structure.parent.iter().any(|edge| {
                    p.name() == edge.span && edge.kind.is_none_or(|k| p.record().kind == k)
                })
            });
            if !ok {
                let found = match (&record.parent, parent) {
                    (None, _) => "none (it is a root)".to_owned(),
                    (Some(_), None) => "a span that was not received (an orphan)".to_owned(),
                    (Some(_), Some(p)) => format!("{} ({})", p.name(), p.record().kind),
                };
                let expected = structure
                    .parent
                    .iter()
                    .map(|edge| match edge.kind {
                        Some(kind) => format!("{} ({kind})", edge.span),
                        None => edge.span.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" or ");
                self.report(sample, "unexpected_parent", Level::Violation, found.clone(), || {
                    format!("span {name} must be a child of {expected}, but its parent is {found}: start it inside its parent, or propagate the parent's context")
                }, || context(&[("expected", expected.clone()), ("found", found.clone())]));
            }
        }
        if structure.remote_parent {
            let problem = match (&record.parent, parent) {
                (None, _) => Some("it is a root: the caller's context was not propagated (inject it into the message, extract it in the handler)".to_owned()),
                (Some(p), _) if p.remote == Some(false) => Some("its parent is local: the handler's span must take the context extracted from the message".to_owned()),
                (Some(_), Some(p)) if instance(&p.record().resource) == instance(&record.resource) => {
                    Some("its parent is on the same node: the parent must be the remote caller's span".to_owned())
                }
                (Some(_), None) => Some("its parent was not received: collect the caller node's spans too".to_owned()),
                _ => None,
            };
            if let Some(problem) = problem {
                self.report(
                    sample,
                    "missing_remote_parent",
                    Level::Violation,
                    problem.clone(),
                    || {
                        format!(
                            "span {name} must have a remote parent on another node, but {problem}"
                        )
                    },
                    BTreeMap::new,
                );
            }
        }
        let failed = record.status.code == StatusCode::Error;
        if !structure.children.is_empty() {
            let children = span.children();
            for rule in &structure.children {
                let count = children
                    .iter()
                    .filter(|c| {
                        c.name() == rule.edge.span
                            && rule.edge.kind.is_none_or(|k| c.record().kind == k)
                    })
                    .count();
                let kind = rule
                    .edge
                    .kind
                    .map(|k| format!(" of kind {k}"))
                    .unwrap_or_default();
                if count < rule.min && !failed {
                    self.report(sample, "missing_child", Level::Violation, rule.edge.span.clone(), || {
                        format!(
                            "span {name} must have at least {} child span(s) {}{kind}, it has {count}: create {} inside {name} (or pass the parent explicitly across tasks)",
                            rule.min, rule.edge.span, rule.edge.span
                        )
                    }, || context(&[("child", rule.edge.span.clone()), ("minimum", rule.min.to_string()), ("found", count.to_string())]));
                }
                if let Some(max) = rule.max.filter(|&max| count > max) {
                    self.report(sample, "unexpected_child", Level::Violation, rule.edge.span.clone(), || {
                        format!("span {name} may have at most {max} child span(s) {}{kind}, it has {count}", rule.edge.span)
                    }, || context(&[("child", rule.edge.span.clone()), ("maximum", max.to_string()), ("found", count.to_string())]));
                }
            }
        }
        for event in &structure.events {
            if !failed && !record.events.iter().any(|e| &e.name == event) {
                self.report(
                    sample,
                    "missing_required_event",
                    Level::Violation,
                    event.clone(),
                    || {
                        format!(
                            "span {name} must record the event {event:?}: emit it inside the span"
                        )
                    },
                    || context(&[("event", event.clone())]),
                );
            }
        }
        if failed {
            for key in &structure.on_error {
                if record.attribute(key).is_none() {
                    self.report(sample, "missing_error_attribute", Level::Violation, key.clone(), || {
                        format!("span {name} has status Error but no {key}: record {key} when the operation fails")
                    }, || context(&[("attribute_key", key.clone())]));
                }
            }
        }
    }

    /// A `deprecated` violation when the sample's group is deprecated.
    fn deprecated_signal(&mut self, sample: &Sample<'_>, group: &ResolvedGroup) {
        if let Some(why) = &group.deprecated {
            self.report(
                sample,
                "deprecated",
                Level::Violation,
                String::new(),
                || {
                    format!(
                        "{} {} is deprecated: {why}",
                        sample.signal_type, sample.signal_name
                    )
                },
                || context(&[("deprecation", why.clone())]),
            );
        }
    }

    /// Checks attributes against a group: each one present, then each one declared.
    fn check_attributes(
        &mut self,
        index: usize,
        sample: &Sample<'_>,
        attributes: &Attributes,
        resource: Option<&Resource>,
        unrecorded: &std::collections::BTreeSet<String>,
    ) {
        let contract = self.contract;
        let group: &ResolvedGroup = &contract.groups[index];
        // Which declared attributes this sample carries, by position in the group.
        let mut present = std::mem::take(&mut self.present);
        present.clear();
        present.resize(group.attributes.len(), false);
        for (key, value) in attributes {
            let used = group
                .attribute_index
                .get(key)
                .copied()
                .or_else(|| template_use(group, key));
            let def = match used {
                Some(at) => {
                    self.seen[index][at] = true;
                    present[at] = true;
                    &group.attributes[at].def
                }
                None => match contract.attribute(key) {
                    Some(def) => def,
                    None => {
                        self.advise(index, sample, key, None);
                        self.report(sample, "missing_attribute", Level::Violation, key.clone(), || {
                            format!(
                                "attribute {key} on {} {} is not defined in the contract: define it (or `ref:` a semantic convention) and add it to group {}, or stop recording it",
                                sample.signal_type, sample.signal_name, group.id
                            )
                        }, || context(&[("attribute_key", key.clone())]));
                        continue;
                    }
                },
            };
            self.advise(index, sample, key, Some(def));
            self.check_value(sample, def, key, value);
        }
        for (at, used) in group.attributes.iter().enumerate() {
            if present[at] {
                continue;
            }
            if let Some(found) = resource.and_then(|r| r.attributes.get(&used.def.key)) {
                self.seen[index][at] = true;
                self.check_value(sample, &used.def, &used.def.key, found);
                continue;
            }
            self.absent(sample, (index, at), used, group, unrecorded);
        }
        self.present = present;
    }

    fn absent(
        &mut self,
        sample: &Sample<'_>,
        (index, at): (usize, usize),
        used: &AttributeUse,
        group: &ResolvedGroup,
        unrecorded: &std::collections::BTreeSet<String>,
    ) {
        // A failed span may miss what it never got (the message id of an announcement
        // that was never sent): `on_error` says what it must carry instead.
        let failed = sample
            .span
            .is_some_and(|s| s.record().status.code == StatusCode::Error);
        if let Some(finding) = self.absent_findings[index][at][usize::from(failed)] {
            recount(&mut self.findings, &mut self.violations, &[finding]);
            return;
        }
        let unrecorded = unrecorded.contains(&used.def.key);
        let (id, level) = match &used.requirement {
            Requirement::Required if failed => {
                ("required_attribute_not_present", Level::Information)
            }
            Requirement::Required => ("required_attribute_not_present", Level::Violation),
            Requirement::Recommended => ("recommended_attribute_not_present", Level::Improvement),
            Requirement::ConditionallyRequired(_) => (
                "conditionally_required_attribute_not_present",
                Level::Information,
            ),
            Requirement::OptIn => ("opt_in_attribute_not_present", Level::Information),
        };
        let key = &used.def.key;
        let hint = if failed && used.requirement == Requirement::Required {
            " — the span failed, so this is information only".to_owned()
        } else if unrecorded {
            " — it was declared on the span but never recorded: call span.record(..) on every path"
                .to_owned()
        } else if let Requirement::ConditionallyRequired(when) = &used.requirement {
            format!(" (required when: {})", when.trim())
        } else {
            String::new()
        };
        let finding = self.report(
            sample,
            id,
            level,
            key.clone(),
            || {
                let fix = match sample.signal_type {
                    "span" => format!(
                        "add `{key} = …` to the span's fields, or `span.record(\"{key}\", …)` before it ends"
                    ),
                    "metric" => format!("add KeyValue::new(\"{key}\", …) to every measurement"),
                    _ => format!("add {key} to the record's attributes"),
                };
                format!(
                    "{} attribute {key} is not present on {} {}{hint}: {fix} (group {}, {})",
                    used.requirement.as_str(),
                    sample.signal_type,
                    sample.signal_name,
                    group.id,
                    group.defined_at
                )
            },
            || {
                context(&[
                    ("attribute_key", key.clone()),
                    ("requirement_level", used.requirement.as_str().into()),
                ])
            },
        );
        self.absent_findings[index][at][usize::from(failed)] = Some(finding);
    }

    fn check_value(&mut self, sample: &Sample<'_>, def: &AttributeDef, key: &str, value: &Value) {
        if !def.attribute_type.accepts(value) {
            let expected = def.attribute_type.name();
            self.report(sample, "type_mismatch", Level::Violation, key.to_owned(), || {
                format!(
                    "attribute {key} on {} {} is a {}, the contract declares {expected}: record it as {expected}",
                    sample.signal_type,
                    sample.signal_name,
                    value.type_name()
                )
            }, || context(&[("attribute_key", key.to_owned()), ("expected", expected.clone()), ("found", value.type_name().into())]));
            return;
        }
        if let AttributeType::Enum { members, open } = &def.attribute_type {
            if !members.contains(value) {
                let allowed = members
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let level = if *open {
                    Level::Information
                } else {
                    Level::Violation
                };
                let found = value.to_string();
                self.report(sample, "undefined_enum_variant", level, format!("{key}={found}"), || {
                    format!("attribute {key} on {} {} is {found}, not one of the contract's members ({allowed}): use a member or add it to the enum", sample.signal_type, sample.signal_name)
                }, || context(&[("attribute_key", key.to_owned()), ("attribute_value", found.clone())]));
            }
        }
        if let Some(why) = &def.deprecated {
            self.report(
                sample,
                "deprecated",
                Level::Violation,
                key.to_owned(),
                || {
                    format!(
                        "attribute {key} on {} {} is deprecated: {why}",
                        sample.signal_type, sample.signal_name
                    )
                },
                || {
                    context(&[
                        ("attribute_key", key.to_owned()),
                        ("deprecation", why.clone()),
                    ])
                },
            );
        }
    }

    /// Checks metric points: the metric declared, its instrument, unit and attributes.
    pub fn check_metrics(&mut self, points: &[MetricPoint]) -> Vec<Finding> {
        let first_new = self.findings.len();
        for point in points {
            self.metric_points += 1;
            self.check_resource(&point.resource);
            let sample = Sample {
                signal_type: "metric",
                signal_name: &point.name,
                span: None,
                traces: None,
            };
            let contract = self.contract;
            let Some(&index) = contract.metrics.get(&point.name) else {
                self.report(&sample, "missing_metric", Level::Violation, String::new(), || {
                    format!("metric {} is not declared in the contract: declare a metric group (metric_name: {0}, its instrument and unit) or stop emitting it", point.name)
                }, BTreeMap::new);
                if contract.advice.is_some() {
                    for advice in super::advice::metric(&point.name, None) {
                        self.report_advice(&sample, advice, String::new());
                    }
                }
                continue;
            };
            self.samples[index] += 1;
            let group = &contract.groups[index];
            if let GroupKind::Metric { instrument, unit } = &group.kind {
                let found = instrument_of(point.kind);
                if !found.contains(instrument) {
                    let found_text = kind_text(point.kind);
                    self.report(&sample, "unexpected_instrument", Level::Violation, found_text.into(), || {
                        format!("metric {} arrives as a {found_text}, the contract declares a {}: create it with the {0} instrument", point.name, instrument.as_str())
                    }, || context(&[("expected", instrument.as_str().into()), ("found", found_text.into())]));
                }
                if &point.unit != unit {
                    self.report(&sample, "unit_mismatch", Level::Violation, point.unit.clone(), || {
                        format!("metric {} has unit {:?}, the contract declares {unit:?}: set .with_unit({unit:?}) on the instrument", point.name, point.unit)
                    }, || context(&[("expected", unit.clone()), ("found", point.unit.clone())]));
                }
            }
            self.deprecated_signal(&sample, group);
            self.advise_signal(index, &sample);
            self.check_attributes(index, &sample, &point.attributes, None, &Default::default());
            self.count_distinct(index, &sample, &point.attributes);
        }
        self.findings[first_new..].to_vec()
    }

    /// Checks log records that are events (`event_name` set) against the contract's
    /// event groups; other records carry no declared shape.
    pub fn check_logs(&mut self, logs: &[LogRecord]) -> Vec<Finding> {
        let first_new = self.findings.len();
        for log in logs {
            self.logs += 1;
            self.check_resource(&log.resource);
            if log.event_name.is_empty() {
                continue;
            }
            let sample = Sample {
                signal_type: "event",
                signal_name: &log.event_name,
                span: None,
                traces: None,
            };
            let Some(&index) = self.contract.events.get(&log.event_name) else {
                self.report(&sample, "missing_event", Level::Violation, String::new(), || {
                    format!("event {} is not declared in the contract: declare an event group (type: event, name: {0})", log.event_name)
                }, BTreeMap::new);
                continue;
            };
            self.samples[index] += 1;
            self.advise_signal(index, &sample);
            self.check_attributes(index, &sample, &log.attributes, None, &Default::default());
            self.count_distinct(index, &sample, &log.attributes);
        }
        self.findings[first_new..].to_vec()
    }

    /// The attributes of a span's events, against the registry (as live-check samples
    /// them): each one defined, of its type, and Weaver's advice.
    fn check_event_attributes(&mut self, index: usize, sample: &Sample<'_>, span: SpanRef<'_>) {
        for event in &span.record().events {
            for (key, value) in &event.attributes {
                self.check_registry_attribute(Some(index), sample, key, value, || {
                    format!(
                        "attribute {key} on event {} of {} {} is not defined in the contract: define it (or `ref:` a semantic convention), or stop recording it",
                        event.name, sample.signal_type, sample.signal_name
                    )
                });
            }
        }
    }

    /// An attribute no group declares for the sample (a span event's, a resource's),
    /// judged against the registry alone: defined (else `missing`'s message), of its type,
    /// and Weaver's advice — worked out once per key when the sample has a `group`.
    fn check_registry_attribute(
        &mut self,
        group: Option<usize>,
        sample: &Sample<'_>,
        key: &str,
        value: &Value,
        missing: impl FnOnce() -> String,
    ) {
        let contract = self.contract;
        let def = contract.attribute(key);
        match (group, &contract.advice) {
            (Some(index), _) => self.advise(index, sample, key, def),
            (None, Some(registry)) => {
                for advice in registry.attribute(key, def) {
                    self.report_advice(sample, advice, key.to_owned());
                }
            }
            (None, None) => {}
        }
        match def {
            Some(def) => self.check_value(sample, def, key, value),
            None => {
                self.report(
                    sample,
                    "missing_attribute",
                    Level::Violation,
                    key.to_owned(),
                    missing,
                    || context(&[("attribute_key", key.to_owned())]),
                );
            }
        }
    }

    /// Weaver's advice about attribute `key` of a sample of group `index`.
    fn advise(&mut self, index: usize, sample: &Sample<'_>, key: &str, def: Option<&AttributeDef>) {
        let Some(registry) = &self.contract.advice else {
            return;
        };
        if let Some(found) = self.advised[index].get(key) {
            recount(&mut self.findings, &mut self.violations, found);
            return;
        }
        let found = registry
            .attribute(key, def)
            .into_iter()
            .map(|advice| self.report_advice(sample, advice, key.to_owned()))
            .collect();
        self.advised[index].insert(key.to_owned(), found);
    }

    /// Weaver's advice about a metric or an event of group `index` itself.
    fn advise_signal(&mut self, index: usize, sample: &Sample<'_>) {
        let contract = self.contract;
        if contract.advice.is_none() {
            return;
        }
        if let Some(found) = &self.signal_advised[index] {
            recount(&mut self.findings, &mut self.violations, found);
            return;
        }
        let group = &contract.groups[index];
        let advice = match group.kind {
            GroupKind::Metric { .. } => {
                super::advice::metric(sample.signal_name, group.stability.as_deref())
            }
            _ => super::advice::event(sample.signal_name, group.stability.as_deref()),
        };
        let found = advice
            .into_iter()
            .map(|advice| self.report_advice(sample, advice, String::new()))
            .collect();
        self.signal_advised[index] = Some(found);
    }

    /// One more occurrence of each finding at `found` (a sample that repeats them).
    fn report_advice(&mut self, sample: &Sample<'_>, advice: Advice, detail: String) -> usize {
        let Advice {
            id,
            level,
            message,
            context: pairs,
        } = advice;
        let on = if sample.signal_name.is_empty() {
            String::new()
        } else {
            format!(" (on {} {})", sample.signal_type, sample.signal_name)
        };
        self.report(
            sample,
            id,
            level,
            detail,
            || format!("{message}{on}"),
            || {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect()
            },
        )
    }

    /// Checks a resource's attributes against the registry, as live-check does: once per
    /// distinct resource (a node), so each finding counts the resources that carry it.
    fn check_resource(&mut self, resource: &std::sync::Arc<Resource>) {
        let same = self
            .last_resource
            .as_ref()
            .is_some_and(|last| std::sync::Arc::ptr_eq(last, resource));
        if same || resource.attributes.is_empty() {
            return;
        }
        self.last_resource = Some(std::sync::Arc::clone(resource));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (key, value) in &resource.attributes {
            std::hash::Hash::hash(key, &mut hasher);
            std::hash::Hash::hash(value.type_name(), &mut hasher);
            std::hash::Hash::hash(&value.to_string(), &mut hasher);
        }
        if !self.resources.insert(std::hash::Hasher::finish(&hasher)) {
            return;
        }
        let service = resource
            .attributes
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let node = instance(resource).unwrap_or(service);
        let sample = Sample {
            signal_type: "resource",
            signal_name: service,
            span: None,
            traces: None,
        };
        for (key, value) in &resource.attributes {
            self.check_registry_attribute(None, &sample, key, value, || {
                format!(
                    "resource attribute {key} (of {node}) is not defined in the contract: define it, or `ref:` the semantic conventions' definition from a dependency registry"
                )
            });
        }
    }

    /// Records a finding, or counts one more occurrence of it. `detail` tells findings of
    /// the same id and signal apart (the attribute concerned).
    fn report(
        &mut self,
        sample: &Sample<'_>,
        id: &'static str,
        level: Level,
        detail: String,
        message: impl FnOnce() -> String,
        context: impl FnOnce() -> BTreeMap<String, String>,
    ) -> usize {
        let key = (
            id,
            level,
            format!("{}/{}", sample.signal_type, sample.signal_name),
            detail,
        );
        if level == Level::Violation {
            self.violations += 1;
        }
        if let Some(&at) = self.by_key.get(&key) {
            self.findings[at].occurrences += 1;
            return at;
        }
        let span = sample.span.map(|span| {
            let record = span.record();
            let node = instance(&record.resource)
                .or_else(|| {
                    record
                        .resource
                        .attributes
                        .get("service.name")
                        .and_then(Value::as_str)
                })
                .unwrap_or("unknown node");
            let node = match sample.traces {
                Some(traces) => traces.alias_text(node),
                None => node.to_owned(),
            };
            SpanLocation {
                trace_id: record.trace_id.to_string(),
                span_id: record.span_id.to_string(),
                node,
            }
        });
        self.by_key.insert(key, self.findings.len());
        self.findings.push(Finding {
            id: id.to_owned(),
            level,
            signal_type: sample.signal_type.to_owned(),
            signal_name: sample.signal_name.to_owned(),
            message: message(),
            context: context(),
            span,
            occurrences: 1,
        });
        self.findings.len() - 1
    }

    /// The report: findings sorted, coverage per group, and a `cardinality_exceeded`
    /// violation for each attribute that took more distinct values than its budget.
    pub fn finish(mut self) -> Report {
        self.cardinality_findings();
        let mut findings = self.findings;
        sort(&mut findings);
        let groups = self
            .contract
            .groups
            .iter()
            .enumerate()
            .map(|(index, group)| {
                let (seen, missing): (Vec<_>, Vec<_>) = group
                    .attributes
                    .iter()
                    .zip(&self.seen[index])
                    .partition(|(_, seen)| **seen);
                GroupCoverage {
                    id: group.id.clone(),
                    signal_type: group.signal_type().to_owned(),
                    name: group.name.clone(),
                    samples: self.samples[index],
                    attributes_seen: seen.into_iter().map(|(u, _)| u.def.key.clone()).collect(),
                    attributes_missing: missing
                        .into_iter()
                        .map(|(u, _)| u.def.key.clone())
                        .collect(),
                }
            })
            .collect();
        Report {
            findings,
            coverage: Coverage { groups },
            spans: self.spans,
            metric_points: self.metric_points,
            logs: self.logs,
            rendered: self.rendered.join("\n"),
        }
    }
}

impl Checker<'_> {
    fn cardinality_findings(&mut self) {
        let contract = self.contract;
        for (index, group) in contract.groups.iter().enumerate() {
            for (budget_index, (key, max)) in group.cardinality.iter().enumerate() {
                let distinct = &self.distinct[index][budget_index];
                if distinct.values.len() <= *max {
                    continue;
                }
                let count = distinct.values.len();
                let at_least = if distinct.more { "more than " } else { "" };
                let mut examples: Vec<&str> = distinct.values.iter().map(String::as_str).collect();
                examples.sort_unstable();
                examples.truncate(3);
                let examples = examples.join(", ");
                let span = distinct
                    .first_over
                    .as_ref()
                    .and_then(|(_, span)| span.clone());
                self.violations += 1;
                self.findings.push(Finding {
                    id: "cardinality_exceeded".to_owned(),
                    level: Level::Violation,
                    signal_type: group.signal_type().to_owned(),
                    signal_name: group.name.clone(),
                    message: format!(
                        "attribute {key} of {} {} took {at_least}{count} distinct values, its budget \
                         is {max} (e.g. {examples}): a value per request, peer or id is a new time \
                         series each in a metrics backend — drop it, bucket it, or raise the budget",
                        group.signal_type(),
                        group.name
                    ),
                    context: context(&[
                        ("attribute_key", key.clone()),
                        ("budget", max.to_string()),
                        ("distinct", format!("{at_least}{count}")),
                        ("examples", examples),
                    ]),
                    span,
                    occurrences: 1,
                });
            }
        }
    }
}

/// Whether `key` is one of a `template[…]` attribute's keys: `template.<anything>`.
pub(super) fn under_template(key: &str, template: &str) -> bool {
    key.len() > template.len() + 1
        && key.starts_with(template)
        && key.as_bytes()[template.len()] == b'.'
}

/// The group's template attribute `key` falls under, if any.
fn template_use(group: &ResolvedGroup, key: &str) -> Option<usize> {
    group.attributes.iter().position(|u| {
        matches!(u.def.attribute_type, AttributeType::Template(_))
            && under_template(key, &u.def.key)
    })
}

fn context(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn instance(resource: &Resource) -> Option<&str> {
    resource
        .attributes
        .get("service.instance.id")
        .and_then(Value::as_str)
}

fn parent_name(parent: Option<SpanRef<'_>>) -> String {
    parent.map_or_else(
        || "a span that was not received".to_owned(),
        |p| p.name().to_owned(),
    )
}

/// The instruments that produce points of this kind.
fn instrument_of(kind: MetricKind) -> &'static [Instrument] {
    match kind {
        MetricKind::Sum { monotonic: true } => &[Instrument::Counter],
        MetricKind::Sum { monotonic: false } => &[Instrument::UpDownCounter],
        MetricKind::Gauge => &[Instrument::Gauge],
        MetricKind::Histogram | MetricKind::ExponentialHistogram => &[Instrument::Histogram],
        MetricKind::Summary => &[],
    }
}

fn kind_text(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Sum { monotonic: true } => "counter (monotonic sum)",
        MetricKind::Sum { monotonic: false } => "updowncounter (non-monotonic sum)",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
        MetricKind::ExponentialHistogram => "exponential histogram",
        MetricKind::Summary => "summary",
    }
}

/// One more occurrence of each finding at `found`, as a repeated sample gives them again.
fn recount(findings: &mut [Finding], violations: &mut u64, found: &[usize]) {
    for &at in found {
        findings[at].occurrences += 1;
        if findings[at].level == Level::Violation {
            *violations += 1;
        }
    }
}
