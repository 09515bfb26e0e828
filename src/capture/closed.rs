//! The spans a capture layer has seen close, in the order they closed. Their fields sit
//! side by side in one buffer shared by all, so a closed span keeps no allocation of its
//! own: the buffer a span filled while open goes back to the allocator when it closes,
//! and the next span to start reuses it while it is still warm.

use std::ops::Range;
use std::sync::Arc;

use super::captured::{CapturedSpan, Clock, Fields};
use crate::model::{Resource, Scope, SpanRecord};

/// Closed spans, each with the range of `fields` that holds its fields.
#[derive(Debug, Default)]
pub(super) struct ClosedSpans {
    spans: Vec<CapturedSpan<Range<usize>>>,
    fields: Fields,
}

impl ClosedSpans {
    /// Keeps a span that just closed.
    pub(super) fn push(&mut self, span: CapturedSpan) {
        let start = self.fields.len();
        let (mut span, mut fields) = span.with_fields(start..start);
        self.fields.append(&mut fields);
        span.fields.end = self.fields.len();
        self.spans.push(span);
    }

    /// How many spans have closed.
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Forgets every closed span, keeping the memory for the next ones.
    pub(super) fn clear(&mut self) {
        self.spans.clear();
        self.fields.clear();
    }

    /// The spans from the `from`-th on, in the span model.
    pub(super) fn records_from<'a>(
        &'a self,
        from: usize,
        clock: &'a Clock,
        resource: &'a Arc<Resource>,
        scope: &'a Arc<Scope>,
    ) -> impl Iterator<Item = SpanRecord> + 'a {
        self.spans
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(move |span| {
                let fields = self.fields.get(span.fields.clone()).unwrap_or_default();
                span.to_record(fields, clock, resource, scope)
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::capture::SpanCaptureLayer;
    use tracing_subscriber::layer::SubscriberExt;

    /// Each closed span reads back its own fields, whatever the spans before it held,
    /// and a clear starts over.
    #[test]
    fn closed_spans_keep_their_own_fields_in_the_shared_buffer() {
        let (layer, handle) = SpanCaptureLayer::new();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("none").in_scope(|| {});
            tracing::info_span!("two", a = 1, b = "x").in_scope(|| {});
            let later = tracing::info_span!("recorded later", c = tracing::field::Empty);
            later.record("c", true);
            drop(later);
            let spans = handle.spans();
            let fields: Vec<Vec<&str>> = spans
                .iter()
                .map(|s| s.attributes.keys().map(String::as_str).collect())
                .collect();
            assert_eq!(fields, [vec![], vec!["a", "b"], vec!["c"]]);
            handle.clear();
            tracing::info_span!("after clear", d = 4).in_scope(|| {});
            let spans = handle.spans();
            assert_eq!(spans.len(), 1);
            assert_eq!(spans[0].attributes.keys().collect::<Vec<_>>(), ["d"]);
        });
    }
}
