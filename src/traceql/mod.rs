//! TraceQL — Grafana Tempo's trace query language — evaluated in-process over a
//! [`TraceSet`], so over the capture, the receiver and OTLP files alike: paste a query from
//! Grafana into a test, and one from a failing test into Grafana.
//!
//! ```
//! use p2p_otel_testkit::model::{SpanKind, SpanRecord, SpanId, TraceId, ParentRef, StatusCode};
//! use p2p_otel_testkit::tree::TraceSet;
//!
//! // A search on one node whose handler on another node failed.
//! let trace = TraceId::from_bytes([7; 16]);
//! let mut search = SpanRecord::new(trace, SpanId::from_bytes([1; 8]), "p2p_search");
//! search.kind = SpanKind::Client;
//! let mut handler = SpanRecord::new(trace, SpanId::from_bytes([2; 8]), "handle_search");
//! handler.kind = SpanKind::Server;
//! handler.status.code = StatusCode::Error;
//! handler.parent = Some(ParentRef { span_id: search.span_id, remote: Some(true) });
//! let traces = TraceSet::new([search, handler]);
//!
//! let found = traces
//!     .expect_query(r#"{ name = "p2p_search" } > { kind = server && status = error && span:remoteParent = true }"#)
//!     .unwrap();
//! assert_eq!(found[0].spans()[0].name(), "handle_search");
//! assert!(traces.select("{ status = error } | count() > 1").unwrap().is_empty());
//! ```
//!
//! # What it understands
//!
//! As Tempo's documentation defines it (read at grafana/tempo `ad33aa8f`; the notes are
//! in `docs/research/traceql.md`):
//!
//! - spanset filters `{ … }` with the intrinsics `name`, `status`, `statusMessage`,
//!   `kind`, `duration`, `span:id`, `span:parentID`, `trace:id`, `trace:duration`,
//!   `trace:rootName`, `trace:rootService`, `event:name`, `event:timeSinceStart`,
//!   `link:traceID`, `link:spanID`, `instrumentation:name`, `instrumentation:version`;
//!   attributes by scope (`span.`, `resource.`, `event.`, `link.`, `instrumentation.`,
//!   unscoped `.x`: the span's, then the resource's), quoted names (`span."a b"`);
//!   `= != > >= < <= =~ !~`, `&& || !`, arithmetic `+ - * / % ^`; strings, integers,
//!   floats, durations (`120ms`, `1.5s`, `1h30m`), `true`/`false`, `nil`, statuses and
//!   kinds;
//! - spanset operators `&&` `||` and the structural `>` `>>` `<` `<<` `~`, their negations
//!   `!>` `!>>` `!<` `!<<` `!~` and union forms `&>` `&>>` `&<` `&<<` `&~`;
//! - pipelines `|` with `count()`, `avg/min/max/sum(…)` compared with a value, `by(…)`,
//!   `coalesce()` and `select(…)`.
//!
//! The kit adds one intrinsic for P2P traces: **`span:remoteParent`**, true when the
//! span's parent was propagated from another process or node (a handler under a client
//! span on another node), false for a root or a local child. The span's node is its
//! resource's `resource.service.instance.id`.
//!
//! # Where Tempo's documentation is silent, this is what the kit does
//!
//! - Structural operators follow the parent links present in the trace: a subtree under an
//!   orphan relates within itself; roots are siblings of each other, and so are orphans
//!   waiting for the same missing parent.
//! - The union forms `&>` … return the matching spans of *both* sides (Tempo's code; the
//!   docs describe them like the plain forms).
//! - An array attribute matches `=`, `=~` and the orderings when an element does, and `!=`
//!   / `!~` when none does. Bytes, maps and OTLP's empty value are present (`!= nil`) but
//!   equal nothing.
//! - Division by a literal zero is refused when parsing; by a field that is zero, the
//!   result is missing (and every comparison with it false). Integer overflow likewise.
//! - Spans come back in start order; all of them, not Tempo's default of three per
//!   spanset.
//! - Not supported: metrics functions (`rate()`, …), `parent.` attributes (Tempo does not
//!   either), query hints `with(…)`.

mod ast;
mod error;
mod eval;
mod parse;
mod search;
mod spanset;
mod value;

use std::fmt;

pub use error::QueryError;
pub(crate) use search::{search_response as search_json, tempo_trace_id};
pub use spanset::Spanset;

use crate::tree::{AssertionError, TraceSet};
use eval::{Evaluator, Stats, TraceView};

/// A parsed TraceQL query, ready to run on any number of trace sets.
///
/// ```
/// use p2p_otel_testkit::traceql::Query;
/// let query = Query::parse("{ span.http.status_code >= 500 } | by(resource.service.name) | count() > 2").unwrap();
/// assert_eq!(query.text(), "{ span.http.status_code >= 500 } | by(resource.service.name) | count() > 2");
/// ```
#[derive(Clone)]
pub struct Query {
    text: String,
    pipeline: ast::Pipeline,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Query").field(&self.text).finish()
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Query {
    /// Parses a query; the error shows where it went wrong and what was expected.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        Ok(Query {
            text: text.to_owned(),
            pipeline: parse::parse(text)?,
        })
    }

    /// The query as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The spansets the query returns, trace by trace (in the set's trace order).
    pub fn select<'a>(&self, traces: &'a TraceSet) -> Vec<Spanset<'a>> {
        self.run(traces, None)
    }

    /// The query's result over `traces` in the shape of Tempo's search API response
    /// (`GET /api/search`): the spansets grouped by trace, ids as Tempo writes them.
    ///
    /// ```
    /// # use p2p_otel_testkit::model::{SpanRecord, SpanId, TraceId};
    /// # use p2p_otel_testkit::tree::TraceSet;
    /// use p2p_otel_testkit::traceql::Query;
    /// let traces = TraceSet::new([SpanRecord::new(TraceId::from_bytes([1; 16]), SpanId::from_bytes([2; 8]), "dht_put")]);
    /// let response = Query::parse("{ } | count() > 0").unwrap().search_response(&traces);
    /// assert_eq!(response["traces"][0]["rootTraceName"], "dht_put");
    /// assert_eq!(response["traces"][0]["spanSets"][0]["attributes"][0]["key"], "count()");
    /// ```
    pub fn search_response(&self, traces: &TraceSet) -> serde_json::Value {
        search::search_response(traces, &self.select(traces), 0)
    }

    fn run<'a>(&self, traces: &'a TraceSet, mut stats: Option<&mut Stats>) -> Vec<Spanset<'a>> {
        let mut out = Vec::new();
        for trace in traces.traces() {
            let view = TraceView::new(trace);
            let mut evaluator = Evaluator {
                view: &view,
                stats: stats.as_deref_mut(),
            };
            for set in evaluator.run(&self.pipeline) {
                out.push(Spanset::new(traces, &view, set));
            }
        }
        out
    }

    /// Why nothing matched: every filter with how many spans it kept, and the stage that
    /// left each trace with nothing.
    fn explain(&self, traces: &TraceSet) -> String {
        let mut stats = Stats::default();
        let _ = self.run(traces, Some(&mut stats));
        let mut out = String::new();
        let filters = filter_texts(&self.text, &self.pipeline);
        for (index, text) in filters.iter().enumerate() {
            let (kept, offered) = stats.filters.get(index).copied().unwrap_or((0, 0));
            out.push_str(&format!(
                "  {text}  kept {kept} of {offered} spans offered\n"
            ));
        }
        for (index, stage) in self.pipeline.stages.iter().enumerate() {
            let emptied = stats.emptied.get(index).copied().unwrap_or(0);
            if emptied > 0 {
                out.push_str(&format!(
                    "  stage {} `{}` left {emptied} of {} trace(s) with nothing\n",
                    index + 1,
                    self.text[stage.text.clone()].trim(),
                    traces.traces().len()
                ));
            }
        }
        out
    }
}

/// The text of every `{ … }` filter of a pipeline, in the order they are numbered.
fn filter_texts(text: &str, pipeline: &ast::Pipeline) -> Vec<String> {
    fn walk(text: &str, expr: &ast::SpansetExpr, out: &mut Vec<String>) {
        match expr {
            ast::SpansetExpr::Filter { text: range, .. } => {
                out.push(text[range.clone()].to_owned())
            }
            ast::SpansetExpr::Nested(pipeline) => stages(text, pipeline, out),
            ast::SpansetExpr::Binary { lhs, rhs, .. } => {
                walk(text, lhs, out);
                walk(text, rhs, out);
            }
        }
    }
    fn stages(text: &str, pipeline: &ast::Pipeline, out: &mut Vec<String>) {
        for stage in &pipeline.stages {
            if let ast::StageKind::Spansets(expr) = &stage.kind {
                walk(text, expr, out);
            }
        }
    }
    let mut out = Vec::new();
    stages(text, pipeline, &mut out);
    out
}

impl TraceSet {
    /// Runs a TraceQL query: the spansets it returns, trace by trace.
    ///
    /// ```
    /// # use p2p_otel_testkit::model::{SpanRecord, SpanId, TraceId};
    /// # use p2p_otel_testkit::tree::TraceSet;
    /// let traces = TraceSet::new([SpanRecord::new(TraceId::from_bytes([1; 16]), SpanId::from_bytes([1; 8]), "dht_put")]);
    /// assert_eq!(traces.select(r#"{ name =~ "dht_.*" }"#).unwrap().len(), 1);
    /// assert!(traces.select(r#"{ name = "dht_get" }"#).unwrap().is_empty());
    /// ```
    pub fn select(&self, query: &str) -> Result<Vec<Spanset<'_>>, QueryError> {
        Ok(Query::parse(query)?.select(self))
    }

    /// Expects the TraceQL query to match; returns the spansets. The failure prints the
    /// query, how far it matched (the spans each filter kept, the stage that emptied each
    /// trace) and the trees.
    pub fn expect_query(&self, query: &str) -> Result<Vec<Spanset<'_>>, AssertionError> {
        let query = Query::parse(query).map_err(|error| AssertionError::new(error.to_string()))?;
        let found = query.select(self);
        if !found.is_empty() {
            return Ok(found);
        }
        Err(AssertionError::new(format!(
            "expected the TraceQL query to match; it matched nothing\n  {}\nhow far it matched, over {} trace(s):\n{}\n{}",
            query.text(),
            self.traces().len(),
            query.explain(self),
            self.received(),
        )))
    }

    /// Expects the TraceQL query to match nothing (`{ status = error }`, a forbidden
    /// structure); the failure prints what it matched and the trees.
    pub fn expect_query_none(&self, query: &str) -> Result<(), AssertionError> {
        let query = Query::parse(query).map_err(|error| AssertionError::new(error.to_string()))?;
        let found = query.select(self);
        if found.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
        Err(AssertionError::new(format!(
            "expected the TraceQL query to match nothing\n  {}\nit matched {} spanset(s):\n{}\n{}",
            query.text(),
            found.len(),
            listed.join(""),
            self.received(),
        )))
    }
}
