//! The values a field expression takes while a query runs, and TraceQL's operators on
//! them: mismatched types compare false (even with `!=`), a missing field compares false
//! with everything but `nil`, arrays match when an element does.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{BinaryOp, Static};
use crate::model::{SpanKind, StatusCode, Value};

#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    /// The field is not there.
    Missing,
    /// The literal `nil`.
    Nil,
    /// Present, but of a type TraceQL does not compare (bytes, a map, OTLP's empty value).
    Opaque(&'a Value),
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Str(Cow<'a, str>),
    Status(StatusCode),
    Kind(SpanKind),
    Array(&'a [Value]),
}

impl<'a> Val<'a> {
    pub(crate) fn from_value(value: &'a Value) -> Val<'a> {
        match value {
            Value::Str(text) => Val::Str(Cow::Borrowed(text)),
            Value::Int(n) => Val::Int(*n),
            Value::Double(x) => Val::Float(*x),
            Value::Bool(b) => Val::Bool(*b),
            Value::Array(items) => Val::Array(items),
            Value::Bytes(_) | Value::Map(_) | Value::Empty => Val::Opaque(value),
        }
    }

    pub(crate) fn from_static(value: &'a Static) -> Val<'a> {
        match value {
            Static::Nil => Val::Nil,
            Static::Bool(b) => Val::Bool(*b),
            Static::Int(n) => Val::Int(*n),
            Static::Float(x) => Val::Float(*x),
            Static::Str(text) => Val::Str(Cow::Borrowed(text)),
            Static::Duration(nanos) => Val::Duration(*nanos),
            Static::Status(code) => Val::Status(*code),
            Static::Kind(kind) => Val::Kind(*kind),
        }
    }

    pub(crate) fn is_true(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// How the value reads in a report: strings quoted, durations with a unit.
    pub(crate) fn render(&self) -> String {
        match self {
            Val::Missing | Val::Nil => "nil".to_owned(),
            Val::Opaque(value) => value.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Int(n) => n.to_string(),
            Val::Float(x) => x.to_string(),
            Val::Duration(nanos) => render_duration(*nanos),
            Val::Str(text) => format!("{text:?}"),
            Val::Status(code) => code.to_string(),
            Val::Kind(kind) => kind.to_string(),
            Val::Array(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|item| Val::from_value(item).render())
                    .collect();
                format!("[{}]", items.join(", "))
            }
        }
    }

    fn number(&self) -> Option<Number> {
        match self {
            Val::Int(n) | Val::Duration(n) => Some(Number::Int(*n)),
            Val::Float(x) => Some(Number::Float(*x)),
            _ => None,
        }
    }
}

/// A duration for a reader, as a query could write it: at most three decimals of the
/// largest unit that fits (`385.153us`, `2.001s`, `35ms`).
pub(crate) fn render_duration(nanos: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let magnitude = nanos.unsigned_abs();
    let (size, unit) = UNITS
        .iter()
        .find(|(size, _)| magnitude >= *size as u64)
        .copied()
        .unwrap_or((1, "ns"));
    if nanos % size == 0 || size == 1 {
        return exact_duration(nanos);
    }
    let text = format!("{:.3}", nanos as f64 / size as f64);
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A whole duration in the largest unit that keeps it whole (`90s` stays `90s`, `1h` is
/// `1h`).
fn exact_duration(nanos: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".to_owned();
    }
    UNITS
        .iter()
        .find(|(size, _)| nanos % size == 0)
        .map_or_else(
            || format!("{nanos}ns"),
            |(size, unit)| format!("{}{unit}", nanos / size),
        )
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(x) => x,
        }
    }

    fn order(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// `lhs op rhs` for any operator but the regex ones.
pub(crate) fn binary<'a>(op: BinaryOp, lhs: Val<'a>, rhs: Val<'a>) -> Val<'a> {
    match op {
        BinaryOp::And => Val::Bool(lhs.is_true() && rhs.is_true()),
        BinaryOp::Or => Val::Bool(lhs.is_true() || rhs.is_true()),
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            Val::Bool(compare(op, &lhs, &rhs))
        }
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow => arithmetic(op, &lhs, &rhs),
    }
}

/// A comparison. `nil` asks whether a field is there; anything else with a missing field,
/// or between types that do not compare, is false.
pub(crate) fn compare(op: BinaryOp, lhs: &Val<'_>, rhs: &Val<'_>) -> bool {
    match (lhs, rhs) {
        (Val::Nil, Val::Nil) => op == BinaryOp::Eq,
        (Val::Nil, other) | (other, Val::Nil) => match op {
            BinaryOp::Eq => matches!(other, Val::Missing),
            BinaryOp::Ne => !matches!(other, Val::Missing),
            _ => false,
        },
        (Val::Missing, _) | (_, Val::Missing) => false,
        (Val::Array(items), scalar) => array_compare(op, items, scalar, false),
        (scalar, Val::Array(items)) => array_compare(op, items, scalar, true),
        _ => scalar_compare(op, lhs, rhs),
    }
}

/// An array against a scalar: `=` (and the orderings) hold when an element does; `!=`
/// when no element equals.
fn array_compare(op: BinaryOp, items: &[Value], scalar: &Val<'_>, flipped: bool) -> bool {
    let element = |item: &Value, op: BinaryOp| {
        let item = Val::from_value(item);
        if flipped {
            scalar_compare(op, scalar, &item)
        } else {
            scalar_compare(op, &item, scalar)
        }
    };
    if op == BinaryOp::Ne {
        !items.iter().any(|item| element(item, BinaryOp::Eq))
    } else {
        items.iter().any(|item| element(item, op))
    }
}

fn scalar_compare(op: BinaryOp, lhs: &Val<'_>, rhs: &Val<'_>) -> bool {
    let ordering = match (lhs, rhs) {
        (Val::Str(a), Val::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Val::Bool(a), Val::Bool(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => Some(a.cmp(b)),
        (Val::Status(a), Val::Status(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => {
            Some(a.cmp(b))
        }
        (Val::Kind(a), Val::Kind(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => Some(a.cmp(b)),
        _ => match (lhs.number(), rhs.number()) {
            (Some(a), Some(b)) => a.order(b),
            _ => None,
        },
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        BinaryOp::Eq => ordering == Ordering::Equal,
        BinaryOp::Ne => ordering != Ordering::Equal,
        BinaryOp::Lt => ordering == Ordering::Less,
        BinaryOp::Le => ordering != Ordering::Greater,
        BinaryOp::Gt => ordering == Ordering::Greater,
        BinaryOp::Ge => ordering != Ordering::Less,
        _ => false,
    }
}

/// `=~` / `!~`: a string matches the (anchored) pattern; an array when an element does
/// (`!~`: when none does).
pub(crate) fn regex_matches(value: &Val<'_>, regex: &regex::Regex, negated: bool) -> bool {
    match value {
        Val::Str(text) => regex.is_match(text) != negated,
        Val::Array(items) => {
            let any = items
                .iter()
                .any(|item| matches!(item, Value::Str(text) if regex.is_match(text)));
            any != negated
        }
        _ => false,
    }
}

fn arithmetic<'a>(op: BinaryOp, lhs: &Val<'_>, rhs: &Val<'_>) -> Val<'a> {
    let duration = matches!(lhs, Val::Duration(_)) || matches!(rhs, Val::Duration(_));
    match (lhs.number(), rhs.number()) {
        (Some(Number::Int(a)), Some(Number::Int(b))) => {
            let result = match op {
                BinaryOp::Add => a.checked_add(b),
                BinaryOp::Sub => a.checked_sub(b),
                BinaryOp::Mul => a.checked_mul(b),
                BinaryOp::Div => a.checked_div(b),
                BinaryOp::Rem => a.checked_rem(b),
                BinaryOp::Pow if duration => None,
                BinaryOp::Pow => match u32::try_from(b) {
                    Ok(exponent) => a.checked_pow(exponent),
                    Err(_) => return Val::Float((a as f64).powf(b as f64)),
                },
                _ => None,
            };
            match result {
                Some(n) if duration => Val::Duration(n),
                Some(n) => Val::Int(n),
                None => Val::Missing,
            }
        }
        (Some(a), Some(b)) => {
            let (a, b) = (a.as_f64(), b.as_f64());
            let result = match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Rem => a % b,
                _ => a.powf(b),
            };
            if result.is_finite() {
                Val::Float(result)
            } else {
                Val::Missing
            }
        }
        _ => Val::Missing,
    }
}

/// The numeric result of `sum`, `min`, `max` or `avg` over the values a field took.
pub(crate) fn aggregate<'a>(kind: AggregateKind, values: impl Iterator<Item = Val<'a>>) -> Val<'a> {
    let mut count = 0usize;
    let mut all_int = true;
    let mut duration = false;
    let mut int_sum: Option<i64> = Some(0);
    let mut float_sum = 0.0f64;
    let mut best: Option<Number> = None;
    for value in values {
        let Some(number) = value.number() else {
            continue;
        };
        count += 1;
        duration |= matches!(value, Val::Duration(_));
        match number {
            Number::Int(n) => int_sum = int_sum.and_then(|sum| sum.checked_add(n)),
            Number::Float(_) => all_int = false,
        }
        float_sum += number.as_f64();
        best = match best {
            None => Some(number),
            Some(current) => {
                let better = match number.order(current) {
                    Some(Ordering::Less) => kind == AggregateKind::Min,
                    Some(Ordering::Greater) => kind == AggregateKind::Max,
                    _ => false,
                };
                Some(if better { number } else { current })
            }
        };
    }
    if count == 0 {
        return Val::Missing;
    }
    let typed = |number: Number| match number {
        Number::Int(n) if duration => Val::Duration(n),
        Number::Int(n) => Val::Int(n),
        Number::Float(x) => Val::Float(x),
    };
    match kind {
        AggregateKind::Min | AggregateKind::Max => best.map_or(Val::Missing, typed),
        AggregateKind::Sum => match int_sum {
            Some(sum) if all_int => typed(Number::Int(sum)),
            _ => Val::Float(float_sum),
        },
        AggregateKind::Avg => {
            let mean = float_sum / count as f64;
            if duration && all_int {
                Val::Duration(mean.round() as i64)
            } else {
                Val::Float(mean)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggregateKind {
    Sum,
    Min,
    Max,
    Avg,
}
