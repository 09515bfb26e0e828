//! Running a parsed query over one trace at a time. Spans are handled by their rank in
//! the trace's start order, so every spanset is a sorted list of ranks and unions are
//! merges.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;

use super::ast::{
    Aggregate, AttrScope, Field, FieldExpr, Intrinsic, Mode, Pipeline, Relation, SpansetExpr,
    SpansetOp, Stage, StageKind,
};
use super::value::{self, AggregateKind, Val};
use crate::model::{SpanEvent, SpanId, SpanLink, SpanRecord};
use crate::tree::Trace;

/// What a query did with the traces it ran on: how many spans each filter kept and where
/// each trace's pipeline ran dry. Read by `expect_query`'s failure report.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    /// Per filter (in the order they are written): spans kept, spans offered.
    pub(crate) filters: Vec<(u64, u64)>,
    /// Per top-level stage: how many traces it left with nothing.
    pub(crate) emptied: Vec<u64>,
}

/// One spanset while the pipeline runs: ranks in start order, plus what `by`, an
/// aggregate or `select` attached.
#[derive(Clone, Debug)]
pub(crate) struct Set<'q> {
    pub(crate) ranks: Vec<u32>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) selected: Vec<&'q (String, Field)>,
}

impl Set<'_> {
    fn with_ranks(&self, ranks: Vec<u32>) -> Self {
        Set {
            ranks,
            labels: self.labels.clone(),
            selected: self.selected.clone(),
        }
    }
}

/// One trace as the evaluator sees it.
pub(crate) struct TraceView<'a> {
    pub(crate) trace: &'a Trace,
    /// rank → index into the trace's spans.
    pub(crate) order: Vec<u32>,
    /// rank → the parent's rank, when the parent is in the trace.
    parent: Vec<Option<u32>>,
    root: Option<&'a SpanRecord>,
    duration: Option<i64>,
    trace_id: OnceCell<String>,
    siblings: OnceCell<Vec<u32>>,
}

impl<'a> TraceView<'a> {
    pub(crate) fn new(trace: &'a Trace) -> Self {
        let records = trace.records();
        let mut order: Vec<u32> = (0..records.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&records[a as usize], &records[b as usize]);
            (a.start_unix_nanos, &a.name, a.span_id).cmp(&(b.start_unix_nanos, &b.name, b.span_id))
        });
        let mut rank_of = vec![0u32; records.len()];
        for (rank, &index) in order.iter().enumerate() {
            rank_of[index as usize] = rank as u32;
        }
        let parent = order
            .iter()
            .map(|&index| trace.parent_index(index as usize).map(|p| rank_of[p]))
            .collect();
        let (start, end) = trace.time_range();
        let duration = end.and_then(|end| i64::try_from(end.saturating_sub(start)).ok());
        TraceView {
            trace,
            order,
            parent,
            root: trace.root_indices().first().map(|&index| &records[index]),
            duration,
            trace_id: OnceCell::new(),
            siblings: OnceCell::new(),
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn record(&self, rank: u32) -> &'a SpanRecord {
        &self.trace.records()[self.order[rank as usize] as usize]
    }

    /// A key shared by spans with the same parent: the parent's rank, one key for all
    /// roots, one per missing parent for orphans.
    fn sibling_keys(&self) -> &[u32] {
        self.siblings.get_or_init(|| {
            let roots = self.len() as u32;
            let mut missing: HashMap<SpanId, u32> = HashMap::new();
            (0..self.len() as u32)
                .map(
                    |rank| match (self.parent[rank as usize], self.record(rank).parent) {
                        (Some(parent), _) => parent,
                        (None, None) => roots,
                        (None, Some(parent)) => {
                            let next = roots + 1 + missing.len() as u32;
                            *missing.entry(parent.span_id).or_insert(next)
                        }
                    },
                )
                .collect()
        })
    }

    /// The ancestors of `rank`, nearest first (bounded: malformed parent links cannot loop).
    fn ancestors(&self, rank: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.parent[rank as usize];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let current = next?;
            steps += 1;
            if steps > self.len() {
                return None;
            }
            next = self.parent[current as usize];
            Some(current)
        })
    }
}

/// Where a field expression looks: one span, and the event or link being tried.
struct Cursor<'v, 'a> {
    view: &'v TraceView<'a>,
    span: &'a SpanRecord,
    event: Option<&'a SpanEvent>,
    link: Option<&'a SpanLink>,
}

/// Runs pipelines on one trace.
pub(crate) struct Evaluator<'v, 'a> {
    pub(crate) view: &'v TraceView<'a>,
    pub(crate) stats: Option<&'v mut Stats>,
}

impl<'a> Evaluator<'_, 'a> {
    /// The whole query on the trace: the spansets it returns.
    pub(crate) fn run<'q>(&mut self, pipeline: &'q Pipeline) -> Vec<Set<'q>> {
        let all = Set {
            ranks: (0..self.view.len() as u32).collect(),
            labels: Vec::new(),
            selected: Vec::new(),
        };
        let mut sets = vec![all];
        for (index, stage) in pipeline.stages.iter().enumerate() {
            sets = self.stage(stage, sets);
            if sets.is_empty() {
                if let Some(stats) = self.stats.as_deref_mut() {
                    if stats.emptied.len() < pipeline.stages.len() {
                        stats.emptied.resize(pipeline.stages.len(), 0);
                    }
                    stats.emptied[index] += 1;
                }
                break;
            }
        }
        sets
    }

    fn pipeline<'q>(&mut self, pipeline: &'q Pipeline, mut sets: Vec<Set<'q>>) -> Vec<Set<'q>> {
        for stage in &pipeline.stages {
            if sets.is_empty() {
                break;
            }
            sets = self.stage(stage, sets);
        }
        sets
    }

    fn stage<'q>(&mut self, stage: &'q Stage, sets: Vec<Set<'q>>) -> Vec<Set<'q>> {
        match &stage.kind {
            StageKind::Spansets(expr) => sets
                .iter()
                .flat_map(|set| self.spanset(expr, set))
                .collect(),
            StageKind::Scalar {
                aggregate,
                text,
                op,
                value,
            } => sets
                .into_iter()
                .filter_map(|mut set| {
                    let result = self.aggregate(aggregate, &set);
                    let keep = value::compare(*op, &result, &Val::from_static(value));
                    keep.then(|| {
                        set.labels.push((text.clone(), result.render()));
                        set
                    })
                })
                .collect(),
            StageKind::By(field, text) => {
                let mut out = Vec::new();
                for set in sets {
                    // Groups in order of first appearance, found by key in a map.
                    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
                    let mut by_key: HashMap<String, usize> = HashMap::new();
                    for &rank in &set.ranks {
                        let key = self.value(field, &self.cursor(rank)).render();
                        match by_key.get(&key) {
                            Some(&at) => groups[at].1.push(rank),
                            None => {
                                by_key.insert(key.clone(), groups.len());
                                groups.push((key, vec![rank]));
                            }
                        }
                    }
                    for (key, ranks) in groups {
                        let mut group = set.with_ranks(ranks);
                        group.labels.push((text.clone(), key));
                        out.push(group);
                    }
                }
                out
            }
            StageKind::Select(fields) => sets
                .into_iter()
                .map(|mut set| {
                    set.selected.extend(fields.iter());
                    set
                })
                .collect(),
            StageKind::Coalesce => {
                let mut sets = sets.into_iter();
                let Some(mut merged) = sets.next() else {
                    return Vec::new();
                };
                // All ranks at once, then one sort: linear in the spans, not in the sets.
                for set in sets {
                    merged.ranks.extend(set.ranks);
                }
                merged.ranks.sort_unstable();
                merged.ranks.dedup();
                merged.labels.retain(|(key, _)| !key.starts_with("by("));
                vec![merged]
            }
        }
    }

    /// A spanset expression on one input spanset. Only a nested pipeline with `by` can
    /// return more than one (the parser keeps those out of binary operators).
    fn spanset<'q>(&mut self, expr: &'q SpansetExpr, input: &Set<'q>) -> Vec<Set<'q>> {
        match expr {
            SpansetExpr::Filter {
                condition,
                id,
                uses_events,
                uses_links,
                ..
            } => {
                let ranks: Vec<u32> = match condition {
                    None => input.ranks.clone(),
                    Some(condition) => input
                        .ranks
                        .iter()
                        .copied()
                        .filter(|&rank| self.holds(condition, rank, *uses_events, *uses_links))
                        .collect(),
                };
                if let Some(stats) = self.stats.as_deref_mut() {
                    if stats.filters.len() <= *id {
                        stats.filters.resize(id + 1, (0, 0));
                    }
                    stats.filters[*id].0 += ranks.len() as u64;
                    stats.filters[*id].1 += input.ranks.len() as u64;
                }
                if ranks.is_empty() {
                    Vec::new()
                } else {
                    vec![input.with_ranks(ranks)]
                }
            }
            SpansetExpr::Nested(pipeline) => self.pipeline(pipeline, vec![input.clone()]),
            SpansetExpr::Binary { op, lhs, rhs } => {
                let lhs = self.spanset(lhs, input).pop();
                let rhs = self.spanset(rhs, input).pop();
                let empty = Vec::new();
                let lhs_ranks = lhs.as_ref().map_or(&empty, |set| &set.ranks);
                let rhs_ranks = rhs.as_ref().map_or(&empty, |set| &set.ranks);
                let ranks = match op {
                    SpansetOp::And if lhs_ranks.is_empty() || rhs_ranks.is_empty() => Vec::new(),
                    SpansetOp::And | SpansetOp::Or => union(lhs_ranks, rhs_ranks),
                    SpansetOp::Structural(relation, mode) => {
                        self.structural(*relation, *mode, lhs_ranks, rhs_ranks)
                    }
                };
                if ranks.is_empty() {
                    return Vec::new();
                }
                // What the sides attached (a `select`, an aggregate) stays with the result.
                let mut out = input.with_ranks(ranks);
                for side in [lhs, rhs].into_iter().flatten() {
                    for label in side.labels {
                        if !out.labels.contains(&label) {
                            out.labels.push(label);
                        }
                    }
                    for field in side.selected {
                        if !out.selected.iter().any(|known| std::ptr::eq(*known, field)) {
                            out.selected.push(field);
                        }
                    }
                }
                vec![out]
            }
        }
    }

    /// `{A} op {B}`: the right-hand spans that relate to the left-hand ones (`!op`: that do
    /// not; `&op`: both sides' spans that relate).
    fn structural(&self, relation: Relation, mode: Mode, lhs: &[u32], rhs: &[u32]) -> Vec<u32> {
        let view = self.view;
        let n = view.len();
        if rhs.is_empty() || (lhs.is_empty() && mode != Mode::Not) {
            return Vec::new();
        }
        let mut in_lhs = vec![false; n];
        for &rank in lhs {
            in_lhs[rank as usize] = true;
        }
        // Which right-hand spans relate to some left-hand span.
        let related: Vec<bool> = match relation {
            Relation::Child => rhs
                .iter()
                .map(|&b| view.parent[b as usize].is_some_and(|p| in_lhs[p as usize]))
                .collect(),
            Relation::Parent => {
                let mut is_parent = vec![false; n];
                for &a in lhs {
                    if let Some(p) = view.parent[a as usize] {
                        is_parent[p as usize] = true;
                    }
                }
                rhs.iter().map(|&b| is_parent[b as usize]).collect()
            }
            Relation::Descendant => rhs
                .iter()
                .map(|&b| view.ancestors(b).any(|a| in_lhs[a as usize]))
                .collect(),
            Relation::Ancestor => {
                let above = mark_ancestors(view, lhs);
                rhs.iter().map(|&b| above[b as usize]).collect()
            }
            Relation::Sibling => {
                let keys = view.sibling_keys();
                let mut count: HashMap<u32, u32> = HashMap::new();
                for &a in lhs {
                    *count.entry(keys[a as usize]).or_default() += 1;
                }
                rhs.iter()
                    .map(|&b| {
                        let same = count.get(&keys[b as usize]).copied().unwrap_or(0);
                        same > u32::from(in_lhs[b as usize])
                    })
                    .collect()
            }
        };
        let matched_rhs: Vec<u32> = rhs
            .iter()
            .zip(&related)
            .filter(|(_, related)| **related != (mode == Mode::Not))
            .map(|(&b, _)| b)
            .collect();
        if mode != Mode::Union || matched_rhs.is_empty() {
            return matched_rhs;
        }
        // `&op`: the left-hand spans on the other end of those relations, too.
        let matched_lhs: Vec<u32> = match relation {
            Relation::Child => {
                let mut is_parent = vec![false; n];
                for &b in &matched_rhs {
                    if let Some(p) = view.parent[b as usize] {
                        is_parent[p as usize] = true;
                    }
                }
                lhs.iter()
                    .copied()
                    .filter(|&a| is_parent[a as usize])
                    .collect()
            }
            Relation::Parent => {
                let mut in_matched = vec![false; n];
                for &b in &matched_rhs {
                    in_matched[b as usize] = true;
                }
                lhs.iter()
                    .copied()
                    .filter(|&a| view.parent[a as usize].is_some_and(|p| in_matched[p as usize]))
                    .collect()
            }
            Relation::Descendant => {
                let above = mark_ancestors(view, &matched_rhs);
                lhs.iter().copied().filter(|&a| above[a as usize]).collect()
            }
            Relation::Ancestor => {
                let mut in_matched = vec![false; n];
                for &b in &matched_rhs {
                    in_matched[b as usize] = true;
                }
                lhs.iter()
                    .copied()
                    .filter(|&a| view.ancestors(a).any(|p| in_matched[p as usize]))
                    .collect()
            }
            Relation::Sibling => {
                let keys = view.sibling_keys();
                let mut count: HashMap<u32, u32> = HashMap::new();
                let mut in_matched = vec![false; n];
                for &b in &matched_rhs {
                    *count.entry(keys[b as usize]).or_default() += 1;
                    in_matched[b as usize] = true;
                }
                lhs.iter()
                    .copied()
                    .filter(|&a| {
                        let same = count.get(&keys[a as usize]).copied().unwrap_or(0);
                        same > u32::from(in_matched[a as usize])
                    })
                    .collect()
            }
        };
        union(&matched_lhs, &matched_rhs)
    }

    fn aggregate(&self, aggregate: &Aggregate, set: &Set<'_>) -> Val<'a> {
        let (kind, field) = match aggregate {
            Aggregate::Count => return Val::Int(set.ranks.len() as i64),
            Aggregate::Avg(field) => (AggregateKind::Avg, field),
            Aggregate::Min(field) => (AggregateKind::Min, field),
            Aggregate::Max(field) => (AggregateKind::Max, field),
            Aggregate::Sum(field) => (AggregateKind::Sum, field),
        };
        let values: Vec<Val<'_>> = set
            .ranks
            .iter()
            .map(|&rank| self.value(field, &self.cursor(rank)))
            .collect();
        // Aggregates are numbers: nothing borrowed survives.
        match value::aggregate(kind, values.into_iter()) {
            Val::Int(n) => Val::Int(n),
            Val::Float(x) => Val::Float(x),
            Val::Duration(d) => Val::Duration(d),
            _ => Val::Missing,
        }
    }

    fn cursor(&self, rank: u32) -> Cursor<'_, 'a> {
        Cursor {
            view: self.view,
            span: self.view.record(rank),
            event: None,
            link: None,
        }
    }

    /// Whether `condition` holds for the span; with event (link) fields, for one of its
    /// events (links) — the same one for every part of the condition.
    fn holds(&self, condition: &FieldExpr, rank: u32, events: bool, links: bool) -> bool {
        let span = self.view.record(rank);
        let event_choices: Vec<Option<&SpanEvent>> = if events && !span.events.is_empty() {
            span.events.iter().map(Some).collect()
        } else {
            vec![None]
        };
        let link_choices: Vec<Option<&SpanLink>> = if links && !span.links.is_empty() {
            span.links.iter().map(Some).collect()
        } else {
            vec![None]
        };
        event_choices.iter().any(|&event| {
            link_choices.iter().any(|&link| {
                let cursor = Cursor {
                    view: self.view,
                    span,
                    event,
                    link,
                };
                self.value(condition, &cursor).is_true()
            })
        })
    }

    fn value<'x>(&self, expr: &'x FieldExpr, at: &Cursor<'_, 'x>) -> Val<'x>
    where
        'a: 'x,
    {
        match expr {
            FieldExpr::Static(literal) => Val::from_static(literal),
            FieldExpr::Field(field) => field_value(field, at),
            FieldExpr::Not(inner) => match self.value(inner, at) {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Missing,
            },
            FieldExpr::Negate(inner) => match self.value(inner, at) {
                Val::Int(n) => n.checked_neg().map_or(Val::Missing, Val::Int),
                Val::Float(x) => Val::Float(-x),
                Val::Duration(d) => d.checked_neg().map_or(Val::Missing, Val::Duration),
                _ => Val::Missing,
            },
            FieldExpr::Binary { op, lhs, rhs } => {
                value::binary(*op, self.value(lhs, at), self.value(rhs, at))
            }
            FieldExpr::Regex {
                lhs,
                regex,
                negated,
            } => Val::Bool(value::regex_matches(&self.value(lhs, at), regex, *negated)),
        }
    }
}

/// A `select(…)` field of one span, rendered; `None` when the span does not have it.
pub(crate) fn selected_value(
    view: &TraceView<'_>,
    field: &Field,
    span: &SpanRecord,
) -> Option<String> {
    let cursor = Cursor {
        view,
        span,
        event: span.events.first(),
        link: span.links.first(),
    };
    match field_value(field, &cursor) {
        Val::Missing => None,
        value => Some(value.render()),
    }
}

fn mark_ancestors(view: &TraceView<'_>, of: &[u32]) -> Vec<bool> {
    let mut above = vec![false; view.len()];
    for &rank in of {
        for ancestor in view.ancestors(rank) {
            if above[ancestor as usize] {
                break;
            }
            above[ancestor as usize] = true;
        }
    }
    above
}

/// The sorted union of two sorted rank lists.
pub(crate) fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn field_value<'x>(field: &'x Field, at: &Cursor<'_, 'x>) -> Val<'x> {
    let span = at.span;
    let missing_if_empty = |text: &'x str| {
        if text.is_empty() {
            Val::Missing
        } else {
            Val::Str(Cow::Borrowed(text))
        }
    };
    match field {
        Field::Attribute { scope, name } => {
            let found = match scope {
                AttrScope::Unscoped => span.attribute(name),
                AttrScope::Span => span.attributes.get(name),
                AttrScope::Resource => span.resource.attributes.get(name),
                AttrScope::Event => at.event.and_then(|event| event.attributes.get(name)),
                AttrScope::Link => at.link.and_then(|link| link.attributes.get(name)),
                AttrScope::Instrumentation => span.scope.attributes.get(name),
            };
            found.map_or(Val::Missing, Val::from_value)
        }
        Field::Intrinsic(intrinsic) => match intrinsic {
            Intrinsic::Duration => span
                .duration_nanos()
                .and_then(|nanos| i64::try_from(nanos).ok())
                .map_or(Val::Missing, Val::Duration),
            Intrinsic::Name => Val::Str(Cow::Borrowed(&span.name)),
            Intrinsic::Status => Val::Status(span.status.code),
            Intrinsic::StatusMessage => Val::Str(Cow::Borrowed(&span.status.message)),
            Intrinsic::Kind => Val::Kind(span.kind),
            Intrinsic::SpanId => Val::Str(Cow::Owned(span.span_id.to_string())),
            Intrinsic::ParentId => span.parent.map_or(Val::Missing, |p| {
                Val::Str(Cow::Owned(p.span_id.to_string()))
            }),
            Intrinsic::RemoteParent => match span.parent {
                None => Val::Bool(false),
                Some(parent) => parent.remote.map_or(Val::Missing, Val::Bool),
            },
            Intrinsic::TraceId => {
                let id = at
                    .view
                    .trace_id
                    .get_or_init(|| span.trace_id.to_string().trim_start_matches('0').to_owned());
                Val::Str(Cow::Owned(id.clone()))
            }
            Intrinsic::TraceDuration => at.view.duration.map_or(Val::Missing, Val::Duration),
            Intrinsic::RootName => at
                .view
                .root
                .map_or(Val::Missing, |root| Val::Str(Cow::Borrowed(&root.name))),
            Intrinsic::RootService => at
                .view
                .root
                .and_then(|root| root.resource.attributes.get("service.name"))
                .map_or(Val::Missing, Val::from_value),
            Intrinsic::EventName => at
                .event
                .map_or(Val::Missing, |event| Val::Str(Cow::Borrowed(&event.name))),
            Intrinsic::EventTimeSinceStart => at.event.map_or(Val::Missing, |event| {
                i64::try_from(event.time_unix_nanos.saturating_sub(span.start_unix_nanos))
                    .map_or(Val::Missing, Val::Duration)
            }),
            Intrinsic::LinkTraceId => at.link.map_or(Val::Missing, |link| {
                let id = link.trace_id.to_string();
                Val::Str(Cow::Owned(id.trim_start_matches('0').to_owned()))
            }),
            Intrinsic::LinkSpanId => at.link.map_or(Val::Missing, |link| {
                Val::Str(Cow::Owned(link.span_id.to_string()))
            }),
            Intrinsic::ScopeName => missing_if_empty(&span.scope.name),
            Intrinsic::ScopeVersion => missing_if_empty(&span.scope.version),
        },
    }
}
