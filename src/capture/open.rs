//! The spans a capture layer has seen start and not yet close, with their capture state,
//! by tracing span id: one table under one lock, in place of the registry's per-span
//! extensions (a boxed value in a type-keyed map, behind a lock of its own, per span) plus
//! a separate list of open spans. Starting or closing a span costs one lock and no
//! allocation once the table is warm.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tracing::span::Id;

use super::captured::CapturedSpan;

/// Open spans by tracing span id.
#[derive(Debug, Default)]
pub(super) struct OpenSpans {
    spans: HashMap<u64, CapturedSpan, BuildHasherDefault<IdHasher>>,
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

/// Tracing span ids are distinct integers (the registry's slot and generation): one
/// multiplication spreads them, where SipHash would cost more than the rest of the lookup.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
