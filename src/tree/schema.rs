//! Span schemas: which attributes each span name must carry.

use std::fmt;

use super::expect_span::AssertionError;
use super::TraceSet;

/// Required attributes per span name. A span whose name the schema lists must carry each
/// of them (on the span or its resource), and a string value must not be empty. A field
/// that was declared but never recorded is absent over OTLP — so it fails, as it should.
///
/// ```
/// use p2p_otel_testkit::tree::Schema;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let schema = Schema::new().span("p2p_search", &["query_text", "local_results"]);
/// let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let span = tracing::info_span!("p2p_search", query_text = "serde", local_results = tracing::field::Empty);
///     let _forgot_to_record = span.enter();
/// });
/// let error = handle.traces().expect_schema(&schema).unwrap_err();
/// assert!(error.message().contains("p2p_search lacks local_results"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    spans: Vec<(String, Vec<String>)>,
    /// `(span, attribute)` pairs whose string value may legitimately be empty.
    may_be_empty: Vec<(String, String)>,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Self {
        Schema::default()
    }

    /// Requires `attributes` on every span named `name`.
    pub fn span(mut self, name: &str, attributes: &[&str]) -> Self {
        self.spans.push((
            name.to_owned(),
            attributes.iter().map(|a| (*a).to_owned()).collect(),
        ));
        self
    }

    /// Lets `attribute` of spans named `name` be an empty string (still required), for
    /// values such as a query's text, which may be empty.
    pub fn allow_empty(mut self, name: &str, attribute: &str) -> Self {
        self.may_be_empty
            .push((name.to_owned(), attribute.to_owned()));
        self
    }

    fn empty_allowed(&self, name: &str, attribute: &str) -> bool {
        self.may_be_empty
            .iter()
            .any(|(span, attr)| span == name && attr == attribute)
    }

    /// The attributes required on spans named `name`, if the schema lists it.
    pub fn required(&self, name: &str) -> Option<&[String]> {
        self.spans
            .iter()
            .find(|(span, _)| span == name)
            .map(|(_, attributes)| attributes.as_slice())
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, attributes) in &self.spans {
            writeln!(f, "{name}: {}", attributes.join(", "))?;
        }
        Ok(())
    }
}

impl TraceSet {
    /// Checks every span against `schema`; returns how many spans it checked. Spans the
    /// schema does not name are ignored. Every violation is listed in the error.
    pub fn expect_schema(&self, schema: &Schema) -> Result<usize, AssertionError> {
        let mut checked = 0;
        let mut violations = Vec::new();
        for span in self.spans() {
            let Some(required) = schema.required(span.name()) else {
                continue;
            };
            checked += 1;
            for key in required {
                match span.attribute(key) {
                    None => violations.push(format!("{} lacks {key}", span.name())),
                    Some(value)
                        if value.as_str() == Some("")
                            && !schema.empty_allowed(span.name(), key) =>
                    {
                        violations.push(format!("{} has an empty {key}", span.name()))
                    }
                    Some(_) => {}
                }
            }
        }
        if violations.is_empty() {
            return Ok(checked);
        }
        violations.sort();
        violations.dedup();
        Err(AssertionError::new(format!(
            "{} schema violation(s) in {checked} checked span(s):\n  {}\nreceived:\n{}",
            violations.len(),
            self.alias_text(&violations.join("\n  ")),
            self.render()
        )))
    }
}
