//! A query the parser refused: the query, a caret under the place, and what was expected.

use std::fmt;

/// A TraceQL query that could not be parsed or is not valid, with where and why.
///
/// Its `Display` shows the query with a caret under the offending place:
///
/// ```
/// use p2p_otel_testkit::traceql::Query;
/// let error = Query::parse(r#"{ name = "p2p_search" "#).unwrap_err();
/// assert_eq!(error.to_string(), "invalid TraceQL query: expected `}`\n  { name = \"p2p_search\" \n                        ^");
/// assert_eq!(error.offset(), 22);
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct QueryError {
    query: String,
    offset: usize,
    message: String,
}

impl QueryError {
    pub(crate) fn new(query: &str, offset: usize, message: String) -> Self {
        QueryError {
            query: query.to_owned(),
            offset: offset.min(query.len()),
            message,
        }
    }

    /// The query as given.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The byte offset in the query where it went wrong.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What went wrong, without the query and the caret.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The line holding the offset, and the caret under its character column.
        let line_start = self.query[..self.offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.query[self.offset..]
            .find('\n')
            .map_or(self.query.len(), |i| self.offset + i);
        let column = self.query[line_start..self.offset].chars().count();
        write!(
            f,
            "invalid TraceQL query: {}\n  {}\n  {}^",
            self.message,
            &self.query[line_start..line_end],
            " ".repeat(column)
        )
    }
}

// `unwrap()` in a test prints `Debug`: make it the readable form.
impl fmt::Debug for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
