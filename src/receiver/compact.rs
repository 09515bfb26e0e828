//! The stored form of a received span: a few hundred bytes instead of a `SpanRecord`'s
//! kilobytes. Names and attribute keys are interned, resources and scopes shared across
//! requests, attributes kept in one boxed slice, values without a `String`'s spare
//! capacity. A `SpanRecord` is rebuilt only when somebody reads the span.
//!
//! One job: the compact form, the interner that builds it (~480 lines), and its tests.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::mem::size_of;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::trace_protobuf::{ParsedAttribute, ParsedRequest, ParsedSpan, ParsedValue};
use crate::hash::IdSet;
use crate::model::compact_value::{attributes_bytes, CompactValue};
use crate::model::otlp::CheckedSpan;
use crate::model::{
    Attributes, ParentRef, Resource, Scope, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord,
    Status, StatusCode, TraceId, Value,
};

type CompactAttributes = Box<[(Arc<str>, CompactValue)]>;

/// A stored span: about 110 bytes plus its attributes. What most spans lack (a status
/// message, events, links, unrecorded fields) lives behind one optional box.
#[derive(Debug)]
pub(crate) struct CompactSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<ParentRef>,
    kind: SpanKind,
    code: StatusCode,
    closed: bool,
    name: Arc<str>,
    attributes: CompactAttributes,
    extras: Option<Box<Extras>>,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
    pub(crate) resource: Arc<Resource>,
    scope: Arc<Scope>,
}

/// The rarer parts of a span.
#[derive(Debug, Default)]
struct Extras {
    status_message: Box<str>,
    events: Box<[CompactEvent]>,
    links: Box<[SpanLink]>,
}

impl Extras {
    /// The rarer parts, boxed; `None` for a span that has none of them (empty parts cost
    /// no allocation).
    fn boxed(
        status_message: Box<str>,
        events: Box<[CompactEvent]>,
        links: Box<[SpanLink]>,
    ) -> Option<Box<Extras>> {
        let any = !status_message.is_empty() || !events.is_empty() || !links.is_empty();
        any.then(|| {
            Box::new(Extras {
                status_message,
                events,
                links,
            })
        })
    }
}

#[derive(Debug)]
struct CompactEvent {
    name: Arc<str>,
    time_unix_nanos: u64,
    attributes: CompactAttributes,
}

/// Shares equal strings, resources and scopes between stored spans, and counts what it
/// holds. Entries nobody uses any more are purged as the tables grow, so that a stream of
/// unique names cannot grow them without bound once spans are evicted.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: IdSet<Arc<str>>,
    resources: HashMap<u64, Vec<Arc<Resource>>>,
    scopes: HashMap<u64, Vec<Arc<Scope>>>,
    /// The last resource and scope looked up, as given and as shared: the spans of one
    /// request share their resource, so most look-ups are a pointer comparison. Holding
    /// the given `Arc` keeps its address from being reused while it is cached.
    last_resource: Option<(Arc<Resource>, Arc<Resource>)>,
    last_scope: Option<(Arc<Scope>, Arc<Scope>)>,
    entries: usize,
    purge_above: usize,
    bytes: usize,
}

/// What an interned string costs: the `Arc`'s counts and text, plus its table slot.
fn string_cost(text: &str) -> usize {
    2 * size_of::<usize>() + text.len() + size_of::<Arc<str>>() + 1
}

impl Interner {
    /// The bytes held by interned strings, resources and scopes (estimated).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn string(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        self.bytes += string_cost(text);
        self.entries += 1;
        shared
    }

    fn resource(&mut self, resource: &Arc<Resource>) -> Arc<Resource> {
        if let Some((given, shared)) = &self.last_resource {
            if Arc::ptr_eq(given, resource) {
                return Arc::clone(shared);
            }
        }
        let shared = self.resource_lookup(resource);
        self.last_resource = Some((Arc::clone(resource), Arc::clone(&shared)));
        shared
    }

    fn resource_lookup(&mut self, resource: &Arc<Resource>) -> Arc<Resource> {
        let key = attributes_hash(&resource.attributes, 0);
        let bucket = self.resources.entry(key).or_default();
        if let Some(shared) = bucket.iter().find(|r| ***r == **resource) {
            return Arc::clone(shared);
        }
        bucket.push(Arc::clone(resource));
        self.bytes += attributes_bytes(&resource.attributes) + size_of::<Resource>();
        self.entries += 1;
        Arc::clone(resource)
    }

    fn scope(&mut self, scope: &Arc<Scope>) -> Arc<Scope> {
        if let Some((given, shared)) = &self.last_scope {
            if Arc::ptr_eq(given, scope) {
                return Arc::clone(shared);
            }
        }
        let shared = self.scope_lookup(scope);
        self.last_scope = Some((Arc::clone(scope), Arc::clone(&shared)));
        shared
    }

    fn scope_lookup(&mut self, scope: &Arc<Scope>) -> Arc<Scope> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        scope.name.hash(&mut hasher);
        scope.version.hash(&mut hasher);
        let key = attributes_hash(&scope.attributes, hasher.finish());
        let bucket = self.scopes.entry(key).or_default();
        if let Some(shared) = bucket.iter().find(|s| ***s == **scope) {
            return Arc::clone(shared);
        }
        bucket.push(Arc::clone(scope));
        self.bytes += attributes_bytes(&scope.attributes)
            + scope.name.len()
            + scope.version.len()
            + size_of::<Scope>();
        self.entries += 1;
        Arc::clone(scope)
    }

    /// Drops entries no stored span uses, once the tables doubled since the last purge:
    /// amortised O(1) per insert.
    pub(crate) fn purge_if_grown(&mut self) {
        if self.entries <= self.purge_above.max(4096) {
            return;
        }
        self.last_resource = None;
        self.last_scope = None;
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        for bucket in self.resources.values_mut() {
            bucket.retain(|r| Arc::strong_count(r) > 1);
        }
        self.resources.retain(|_, bucket| !bucket.is_empty());
        for bucket in self.scopes.values_mut() {
            bucket.retain(|s| Arc::strong_count(s) > 1);
        }
        self.scopes.retain(|_, bucket| !bucket.is_empty());
        self.bytes = self.strings.iter().map(|s| string_cost(s)).sum::<usize>()
            + self
                .resources
                .values()
                .flatten()
                .map(|r| attributes_bytes(&r.attributes) + size_of::<Resource>())
                .sum::<usize>()
            + self
                .scopes
                .values()
                .flatten()
                .map(|s| {
                    attributes_bytes(&s.attributes)
                        + s.name.len()
                        + s.version.len()
                        + size_of::<Scope>()
                })
                .sum::<usize>();
        self.entries = self.strings.len()
            + self.resources.values().map(Vec::len).sum::<usize>()
            + self.scopes.values().map(Vec::len).sum::<usize>();
        self.purge_above = 2 * self.entries;
    }

    /// The stored form of a received span, sharing what can be shared: names and keys
    /// are looked up by reference and values moved, so a span costs one allocation (its
    /// attribute slice) beyond what decoding it cost.
    pub(crate) fn compact_checked(
        &mut self,
        span: CheckedSpan,
        resource: &Arc<Resource>,
        scope: &Arc<Scope>,
    ) -> CompactSpan {
        let extras = Extras::boxed(
            span.status.message.into_boxed_str(),
            span.events
                .into_iter()
                .map(|event| CompactEvent {
                    name: self.string(&event.name),
                    time_unix_nanos: event.time_unix_nano,
                    attributes: self.otlp_attributes(event.attributes),
                })
                .collect(),
            span.links.into_boxed_slice(),
        );
        CompactSpan {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent: span.parent,
            kind: span.kind,
            code: span.status.code,
            closed: span.end_unix_nanos.is_some(),
            name: self.string(&span.name),
            attributes: self.otlp_attributes(span.attributes),
            extras,
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos.unwrap_or(0),
            resource: self.resource(resource),
            scope: self.scope(scope),
        }
    }

    /// OTLP key/values as stored attributes, an empty value (or none at all) kept as
    /// empty, as the model does; a key given twice keeps its last value, as the model's map
    /// does.
    fn otlp_attributes(&mut self, key_values: Vec<KeyValue>) -> CompactAttributes {
        let mut attributes: Vec<(Arc<str>, CompactValue)> = Vec::with_capacity(key_values.len());
        for key_value in key_values {
            // A key with no value at all is as empty as an `AnyValue` with nothing set.
            if let Some(value) = CompactValue::from_otlp(key_value.value.unwrap_or_default()) {
                attributes.push((self.string(&key_value.key), value));
            }
        }
        keep_last_of_each_key(&mut attributes);
        attributes.into_boxed_slice()
    }

    /// The stored form of every span of a request read from its protobuf bytes: what
    /// [`Interner::compact_checked`] stores for the same request decoded by prost.
    pub(crate) fn compact_parsed(&mut self, request: &ParsedRequest<'_>) -> Vec<CompactSpan> {
        let mut spans: Vec<CompactSpan> = Vec::with_capacity(request.spans.len());
        for span in &request.spans {
            let compact = self.compact_parsed_span(request, span, spans.last());
            spans.push(compact);
        }
        spans
    }

    /// `span` stored; `previous`, the request's span before it, lends its interned name
    /// and keys (see [`Interner::string_like`]).
    fn compact_parsed_span(
        &mut self,
        request: &ParsedRequest<'_>,
        span: &ParsedSpan<'_>,
        previous: Option<&CompactSpan>,
    ) -> CompactSpan {
        let extras = Extras::boxed(
            span.status_message.into(),
            request.events[span.events.clone()]
                .iter()
                .map(|event| CompactEvent {
                    name: self.string(event.name),
                    time_unix_nanos: event.time_unix_nanos,
                    attributes: self.parsed_attributes(
                        &request.event_attributes[event.attributes.clone()],
                        &[],
                    ),
                })
                .collect(),
            span.links.clone().into_boxed_slice(),
        );
        CompactSpan {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent: span.parent,
            kind: span.kind,
            code: span.code,
            closed: span.end_unix_nanos.is_some(),
            name: self.string_like(span.name, previous.map(|previous| &previous.name)),
            attributes: self.parsed_attributes(
                &request.attributes[span.attributes.clone()],
                previous.map_or(&[], |previous| &previous.attributes),
            ),
            extras,
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos.unwrap_or(0),
            resource: self.resource(&request.resources[span.resource]),
            scope: self.scope(&request.scopes[span.scope]),
        }
    }

    /// `text` interned, as `like` when that is the same text: the spans of a request mostly
    /// repeat the previous span's name and keys, in the same order, and comparing two short
    /// strings costs less than a table look-up.
    fn string_like(&mut self, text: &str, like: Option<&Arc<str>>) -> Arc<str> {
        match like {
            Some(interned) if **interned == *text => Arc::clone(interned),
            _ => self.string(text),
        }
    }

    /// Like [`Interner::otlp_attributes`], from borrowed keys and values; `like`, stored
    /// attributes whose keys are likely the same, position by position.
    fn parsed_attributes(
        &mut self,
        parsed: &[ParsedAttribute<'_>],
        like: &[(Arc<str>, CompactValue)],
    ) -> CompactAttributes {
        let mut attributes: Vec<(Arc<str>, CompactValue)> = Vec::with_capacity(parsed.len());
        for (key, value) in parsed {
            if let Some(value) = value {
                let like = like.get(attributes.len()).map(|(key, _)| key);
                attributes.push((self.string_like(key, like), compact_value(*value)));
            }
        }
        keep_last_of_each_key(&mut attributes);
        attributes.into_boxed_slice()
    }
}

/// A string is copied straight from the request; anything else is as the model stores it.
fn compact_value(value: ParsedValue<'_>) -> CompactValue {
    match value {
        ParsedValue::Str(text) => CompactValue::text(text),
        other => CompactValue::from(other.to_value()),
    }
}

/// Drops all but the last value of a key given more than once. Keys are interned, so
/// equal keys are the same pointer: a few are compared pairwise, many are sorted.
fn keep_last_of_each_key(attributes: &mut Vec<(Arc<str>, CompactValue)>) {
    const PAIRWISE: usize = 16;
    if attributes.len() <= PAIRWISE {
        let mut index = 0;
        while index < attributes.len() {
            let repeated = attributes[index + 1..]
                .iter()
                .any(|(later, _)| Arc::ptr_eq(later, &attributes[index].0));
            if repeated {
                attributes.remove(index);
            } else {
                index += 1;
            }
        }
        return;
    }
    // Stable: among equal keys, arrival order is kept, so the last is the one to keep.
    attributes.sort_by_key(|(key, _)| Arc::as_ptr(key).cast::<u8>() as usize);
    let mut kept: Vec<(Arc<str>, CompactValue)> = Vec::with_capacity(attributes.len());
    for attribute in attributes.drain(..) {
        match kept.last_mut() {
            Some(last) if Arc::ptr_eq(&last.0, &attribute.0) => *last = attribute,
            _ => kept.push(attribute),
        }
    }
    *attributes = kept;
}

fn expand(attributes: &CompactAttributes) -> Attributes {
    attributes
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_value()))
        .collect()
}

fn compact_attributes_bytes(attributes: &CompactAttributes) -> usize {
    attributes
        .iter()
        .map(|(_, value)| size_of::<(Arc<str>, CompactValue)>() + value.heap_bytes())
        .sum()
}

impl CompactSpan {
    /// The span as the model shows it.
    pub(crate) fn to_record(&self) -> SpanRecord {
        let none = Extras::default();
        let extras = self.extras.as_deref().unwrap_or(&none);
        SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            name: self.name.to_string(),
            kind: self.kind,
            status: Status {
                code: self.code,
                message: extras.status_message.to_string(),
            },
            attributes: expand(&self.attributes),
            events: extras
                .events
                .iter()
                .map(|event| SpanEvent {
                    name: event.name.to_string(),
                    time_unix_nanos: event.time_unix_nanos,
                    attributes: expand(&event.attributes),
                })
                .collect(),
            links: extras.links.to_vec(),
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.closed.then_some(self.end_unix_nanos),
            resource: Arc::clone(&self.resource),
            scope: Arc::clone(&self.scope),
            // OTLP has no place for them: a received span has none.
            unrecorded_fields: Default::default(),
        }
    }

    /// What the span costs in the store, interned parts excluded (estimated: the struct,
    /// its boxed slices and their values).
    pub(crate) fn bytes(&self) -> usize {
        size_of::<Option<CompactSpan>>()
            + compact_attributes_bytes(&self.attributes)
            + self.extras.as_deref().map_or(0, |extras| {
                size_of::<Extras>()
                    + extras.status_message.len()
                    + extras
                        .events
                        .iter()
                        .map(|event| {
                            size_of::<CompactEvent>() + compact_attributes_bytes(&event.attributes)
                        })
                        .sum::<usize>()
                    + extras
                        .links
                        .iter()
                        .map(|link| size_of::<SpanLink>() + attributes_bytes(&link.attributes))
                        .sum::<usize>()
            })
    }
}

/// A hash of attributes, seeded, for finding equal resources and scopes.
fn attributes_hash(attributes: &Attributes, seed: u64) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    for (key, value) in attributes {
        key.hash(&mut hasher);
        hash_value(value, &mut hasher);
    }
    hasher.finish()
}

fn hash_value(value: &Value, hasher: &mut impl Hasher) {
    std::mem::discriminant(value).hash(hasher);
    match value {
        Value::Str(text) => text.hash(hasher),
        Value::Int(n) => n.hash(hasher),
        Value::Double(x) => x.to_bits().hash(hasher),
        Value::Bool(b) => b.hash(hasher),
        Value::Bytes(bytes) => bytes.hash(hasher),
        Value::Array(items) => items.iter().for_each(|item| hash_value(item, hasher)),
        Value::Map(map) => {
            for (key, item) in map {
                key.hash(hasher);
                hash_value(item, hasher);
            }
        }
        Value::Empty => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};

    use super::*;
    use crate::model::SpanKind;

    fn sample() -> SpanRecord {
        let mut span = SpanRecord::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            "p2p_publish",
        );
        span.kind = SpanKind::Server;
        span.parent = Some(ParentRef {
            span_id: SpanId::from_bytes([3; 8]),
            remote: Some(true),
        });
        span.status = Status {
            code: StatusCode::Error,
            message: "boom".into(),
        };
        span.attributes
            .insert("package_id".into(), Value::Str("pkg-1".into()));
        span.attributes.insert("size".into(), Value::Int(3));
        span.attributes
            .insert("tags".into(), Value::Array(vec![Value::Bool(true)]));
        span.events.push(SpanEvent {
            name: "stored".into(),
            time_unix_nanos: 5,
            attributes: Attributes::from([("n".to_owned(), Value::Double(1.5))]),
        });
        span.start_unix_nanos = 10;
        span.end_unix_nanos = Some(20);
        span
    }

    /// Model spans in their stored form, the way the receiver gets there: through OTLP.
    pub(crate) fn compact_all(interner: &mut Interner, spans: &[SpanRecord]) -> Vec<CompactSpan> {
        let mut stored = Vec::new();
        crate::model::otlp::visit_otlp_spans(crate::model::spans_to_otlp(spans), |span, r, s| {
            stored.push(interner.compact_checked(span, r, s));
        })
        .expect("valid spans");
        stored
    }

    fn compact(interner: &mut Interner, span: SpanRecord) -> CompactSpan {
        compact_all(interner, &[span]).remove(0)
    }

    #[test]
    fn a_span_reads_back_exactly_as_it_was_stored() {
        let mut interner = Interner::default();
        let span = sample();
        let stored = compact(&mut interner, span.clone());
        assert_eq!(stored.to_record(), span);
    }

    #[test]
    fn a_stored_span_is_small() {
        assert!(
            size_of::<CompactSpan>() <= 112,
            "{}",
            size_of::<CompactSpan>()
        );
        assert_eq!(size_of::<CompactValue>(), 24);
        let mut interner = Interner::default();
        let mut span = sample();
        span.events.clear();
        span.status.message.clear();
        span.unrecorded_fields.clear();
        let plain = compact(&mut interner, span.clone());
        assert!(plain.extras.is_none());
        assert_eq!(plain.to_record(), span);
        let mut long = span;
        long.attributes
            .insert("long".into(), Value::Str("x".repeat(100)));
        assert_eq!(compact(&mut interner, long.clone()).to_record(), long);
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_however_many_keys() {
        for count in [3, 100] {
            let mut interner = Interner::default();
            let key_values: Vec<KeyValue> = (0..count)
                .chain([1])
                .enumerate()
                .map(|(position, key)| KeyValue {
                    key: format!("k{key}"),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(position as i64)),
                    }),
                    ..KeyValue::default()
                })
                .collect();
            let stored = interner.otlp_attributes(key_values);
            assert_eq!(stored.len(), count);
            let expanded = expand(&stored);
            assert_eq!(expanded["k1"], Value::Int(count as i64), "{count} keys");
            assert_eq!(expanded["k0"], Value::Int(0));
        }
    }

    #[test]
    fn equal_resources_and_names_are_stored_once() {
        let mut interner = Interner::default();
        let (a, b) = (sample(), sample());
        assert!(!Arc::ptr_eq(&a.resource, &b.resource));
        let (a, b) = (compact(&mut interner, a), compact(&mut interner, b));
        assert!(Arc::ptr_eq(&a.resource, &b.resource));
        assert!(Arc::ptr_eq(&a.name, &b.name));
    }

    /// Read from protobuf, a span takes its name and keys from the span before it when they
    /// are the same text, and otherwise from the table: either way, one shared copy.
    #[test]
    fn names_and_keys_read_from_protobuf_are_shared_with_the_table() {
        use prost::Message;

        let mut spans = vec![sample(), sample(), sample()];
        for span in &mut spans {
            // Scalars only: an array value is left to prost's path.
            span.attributes.insert("tags".into(), Value::Bool(true));
        }
        spans[1].span_id = SpanId::from_bytes([4; 8]);
        spans[2].span_id = SpanId::from_bytes([5; 8]);
        // The third span lacks the first key: its keys are one place off the second's.
        spans[2].attributes.remove("package_id");
        let bytes = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans: crate::model::spans_to_otlp(&spans),
        }
        .encode_to_vec();
        let mut interner = Interner::default();
        let parsed = crate::receiver::trace_protobuf::parse(&bytes).expect("read directly");
        let stored = interner.compact_parsed(&parsed);
        let key = |span: usize, name: &str| {
            let attributes = &stored[span].attributes;
            let found = attributes.iter().find(|(key, _)| &**key == name);
            Arc::clone(&found.expect("key stored").0)
        };
        for span in 1..3 {
            assert!(Arc::ptr_eq(&stored[0].name, &stored[span].name));
            assert!(Arc::ptr_eq(&key(0, "size"), &key(span, "size")));
        }
        assert!(Arc::ptr_eq(&key(0, "size"), &interner.string("size")));
        let records: Vec<SpanRecord> = stored.iter().map(CompactSpan::to_record).collect();
        assert_eq!(
            records[2].attributes.keys().collect::<Vec<_>>(),
            ["size", "tags"]
        );
    }

    #[test]
    fn unused_entries_are_purged_once_the_tables_grow() {
        let mut interner = Interner::default();
        for n in 0..10_000 {
            let mut span = sample();
            span.name = format!("unique-{n}");
            drop(compact(&mut interner, span));
            interner.purge_if_grown();
        }
        assert!(interner.strings.len() < 8_192, "{}", interner.strings.len());
    }
}
