//! Assertions over a whole trace set that fail with the trees that did arrive.

use std::fmt;

use super::expect_span::SpanMatcher;
use super::{SpanRef, TraceSet};

/// A failed expectation: what was wanted, the closest spans and why they missed, and every
/// trace that did arrive, rendered.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AssertionError {
    message: String,
}

// `unwrap()` and `?` in tests print `Debug`: make it the full readable message.
impl fmt::Debug for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl AssertionError {
    /// An error with this message.
    pub fn new(message: String) -> Self {
        AssertionError { message }
    }

    /// The full message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// How many candidates a failure lists.
const CANDIDATES: usize = 3;

impl TraceSet {
    /// Expects exactly one span to match; returns it.
    ///
    /// ```should_panic
    /// # use tracing_subscriber::layer::SubscriberExt;
    /// use p2p_otel_testkit::tree::expect;
    /// let (layer, handle) = p2p_otel_testkit::SpanCaptureLayer::new();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("p2p_search", query_text = "serde").in_scope(|| {});
    /// });
    /// // Fails, printing:
    /// //   expected exactly one span "p2p_search", query_text == "tokio"; found none
    /// //   closest: p2p_search (trace 1): query_text == "tokio": was "serde" (string)
    /// //   and the rendered trees.
    /// handle.traces().expect(&expect::span().named("p2p_search").with_attr("query_text", "tokio")).unwrap();
    /// ```
    pub fn expect(&self, matcher: &SpanMatcher) -> Result<SpanRef<'_>, AssertionError> {
        let found = self.find(matcher);
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.failure(
                &format!("expected exactly one {matcher}; found none"),
                matcher,
            )),
            many => Err(self.failure(
                &format!("expected exactly one {matcher}; found {}", many.len()),
                matcher,
            )),
        }
    }

    /// Expects at least one span to match; returns them all.
    pub fn expect_some(&self, matcher: &SpanMatcher) -> Result<Vec<SpanRef<'_>>, AssertionError> {
        let found = self.find(matcher);
        if found.is_empty() {
            return Err(self.failure(
                &format!("expected at least one {matcher}; found none"),
                matcher,
            ));
        }
        Ok(found)
    }

    /// Expects exactly `count` spans to match.
    pub fn expect_count(
        &self,
        matcher: &SpanMatcher,
        count: usize,
    ) -> Result<Vec<SpanRef<'_>>, AssertionError> {
        let found = self.find(matcher);
        if found.len() != count {
            return Err(self.failure(
                &format!("expected {count} × {matcher}; found {}", found.len()),
                matcher,
            ));
        }
        Ok(found)
    }

    /// Expects no span to match.
    pub fn expect_none(&self, matcher: &SpanMatcher) -> Result<(), AssertionError> {
        let found = self.find(matcher);
        if found.is_empty() {
            return Ok(());
        }
        Err(self.failure(
            &format!("expected no {matcher}; found {}", found.len()),
            &SpanMatcher::default(),
        ))
    }

    /// Expects every trace to be complete: no span whose parent is missing.
    pub fn expect_no_orphans(&self) -> Result<(), AssertionError> {
        let orphans = self.orphans();
        if orphans.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = orphans.iter().map(|span| span.name()).collect();
        Err(self.failure(
            &format!(
                "expected no orphan spans; found {}: {}",
                orphans.len(),
                names.join(", ")
            ),
            &SpanMatcher::default(),
        ))
    }

    /// Expects every span, whatever its name, to be matched by one of `matchers` — the
    /// "nothing unexpected" check.
    pub fn expect_only(&self, matchers: &[SpanMatcher]) -> Result<(), AssertionError> {
        let unexpected: Vec<SpanRef<'_>> = self
            .spans()
            .filter(|span| !matchers.iter().any(|m| m.matches(*span)))
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = unexpected.iter().map(|span| span.name()).collect();
        Err(self.failure(
            &format!(
                "{} unexpected span(s): {}",
                unexpected.len(),
                names.join(", ")
            ),
            &SpanMatcher::default(),
        ))
    }

    fn failure(&self, headline: &str, matcher: &SpanMatcher) -> AssertionError {
        let mut message = format!("{headline}\n");
        let mut candidates: Vec<(usize, bool, SpanRef<'_>, Vec<String>)> = self
            .spans()
            .map(|span| {
                let misses = matcher.mismatches(span);
                let same_name = matcher.name.as_deref() == Some(span.name());
                (misses.len(), !same_name, span, misses)
            })
            .filter(|(count, ..)| *count > 0)
            .collect();
        candidates.sort_by(|a, b| (a.1, a.0, a.2.name()).cmp(&(b.1, b.0, b.2.name())));
        if !candidates.is_empty() && (matcher.name.is_some() || !matcher.attrs.is_empty()) {
            message.push_str("closest candidates:\n");
            for (_, _, span, misses) in candidates.iter().take(CANDIDATES) {
                message.push_str(&format!("  - {}: {}\n", span.name(), misses.join("; ")));
            }
        }
        // The headline and candidates name nodes as the trees below do.
        let mut message = self.alias_text(&message);
        message.push_str(&self.received());
        AssertionError { message }
    }

    /// The closing part of every failure: what arrived, rendered.
    pub(crate) fn received(&self) -> String {
        format!(
            "received {} trace(s), {} span(s):\n{}",
            self.traces().len(),
            self.span_count(),
            self.render()
        )
    }
}
