//! The receiver's span store: spans in their compact form, in arrival order, indexed by
//! trace, bounded in spans and in bytes, each span kept once.
//!
//! What changes is published per request as the list of traces it touched, so that
//! "which traces finished?" costs the spans of those traces, never the whole store. With a
//! trace limit (`keep last N`), the oldest traces make room for new ones instead of the
//! store refusing them. Each span is kept once: the trace's index entry knows its span
//! ids, so de-duplication needs no table of its own.
//!
//! One job: the store (~500 lines) and its tests.

use std::mem::size_of;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::compact::{CompactSpan, Interner};
use super::trace_protobuf::ParsedRequest;
use crate::hash::{IdMap, IdSet};
use crate::model::otlp::{span_count, visit_otlp_spans};
use crate::model::{ModelError, Resource, SpanId, SpanRecord, TraceId};
use crate::store::{lock, Notifier, WaitError};

/// How much the store may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// At most this many spans.
    pub(crate) spans: usize,
    /// At most this many bytes (estimated, interned names and shared resources included).
    pub(crate) bytes: usize,
    /// Keep only the most recent traces: evict the oldest instead of refusing.
    pub(crate) keep_last_traces: Option<usize>,
}

/// How many spans of each resource, for counters labelled by `service.name`.
pub(crate) type Tally = Vec<(Arc<Resource>, u64)>;

/// Adds one per item to a tally, grouping runs of the same resource.
pub(crate) fn tally<'a>(resources: impl IntoIterator<Item = &'a Arc<Resource>>) -> Tally {
    let mut runs: Tally = Vec::new();
    for resource in resources {
        match runs.iter_mut().find(|(r, _)| Arc::ptr_eq(r, resource)) {
            Some((_, n)) => *n += 1,
            None => runs.push((Arc::clone(resource), 1)),
        }
    }
    runs
}

/// What became of a request's spans. Waiters and watchers hear of it only when the
/// caller [`publishes`](SpanStore::publish) it, once it has counted it: whoever wakes
/// up sees counters that already include the request.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) accepted: Tally,
    pub(crate) duplicates: Tally,
    pub(crate) evicted: Tally,
    touched: Vec<TraceId>,
}

/// A request refused whole: the store is full.
#[derive(Debug)]
pub(crate) struct Full {
    pub(crate) message: String,
    pub(crate) refused: Tally,
}

/// The slots of one trace's spans, in arrival order, and how to tell whether a span id is
/// among them: a trace of one span costs no allocation; a small trace is scanned; a big
/// one keeps a set of its span ids.
#[derive(Debug)]
enum TraceSlots {
    One(u32),
    Few(Vec<u32>),
    Many(Box<ManySlots>),
}

#[derive(Debug)]
struct ManySlots {
    slots: Vec<u32>,
    ids: IdSet<SpanId>,
}

/// Past this many spans, a trace keeps a set of its span ids instead of scanning them.
const FEW: usize = 32;

impl TraceSlots {
    fn slots(&self) -> &[u32] {
        match self {
            TraceSlots::One(slot) => std::slice::from_ref(slot),
            TraceSlots::Few(slots) => slots,
            TraceSlots::Many(many) => &many.slots,
        }
    }

    fn contains(&self, span_id: &SpanId, spans: &[Option<CompactSpan>]) -> bool {
        match self {
            TraceSlots::Many(many) => many.ids.contains(span_id),
            small => small.slots().iter().any(|&slot| {
                spans
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|span| span.span_id == *span_id)
            }),
        }
    }

    fn push(&mut self, slot: u32, span_id: SpanId, spans: &[Option<CompactSpan>]) {
        match self {
            TraceSlots::One(first) => *self = TraceSlots::Few(vec![*first, slot]),
            TraceSlots::Few(slots) if slots.len() < FEW => slots.push(slot),
            TraceSlots::Few(slots) => {
                let mut slots = std::mem::take(slots);
                slots.push(slot);
                let mut ids: IdSet<SpanId> = slots
                    .iter()
                    .filter_map(|&s| spans.get(s as usize).and_then(Option::as_ref))
                    .map(|span| span.span_id)
                    .collect();
                ids.insert(span_id);
                *self = TraceSlots::Many(Box::new(ManySlots { slots, ids }));
            }
            TraceSlots::Many(many) => {
                many.slots.push(slot);
                many.ids.insert(span_id);
            }
        }
    }

    /// Bookkeeping beyond the map entry itself.
    fn heap_bytes(&self) -> usize {
        match self {
            TraceSlots::One(_) => 0,
            TraceSlots::Few(slots) => slots.capacity() * size_of::<u32>(),
            TraceSlots::Many(many) => {
                size_of::<ManySlots>()
                    + many.slots.capacity() * size_of::<u32>()
                    + many.ids.capacity() * (size_of::<SpanId>() + 1)
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Spans in arrival order; `None` where a span was evicted. A trace's first span
    /// comes before the first span of every later trace, so the oldest trace is the one
    /// of the first span still here.
    slots: Vec<Option<CompactSpan>>,
    /// Where to start looking for the first span still here.
    front: usize,
    /// Each trace's slots, in arrival order.
    traces: IdMap<TraceId, TraceSlots>,
    live: usize,
    span_bytes: usize,
}

/// A map entry per trace, with the hash table's control byte and spare room.
const INDEX_BYTES_PER_TRACE: usize = 8 * (size_of::<(TraceId, TraceSlots)>() + 1) / 7;

impl Inner {
    /// The bytes of spans and index; the interner's are counted apart.
    fn bytes(&self) -> usize {
        self.span_bytes
            + self.traces.len() * INDEX_BYTES_PER_TRACE
            + (self.slots.len() - self.live) * size_of::<Option<CompactSpan>>()
    }

    fn is_stored(&self, trace_id: &TraceId, span_id: &SpanId) -> bool {
        self.traces
            .get(trace_id)
            .is_some_and(|slots| slots.contains(span_id, &self.slots))
    }

    fn insert(&mut self, span: CompactSpan) {
        let (trace_id, span_id) = (span.trace_id, span.span_id);
        // Admission keeps the slot count within u32 (see `fits`).
        let slot = self.slots.len() as u32;
        self.span_bytes += span.bytes();
        self.slots.push(Some(span));
        self.live += 1;
        match self.traces.get_mut(&trace_id) {
            Some(slots) => {
                self.span_bytes -= slots.heap_bytes();
                slots.push(slot, span_id, &self.slots);
                self.span_bytes += slots.heap_bytes();
            }
            None => {
                self.traces.insert(trace_id, TraceSlots::One(slot));
            }
        }
    }

    /// Evicts the oldest trace, adding its spans' resources to `evicted`; false when
    /// there is none.
    fn evict_oldest(&mut self, evicted: &mut Vec<Arc<Resource>>) -> bool {
        while self.front < self.slots.len() && self.slots[self.front].is_none() {
            self.front += 1;
        }
        let Some(trace_id) = self
            .slots
            .get(self.front)
            .and_then(Option::as_ref)
            .map(|span| span.trace_id)
        else {
            return false;
        };
        if let Some(slots) = self.traces.remove(&trace_id) {
            self.span_bytes -= slots.heap_bytes();
            for &slot in slots.slots() {
                if let Some(span) = self.slots.get_mut(slot as usize).and_then(Option::take) {
                    self.span_bytes -= span.bytes();
                    self.live -= 1;
                    evicted.push(span.resource);
                }
            }
        }
        true
    }

    /// Drops the holes eviction left once they outnumber the spans, rebuilding the trace
    /// index: amortised O(1) per evicted span.
    fn compact_slots(&mut self) {
        let holes = self.slots.len() - self.live;
        if holes < 1024 || holes < self.live {
            return;
        }
        self.slots.retain(Option::is_some);
        self.front = 0;
        self.traces.clear();
        self.span_bytes = 0;
        let slots = std::mem::take(&mut self.slots);
        self.live = 0;
        for span in slots.into_iter().flatten() {
            self.insert(span);
        }
    }

    fn trace(&self, trace_id: &TraceId) -> Vec<SpanRecord> {
        self.traces
            .get(trace_id)
            .map(TraceSlots::slots)
            .unwrap_or_default()
            .iter()
            .filter_map(|&slot| self.slots.get(slot as usize).and_then(Option::as_ref))
            .map(CompactSpan::to_record)
            .collect()
    }

    fn spans(&self) -> Vec<SpanRecord> {
        self.slots
            .iter()
            .flatten()
            .map(CompactSpan::to_record)
            .collect()
    }

    /// Trace ids by first arrival.
    fn trace_ids(&self) -> Vec<TraceId> {
        let mut listed = IdSet::<TraceId>::default();
        self.slots
            .iter()
            .flatten()
            .map(|span| span.trace_id)
            .filter(|id| listed.insert(*id))
            .collect()
    }
}

/// The receiver's span store.
#[derive(Debug)]
pub(crate) struct SpanStore {
    inner: Mutex<Inner>,
    /// Shared names, keys, resources and scopes. Requests are compacted under this lock
    /// alone, so that one request converts while another is stored. Lock order: `inner`
    /// before `interner`.
    interner: Mutex<Interner>,
    limits: Limits,
    notifier: Notifier,
    updates: broadcast::Sender<Arc<[TraceId]>>,
}

/// How many change messages a slow trace watcher may fall behind before it is told to
/// look at every trace again.
const UPDATES_BUFFERED: usize = 4096;

impl SpanStore {
    pub(crate) fn new(limits: Limits) -> Self {
        SpanStore {
            inner: Mutex::new(Inner::default()),
            interner: Mutex::new(Interner::default()),
            limits,
            notifier: Notifier::default(),
            updates: broadcast::Sender::new(UPDATES_BUFFERED),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Checks and converts the spans of a request into their stored form.
    pub(crate) fn compact_request(
        &self,
        resource_spans: Vec<ResourceSpans>,
    ) -> Result<Vec<CompactSpan>, ModelError> {
        let mut spans = Vec::with_capacity(span_count(&resource_spans));
        let mut interner = lock(&self.interner);
        visit_otlp_spans(resource_spans, |span, resource, scope| {
            spans.push(interner.compact_checked(span, resource, scope));
        })?;
        Ok(spans)
    }

    /// The stored form of the spans of a request read from its protobuf bytes.
    pub(crate) fn compact_parsed(&self, request: &ParsedRequest<'_>) -> Vec<CompactSpan> {
        lock(&self.interner).compact_parsed(request)
    }

    /// Everything held, in bytes: spans, index, and shared names and resources.
    fn bytes_of(&self, inner: &Inner) -> usize {
        inner.bytes() + lock(&self.interner).bytes()
    }

    /// Stores the spans not seen before (in the store or earlier in the request), whole or
    /// not at all. `stored` sees the fresh spans, under the store's lock, just before
    /// they are stored: the file export writes them there, in store order. `counted`
    /// sees the admission still under the lock, so that whoever can read the spans can
    /// also read counters that include them.
    pub(crate) fn admit(
        &self,
        spans: Vec<CompactSpan>,
        stored: impl FnOnce(&[CompactSpan]),
        counted: impl FnOnce(&Admission),
    ) -> Result<Admission, Full> {
        let mut inner = self.lock();
        let mut fresh = Vec::with_capacity(spans.len());
        let mut duplicates = Vec::new();
        let mut in_request = IdSet::<_>::default();
        for span in spans {
            let key = (span.trace_id, span.span_id);
            if inner.is_stored(&key.0, &key.1) || !in_request.insert(key) {
                duplicates.push(span.resource);
            } else {
                fresh.push(span);
            }
        }
        let incoming_bytes: usize = fresh
            .iter()
            .map(|span| span.bytes() + INDEX_BYTES_PER_TRACE)
            .sum();
        let fits = |inner: &Inner| {
            inner.live + fresh.len() <= self.limits.spans
                && self.bytes_of(inner) + incoming_bytes <= self.limits.bytes
                && inner.slots.len() + fresh.len() < u32::MAX as usize
        };
        let mut evicted = Vec::new();
        if self.limits.keep_last_traces.is_some() {
            while !fits(&inner) && inner.evict_oldest(&mut evicted) {}
        }
        if !fits(&inner) {
            let message = format!(
                "span store full: {} span(s) in {} byte(s) stored, {} more in {} byte(s) refused \
                 (capacity {} span(s), {} byte(s))",
                inner.live,
                self.bytes_of(&inner),
                fresh.len(),
                incoming_bytes,
                self.limits.spans,
                self.limits.bytes,
            );
            drop(inner);
            let refused = tally(fresh.iter().map(|span| &span.resource));
            drop(fresh);
            // What a refused request interned is not used: let it go as the table grows.
            lock(&self.interner).purge_if_grown();
            return Err(Full { message, refused });
        }
        if !fresh.is_empty() {
            stored(&fresh);
        }
        let accepted = tally(fresh.iter().map(|span| &span.resource));
        let mut touched: Vec<TraceId> = Vec::new();
        let mut touched_once = IdSet::<TraceId>::default();
        for span in fresh {
            let trace_id = span.trace_id;
            inner.insert(span);
            if touched_once.insert(trace_id) {
                touched.push(trace_id);
            }
        }
        if let Some(keep) = self.limits.keep_last_traces {
            while inner.traces.len() > keep && inner.evict_oldest(&mut evicted) {}
        }
        if !evicted.is_empty() {
            inner.compact_slots();
            lock(&self.interner).purge_if_grown();
        }
        let admission = Admission {
            accepted,
            duplicates: tally(duplicates.iter()),
            evicted: tally(evicted.iter()),
            touched,
        };
        counted(&admission);
        drop(inner);
        Ok(admission)
    }

    /// Wakes waiters and tells watchers which traces an admitted request touched.
    pub(crate) fn publish(&self, admission: Admission) {
        if !admission.touched.is_empty() {
            self.notifier.notify();
            // No watcher is not an error: nobody asked.
            let _ = self.updates.send(Arc::from(admission.touched));
        }
    }

    /// Forgets every span and which were seen.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        *inner = Inner::default();
        *lock(&self.interner) = Interner::default();
        drop(inner);
        self.notifier.notify();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().live
    }

    pub(crate) fn trace_count(&self) -> usize {
        self.lock().traces.len()
    }

    /// The estimated bytes the store holds.
    pub(crate) fn bytes(&self) -> usize {
        let inner = self.lock();
        self.bytes_of(&inner)
    }

    /// Every span, in arrival order.
    pub(crate) fn spans(&self) -> Vec<SpanRecord> {
        self.lock().spans()
    }

    /// The spans of one trace, in arrival order: O(spans of that trace).
    pub(crate) fn trace(&self, trace_id: &TraceId) -> Vec<SpanRecord> {
        self.lock().trace(trace_id)
    }

    /// How many spans each `service.name` has stored: one pass, no copies.
    pub(crate) fn counts_by_service(&self) -> std::collections::BTreeMap<String, usize> {
        let resources = {
            let inner = self.lock();
            tally(inner.slots.iter().flatten().map(|span| &span.resource))
        };
        let mut counts = std::collections::BTreeMap::new();
        for (resource, n) in resources {
            *counts
                .entry(super::ingest::service_name(&resource))
                .or_default() += n as usize;
        }
        counts
    }

    /// Every trace id, oldest first: O(store).
    pub(crate) fn trace_ids(&self) -> Vec<TraceId> {
        self.lock().trace_ids()
    }

    /// Lists of the traces each later request touched.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<[TraceId]>> {
        self.updates.subscribe()
    }

    /// Waits until `check` over the store returns `Some`, re-checking on every change.
    pub(crate) async fn wait_until<R>(
        &self,
        expected: &str,
        timeout: Duration,
        mut check: impl FnMut(&SpanStore) -> Option<R>,
    ) -> Result<R, WaitError> {
        self.notifier
            .wait_until(
                timeout,
                || check(self),
                || {
                    let spans = self.spans();
                    WaitError::Timeout {
                        expected: expected.to_owned(),
                        waited: timeout,
                        arrived: spans.len(),
                        unit: "span(s)",
                        rendered: crate::tree::TraceSet::new(spans).render(),
                    }
                },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn compacted(store: &SpanStore, spans: Vec<SpanRecord>) -> Vec<CompactSpan> {
        super::super::compact::tests::compact_all(&mut lock(&store.interner), &spans)
    }

    /// Admits model spans, compacted by the store's interner.
    trait AdmitRecords {
        fn admit_records(&self, spans: Vec<SpanRecord>) -> Result<Admission, Full>;
    }

    impl AdmitRecords for SpanStore {
        fn admit_records(&self, spans: Vec<SpanRecord>) -> Result<Admission, Full> {
            let admission = self.admit(compacted(self, spans), |_| {}, |_| {})?;
            let copy = Admission {
                accepted: admission.accepted.clone(),
                duplicates: admission.duplicates.clone(),
                evicted: admission.evicted.clone(),
                touched: admission.touched.clone(),
            };
            self.publish(admission);
            Ok(copy)
        }
    }

    fn span(trace: u8, span: u8) -> SpanRecord {
        let mut record = SpanRecord::new(
            TraceId::from_bytes([trace; 16]),
            SpanId::from_bytes([span; 8]),
            "op",
        );
        record
            .attributes
            .insert("key".into(), Value::Str("value".into()));
        record
    }

    fn limits(spans: usize, keep_last_traces: Option<usize>) -> Limits {
        Limits {
            spans,
            bytes: usize::MAX,
            keep_last_traces,
        }
    }

    #[test]
    fn spans_are_indexed_by_trace_in_arrival_order() {
        let store = SpanStore::new(limits(10, None));
        store
            .admit_records(vec![span(1, 1), span(2, 2), span(1, 3)])
            .unwrap();
        let ids: Vec<SpanId> = store
            .trace(&TraceId::from_bytes([1; 16]))
            .iter()
            .map(|s| s.span_id)
            .collect();
        assert_eq!(
            ids,
            [SpanId::from_bytes([1; 8]), SpanId::from_bytes([3; 8])]
        );
        assert_eq!(store.spans().len(), 3);
        assert_eq!(store.trace_count(), 2);
    }

    #[test]
    fn a_full_store_refuses_a_request_whole() {
        let store = SpanStore::new(limits(2, None));
        store.admit_records(vec![span(1, 1)]).unwrap();
        let full = store
            .admit(
                compacted(&store, vec![span(2, 2), span(2, 3)]),
                |_| panic!("nothing is stored"),
                |_| panic!("nothing is counted"),
            )
            .unwrap_err();
        assert_eq!(full.refused.iter().map(|(_, n)| n).sum::<u64>(), 2);
        assert!(
            full.message.contains("capacity 2 span(s)"),
            "{}",
            full.message
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_byte_capacity_refuses_what_the_span_count_would_let_in() {
        let store = SpanStore::new(Limits {
            spans: usize::MAX,
            bytes: 4096,
            keep_last_traces: None,
        });
        let mut big = span(1, 1);
        big.attributes
            .insert("blob".into(), Value::Str("x".repeat(8192)));
        assert!(store.admit_records(vec![big]).is_err());
        assert!(store.admit_records(vec![span(1, 2)]).is_ok());
    }

    #[test]
    fn keeping_the_last_traces_evicts_the_oldest_and_forgets_them() {
        let store = SpanStore::new(limits(100, Some(2)));
        for trace in 1..=3000u16 {
            let id = (trace % 251) as u8 + 1;
            let admission = store.admit_records(vec![span(id, 1), span(id, 2)]).unwrap();
            if trace > 2 && trace <= 251 {
                assert_eq!(admission.evicted[0].1, 2);
            }
        }
        assert_eq!(store.trace_count(), 2);
        assert_eq!(store.len(), 4);
        // Evicted spans are forgotten: sent again, they are stored again.
        let again = store.admit_records(vec![span(7, 1)]).unwrap();
        assert_eq!(again.accepted[0].1, 1);
        assert!(store.lock().slots.len() < 2048, "holes are compacted");
    }

    #[test]
    fn a_big_trace_keeps_each_span_once() {
        let store = SpanStore::new(limits(10_000, None));
        let spans = |range: std::ops::Range<u64>| -> Vec<SpanRecord> {
            range
                .map(|n| {
                    SpanRecord::new(
                        TraceId::from_bytes([1; 16]),
                        SpanId::from_bytes(n.to_be_bytes()),
                        "op",
                    )
                })
                .collect()
        };
        store.admit_records(spans(1..1000)).unwrap();
        let again = store.admit_records(spans(500..1500)).unwrap();
        let duplicates: u64 = again.duplicates.iter().map(|(_, n)| n).sum();
        assert_eq!(duplicates, 500);
        assert_eq!(store.len(), 1499);
        assert_eq!(store.trace(&TraceId::from_bytes([1; 16])).len(), 1499);
    }

    #[test]
    fn watchers_hear_which_traces_a_request_touched() {
        let store = SpanStore::new(limits(10, None));
        let mut updates = store.subscribe();
        store
            .admit_records(vec![span(1, 1), span(2, 1), span(1, 2)])
            .unwrap();
        let touched = updates.try_recv().unwrap();
        assert_eq!(
            &*touched,
            [TraceId::from_bytes([1; 16]), TraceId::from_bytes([2; 16])]
        );
    }
}
