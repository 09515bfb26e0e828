//! The parsed form of a TraceQL query. Built by [`super::parse`], run by [`super::eval`].

use std::ops::Range;

use regex::Regex;

use crate::model::{SpanKind, StatusCode};

/// A whole query: stages joined by `|`, each fed what the one before it returned.
#[derive(Clone, Debug)]
pub(crate) struct Pipeline {
    pub(crate) stages: Vec<Stage>,
}

/// One stage of a pipeline, with where it stands in the query text.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub(crate) kind: StageKind,
    pub(crate) text: Range<usize>,
}

#[derive(Clone, Debug)]
pub(crate) enum StageKind {
    /// `{ … }`, `{ … } >> { … }`, `( … ) && ( … )`: keeps or relates spans.
    Spansets(SpansetExpr),
    /// `count() > 2`, `avg(duration) > 20ms`: keeps the spansets whose aggregate holds.
    Scalar {
        aggregate: Aggregate,
        /// The aggregate as written (`count()`, `avg(duration)`), its label in results.
        text: String,
        op: BinaryOp,
        value: Static,
    },
    /// `by(resource.service.name)`: splits each spanset by a field's value.
    By(FieldExpr, String),
    /// `select(span.a, resource.b)`: names fields to show with each returned span.
    Select(Vec<(String, Field)>),
    /// `coalesce()`: merges every spanset of a trace into one.
    Coalesce,
}

#[derive(Clone, Debug)]
pub(crate) enum SpansetExpr {
    /// `{ condition }` (`{ }` keeps every span). `id` numbers the filters of a query in
    /// the order they are written, for the "how far it matched" report.
    Filter {
        condition: Option<FieldExpr>,
        id: usize,
        /// Where it stands in the query text.
        text: Range<usize>,
        uses_events: bool,
        uses_links: bool,
    },
    /// `( pipeline )`.
    Nested(Box<Pipeline>),
    /// Two spanset expressions joined by `&&`, `||` or a structural operator.
    Binary {
        op: SpansetOp,
        lhs: Box<SpansetExpr>,
        rhs: Box<SpansetExpr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpansetOp {
    /// `&&`: both sides found something; the union of both.
    And,
    /// `||`: the union of both sides.
    Or,
    /// A structural operator.
    Structural(Relation, Mode),
}

/// How a right-hand span relates to the left-hand spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Relation {
    /// `>`: its parent is a left-hand span.
    Child,
    /// `<`: it is the parent of a left-hand span.
    Parent,
    /// `>>`: an ancestor is a left-hand span.
    Descendant,
    /// `<<`: it is an ancestor of a left-hand span.
    Ancestor,
    /// `~`: it shares a parent with a left-hand span other than itself.
    Sibling,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `>`: the right-hand spans that relate.
    Plain,
    /// `!>`: the right-hand spans that do not.
    Not,
    /// `&>`: the spans of both sides that relate.
    Union,
}

#[derive(Clone, Debug)]
pub(crate) enum Aggregate {
    Count,
    Avg(FieldExpr),
    Min(FieldExpr),
    Max(FieldExpr),
    Sum(FieldExpr),
}

/// An expression over one span's fields.
#[derive(Clone, Debug)]
pub(crate) enum FieldExpr {
    Static(Static),
    Field(Field),
    Not(Box<FieldExpr>),
    Negate(Box<FieldExpr>),
    Binary {
        op: BinaryOp,
        lhs: Box<FieldExpr>,
        rhs: Box<FieldExpr>,
    },
    /// `=~` / `!~` against a pattern, anchored at both ends.
    Regex {
        lhs: Box<FieldExpr>,
        regex: Regex,
        negated: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "^",
        }
    }
}

/// A literal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Static {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Nanoseconds.
    Duration(i64),
    Status(StatusCode),
    Kind(SpanKind),
}

/// What a query can ask of a span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Intrinsic(Intrinsic),
    Attribute { scope: AttrScope, name: String },
}

impl Field {
    pub(crate) fn uses_events(&self) -> bool {
        matches!(
            self,
            Field::Intrinsic(Intrinsic::EventName | Intrinsic::EventTimeSinceStart)
                | Field::Attribute {
                    scope: AttrScope::Event,
                    ..
                }
        )
    }

    pub(crate) fn uses_links(&self) -> bool {
        matches!(
            self,
            Field::Intrinsic(Intrinsic::LinkTraceId | Intrinsic::LinkSpanId)
                | Field::Attribute {
                    scope: AttrScope::Link,
                    ..
                }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intrinsic {
    Duration,
    Name,
    Status,
    StatusMessage,
    Kind,
    SpanId,
    ParentId,
    /// The kit's own: whether the span's parent was propagated from another process or
    /// node (OTLP's `SPAN_FLAGS_CONTEXT_IS_REMOTE`, the capture's remote parent).
    RemoteParent,
    TraceId,
    TraceDuration,
    RootName,
    RootService,
    EventName,
    EventTimeSinceStart,
    LinkTraceId,
    LinkSpanId,
    ScopeName,
    ScopeVersion,
}

impl Intrinsic {
    /// Every intrinsic with the names a query may use for it.
    pub(crate) const NAMES: &'static [(&'static str, Intrinsic)] = &[
        ("span:duration", Intrinsic::Duration),
        ("span:name", Intrinsic::Name),
        ("span:statusMessage", Intrinsic::StatusMessage),
        ("span:status", Intrinsic::Status),
        ("span:kind", Intrinsic::Kind),
        ("span:id", Intrinsic::SpanId),
        ("span:parentID", Intrinsic::ParentId),
        ("span:remoteParent", Intrinsic::RemoteParent),
        ("trace:id", Intrinsic::TraceId),
        ("trace:duration", Intrinsic::TraceDuration),
        ("trace:rootName", Intrinsic::RootName),
        ("trace:rootService", Intrinsic::RootService),
        ("event:name", Intrinsic::EventName),
        ("event:timeSinceStart", Intrinsic::EventTimeSinceStart),
        ("link:traceID", Intrinsic::LinkTraceId),
        ("link:spanID", Intrinsic::LinkSpanId),
        ("instrumentation:name", Intrinsic::ScopeName),
        ("instrumentation:version", Intrinsic::ScopeVersion),
        ("duration", Intrinsic::Duration),
        ("name", Intrinsic::Name),
        ("statusMessage", Intrinsic::StatusMessage),
        ("status", Intrinsic::Status),
        ("kind", Intrinsic::Kind),
        ("traceDuration", Intrinsic::TraceDuration),
        ("rootName", Intrinsic::RootName),
        ("rootServiceName", Intrinsic::RootService),
    ];
}

/// Where an attribute is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttrScope {
    /// `.x`: the span's attributes, then its resource's.
    Unscoped,
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
}
