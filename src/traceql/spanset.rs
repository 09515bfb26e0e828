//! What a query returns: spansets, each the matching spans of one trace, shown as the
//! part of the trace's tree that leads to them.

use std::fmt;

use super::eval::{Set, TraceView};
use super::value::render_duration;
use crate::model::{SpanKind, StatusCode, Value};
use crate::tree::{SpanRef, Trace, TraceSet};

/// The spans of one trace a TraceQL query returned, in start order, with what the
/// pipeline attached: `by(…)` groups and aggregate values as labels, `select(…)` values
/// per span.
///
/// `Display` draws the matching spans (`◀`) under their ancestors, named as the set's
/// rendering names nodes.
#[derive(Clone)]
pub struct Spanset<'a> {
    traces: &'a TraceSet,
    trace: &'a Trace,
    spans: Vec<SpanRef<'a>>,
    labels: Vec<(String, String)>,
    selected: Vec<Vec<(String, String)>>,
}

impl fmt::Debug for Spanset<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.spans.iter().map(SpanRef::name).collect();
        f.debug_struct("Spanset")
            .field("trace_id", &self.trace.trace_id())
            .field("spans", &names)
            .field("labels", &self.labels)
            .finish()
    }
}

impl<'a> Spanset<'a> {
    pub(crate) fn new(traces: &'a TraceSet, view: &TraceView<'a>, set: Set<'_>) -> Self {
        let spans: Vec<SpanRef<'a>> = set
            .ranks
            .iter()
            .map(|&rank| view.trace.span_at(view.order[rank as usize] as usize))
            .collect();
        let selected = spans
            .iter()
            .map(|span| {
                set.selected
                    .iter()
                    .filter_map(|(text, field)| {
                        super::eval::selected_value(view, field, span.record())
                            .map(|value| (text.clone(), value))
                    })
                    .collect()
            })
            .collect();
        Spanset {
            traces,
            trace: view.trace,
            spans,
            labels: set.labels,
            selected,
        }
    }

    /// The trace the spans belong to.
    pub fn trace(&self) -> &'a Trace {
        self.trace
    }

    /// The matching spans, by start time.
    pub fn spans(&self) -> &[SpanRef<'a>] {
        &self.spans
    }

    /// What the pipeline attached to the whole spanset, in stage order: `("by(…)",
    /// value)` for a group, `("count()", "3")` for an aggregate that held.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// The `select(…)` fields of the `index`-th span that it has, as (field, value).
    pub fn selected(&self, index: usize) -> &[(String, String)] {
        self.selected.get(index).map_or(&[], Vec::as_slice)
    }

    /// How the span is named in a report: name, node, kind, status.
    fn headline(&self, span: SpanRef<'_>) -> String {
        let record = span.record();
        let mut line = record.name.clone();
        if let Some(Value::Str(instance)) = record.resource.attributes.get("service.instance.id") {
            let alias = self.traces.alias_text(instance);
            if alias == *instance {
                line.push_str(&format!(" @{instance:?}"));
            } else {
                line.push_str(&format!(" {alias}"));
            }
        } else if let Some(Value::Str(service)) = record.resource.attributes.get("service.name") {
            line.push_str(&format!(" @{service:?}"));
        }
        if record.kind != SpanKind::Internal {
            line.push_str(&format!(" kind={}", record.kind));
        }
        if record.status.code != StatusCode::Unset {
            line.push_str(&format!(" status={}", record.status.code));
        }
        if record
            .parent
            .is_some_and(|parent| parent.remote == Some(true))
        {
            line.push_str(" (remote parent)");
        }
        if let Some(nanos) = record.duration_nanos() {
            line.push_str(&format!(
                " {}",
                render_duration(i64::try_from(nanos).unwrap_or(i64::MAX))
            ));
        }
        line
    }
}

impl<'a> fmt::Display for Spanset<'a> {
    /// ```text
    /// trace 0707…07  count() = 2
    /// └─ p2p_search kind=client 4ms
    ///    └─ handle_search [node 1] kind=server status=error (remote parent) 1ms ◀
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace {}", self.trace.trace_id())?;
        for (label, value) in &self.labels {
            write!(f, "  {label} = {value}")?;
        }
        writeln!(f)?;
        // The matching spans and their ancestors, drawn as a tree: index sets, and an
        // explicit stack, so a deep trace costs its size and never the thread's stack.
        let trace = self.trace;
        let mut shown = vec![false; trace.len()];
        let mut matched = vec![None; trace.len()];
        for (position, span) in self.spans.iter().enumerate() {
            matched[span.index()] = Some(position);
            for node in std::iter::once(*span).chain(span.ancestors()) {
                if std::mem::replace(&mut shown[node.index()], true) {
                    break;
                }
            }
        }
        let is_shown = |span: &SpanRef<'_>| shown[span.index()];
        let mut tops: Vec<SpanRef<'a>> = trace
            .spans()
            .filter(|span| is_shown(span) && span.parent().is_none_or(|parent| !is_shown(&parent)))
            .collect();
        tops.sort_by_key(|span| (span.record().start_unix_nanos, span.index()));
        // (span, prefix, last) in drawing order.
        let count = tops.len();
        let mut stack: Vec<(SpanRef<'a>, String, bool)> = tops
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, top)| (top, String::new(), i + 1 == count))
            .collect();
        while let Some((span, prefix, last)) = stack.pop() {
            let position = matched[span.index()];
            writeln!(
                f,
                "{prefix}{}{}{}",
                if last { "└─ " } else { "├─ " },
                self.headline(span),
                if position.is_some() { " ◀" } else { "" }
            )?;
            let below = format!("{prefix}{}", if last { "   " } else { "│  " });
            if let Some(position) = position {
                for (field, value) in self.selected(position) {
                    writeln!(f, "{below}  {field} = {value}")?;
                }
            }
            let children: Vec<SpanRef<'a>> = span
                .children()
                .into_iter()
                .filter(|child| is_shown(child))
                .collect();
            let count = children.len();
            for (i, child) in children.into_iter().enumerate().rev() {
                stack.push((child, below.clone(), i + 1 == count));
            }
        }
        Ok(())
    }
}
