//! The TraceQL parser, written with winnow over the query text: precedence climbing for
//! field expressions and spanset operators, `cut_err` wherever the query has committed to
//! a form so that an error points at the token that broke it.

use std::fmt;

use regex::Regex;
use winnow::ascii::multispace0;
use winnow::combinator::{alt, cut_err, eof, not, opt, peek, preceded, terminated};
use winnow::error::{ContextError, ErrMode, FromExternalError, StrContext, StrContextValue};
use winnow::stream::{Location, Stream};
use winnow::token::{any, literal, one_of, take_till, take_while};
use winnow::{LocatingSlice, ModalResult, Parser, Stateful};

use super::ast::{
    Aggregate, AttrScope, BinaryOp, Field, FieldExpr, Intrinsic, Mode, Pipeline, Relation,
    SpansetExpr, SpansetOp, Stage, StageKind, Static,
};
use super::error::QueryError;
use crate::model::{SpanKind, StatusCode};

type Input<'a> = Stateful<LocatingSlice<&'a str>, Nesting>;
type Checkpoint<'a> = <Input<'a> as Stream>::Checkpoint;

/// A query the parser understood but cannot accept (a bad regex, `nil` against an
/// intrinsic): carried as the cause of a cut error.
#[derive(Debug)]
struct Invalid(String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// The longest query accepted, in bytes: a query is typed or pasted, not generated.
const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The deepest nesting accepted (parentheses, braces, `!` and `-`): the parser and the
/// evaluator recurse once per level, and a thread's stack is finite.
const MAX_NESTING: usize = 128;

/// How deep the parser is in nested expressions.
#[derive(Clone, Copy, Debug, Default)]
struct Nesting(usize);

/// Runs `inner` one level deeper, refusing past [`MAX_NESTING`].
fn nested<'a, O>(
    input: &mut Input<'a>,
    inner: impl FnOnce(&mut Input<'a>) -> ModalResult<O>,
) -> ModalResult<O> {
    if input.state.0 >= MAX_NESTING {
        let at = input.checkpoint();
        return invalid(
            input,
            &at,
            format!("the query nests deeper than {MAX_NESTING} levels"),
        );
    }
    input.state.0 += 1;
    let result = inner(input);
    input.state.0 -= 1;
    result
}

/// Parses a whole query.
pub(crate) fn parse(text: &str) -> Result<Pipeline, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            text,
            MAX_QUERY_BYTES,
            format!(
                "the query is {} bytes long; at most {MAX_QUERY_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    let input = Stateful {
        input: LocatingSlice::new(text),
        state: Nesting::default(),
    };
    let parsed =
        terminated(pipeline, (multispace0, expect(eof, "the end of the query"))).parse(input);
    match parsed {
        Ok(mut pipeline) => {
            number_filters(&mut pipeline, &mut 0);
            Ok(pipeline)
        }
        Err(error) => Err(QueryError::new(
            text,
            error.offset(),
            describe(error.inner()),
        )),
    }
}

fn describe(error: &ContextError) -> String {
    if let Some(cause) = error.cause() {
        return cause.to_string();
    }
    let mut expected: Vec<String> = Vec::new();
    for context in error.context() {
        if let StrContext::Expected(value) = context {
            let value = value.to_string();
            if !expected.contains(&value) {
                expected.push(value);
            }
        }
    }
    match expected.as_slice() {
        [] => "this is not TraceQL".to_owned(),
        [one] => format!("expected {one}"),
        [rest @ .., last] => format!("expected {} or {last}", rest.join(", ")),
    }
}

fn number_filters(pipeline: &mut Pipeline, next: &mut usize) {
    for stage in &mut pipeline.stages {
        if let StageKind::Spansets(expr) = &mut stage.kind {
            number_spanset(expr, next);
        }
    }
}

fn number_spanset(expr: &mut SpansetExpr, next: &mut usize) {
    match expr {
        SpansetExpr::Filter { id, .. } => {
            *id = *next;
            *next += 1;
        }
        SpansetExpr::Nested(pipeline) => number_filters(pipeline, next),
        SpansetExpr::Binary { lhs, rhs, .. } => {
            number_spanset(lhs, next);
            number_spanset(rhs, next);
        }
    }
}

/// `parser`, or a backtrack error naming what was expected.
fn expect<'a, O>(
    parser: impl Parser<Input<'a>, O, ErrMode<ContextError>>,
    what: &'static str,
) -> impl Parser<Input<'a>, O, ErrMode<ContextError>> {
    parser.context(StrContext::Expected(StrContextValue::Description(what)))
}

/// A token after optional whitespace.
fn token<'a>(text: &'static str) -> impl Parser<Input<'a>, &'a str, ErrMode<ContextError>> {
    preceded(multispace0, literal(text))
        .context(StrContext::Expected(StrContextValue::StringLiteral(text)))
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Gives up on the query with `message`, pointing at `at`.
fn invalid<'i, T>(input: &mut Input<'i>, at: &Checkpoint<'i>, message: String) -> ModalResult<T> {
    input.reset(at);
    Err(ErrMode::Cut(ContextError::from_external_error(
        input,
        Invalid(message),
    )))
}

// ---- pipelines and stages -------------------------------------------------------------

fn pipeline(input: &mut Input<'_>) -> ModalResult<Pipeline> {
    let mut stages = vec![stage(input)?];
    while opt(preceded(
        multispace0,
        terminated(literal("|"), not(literal("|"))),
    ))
    .parse_next(input)?
    .is_some()
    {
        stages.push(cut_err(stage).parse_next(input)?);
    }
    Ok(Pipeline { stages })
}

fn stage(input: &mut Input<'_>) -> ModalResult<Stage> {
    multispace0.parse_next(input)?;
    let start = input.current_token_start();
    let at = input.checkpoint();
    let kind = match peek(opt(any)).parse_next(input)? {
        Some('{') | Some('(') => StageKind::Spansets(spanset_logic(input)?),
        _ => {
            let word: &str = take_while(0.., is_word_char).parse_next(input)?;
            match word {
                "by" => {
                    let (field, text) =
                        parenthesized(field_logic.with_taken()).parse_next(input)?;
                    StageKind::By(field, format!("by({})", text.trim()))
                }
                "select" => StageKind::Select(select_fields(input)?),
                "coalesce" => {
                    (cut_err(token("(")), cut_err(token(")"))).parse_next(input)?;
                    StageKind::Coalesce
                }
                "count" | "avg" | "min" | "max" | "sum" => scalar_filter(word, input)?,
                "" => {
                    let mut error = ContextError::new();
                    error.push(StrContext::Expected(StrContextValue::Description(
                        "a spanset filter such as `{ name = \"x\" }`",
                    )));
                    error.push(StrContext::Expected(StrContextValue::Description(
                        "`by(…)`, `select(…)`, `coalesce()` or an aggregate such as `count()`",
                    )));
                    return Err(ErrMode::Backtrack(error));
                }
                other => {
                    return invalid(
                        input,
                        &at,
                        format!(
                        "`{other}` is not a pipeline stage: expected a spanset filter `{{ … }}`, \
                             `by(…)`, `select(…)`, `coalesce()` or `count()`, `avg(…)`, `min(…)`, \
                             `max(…)`, `sum(…)` compared with a value (Tempo's metrics functions \
                             such as `rate()` are not supported)"
                    ),
                    )
                }
            }
        }
    };
    let end = input.previous_token_end();
    Ok(Stage {
        kind,
        text: start..end,
    })
}

fn parenthesized<'a, O>(
    inner: impl Parser<Input<'a>, O, ErrMode<ContextError>>,
) -> impl Parser<Input<'a>, O, ErrMode<ContextError>> {
    (cut_err(token("(")), cut_err(inner), cut_err(token(")"))).map(|(_, value, _)| value)
}

fn select_fields(input: &mut Input<'_>) -> ModalResult<Vec<(String, Field)>> {
    cut_err(token("(")).parse_next(input)?;
    let mut fields = Vec::new();
    loop {
        multispace0.parse_next(input)?;
        let (field, text) = cut_err(expect(field, "an attribute or intrinsic"))
            .with_taken()
            .parse_next(input)?;
        fields.push((text.to_owned(), field));
        if opt(token(",")).parse_next(input)?.is_none() {
            break;
        }
    }
    cut_err(token(")")).parse_next(input)?;
    Ok(fields)
}

fn scalar_filter(function: &str, input: &mut Input<'_>) -> ModalResult<StageKind> {
    let (aggregate, text) = if function == "count" {
        (cut_err(token("(")), cut_err(token(")"))).parse_next(input)?;
        (Aggregate::Count, "count()".to_owned())
    } else {
        let (field, text) = parenthesized(field_logic.with_taken()).parse_next(input)?;
        let text = format!("{function}({})", text.trim());
        let aggregate = match function {
            "avg" => Aggregate::Avg(field),
            "min" => Aggregate::Min(field),
            "max" => Aggregate::Max(field),
            _ => Aggregate::Sum(field),
        };
        (aggregate, text)
    };
    let op = cut_err(comparison_op).parse_next(input)?;
    let value = cut_err(expect(signed_static, "a number or duration")).parse_next(input)?;
    Ok(StageKind::Scalar {
        aggregate,
        text,
        op,
        value,
    })
}

fn comparison_op(input: &mut Input<'_>) -> ModalResult<BinaryOp> {
    preceded(
        multispace0,
        alt((
            literal("!=").value(BinaryOp::Ne),
            literal("<=").value(BinaryOp::Le),
            literal(">=").value(BinaryOp::Ge),
            literal("=").value(BinaryOp::Eq),
            literal("<").value(BinaryOp::Lt),
            literal(">").value(BinaryOp::Gt),
        )),
    )
    .context(StrContext::Expected(StrContextValue::Description(
        "a comparison (`=`, `!=`, `<`, `<=`, `>`, `>=`)",
    )))
    .parse_next(input)
}

fn signed_static(input: &mut Input<'_>) -> ModalResult<Static> {
    multispace0.parse_next(input)?;
    let negative = opt(literal("-")).parse_next(input)?.is_some();
    let value = literal_static(input)?;
    Ok(match (negative, value) {
        (false, value) => value,
        (true, Static::Int(n)) => Static::Int(-n),
        (true, Static::Float(x)) => Static::Float(-x),
        (true, Static::Duration(d)) => Static::Duration(-d),
        (true, _) => return Err(ErrMode::Backtrack(ContextError::new())),
    })
}

// ---- spanset expressions --------------------------------------------------------------

fn spanset_logic(input: &mut Input<'_>) -> ModalResult<SpansetExpr> {
    let mut lhs = spanset_relation(input)?;
    loop {
        multispace0.parse_next(input)?;
        let at = input.checkpoint();
        let op = opt(alt((
            literal("&&").value(SpansetOp::And),
            literal("||").value(SpansetOp::Or),
        )))
        .parse_next(input)?;
        let Some(op) = op else { return Ok(lhs) };
        let rhs = cut_err(spanset_relation).parse_next(input)?;
        lhs = binary_spanset(input, &at, op, lhs, rhs)?;
    }
}

fn spanset_relation(input: &mut Input<'_>) -> ModalResult<SpansetExpr> {
    let mut lhs = spanset_primary(input)?;
    loop {
        multispace0.parse_next(input)?;
        let at = input.checkpoint();
        let op = opt(structural_op).parse_next(input)?;
        let Some(op) = op else { return Ok(lhs) };
        let rhs = cut_err(spanset_primary).parse_next(input)?;
        lhs = binary_spanset(input, &at, op, lhs, rhs)?;
    }
}

fn structural_op(input: &mut Input<'_>) -> ModalResult<SpansetOp> {
    use Mode::{Not, Plain, Union};
    use Relation::{Ancestor, Child, Descendant, Parent, Sibling};
    let op = |text: &'static str, relation, mode| {
        literal(text).value(SpansetOp::Structural(relation, mode))
    };
    alt((
        alt((
            op("&>>", Descendant, Union),
            op("&<<", Ancestor, Union),
            op("!>>", Descendant, Not),
            op("!<<", Ancestor, Not),
            op(">>", Descendant, Plain),
            op("<<", Ancestor, Plain),
        )),
        alt((
            op("&>", Child, Union),
            op("&<", Parent, Union),
            op("&~", Sibling, Union),
            op("!>", Child, Not),
            op("!<", Parent, Not),
            op("!~", Sibling, Not),
            op(">", Child, Plain),
            op("<", Parent, Plain),
            op("~", Sibling, Plain),
        )),
    ))
    .parse_next(input)
}

fn binary_spanset<'i>(
    input: &mut Input<'i>,
    at: &Checkpoint<'i>,
    op: SpansetOp,
    lhs: SpansetExpr,
    rhs: SpansetExpr,
) -> ModalResult<SpansetExpr> {
    if splits(&lhs) || splits(&rhs) {
        return invalid(
            input,
            at,
            "a side of this spanset operator returns more than one spanset per trace (it \
             uses `by(…)`): consider using coalesce()"
                .to_owned(),
        );
    }
    Ok(SpansetExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

/// Whether an expression can return more than one spanset for one trace.
fn splits(expr: &SpansetExpr) -> bool {
    match expr {
        SpansetExpr::Filter { .. } | SpansetExpr::Binary { .. } => false,
        SpansetExpr::Nested(pipeline) => {
            pipeline
                .stages
                .iter()
                .fold(false, |split, stage| match &stage.kind {
                    StageKind::By(..) => true,
                    StageKind::Coalesce => false,
                    StageKind::Spansets(expr) => split || splits(expr),
                    StageKind::Scalar { .. } | StageKind::Select(_) => split,
                })
        }
    }
}

fn spanset_primary(input: &mut Input<'_>) -> ModalResult<SpansetExpr> {
    multispace0.parse_next(input)?;
    let start = input.current_token_start();
    let opened = alt((literal("{"), literal("(")))
        .context(StrContext::Expected(StrContextValue::Description(
            "a spanset filter `{ … }` or `(`",
        )))
        .parse_next(input)?;
    if opened == "(" {
        let nested = nested(input, |input| cut_err(pipeline).parse_next(input))?;
        cut_err(token(")")).parse_next(input)?;
        return Ok(match nested.stages.as_slice() {
            [Stage {
                kind: StageKind::Spansets(_),
                ..
            }] => match nested.stages.into_iter().next().map(|stage| stage.kind) {
                Some(StageKind::Spansets(expr)) => expr,
                _ => return Err(ErrMode::Cut(ContextError::new())),
            },
            _ => SpansetExpr::Nested(Box::new(nested)),
        });
    }
    let condition = opt(field_logic).parse_next(input)?;
    cut_err(token("}")).parse_next(input)?;
    let (uses_events, uses_links) = condition.as_ref().map_or((false, false), |condition| {
        (
            any_field(condition, &Field::uses_events),
            any_field(condition, &Field::uses_links),
        )
    });
    Ok(SpansetExpr::Filter {
        condition,
        id: 0,
        text: start..input.previous_token_end(),
        uses_events,
        uses_links,
    })
}

fn any_field(expr: &FieldExpr, test: &dyn Fn(&Field) -> bool) -> bool {
    match expr {
        FieldExpr::Static(_) => false,
        FieldExpr::Field(field) => test(field),
        FieldExpr::Not(inner) | FieldExpr::Negate(inner) => any_field(inner, test),
        FieldExpr::Binary { lhs, rhs, .. } => any_field(lhs, test) || any_field(rhs, test),
        FieldExpr::Regex { lhs, .. } => any_field(lhs, test),
    }
}

// ---- field expressions ----------------------------------------------------------------

fn field_logic(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    let mut lhs = field_comparison(input)?;
    loop {
        let op = opt(preceded(
            multispace0,
            alt((
                literal("&&").value(BinaryOp::And),
                literal("||").value(BinaryOp::Or),
            )),
        ))
        .parse_next(input)?;
        let Some(op) = op else { return Ok(lhs) };
        let rhs = cut_err(field_comparison).parse_next(input)?;
        lhs = FieldExpr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        };
    }
}

fn field_comparison(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    let mut lhs = field_additive(input)?;
    loop {
        multispace0.parse_next(input)?;
        let at = input.checkpoint();
        let regex =
            opt(alt((literal("=~").value(false), literal("!~").value(true)))).parse_next(input)?;
        if let Some(negated) = regex {
            multispace0.parse_next(input)?;
            let pattern_at = input.checkpoint();
            let pattern =
                cut_err(expect(string, "a quoted regular expression")).parse_next(input)?;
            let regex = match Regex::new(&format!("^(?s:{pattern})$")) {
                Ok(regex) => regex,
                Err(error) => {
                    return invalid(
                        input,
                        &pattern_at,
                        format!("invalid regular expression: {error}"),
                    )
                }
            };
            lhs = FieldExpr::Regex {
                lhs: Box::new(lhs),
                regex,
                negated,
            };
            continue;
        }
        let Some(op) = opt(comparison_op).parse_next(input)? else {
            return Ok(lhs);
        };
        let rhs = cut_err(field_additive).parse_next(input)?;
        lhs = comparison(input, &at, op, lhs, rhs)?;
    }
}

/// A comparison, refused where Tempo refuses it: `nil` against an intrinsic or
/// `resource.service.name`, an order between statuses or kinds.
fn comparison<'i>(
    input: &mut Input<'i>,
    at: &Checkpoint<'i>,
    op: BinaryOp,
    lhs: FieldExpr,
    rhs: FieldExpr,
) -> ModalResult<FieldExpr> {
    let is_nil = |e: &FieldExpr| matches!(e, FieldExpr::Static(Static::Nil));
    let always_present = |e: &FieldExpr| match e {
        FieldExpr::Field(Field::Intrinsic(_)) => true,
        FieldExpr::Field(Field::Attribute {
            scope: AttrScope::Resource,
            name,
        }) => name == "service.name",
        _ => false,
    };
    if (is_nil(&lhs) && always_present(&rhs)) || (is_nil(&rhs) && always_present(&lhs)) {
        return invalid(
            input,
            at,
            "`nil` cannot be compared with an intrinsic or resource.service.name: they are \
             always present"
                .to_owned(),
        );
    }
    let enumerated = |e: &FieldExpr| {
        matches!(
            e,
            FieldExpr::Static(Static::Status(_) | Static::Kind(_))
                | FieldExpr::Field(Field::Intrinsic(Intrinsic::Status | Intrinsic::Kind))
        )
    };
    if !matches!(op, BinaryOp::Eq | BinaryOp::Ne) && (enumerated(&lhs) || enumerated(&rhs)) {
        return invalid(
            input,
            at,
            format!(
                "status and kind take only `=` and `!=`, not `{}`",
                op.symbol()
            ),
        );
    }
    // Trace ids drop leading zeros (as Tempo writes them), in the data and in the literal.
    let trim = |e: FieldExpr| match e {
        FieldExpr::Static(Static::Str(id)) => {
            let trimmed = id.trim_start_matches('0').to_ascii_lowercase();
            FieldExpr::Static(Static::Str(trimmed))
        }
        other => other,
    };
    let is_trace_id = |e: &FieldExpr| {
        matches!(
            e,
            FieldExpr::Field(Field::Intrinsic(
                Intrinsic::TraceId | Intrinsic::LinkTraceId
            ))
        )
    };
    let (lhs, rhs) = if is_trace_id(&lhs) {
        (lhs, trim(rhs))
    } else if is_trace_id(&rhs) {
        (trim(lhs), rhs)
    } else {
        (lhs, rhs)
    };
    Ok(FieldExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

fn field_additive(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    let mut lhs = field_unary(input)?;
    loop {
        let op = opt(preceded(
            multispace0,
            alt((
                literal("+").value(BinaryOp::Add),
                literal("-").value(BinaryOp::Sub),
            )),
        ))
        .parse_next(input)?;
        let Some(op) = op else { return Ok(lhs) };
        let rhs = cut_err(field_unary).parse_next(input)?;
        lhs = FieldExpr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        };
    }
}

fn field_unary(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    multispace0.parse_next(input)?;
    if opt(terminated(literal("!"), not(one_of(['=', '~']))))
        .parse_next(input)?
        .is_some()
    {
        let inner = nested(input, |input| cut_err(field_unary).parse_next(input))?;
        return Ok(FieldExpr::Not(Box::new(inner)));
    }
    if opt(literal("-")).parse_next(input)?.is_some() {
        return Ok(
            match nested(input, |input| cut_err(field_unary).parse_next(input))? {
                FieldExpr::Static(Static::Int(n)) => FieldExpr::Static(Static::Int(-n)),
                FieldExpr::Static(Static::Float(x)) => FieldExpr::Static(Static::Float(-x)),
                FieldExpr::Static(Static::Duration(d)) => FieldExpr::Static(Static::Duration(-d)),
                other => FieldExpr::Negate(Box::new(other)),
            },
        );
    }
    field_multiplicative(input)
}

fn field_multiplicative(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    let mut lhs = field_power(input)?;
    loop {
        multispace0.parse_next(input)?;
        let at = input.checkpoint();
        let op = opt(alt((
            literal("*").value(BinaryOp::Mul),
            literal("/").value(BinaryOp::Div),
            literal("%").value(BinaryOp::Rem),
        )))
        .parse_next(input)?;
        let Some(op) = op else { return Ok(lhs) };
        let rhs = cut_err(field_power).parse_next(input)?;
        if matches!(op, BinaryOp::Div | BinaryOp::Rem)
            && matches!(rhs, FieldExpr::Static(Static::Int(0)))
        {
            return invalid(input, &at, "division by zero".to_owned());
        }
        lhs = FieldExpr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        };
    }
}

fn field_power(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    let base = field_primary(input)?;
    if opt(token("^")).parse_next(input)?.is_some() {
        // Right-associative (`2 ^ 3 ^ 2` is `2 ^ (3 ^ 2)`) and tighter than `* / %`
        // (`2 ^ 3 * 2` is `(2 ^ 3) * 2`): the exponent is a power, possibly negated.
        let negative = opt(preceded(multispace0, literal("-")))
            .parse_next(input)?
            .is_some();
        let exponent = nested(input, |input| cut_err(field_power).parse_next(input))?;
        let exponent = match (negative, exponent) {
            (false, exponent) => exponent,
            (true, FieldExpr::Static(Static::Int(n))) => FieldExpr::Static(Static::Int(-n)),
            (true, FieldExpr::Static(Static::Float(x))) => FieldExpr::Static(Static::Float(-x)),
            (true, other) => FieldExpr::Negate(Box::new(other)),
        };
        return Ok(FieldExpr::Binary {
            op: BinaryOp::Pow,
            lhs: Box::new(base),
            rhs: Box::new(exponent),
        });
    }
    Ok(base)
}

fn field_primary(input: &mut Input<'_>) -> ModalResult<FieldExpr> {
    multispace0.parse_next(input)?;
    if opt(literal("(")).parse_next(input)?.is_some() {
        let inner = nested(input, |input| cut_err(field_logic).parse_next(input))?;
        cut_err(token(")")).parse_next(input)?;
        return Ok(inner);
    }
    alt((
        literal_static.map(FieldExpr::Static),
        field.map(FieldExpr::Field),
    ))
    .context(StrContext::Expected(StrContextValue::Description(
        "a value (a string, number, duration, `true`, `nil`, a status or kind) or a field \
         (`.attr`, `span.attr`, `resource.attr`, `name`, `duration`, `span:id`, …)",
    )))
    .parse_next(input)
}

// ---- literals -------------------------------------------------------------------------

fn literal_static(input: &mut Input<'_>) -> ModalResult<Static> {
    alt((string.map(Static::Str), number, word_static)).parse_next(input)
}

fn word_static(input: &mut Input<'_>) -> ModalResult<Static> {
    let at = input.checkpoint();
    let word: &str = take_while(1.., is_word_char).parse_next(input)?;
    let value = match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "nil" => Static::Nil,
        "ok" => Static::Status(StatusCode::Ok),
        "error" => Static::Status(StatusCode::Error),
        "unset" => Static::Status(StatusCode::Unset),
        "unspecified" | "internal" => Static::Kind(SpanKind::Internal),
        "server" => Static::Kind(SpanKind::Server),
        "client" => Static::Kind(SpanKind::Client),
        "producer" => Static::Kind(SpanKind::Producer),
        "consumer" => Static::Kind(SpanKind::Consumer),
        _ => {
            input.reset(&at);
            return Err(ErrMode::Backtrack(ContextError::new()));
        }
    };
    Ok(value)
}

/// A double-quoted string (Go's escapes) or a back-quoted raw string.
fn string(input: &mut Input<'_>) -> ModalResult<String> {
    let quote = one_of(['"', '`']).parse_next(input)?;
    if quote == '`' {
        let raw: &str = take_till(0.., '`').parse_next(input)?;
        cut_err(literal("`"))
            .context(StrContext::Expected(StrContextValue::CharLiteral('`')))
            .parse_next(input)?;
        return Ok(raw.to_owned());
    }
    let mut out = String::new();
    loop {
        let plain: &str = take_till(0.., ['"', '\\']).parse_next(input)?;
        out.push_str(plain);
        let at = input.checkpoint();
        match input.next_token() {
            Some('"') => return Ok(out),
            Some('\\') => match input.next_token() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some('u') => {
                    let hex: &str = take_while(4, |c: char| c.is_ascii_hexdigit())
                        .parse_next(input)
                        .map_err(|e: ErrMode<ContextError>| e.cut())?;
                    match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                        Some(c) => out.push(c),
                        None => return invalid(input, &at, format!("invalid escape \\u{hex}")),
                    }
                }
                other => {
                    return invalid(
                        input,
                        &at,
                        format!(
                            "invalid escape `\\{}` in a string",
                            other.map_or_else(String::new, String::from)
                        ),
                    )
                }
            },
            _ => {
                let mut error = ContextError::new();
                error.push(StrContext::Expected(StrContextValue::Description(
                    "a closing `\"`",
                )));
                return Err(ErrMode::Cut(error));
            }
        }
    }
}

/// An integer, a float or a duration (`120ms`, `1.5s`, `1h30m`).
fn number(input: &mut Input<'_>) -> ModalResult<Static> {
    let at = input.checkpoint();
    let text: &str = (
        one_of(|c: char| c.is_ascii_digit()),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '.' || c == 'µ'
        }),
    )
        .take()
        .parse_next(input)?;
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Static::Int(n));
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        if let Ok(x) = text.parse::<f64>() {
            return Ok(Static::Float(x));
        }
    }
    match parse_duration(text) {
        Some(nanos) => Ok(Static::Duration(nanos)),
        None => invalid(
            input,
            &at,
            format!(
                "`{text}` is not a number or a duration (durations such as `120ms`, `1.5s`, \
                 `1h30m`; units ns, us, µs, ms, s, m, h, d, w, y)"
            ),
        ),
    }
}

/// A duration in nanoseconds: one or more `<number><unit>` parts.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_length = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_length] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3_600e9,
            "d" => 86_400e9,
            "w" => 604_800e9,
            "y" => 31_536_000e9,
            _ => return None,
        };
        rest = &rest[unit_length..];
        total += value * nanos_per_unit;
    }
    (total.is_finite() && total < i64::MAX as f64).then_some(total.round() as i64)
}

// ---- fields ---------------------------------------------------------------------------

fn field(input: &mut Input<'_>) -> ModalResult<Field> {
    let at = input.checkpoint();
    let scope = opt(alt((
        literal("span.").value(Some(AttrScope::Span)),
        literal("resource.").value(Some(AttrScope::Resource)),
        literal("event.").value(Some(AttrScope::Event)),
        literal("link.").value(Some(AttrScope::Link)),
        literal("instrumentation.").value(Some(AttrScope::Instrumentation)),
        literal("parent.").value(None),
        literal(".").value(Some(AttrScope::Unscoped)),
    )))
    .parse_next(input)?;
    match scope {
        Some(Some(scope)) => {
            let name = cut_err(expect(attribute_name, "an attribute name")).parse_next(input)?;
            Ok(Field::Attribute { scope, name })
        }
        Some(None) => invalid(
            input,
            &at,
            "`parent.` attributes are not supported (Tempo does not support them yet either); \
             relate spans with `>` instead: `{ parent condition } > { child condition }`"
                .to_owned(),
        ),
        None => intrinsic(input),
    }
}

fn intrinsic(input: &mut Input<'_>) -> ModalResult<Field> {
    let at = input.checkpoint();
    let word: &str = take_while(1.., |c: char| is_word_char(c) || c == ':').parse_next(input)?;
    if let Some((_, intrinsic)) = Intrinsic::NAMES.iter().find(|(name, _)| *name == word) {
        return Ok(Field::Intrinsic(*intrinsic));
    }
    let known: Vec<&str> = Intrinsic::NAMES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| name.contains(':'))
        .collect();
    let hint = if word.contains(':') {
        String::new()
    } else {
        format!("; a string needs quotes: \"{word}\"")
    };
    invalid(
        input,
        &at,
        format!(
            "unknown field `{word}`: attributes start with `.`, `span.`, `resource.`, `event.`, \
             `link.` or `instrumentation.`; intrinsics are name, status, statusMessage, kind, \
             duration and {}{hint}",
            known.join(", ")
        ),
    )
}

/// An attribute name: runs to whitespace or an operator character; quoted parts
/// (`span."with space"`) join it.
fn attribute_name(input: &mut Input<'_>) -> ModalResult<String> {
    let mut name = String::new();
    loop {
        if peek(opt(literal("\""))).parse_next(input)?.is_some() {
            name.push_str(&string(input)?);
            continue;
        }
        let part: &str = take_while(0.., |c: char| {
            !(c.is_whitespace() || "{}()=~!<>&|^,\"".contains(c))
        })
        .parse_next(input)?;
        if part.is_empty() {
            break;
        }
        name.push_str(part);
    }
    if name.is_empty() {
        return Err(ErrMode::Backtrack(ContextError::new()));
    }
    Ok(name)
}
