//! Trace export requests read straight from their protobuf bytes, borrowing names, keys and
//! string values from the request instead of allocating each one, as prost's owned types
//! do (a `String` per key and value, a `Vec` per id).
//!
//! Only the encoding exporters produce is read this way. Anything else — a singular field
//! given twice (which protobuf merges), a group, an array or map value, a resource's entity
//! references, an invalid id, any malformed byte — makes [`parse`] answer `None`, and the
//! request goes through prost and the model's conversion, which merge exactly as protobuf
//! does and say exactly what is wrong. Either way the same spans are stored.
//!
//! One job: the decoder (~480 lines) and, below it, its tests and the property test that
//! holds it to prost's decoding.

use std::ops::Range;
use std::sync::Arc;

use prost::encoding::{decode_key, decode_varint, WireType};

use crate::model::otlp::{kind_from_otlp, span_ids_from_otlp, status_code_from_otlp};
use crate::model::{
    Attributes, ParentRef, Resource, Scope, SpanId, SpanKind, SpanLink, StatusCode, TraceId, Value,
};

/// A request's spans, borrowing from its bytes; resources and scopes already built (one
/// per `ResourceSpans` / `ScopeSpans`, as prost's path builds them).
#[derive(Debug, Default)]
pub(crate) struct ParsedRequest<'a> {
    pub(crate) resources: Vec<Arc<Resource>>,
    pub(crate) scopes: Vec<Arc<Scope>>,
    pub(crate) spans: Vec<ParsedSpan<'a>>,
    /// Every span's attributes, each span's a contiguous range.
    pub(crate) attributes: Vec<ParsedAttribute<'a>>,
    pub(crate) events: Vec<ParsedEvent<'a>>,
    /// Every event's attributes, each event's a contiguous range.
    pub(crate) event_attributes: Vec<ParsedAttribute<'a>>,
}

/// One span, its ids checked.
#[derive(Debug)]
pub(crate) struct ParsedSpan<'a> {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<ParentRef>,
    pub(crate) name: &'a str,
    pub(crate) kind: SpanKind,
    pub(crate) code: StatusCode,
    pub(crate) status_message: &'a str,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: Option<u64>,
    pub(crate) attributes: Range<usize>,
    pub(crate) events: Range<usize>,
    pub(crate) links: Vec<SpanLink>,
    /// Indexes into the request's resources and scopes.
    pub(crate) resource: usize,
    pub(crate) scope: usize,
}

/// One span event.
#[derive(Debug)]
pub(crate) struct ParsedEvent<'a> {
    pub(crate) name: &'a str,
    pub(crate) time_unix_nanos: u64,
    pub(crate) attributes: Range<usize>,
}

/// A key and its value; `None` for an empty (null) value or a profiles string-table
/// index, which the model leaves out.
pub(crate) type ParsedAttribute<'a> = (&'a str, Option<ParsedValue<'a>>);

/// A scalar attribute value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ParsedValue<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An `AnyValue` with nothing set.
    Empty,
}

impl ParsedValue<'_> {
    /// The value as the model holds it.
    pub(crate) fn to_value(self) -> Value {
        match self {
            ParsedValue::Str(text) => Value::Str(text.to_owned()),
            ParsedValue::Bool(b) => Value::Bool(b),
            ParsedValue::Int(n) => Value::Int(n),
            ParsedValue::Double(x) => Value::Double(x),
            ParsedValue::Bytes(bytes) => Value::Bytes(bytes.to_vec()),
            ParsedValue::Empty => Value::Empty,
        }
    }
}

/// Reads an `ExportTraceServiceRequest`, or `None` when prost must (see the module docs).
pub(crate) fn parse(bytes: &[u8]) -> Option<ParsedRequest<'_>> {
    let mut request = ParsedRequest::default();
    fields(bytes, |tag, wire, buf| match tag {
        1 => resource_spans(&mut request, message(wire, buf)?),
        _ => skip(wire, buf),
    })?;
    Some(request)
}

/// Calls `field` with each field's tag, wire type and the bytes after its key, which it
/// must consume; stops at the first `None`.
fn fields<'a>(
    mut buf: &'a [u8],
    mut field: impl FnMut(u32, WireType, &mut &'a [u8]) -> Option<()>,
) -> Option<()> {
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        field(tag, wire, &mut buf)?;
    }
    Some(())
}

/// Records that singular field `tag` was given; `None` the second time (protobuf would
/// merge or replace: prost's path does that).
fn once(seen: &mut u32, tag: u32) -> Option<()> {
    let bit = 1u32.checked_shl(tag)?;
    (*seen & bit == 0).then(|| *seen |= bit)
}

/// Reads singular field `tag` into `slot` (see [`once`]).
fn set<T>(seen: &mut u32, tag: u32, slot: &mut T, value: Option<T>) -> Option<()> {
    once(seen, tag)?;
    *slot = value?;
    Some(())
}

fn expect(wire: WireType, expected: WireType) -> Option<()> {
    (wire == expected).then_some(())
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Some(head)
}

fn message<'a>(wire: WireType, buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    expect(wire, WireType::LengthDelimited)?;
    length_delimited(buf)
}

fn string<'a>(wire: WireType, buf: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(message(wire, buf)?).ok()
}

fn varint(wire: WireType, buf: &mut &[u8]) -> Option<u64> {
    expect(wire, WireType::Varint)?;
    decode_varint(buf).ok()
}

fn fixed64(wire: WireType, buf: &mut &[u8]) -> Option<u64> {
    expect(wire, WireType::SixtyFourBit)?;
    let (head, tail) = buf.split_first_chunk::<8>()?;
    *buf = tail;
    Some(u64::from_le_bytes(*head))
}

fn fixed32(wire: WireType, buf: &mut &[u8]) -> Option<u32> {
    expect(wire, WireType::ThirtyTwoBit)?;
    let (head, tail) = buf.split_first_chunk::<4>()?;
    *buf = tail;
    Some(u32::from_le_bytes(*head))
}

/// Skips an unknown field (groups are left to prost).
fn skip(wire: WireType, buf: &mut &[u8]) -> Option<()> {
    let len = match wire {
        WireType::Varint => return decode_varint(buf).ok().map(|_| ()),
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => return length_delimited(buf).map(|_| ()),
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    *buf = buf.get(len..)?;
    Some(())
}

/// `ResourceSpans`: its resource, its scopes' spans, its schema URL (checked, not kept).
fn resource_spans<'a>(request: &mut ParsedRequest<'a>, bytes: &'a [u8]) -> Option<()> {
    let index = request.resources.len();
    let mut attributes = Attributes::new();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => set(
            &mut seen,
            tag,
            &mut attributes,
            message(wire, buf).and_then(resource),
        ),
        2 => scope_spans(request, index, message(wire, buf)?),
        3 => once(&mut seen, tag).and(string(wire, buf)).map(|_| ()),
        _ => skip(wire, buf),
    })?;
    request.resources.push(Arc::new(Resource {
        attributes,
        ..Resource::default()
    }));
    Some(())
}

/// `Resource`: its attributes (entity references are left to prost).
fn resource(bytes: &[u8]) -> Option<Attributes> {
    let mut attributes = Attributes::new();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => insert(&mut attributes, key_value(message(wire, buf)?)?),
        2 => once(&mut seen, tag).and(varint(wire, buf)).map(|_| ()),
        3 => None,
        _ => skip(wire, buf),
    })?;
    Some(attributes)
}

/// Adds a key/value to a model attribute map: the last value of a key wins, as collecting
/// prost's key/values into the map does.
fn insert(attributes: &mut Attributes, (key, value): ParsedAttribute<'_>) -> Option<()> {
    if let Some(value) = value {
        attributes.insert(key.to_owned(), value.to_value());
    }
    Some(())
}

/// `ScopeSpans` of resource `resource`: its scope and spans.
fn scope_spans<'a>(
    request: &mut ParsedRequest<'a>,
    resource: usize,
    bytes: &'a [u8],
) -> Option<()> {
    let index = request.scopes.len();
    let mut scope = Scope::default();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => set(
            &mut seen,
            tag,
            &mut scope,
            message(wire, buf).and_then(instrumentation_scope),
        ),
        2 => span(request, resource, index, message(wire, buf)?),
        3 => once(&mut seen, tag).and(string(wire, buf)).map(|_| ()),
        _ => skip(wire, buf),
    })?;
    request.scopes.push(Arc::new(scope));
    Some(())
}

/// `InstrumentationScope`.
fn instrumentation_scope(bytes: &[u8]) -> Option<Scope> {
    let mut scope = Scope::default();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => set(
            &mut seen,
            tag,
            &mut scope.name,
            string(wire, buf).map(str::to_owned),
        ),
        2 => set(
            &mut seen,
            tag,
            &mut scope.version,
            string(wire, buf).map(str::to_owned),
        ),
        3 => insert(&mut scope.attributes, key_value(message(wire, buf)?)?),
        4 => once(&mut seen, tag).and(varint(wire, buf)).map(|_| ()),
        _ => skip(wire, buf),
    })?;
    Some(scope)
}

/// The fields of a `Span` as they come, before its ids are checked.
#[derive(Default)]
struct SpanFields<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    flags: u32,
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    code: i32,
    status_message: &'a str,
    links: Vec<SpanLink>,
}

/// `Span` in scope `scope` of resource `resource`.
fn span<'a>(
    request: &mut ParsedRequest<'a>,
    resource: usize,
    scope: usize,
    bytes: &'a [u8],
) -> Option<()> {
    let mut span = SpanFields::default();
    let attributes_start = request.attributes.len();
    let events_start = request.events.len();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| {
        match tag {
            9 => {
                let attribute = key_value(message(wire, buf)?)?;
                request.attributes.push(attribute);
                return Some(());
            }
            11 => return event(request, message(wire, buf)?),
            13 => {
                span.links.push(link(message(wire, buf)?)?);
                return Some(());
            }
            1..=8 | 10 | 12 | 14..=16 => once(&mut seen, tag)?,
            _ => return skip(wire, buf),
        }
        match tag {
            1 => span.trace_id = message(wire, buf)?,
            2 => span.span_id = message(wire, buf)?,
            3 => {
                string(wire, buf)?;
            }
            4 => span.parent_span_id = message(wire, buf)?,
            5 => span.name = string(wire, buf)?,
            // Enumerations are read as protobuf reads an int32: the varint truncated.
            6 => span.kind = varint(wire, buf)? as i32,
            7 => span.start = fixed64(wire, buf)?,
            8 => span.end = fixed64(wire, buf)?,
            15 => (span.code, span.status_message) = status(message(wire, buf)?)?,
            16 => span.flags = fixed32(wire, buf)?,
            _ => {
                varint(wire, buf)?;
            }
        }
        Some(())
    })?;
    let (trace_id, span_id, parent) =
        span_ids_from_otlp(span.trace_id, span.span_id, span.parent_span_id, span.flags).ok()?;
    request.spans.push(ParsedSpan {
        trace_id,
        span_id,
        parent,
        name: span.name,
        kind: kind_from_otlp(span.kind),
        code: status_code_from_otlp(span.code),
        status_message: span.status_message,
        start_unix_nanos: span.start,
        end_unix_nanos: (span.end != 0).then_some(span.end),
        attributes: attributes_start..request.attributes.len(),
        events: events_start..request.events.len(),
        links: span.links,
        resource,
        scope,
    });
    Some(())
}

/// `Status`: its code and message.
fn status(bytes: &[u8]) -> Option<(i32, &str)> {
    let (mut code, mut message) = (0, "");
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        2 => set(&mut seen, tag, &mut message, string(wire, buf)),
        3 => set(
            &mut seen,
            tag,
            &mut code,
            varint(wire, buf).map(|n| n as i32),
        ),
        _ => skip(wire, buf),
    })?;
    Some((code, message))
}

/// `Span.Event`.
fn event<'a>(request: &mut ParsedRequest<'a>, bytes: &'a [u8]) -> Option<()> {
    let start = request.event_attributes.len();
    let (mut name, mut time_unix_nanos) = ("", 0);
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => set(&mut seen, tag, &mut time_unix_nanos, fixed64(wire, buf)),
        2 => set(&mut seen, tag, &mut name, string(wire, buf)),
        3 => {
            let attribute = key_value(message(wire, buf)?)?;
            request.event_attributes.push(attribute);
            Some(())
        }
        4 => once(&mut seen, tag).and(varint(wire, buf)).map(|_| ()),
        _ => skip(wire, buf),
    })?;
    request.events.push(ParsedEvent {
        name,
        time_unix_nanos,
        attributes: start..request.event_attributes.len(),
    });
    Some(())
}

/// `Span.Link`, its ids checked.
fn link(bytes: &[u8]) -> Option<SpanLink> {
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut attributes = Attributes::new();
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| {
        match tag {
            4 => return insert(&mut attributes, key_value(message(wire, buf)?)?),
            1..=3 | 5 | 6 => once(&mut seen, tag)?,
            _ => return skip(wire, buf),
        }
        match tag {
            1 => trace_id = message(wire, buf)?,
            2 => span_id = message(wire, buf)?,
            3 => {
                string(wire, buf)?;
            }
            5 => {
                varint(wire, buf)?;
            }
            _ => {
                fixed32(wire, buf)?;
            }
        }
        Some(())
    })?;
    Some(SpanLink {
        trace_id: TraceId::from_slice(trace_id).ok()?,
        span_id: SpanId::from_slice(span_id).ok()?,
        attributes,
    })
}

/// `KeyValue` (its profiles key index is read and ignored, as the model ignores it).
fn key_value(bytes: &[u8]) -> Option<ParsedAttribute<'_>> {
    // A key with no value at all is as empty as an `AnyValue` with nothing set.
    let (mut key, mut value) = ("", Some(ParsedValue::Empty));
    let mut seen = 0;
    fields(bytes, |tag, wire, buf| match tag {
        1 => set(&mut seen, tag, &mut key, string(wire, buf)),
        2 => set(
            &mut seen,
            tag,
            &mut value,
            message(wire, buf).and_then(any_value),
        ),
        3 => once(&mut seen, tag).and(varint(wire, buf)).map(|_| ()),
        _ => skip(wire, buf),
    })?;
    Some((key, value))
}

/// `AnyValue` holding a scalar or nothing (`Empty`), `Some(None)` for a string-table
/// index; `None` for an array or map, or a value given twice.
fn any_value(bytes: &[u8]) -> Option<Option<ParsedValue<'_>>> {
    let mut value = None;
    let mut given = false;
    fields(bytes, |tag, wire, buf| {
        if !(1..=8).contains(&tag) {
            return skip(wire, buf);
        }
        if std::mem::replace(&mut given, true) {
            return None;
        }
        value = match tag {
            1 => Some(ParsedValue::Str(string(wire, buf)?)),
            2 => Some(ParsedValue::Bool(varint(wire, buf)? != 0)),
            3 => Some(ParsedValue::Int(varint(wire, buf)? as i64)),
            4 => Some(ParsedValue::Double(f64::from_bits(fixed64(wire, buf)?))),
            7 => Some(ParsedValue::Bytes(message(wire, buf)?)),
            8 => {
                varint(wire, buf)?;
                None
            }
            _ => return None,
        };
        Some(())
    })?;
    Some(if given {
        value
    } else {
        Some(ParsedValue::Empty)
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::model::otlp::visit_otlp_spans;
    use crate::model::SpanRecord;
    use crate::receiver::compact::Interner;

    /// What prost's path stores for `bytes`: the spans read back, or its error.
    fn through_prost(bytes: &[u8]) -> Result<Vec<SpanRecord>, String> {
        let request = ExportTraceServiceRequest::decode(bytes).map_err(|e| e.to_string())?;
        let mut interner = Interner::default();
        let mut spans = Vec::new();
        visit_otlp_spans(request.resource_spans, |span, resource, scope| {
            spans.push(interner.compact_checked(span, resource, scope).to_record());
        })
        .map_err(|e| e.to_string())?;
        Ok(spans)
    }

    /// What the direct path stores for `bytes`, or `None` when it leaves them to prost.
    fn direct(bytes: &[u8]) -> Option<Vec<SpanRecord>> {
        let parsed = parse(bytes)?;
        let mut interner = Interner::default();
        Some(
            interner
                .compact_parsed(&parsed)
                .iter()
                .map(|span| span.to_record())
                .collect(),
        )
    }

    /// The direct path either stores exactly what prost's path stores, or declines.
    fn agrees(bytes: &[u8]) -> Result<bool, TestCaseError> {
        let Some(spans) = direct(bytes) else {
            return Ok(false);
        };
        let (direct, prost) = (Ok(spans), through_prost(bytes));
        // A double that is NaN (damaged bytes make them) is not equal to itself: the two
        // paths agree when they read the same value, which their texts then show.
        if direct != prost {
            prop_assert_eq!(format!("{direct:?}"), format!("{prost:?}"));
        }
        Ok(true)
    }

    fn key_value(key: &str, value: Option<any_value::Value>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.map(|value| AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn arb_scalar() -> impl Strategy<Value = Option<any_value::Value>> {
        prop_oneof![
            Just(None),
            "\\PC{0,30}".prop_map(|s| Some(any_value::Value::StringValue(s))),
            any::<bool>().prop_map(|b| Some(any_value::Value::BoolValue(b))),
            any::<i64>().prop_map(|n| Some(any_value::Value::IntValue(n))),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |x| !x.is_nan())
                .prop_map(|x| Some(any_value::Value::DoubleValue(x))),
            prop::collection::vec(any::<u8>(), 0..4)
                .prop_map(|b| Some(any_value::Value::BytesValue(b))),
            any::<i32>().prop_map(|i| Some(any_value::Value::StringValueStrindex(i))),
        ]
    }

    /// Attributes with keys from a small set, so that some repeat.
    fn arb_attributes(arrays: bool) -> impl Strategy<Value = Vec<KeyValue>> {
        let value = prop_oneof![
            8 => arb_scalar(),
            (if arrays { 1 } else { 0 }) => arb_scalar().prop_map(|item| {
                Some(any_value::Value::ArrayValue(ArrayValue {
                    values: item.map(|value| AnyValue { value: Some(value) }).into_iter().collect(),
                }))
            }),
        ];
        prop::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "service.name", "ключ"]),
                value,
            )
                .prop_map(|(key, value)| key_value(key, value)),
            0..5,
        )
    }

    /// An id that is mostly valid: `len` random bytes, sometimes another length or zeros.
    fn arb_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            12 => prop::collection::vec(1u8..=255, len),
            1 => Just(vec![0; len]),
            1 => prop::collection::vec(any::<u8>(), 0..=len + 1),
        ]
    }

    fn arb_span() -> impl Strategy<Value = Span> {
        (
            (arb_id(16), arb_id(8), prop_oneof![Just(vec![]), arb_id(8)]),
            (
                "\\PC{0,12}",
                -1i32..7,
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
            ),
            arb_attributes(true),
            prop::collection::vec(("\\PC{0,8}", any::<u64>(), arb_attributes(false)), 0..2),
            prop::collection::vec((arb_id(16), arb_id(8), arb_attributes(false)), 0..2),
            prop::option::of((-1i32..4, "\\PC{0,8}")),
        )
            .prop_map(|(ids, fields, attributes, events, links, status)| {
                let (trace_id, span_id, parent_span_id) = ids;
                let (name, kind, start, end, flags) = fields;
                Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    events: events
                        .into_iter()
                        .map(|(name, time_unix_nano, attributes)| span::Event {
                            name,
                            time_unix_nano,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    links: links
                        .into_iter()
                        .map(|(trace_id, span_id, attributes)| span::Link {
                            trace_id,
                            span_id,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    status: status.map(|(code, message)| Status { code, message }),
                    ..Default::default()
                }
            })
    }

    fn arb_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope_spans = (
            prop::option::of(("\\PC{0,6}", "[0-9.]{0,4}", arb_attributes(false))),
            prop::collection::vec(arb_span(), 0..4),
        )
            .prop_map(|(scope, spans)| ScopeSpans {
                scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                    name,
                    version,
                    attributes,
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            });
        let resource_spans = (
            prop::option::of(arb_attributes(false)),
            prop::collection::vec(scope_spans, 0..3),
        )
            .prop_map(|(resource, scope_spans)| ResourceSpans {
                resource: resource.map(|attributes| OtlpResource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans,
                ..Default::default()
            });
        prop::collection::vec(resource_spans, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    /// Whether the direct path must take a request (no array value, every id valid).
    fn readable_directly(request: &ExportTraceServiceRequest) -> bool {
        let scalars = |attributes: &[KeyValue]| {
            attributes.iter().all(|kv| {
                !matches!(
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))
                )
            })
        };
        let valid = |bytes: &[u8], len: usize| bytes.len() == len && bytes.iter().any(|b| *b != 0);
        request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .all(|span| {
                valid(&span.trace_id, 16)
                    && valid(&span.span_id, 8)
                    && (span.parent_span_id.is_empty() || valid(&span.parent_span_id, 8))
                    && span
                        .links
                        .iter()
                        .all(|link| valid(&link.trace_id, 16) && valid(&link.span_id, 8))
                    && scalars(&span.attributes)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_request_is_stored_as_prost_would_store_it(request in arb_request()) {
            let bytes = request.encode_to_vec();
            let taken = agrees(&bytes)?;
            prop_assert_eq!(taken, readable_directly(&request));
        }

        #[test]
        fn damaged_bytes_are_stored_as_prost_would_or_left_to_it(
            request in arb_request(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let mut bytes = request.encode_to_vec();
            for (at, byte, how) in damage {
                if bytes.is_empty() {
                    break;
                }
                let at = at.index(bytes.len());
                match how {
                    0 => bytes[at] = byte,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, byte),
                }
            }
            agrees(&bytes)?;
        }
    }

    fn one_span() -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "op".into(),
            attributes: vec![key_value(
                "k",
                Some(any_value::Value::StringValue("v".into())),
            )],
            ..Default::default()
        }
    }

    fn request_of(span: Span) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: vec![key_value(
                        "service.name",
                        Some(any_value::Value::StringValue("node".into())),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields_are_read() {
        // The resource after the spans that use it, then an unknown field of each wire type.
        let request = ExportTraceServiceRequest::decode(&request_of(one_span())[..]).unwrap();
        let resource_spans = &request.resource_spans[0];
        let mut reordered = Vec::new();
        for scope_spans in &resource_spans.scope_spans {
            prost::encoding::message::encode(2, scope_spans, &mut reordered);
        }
        prost::encoding::message::encode(
            1,
            resource_spans.resource.as_ref().unwrap(),
            &mut reordered,
        );
        prost::encoding::uint64::encode(99, &7, &mut reordered);
        prost::encoding::fixed64::encode(98, &7, &mut reordered);
        prost::encoding::fixed32::encode(97, &7, &mut reordered);
        prost::encoding::string::encode(96, &"x".to_owned(), &mut reordered);
        let mut bytes = Vec::new();
        prost::encoding::bytes::encode(1, &reordered, &mut bytes);

        let stored = direct(&bytes).expect("read directly");
        assert_eq!(Ok(stored.clone()), through_prost(&bytes));
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].resource.attributes.get("service.name"),
            Some(&Value::Str("node".into()))
        );
    }

    /// A request of one span whose attribute `flag` is the bool varint `flag` and whose
    /// kind is the varint `kind`, as no prost encoder writes them.
    fn unusual_varints(flag: u64, kind: u64) -> Vec<u8> {
        let mut value = Vec::new();
        prost::encoding::uint64::encode(2, &flag, &mut value);
        let mut key_value = Vec::new();
        prost::encoding::string::encode(1, &"flag".to_owned(), &mut key_value);
        prost::encoding::bytes::encode(2, &value, &mut key_value);
        let mut span = one_span().encode_to_vec();
        prost::encoding::bytes::encode(9, &key_value, &mut span);
        prost::encoding::uint64::encode(6, &kind, &mut span);
        let mut scope_spans = Vec::new();
        prost::encoding::bytes::encode(2, &span, &mut scope_spans);
        let mut resource_spans = Vec::new();
        prost::encoding::bytes::encode(2, &scope_spans, &mut resource_spans);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource_spans, &mut request);
        request
    }

    #[test]
    fn varints_no_encoder_writes_are_read_as_prost_reads_them() {
        for (flag, kind) in [(5, 2), (0, u64::MAX), (1 << 40, (1 << 32) + 3)] {
            let bytes = unusual_varints(flag, kind);
            let stored = direct(&bytes).expect("read directly");
            assert_eq!(Ok(stored.clone()), through_prost(&bytes));
            assert_eq!(stored[0].attributes["flag"], Value::Bool(flag != 0));
        }
    }

    #[test]
    fn what_protobuf_merges_is_left_to_prost() {
        let mut bytes = request_of(one_span());
        // The same request twice is one request whose repeated fields concatenate: read.
        bytes.extend(request_of(one_span()));
        assert_eq!(direct(&bytes).map(|spans| spans.len()), Some(2));

        // A span given its name twice: protobuf keeps the last; left to prost.
        let mut span = one_span().encode_to_vec();
        prost::encoding::string::encode(5, &"renamed".to_owned(), &mut span);
        let mut scope_spans = Vec::new();
        prost::encoding::bytes::encode(2, &span, &mut scope_spans);
        let mut resource_spans = Vec::new();
        prost::encoding::bytes::encode(2, &scope_spans, &mut resource_spans);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource_spans, &mut request);
        assert_eq!(direct(&request), None);
        assert_eq!(through_prost(&request).unwrap()[0].name, "renamed");
    }

    #[test]
    fn groups_and_arrays_are_left_to_prost() {
        let mut span = one_span();
        span.attributes.push(key_value(
            "list",
            Some(any_value::Value::ArrayValue(ArrayValue::default())),
        ));
        assert_eq!(direct(&request_of(span)), None);

        let mut bytes = request_of(one_span());
        prost::encoding::encode_key(50, WireType::StartGroup, &mut bytes);
        prost::encoding::encode_key(50, WireType::EndGroup, &mut bytes);
        assert_eq!(direct(&bytes), None);
        assert!(through_prost(&bytes).is_ok());
    }
}
