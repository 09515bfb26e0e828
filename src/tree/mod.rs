//! Trace trees: build them from any spans, walk and query them, assert on them, and
//! render them deterministically for snapshots.
//!
//! ```
//! use p2p_otel_testkit::tree::expect;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info_span!("p2p_publish", package_id = "acme/tool").in_scope(|| {
//!         tracing::info_span!("dht_put", operation = "store_package").in_scope(|| {});
//!     });
//! });
//! let traces = handle.traces();
//! traces
//!     .expect(&expect::span().named("p2p_publish").with_attr("package_id", "acme/tool")
//!         .with_child(expect::span().named("dht_put")))
//!     .unwrap();
//! ```

mod assertions;
mod attr_matcher;
mod expect_span;
mod normalize;
mod normalized;
mod render;
mod settings;
mod timeline;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::model::{SpanId, SpanRecord, TraceId, Value};

pub use assertions::AssertionError;
pub use attr_matcher::{attr, AttrMatcher};
pub use expect_span::{expect, SpanMatcher};
pub use normalized::Normalized;
pub use settings::{ChildOrder, RenderSettings};

/// Every span of one trace, linked into a tree (or several, and orphans).
#[derive(Clone, Debug)]
pub struct Trace {
    trace_id: TraceId,
    spans: Vec<SpanRecord>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    orphans: Vec<usize>,
}

/// Spans grouped into traces. Built from any spans in any order; spans whose parent never
/// arrived are kept as orphans and reported, never dropped.
#[derive(Clone, Debug, Default)]
pub struct TraceSet {
    traces: Vec<Trace>,
    duplicates: usize,
    /// How `render` and assertion failures show it; the default settings when `None`.
    settings: Option<Arc<RenderSettings>>,
}

/// Sort key for siblings by start time: start, then name, then span id.
fn start_order(spans: &[SpanRecord]) -> impl Fn(&usize, &usize) -> std::cmp::Ordering + '_ {
    move |a, b| {
        let (a, b) = (&spans[*a], &spans[*b]);
        (a.start_unix_nanos, &a.name, a.span_id).cmp(&(b.start_unix_nanos, &b.name, b.span_id))
    }
}

impl Trace {
    fn new(trace_id: TraceId, spans: Vec<SpanRecord>) -> Self {
        let index: HashMap<SpanId, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| (span.span_id, i))
            .collect();
        let mut parent = vec![None; spans.len()];
        let mut children = vec![Vec::new(); spans.len()];
        let mut roots = Vec::new();
        let mut orphans = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match span.parent {
                None => roots.push(i),
                Some(p) => match index.get(&p.span_id) {
                    Some(&pi) if pi != i => {
                        parent[i] = Some(pi);
                        children[pi].push(i);
                    }
                    _ => orphans.push(i),
                },
            }
        }
        // Parent links that form a cycle (malformed input) leave spans that no root or
        // orphan reaches: break each cycle at its earliest span, which becomes an orphan,
        // so that every span is walked, rendered and reported — once.
        let mut reached = vec![false; spans.len()];
        let mut stack: Vec<usize> = roots.iter().chain(&orphans).copied().collect();
        let mut by_start: Vec<usize> = (0..spans.len()).collect();
        by_start.sort_by(start_order(&spans));
        let mut next_unreached = by_start.into_iter();
        loop {
            while let Some(i) = stack.pop() {
                if !std::mem::replace(&mut reached[i], true) {
                    stack.extend(&children[i]);
                }
            }
            let Some(cut) = next_unreached.by_ref().find(|&i| !reached[i]) else {
                break;
            };
            if let Some(p) = parent[cut].take() {
                children[p].retain(|&c| c != cut);
            }
            orphans.push(cut);
            stack.push(cut);
        }
        for list in children.iter_mut() {
            list.sort_by(start_order(&spans));
        }
        roots.sort_by(start_order(&spans));
        orphans.sort_by(start_order(&spans));
        Trace {
            trace_id,
            spans,
            parent,
            children,
            roots,
            orphans,
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// How many spans the trace holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the trace has no spans (never true for a trace built from spans).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every span of the trace, in no particular order.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'_>> + '_ {
        (0..self.spans.len()).map(move |index| SpanRef { trace: self, index })
    }

    /// Spans without a parent, by start time.
    pub fn roots(&self) -> Vec<SpanRef<'_>> {
        self.refs(&self.roots)
    }

    /// Spans whose parent is not in the trace (it never arrived, or is in another process
    /// that did not export it), by start time — and, where parent links form a cycle
    /// (malformed input), the cycle's earliest span.
    pub fn orphans(&self) -> Vec<SpanRef<'_>> {
        self.refs(&self.orphans)
    }

    /// Whether every span's parent is present.
    pub fn is_complete(&self) -> bool {
        self.orphans.is_empty()
    }

    /// Looks a span up by id.
    pub fn span(&self, span_id: SpanId) -> Option<SpanRef<'_>> {
        self.spans
            .iter()
            .position(|span| span.span_id == span_id)
            .map(|index| SpanRef { trace: self, index })
    }

    /// The spans, in the order the trace holds them (for the query evaluator).
    pub(crate) fn records(&self) -> &[SpanRecord] {
        &self.spans
    }

    /// When the trace began (its earliest start) and, if any span ended, when it ended
    /// (its latest end), in nanoseconds since the Unix epoch.
    pub(crate) fn time_range(&self) -> (u64, Option<u64>) {
        let start = self.spans.iter().map(|span| span.start_unix_nanos).min();
        let end = self
            .spans
            .iter()
            .filter_map(|span| span.end_unix_nanos)
            .max();
        (start.unwrap_or(0), end)
    }

    /// The index of the span's parent, when the parent is in the trace.
    pub(crate) fn parent_index(&self, index: usize) -> Option<usize> {
        self.parent[index]
    }

    /// The indices of the roots, by start time.
    pub(crate) fn root_indices(&self) -> &[usize] {
        &self.roots
    }

    /// The span at `index` of [`records`](Self::records).
    pub(crate) fn span_at(&self, index: usize) -> SpanRef<'_> {
        SpanRef { trace: self, index }
    }

    fn refs(&self, indices: &[usize]) -> Vec<SpanRef<'_>> {
        indices
            .iter()
            .map(|&index| SpanRef { trace: self, index })
            .collect()
    }
}

impl TraceSet {
    /// Groups spans into traces. A span that arrives twice (same trace id and span id, as
    /// at-least-once delivery produces) is kept once and counted in
    /// [`duplicates`](Self::duplicates).
    pub fn new(spans: impl IntoIterator<Item = SpanRecord>) -> Self {
        let mut by_trace: BTreeMap<TraceId, Vec<SpanRecord>> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        for span in spans {
            if !seen.insert((span.trace_id, span.span_id)) {
                duplicates += 1;
                continue;
            }
            by_trace.entry(span.trace_id).or_default().push(span);
        }
        let mut traces: Vec<Trace> = by_trace
            .into_iter()
            .map(|(trace_id, spans)| Trace::new(trace_id, spans))
            .collect();
        traces.sort_by_cached_key(trace_sort_key);
        TraceSet {
            traces,
            duplicates,
            settings: None,
        }
    }

    /// The same traces, rendered — by [`render`](Self::render), `Display` and every
    /// assertion failure — with `settings`: for example node names from a mesh
    /// (`RenderSettings::nodes`), so that failures and snapshots speak of `[node 2]`.
    #[must_use]
    pub fn with_render_settings(mut self, settings: RenderSettings) -> Self {
        self.settings = Some(Arc::new(settings));
        self
    }

    /// The settings [`render`](Self::render) uses.
    pub fn render_settings(&self) -> RenderSettings {
        self.settings.as_deref().cloned().unwrap_or_default()
    }

    /// `text` (an error message, a violation) with the node ids these settings name
    /// replaced by their `[node N]` aliases, as in the rendered trees.
    pub fn alias_text(&self, text: &str) -> String {
        match &self.settings {
            Some(settings) => settings.alias_text(text),
            None => text.to_owned(),
        }
    }

    /// The traces, ordered by their first span's start time, then name.
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }

    /// The trace with this id.
    pub fn trace(&self, trace_id: TraceId) -> Option<&Trace> {
        self.traces.iter().find(|trace| trace.trace_id == trace_id)
    }

    /// How many spans in all traces.
    pub fn span_count(&self) -> usize {
        self.traces.iter().map(Trace::len).sum()
    }

    /// How many duplicate spans were dropped while grouping.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Every span of every trace.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'_>> + '_ {
        self.traces.iter().flat_map(Trace::spans)
    }

    /// Every orphan span of every trace.
    pub fn orphans(&self) -> Vec<SpanRef<'_>> {
        self.traces.iter().flat_map(Trace::orphans).collect()
    }

    /// Spans with this name.
    pub fn find_named(&self, name: &str) -> Vec<SpanRef<'_>> {
        self.spans().filter(|span| span.name() == name).collect()
    }

    /// Spans the matcher accepts.
    pub fn find(&self, matcher: &SpanMatcher) -> Vec<SpanRef<'_>> {
        self.spans().filter(|span| matcher.matches(*span)).collect()
    }

    /// Renders every trace as text with the default [`RenderSettings`]: deterministic for
    /// any arrival order, ids aliased, volatile values redacted.
    pub fn render(&self) -> String {
        match &self.settings {
            Some(settings) => self.render_with(settings),
            None => self.render_with(&RenderSettings::default()),
        }
    }

    /// Renders every trace as text with the given settings.
    pub fn render_with(&self, settings: &RenderSettings) -> String {
        render::render(&self.normalized_with(settings))
    }

    /// The normalized form with default settings, for `insta::assert_yaml_snapshot!`.
    pub fn normalized(&self) -> Normalized {
        self.normalized_with(&RenderSettings::default())
    }

    /// The normalized form with the given settings.
    pub fn normalized_with(&self, settings: &RenderSettings) -> Normalized {
        normalize::normalize(self, settings)
    }
}

fn trace_sort_key(trace: &Trace) -> (u64, String, TraceId) {
    let first = trace
        .roots
        .first()
        .or(trace.orphans.first())
        .map(|&i| &trace.spans[i]);
    (
        first.map_or(0, |span| span.start_unix_nanos),
        first.map_or_else(String::new, |span| span.name.clone()),
        trace.trace_id,
    )
}

impl fmt::Display for TraceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// A handle to one span inside a [`Trace`], able to walk the tree.
#[derive(Clone, Copy)]
pub struct SpanRef<'a> {
    trace: &'a Trace,
    index: usize,
}

impl fmt::Debug for SpanRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRef")
            .field("name", &self.name())
            .field("span_id", &self.record().span_id)
            .finish()
    }
}

impl PartialEq for SpanRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.trace, other.trace) && self.index == other.index
    }
}

impl<'a> SpanRef<'a> {
    /// The span's data.
    pub fn record(&self) -> &'a SpanRecord {
        &self.trace.spans[self.index]
    }

    /// The span's name.
    pub fn name(&self) -> &'a str {
        &self.record().name
    }

    /// An attribute of the span or, failing that, of its resource.
    pub fn attribute(&self, key: &str) -> Option<&'a Value> {
        self.record().attribute(key)
    }

    /// The trace the span belongs to.
    pub fn trace(&self) -> &'a Trace {
        self.trace
    }

    /// The parent span, if present in the trace.
    pub fn parent(&self) -> Option<SpanRef<'a>> {
        self.trace.parent[self.index].map(|index| SpanRef {
            trace: self.trace,
            index,
        })
    }

    /// Direct children, by start time.
    pub fn children(&self) -> Vec<SpanRef<'a>> {
        self.trace.refs(&self.trace.children[self.index])
    }

    /// Every span below this one, depth first.
    pub fn descendants(&self) -> Vec<SpanRef<'a>> {
        let mut out = Vec::new();
        let mut stack: Vec<usize> = self.trace.children[self.index]
            .iter()
            .rev()
            .copied()
            .collect();
        while let Some(index) = stack.pop() {
            out.push(SpanRef {
                trace: self.trace,
                index,
            });
            stack.extend(self.trace.children[index].iter().rev());
        }
        out
    }

    /// Ancestors from the parent up to the root; use [`Ancestors::from_root`] to flip.
    /// Parent links that form a cycle (malformed input) end the walk after as many steps
    /// as the trace has spans.
    pub fn ancestors(&self) -> Ancestors<'a> {
        Ancestors {
            next: self.parent(),
            remaining: self.trace.len(),
        }
    }

    /// The span's position in its trace's spans (for index-keyed bookkeeping).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether this span is a (possibly indirect) ancestor of `other`.
    pub fn is_ancestor_of(&self, other: SpanRef<'_>) -> bool {
        std::ptr::eq(self.trace, other.trace)
            && other
                .ancestors()
                .any(|ancestor| ancestor.index == self.index)
    }

    /// Direct children with this name.
    pub fn children_named(&self, name: &str) -> Vec<SpanRef<'a>> {
        self.children()
            .into_iter()
            .filter(|child| child.name() == name)
            .collect()
    }
}

/// Iterator over a span's ancestors, nearest first.
#[derive(Debug)]
pub struct Ancestors<'a> {
    next: Option<SpanRef<'a>>,
    /// Steps left before the walk must have passed every span once: a bound against
    /// malformed parent links.
    remaining: usize,
}

impl<'a> Ancestors<'a> {
    /// The same ancestors, root first.
    pub fn from_root(self) -> std::iter::Rev<std::vec::IntoIter<SpanRef<'a>>> {
        self.collect::<Vec<_>>().into_iter().rev()
    }
}

impl<'a> Iterator for Ancestors<'a> {
    type Item = SpanRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.remaining = self.remaining.checked_sub(1)?;
        let current = self.next.take()?;
        self.next = current.parent();
        Some(current)
    }
}
