//! Every captured span's field values in one buffer, a slot per declared field: starting a
//! span allocates nothing of its own, and retained spans' values sit side by side.

use std::mem::ManuallyDrop;

use super::captured::CapturedSpan;
use crate::model::compact_value::CompactValue;

/// Fields a span may declare and still be recorded on the stack before it is stored.
const ON_STACK: usize = 16;

/// The slots of all captured spans, open and closed, each span's in one run.
#[derive(Debug, Default)]
pub(super) struct FieldValues {
    slots: Vec<Option<CompactValue>>,
}

impl FieldValues {
    /// Stores a new span's slots, emptying `staged`; where they start.
    pub(super) fn push(&mut self, staged: &mut [Option<CompactValue>]) -> usize {
        let at = self.slots.len();
        self.slots.extend(staged.iter_mut().map(Option::take));
        at
    }

    /// The `len` slots stored at `at`.
    pub(super) fn get(&self, at: usize, len: usize) -> &[Option<CompactValue>] {
        self.slots
            .get(at..at.saturating_add(len))
            .unwrap_or_default()
    }

    /// The `len` slots stored at `at`, to record into.
    pub(super) fn get_mut(&mut self, at: usize, len: usize) -> &mut [Option<CompactValue>] {
        self.slots
            .get_mut(at..at.saturating_add(len))
            .unwrap_or_default()
    }

    /// Keeps the slots of `spans` only (the open ones, when the closed are forgotten),
    /// moved to the front, and tells each span where its slots now are. The buffer keeps
    /// its capacity for the spans to come.
    pub(super) fn keep_only<'a>(&mut self, spans: impl Iterator<Item = &'a mut CapturedSpan>) {
        let mut spans: Vec<&mut CapturedSpan> = spans.collect();
        // In the order of their slots, each run moves towards the front, never past a run
        // still to be moved.
        spans.sort_unstable_by_key(|span| span.values_at);
        let mut kept = 0;
        for span in spans {
            let len = span.metadata.fields().len();
            let from = span.values_at;
            if from.saturating_add(len) > self.slots.len() {
                continue;
            }
            for offset in 0..len {
                self.slots.swap(kept + offset, from + offset);
            }
            span.values_at = kept;
            kept += len;
        }
        self.slots.truncate(kept);
    }
}

/// Records the fields `record` visits into fresh slots — on the stack when the span
/// declares few enough — and hands them, with what `record` returned, to `store`, so that
/// no user code (a `Debug` implementation, which may itself emit an event) runs while
/// `store` holds the capture's lock. `store` takes every value out of the slots: what it
/// leaves there is not dropped.
pub(super) fn stage<T, R>(
    len: usize,
    record: impl FnOnce(&mut [Option<CompactValue>]) -> T,
    store: impl FnOnce(&mut [Option<CompactValue>], T) -> R,
) -> R {
    if len <= ON_STACK {
        // `store` takes every value out, so there is nothing left to drop (a `record`
        // that panics half-way leaks what it recorded, which is safe).
        let mut slots = ManuallyDrop::new([const { None }; ON_STACK]);
        let slots = &mut slots[..len];
        let recorded = record(slots);
        store(slots, recorded)
    } else {
        let mut slots = vec![None; len];
        let recorded = record(&mut slots);
        store(&mut slots, recorded)
    }
}
