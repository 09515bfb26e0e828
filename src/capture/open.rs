//! The spans a capture layer has seen start and not yet close, for
//! [`CaptureHandle::open_spans`](super::CaptureHandle::open_spans): slots reused through
//! a free list, so starting and closing a span costs no hashing and, once warm, no
//! allocation.

use tracing::Metadata;

use crate::model::{SpanId, TraceId};

/// One open span.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenEntry {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) metadata: &'static Metadata<'static>,
}

/// Open spans by slot.
#[derive(Debug, Default)]
pub(super) struct OpenSpans {
    slots: Vec<Option<OpenEntry>>,
    free: Vec<usize>,
}

impl OpenSpans {
    /// Tracks a span; the slot it returns is what [`remove`](Self::remove) takes.
    pub(super) fn insert(&mut self, entry: OpenEntry) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        }
    }

    /// Stops tracking the span in `slot`.
    pub(super) fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    /// Every open span, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &OpenEntry> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_removed_spans_are_not_listed() {
        static CALLSITE: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&META);
        static META: Metadata<'static> = tracing::metadata!(
            name: "op",
            target: "t",
            level: tracing::Level::INFO,
            fields: &[],
            callsite: &CALLSITE,
            kind: tracing::metadata::Kind::SPAN,
        );
        let entry = |n: u8| OpenEntry {
            trace_id: TraceId::from_bytes([n; 16]),
            span_id: SpanId::from_bytes([n; 8]),
            metadata: &META,
        };
        let mut open = OpenSpans::default();
        let (a, b) = (open.insert(entry(1)), open.insert(entry(2)));
        open.remove(a);
        open.remove(a);
        assert_eq!(open.insert(entry(3)), a);
        open.remove(b);
        let ids: Vec<SpanId> = open.iter().map(|e| e.span_id).collect();
        assert_eq!(ids, vec![SpanId::from_bytes([3; 8])]);
        assert_eq!(open.free, vec![b]);
    }
}
