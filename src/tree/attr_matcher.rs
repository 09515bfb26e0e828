//! Matchers for one attribute value, and the `attr` functions that build them.

use std::fmt;

use regex::Regex;

use crate::model::Value;

/// Matchers for one attribute value.
pub mod attr {
    use super::AttrMatcher;
    use crate::model::Value;

    /// Equal, type included (`3` does not equal `"3"` nor `3.0`).
    pub fn eq(value: impl Into<Value>) -> AttrMatcher {
        AttrMatcher::Equals(value.into())
    }

    /// Present, whatever its value.
    pub fn exists() -> AttrMatcher {
        AttrMatcher::Exists
    }

    /// Not present (on the span nor its resource).
    pub fn absent() -> AttrMatcher {
        AttrMatcher::Absent
    }

    /// Present and carrying something: non-empty string/array/bytes, non-zero number, or
    /// any boolean.
    pub fn non_empty() -> AttrMatcher {
        AttrMatcher::NonEmpty
    }

    /// A number (int or double) within `min..=max`.
    pub fn between(min: f64, max: f64) -> AttrMatcher {
        AttrMatcher::Between(min, max)
    }

    /// A string matching the regular expression. An invalid pattern makes the matcher
    /// fail with the pattern's error in the message.
    pub fn matches(pattern: &str) -> AttrMatcher {
        match regex::Regex::new(pattern) {
            Ok(re) => AttrMatcher::Regex(re),
            Err(error) => AttrMatcher::InvalidRegex(error.to_string()),
        }
    }
}

/// A condition on one attribute.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AttrMatcher {
    /// Equal, type included.
    Equals(Value),
    /// Present.
    Exists,
    /// Not present.
    Absent,
    /// Present and non-empty / non-zero.
    NonEmpty,
    /// A number within an inclusive range.
    Between(f64, f64),
    /// A string matching a regex.
    Regex(Regex),
    /// A regex that did not compile; never matches, and says why.
    InvalidRegex(String),
}

impl<T: Into<Value>> From<T> for AttrMatcher {
    fn from(value: T) -> Self {
        AttrMatcher::Equals(value.into())
    }
}

impl fmt::Display for AttrMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrMatcher::Equals(v) => write!(f, "== {v}"),
            AttrMatcher::Exists => f.write_str("present"),
            AttrMatcher::Absent => f.write_str("absent"),
            AttrMatcher::NonEmpty => f.write_str("non-empty"),
            AttrMatcher::Between(lo, hi) => write!(f, "in {lo:?}..={hi:?}"),
            AttrMatcher::Regex(re) => write!(f, "matching /{re}/"),
            AttrMatcher::InvalidRegex(e) => write!(f, "matching an invalid regex ({e})"),
        }
    }
}

impl AttrMatcher {
    /// `None` when `value` satisfies the matcher, else why not.
    pub(super) fn check(&self, value: Option<&Value>) -> Option<String> {
        let describe = |v: Option<&Value>| match v {
            Some(v) => format!("was {v} ({})", v.type_name()),
            None => "was absent".to_owned(),
        };
        let ok = match (self, value) {
            (AttrMatcher::Absent, v) => v.is_none(),
            (_, None) => false,
            (AttrMatcher::Equals(expected), Some(v)) => v == expected,
            (AttrMatcher::Exists, Some(_)) => true,
            (AttrMatcher::NonEmpty, Some(v)) => v.is_non_empty(),
            (AttrMatcher::Between(lo, hi), Some(v)) => {
                v.as_f64().is_some_and(|n| *lo <= n && n <= *hi)
            }
            (AttrMatcher::Regex(re), Some(v)) => v.as_str().is_some_and(|s| re.is_match(s)),
            (AttrMatcher::InvalidRegex(_), Some(_)) => false,
        };
        (!ok).then(|| {
            let mut why = describe(value);
            // The same number, exported as text: say why and how to fix it.
            let as_text = value
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<f64>().ok());
            let same_number = match (self, as_text) {
                (AttrMatcher::Equals(expected), Some(n)) => expected.as_f64() == Some(n),
                (AttrMatcher::Between(lo, hi), Some(n)) => *lo <= n && n <= *hi,
                _ => false,
            };
            if same_number {
                why.push_str(
                    " — the number as text: tracing-opentelemetry 0.34 exports unsigned \
                     (u8..u64, usize) and 128-bit integer fields as text, and the capture \
                     shows what the wire carries; record it as i64 (`field = n as i64`) to \
                     export a number, or match the text",
                );
            }
            why
        })
    }
}
