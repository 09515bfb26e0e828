//! The spans a capture layer has seen start and not yet close, with their capture state,
//! by tracing span id: one table under one lock, in place of the registry's per-span
//! extensions (a boxed value in a type-keyed map, behind a lock of its own, per span) plus
//! a separate list of open spans. Starting or closing a span costs one lock and no
//! allocation once the table is warm.

use tracing::span::Id;

use super::captured::CapturedSpan;
use crate::hash::IdMap;

/// Open spans by tracing span id.
#[derive(Debug, Default)]
pub(super) struct OpenSpans {
    spans: IdMap<u64, CapturedSpan>,
}

impl OpenSpans {
    /// Tracks a span that just started.
    pub(super) fn insert(&mut self, id: &Id, span: CapturedSpan) {
        self.spans.insert(id.into_u64(), span);
    }

    /// The state of an open span.
    pub(super) fn get(&self, id: &Id) -> Option<&CapturedSpan> {
        self.spans.get(&id.into_u64())
    }

    /// The state of an open span, to change it.
    pub(super) fn get_mut(&mut self, id: &Id) -> Option<&mut CapturedSpan> {
        self.spans.get_mut(&id.into_u64())
    }

    /// Stops tracking a span that closed; its state.
    pub(super) fn remove(&mut self, id: &Id) -> Option<CapturedSpan> {
        self.spans.remove(&id.into_u64())
    }

    /// Every open span, in no particular order, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut CapturedSpan> {
        self.spans.values_mut()
    }

    /// Every open span, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &CapturedSpan> {
        self.spans.values()
    }
}
