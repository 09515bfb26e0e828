//! Conversions between OTLP protobuf types and the span model.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::trace::v1::{
    span, ResourceSpans, ScopeSpans, Span, Status as OtlpStatus,
};

use super::{
    Attributes, ModelError, ParentRef, Resource, Scope, SpanEvent, SpanId, SpanKind, SpanLink,
    SpanRecord, Status, StatusCode, TraceId, Value,
};

/// `Span.flags` bit: whether the parent's remoteness is known.
const HAS_IS_REMOTE: u32 = 0x100;
/// `Span.flags` bit: whether the parent is remote.
const IS_REMOTE: u32 = 0x200;

/// Converts the spans of OTLP `ResourceSpans` into the span model, keeping resource and
/// scope (shared by `Arc` between the spans of one resource or scope).
///
/// A span with an invalid trace or span id is an error naming the span and its position;
/// nothing is silently skipped. Attributes whose `AnyValue` is empty (OTLP's null) or a
/// profiles string-table index are left out, since the model has neither.
pub fn spans_from_otlp(resource_spans: &[ResourceSpans]) -> Result<Vec<SpanRecord>, ModelError> {
    spans_from_otlp_owned(resource_spans.to_vec())
}

/// [`spans_from_otlp`] taking ownership, so names and attributes move instead of being
/// copied.
pub fn spans_from_otlp_owned(
    resource_spans: Vec<ResourceSpans>,
) -> Result<Vec<SpanRecord>, ModelError> {
    let mut out = Vec::with_capacity(span_count(&resource_spans));
    visit_otlp_spans(resource_spans, |span, resource, scope| {
        out.push(SpanRecord {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent: span.parent,
            name: span.name,
            kind: span.kind,
            status: span.status,
            attributes: attributes_from_otlp_owned(span.attributes),
            events: span
                .events
                .into_iter()
                .map(|event| SpanEvent {
                    name: event.name,
                    time_unix_nanos: event.time_unix_nano,
                    attributes: attributes_from_otlp_owned(event.attributes),
                })
                .collect(),
            links: span.links,
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos,
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
            unrecorded_fields: Default::default(),
        });
    })?;
    Ok(out)
}

/// How many spans a request holds.
pub(crate) fn span_count(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// An OTLP span whose ids, parent and links were checked and converted; its name,
/// attributes and events still as they came, for the caller to store its own way.
pub(crate) struct CheckedSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<ParentRef>,
    pub(crate) kind: SpanKind,
    pub(crate) status: Status,
    pub(crate) links: Vec<SpanLink>,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: Option<u64>,
    pub(crate) name: String,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) events: Vec<span::Event>,
}

/// Walks every span of a request with its resource and scope (one `Arc` each per
/// `ResourceSpans` / `ScopeSpans`), checking ids: the first invalid span is an error
/// naming it and its position, and the walk stops there.
pub(crate) fn visit_otlp_spans(
    resource_spans: Vec<ResourceSpans>,
    mut visit: impl FnMut(CheckedSpan, &Arc<Resource>, &Arc<Scope>),
) -> Result<(), ModelError> {
    for (r, rs) in resource_spans.into_iter().enumerate() {
        let resource = Arc::new(Resource::from_otlp(rs.resource));
        for (s, ss) in rs.scope_spans.into_iter().enumerate() {
            let scope = Arc::new(
                ss.scope
                    .map(|scope| Scope {
                        name: scope.name,
                        version: scope.version,
                        attributes: attributes_from_otlp_owned(scope.attributes),
                    })
                    .unwrap_or_default(),
            );
            for (i, span) in ss.spans.into_iter().enumerate() {
                let invalid = |span: &Span, source| ModelError::InvalidSpan {
                    name: span.name.clone(),
                    resource: r,
                    scope: s,
                    span: i,
                    source: Box::new(source),
                };
                match span_ids_from_otlp(
                    &span.trace_id,
                    &span.span_id,
                    &span.parent_span_id,
                    span.flags,
                ) {
                    Ok((trace_id, span_id, parent)) => {
                        let links = match links_from_otlp(&span) {
                            Ok(links) => links,
                            Err(source) => return Err(invalid(&span, source)),
                        };
                        visit(
                            checked(span, trace_id, span_id, parent, links),
                            &resource,
                            &scope,
                        );
                    }
                    Err(source) => return Err(invalid(&span, source)),
                }
            }
        }
    }
    Ok(())
}

/// A span's ids, parent and the parent's remoteness from OTLP's `trace_id`, `span_id`,
/// `parent_span_id` (empty for a root) and `flags`.
pub(crate) fn span_ids_from_otlp(
    trace_id: &[u8],
    span_id: &[u8],
    parent_span_id: &[u8],
    flags: u32,
) -> Result<(TraceId, SpanId, Option<ParentRef>), ModelError> {
    let trace_id = TraceId::from_slice(trace_id)?;
    let span_id = SpanId::from_slice(span_id)?;
    let parent = if parent_span_id.is_empty() {
        None
    } else {
        Some(ParentRef {
            span_id: SpanId::from_slice(parent_span_id)?,
            remote: (flags & HAS_IS_REMOTE != 0).then_some(flags & IS_REMOTE != 0),
        })
    };
    Ok((trace_id, span_id, parent))
}

fn links_from_otlp(span: &Span) -> Result<Vec<SpanLink>, ModelError> {
    span.links
        .iter()
        .map(|link| {
            Ok(SpanLink {
                trace_id: TraceId::from_slice(&link.trace_id)?,
                span_id: SpanId::from_slice(&link.span_id)?,
                attributes: attributes_from_otlp(&link.attributes),
            })
        })
        .collect()
}

fn checked(
    span: Span,
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<ParentRef>,
    links: Vec<SpanLink>,
) -> CheckedSpan {
    let status = span
        .status
        .map(|status| Status {
            code: status_code_from_otlp(status.code),
            message: status.message,
        })
        .unwrap_or_default();
    CheckedSpan {
        trace_id,
        span_id,
        parent,
        kind: kind_from_otlp(span.kind),
        status,
        links,
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: (span.end_time_unix_nano != 0).then_some(span.end_time_unix_nano),
        name: span.name,
        attributes: span.attributes,
        events: span.events,
    }
}

/// OTLP's `Status.code`: anything but OK and ERROR is UNSET.
pub(crate) fn status_code_from_otlp(code: i32) -> StatusCode {
    match code {
        1 => StatusCode::Ok,
        2 => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

pub(crate) fn kind_from_otlp(kind: i32) -> SpanKind {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Server) => SpanKind::Server,
        Ok(span::SpanKind::Client) => SpanKind::Client,
        Ok(span::SpanKind::Producer) => SpanKind::Producer,
        Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
        // UNSPECIFIED may be read as INTERNAL, the spec says.
        _ => SpanKind::Internal,
    }
}

fn kind_to_otlp(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

/// Converts OTLP key/values into an attribute map, leaving out empty (null) values.
pub(crate) fn attributes_from_otlp(key_values: &[KeyValue]) -> Attributes {
    attributes_from_otlp_owned(key_values.to_vec())
}

/// Like [`attributes_from_otlp`], moving keys and values.
pub(crate) fn attributes_from_otlp_owned(key_values: Vec<KeyValue>) -> Attributes {
    key_values
        .into_iter()
        // A key with no value at all is as empty as an `AnyValue` with nothing set.
        .filter_map(|kv| Some((kv.key, value_from_otlp_owned(kv.value.unwrap_or_default())?)))
        .collect()
}

/// The model's value; `None` only for a string-table index, which traces never use.
pub(crate) fn value_from_otlp_owned(value: AnyValue) -> Option<Value> {
    let Some(value) = value.value else {
        return Some(Value::Empty);
    };
    Some(match value {
        any_value::Value::StringValue(s) => Value::Str(s),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::Int(i),
        any_value::Value::DoubleValue(d) => Value::Double(d),
        any_value::Value::BytesValue(b) => Value::Bytes(b),
        any_value::Value::ArrayValue(array) => Value::Array(
            array
                .values
                .into_iter()
                .filter_map(value_from_otlp_owned)
                .collect(),
        ),
        any_value::Value::KvlistValue(list) => Value::Map(attributes_from_otlp_owned(list.values)),
        any_value::Value::StringValueStrindex(_) => return None,
    })
}

pub(crate) fn value_from_otlp(value: &AnyValue) -> Option<Value> {
    value_from_otlp_owned(value.clone())
}

fn value_to_otlp(value: &Value) -> AnyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Double(d) => any_value::Value::DoubleValue(*d),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Bytes(b) => any_value::Value::BytesValue(b.clone()),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(value_to_otlp).collect(),
        }),
        Value::Map(map) => any_value::Value::KvlistValue(KeyValueList {
            values: attributes_to_otlp(map),
        }),
        Value::Empty => return AnyValue { value: None },
    };
    AnyValue { value: Some(value) }
}

pub(crate) fn attributes_to_otlp(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(value_to_otlp(value)),
            ..Default::default()
        })
        .collect()
}

/// The spans of one scope, while grouping.
type ScopeGroup<'a> = (&'a Scope, Vec<Span>);

/// Converts spans back into OTLP `ResourceSpans`, grouped by resource and then by scope
/// in first-seen order. Open spans are sent with an end time of 0.
///
/// Together with [`spans_from_otlp`] this round-trips every field of the model except
/// [`SpanRecord::unrecorded_fields`], which OTLP has no place for.
pub fn spans_to_otlp(spans: &[SpanRecord]) -> Vec<ResourceSpans> {
    let mut groups: Vec<(&Resource, Vec<ScopeGroup<'_>>)> = Vec::new();
    for record in spans {
        let resource_index = match groups.iter().position(|(r, _)| **r == *record.resource) {
            Some(index) => index,
            None => {
                groups.push((&record.resource, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[resource_index].1;
        let scope_index = match scopes.iter().position(|(s, _)| **s == *record.scope) {
            Some(index) => index,
            None => {
                scopes.push((&record.scope, Vec::new()));
                scopes.len() - 1
            }
        };
        scopes[scope_index].1.push(span_to_otlp(record));
    }
    groups
        .into_iter()
        .map(|(resource, scopes)| ResourceSpans {
            resource: Some(resource.to_otlp()),
            scope_spans: scopes
                .into_iter()
                .map(|(scope, spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope.name.clone(),
                        version: scope.version.clone(),
                        attributes: attributes_to_otlp(&scope.attributes),
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect()
}

fn span_to_otlp(record: &SpanRecord) -> Span {
    let flags = match record.parent.and_then(|parent| parent.remote) {
        Some(true) => HAS_IS_REMOTE | IS_REMOTE,
        Some(false) => HAS_IS_REMOTE,
        None => 0,
    };
    Span {
        trace_id: record.trace_id.to_bytes().to_vec(),
        span_id: record.span_id.to_bytes().to_vec(),
        parent_span_id: record
            .parent
            .map(|parent| parent.span_id.to_bytes().to_vec())
            .unwrap_or_default(),
        flags,
        name: record.name.clone(),
        kind: kind_to_otlp(record.kind) as i32,
        start_time_unix_nano: record.start_unix_nanos,
        end_time_unix_nano: record.end_unix_nanos.unwrap_or(0),
        attributes: attributes_to_otlp(&record.attributes),
        events: record
            .events
            .iter()
            .map(|event| span::Event {
                time_unix_nano: event.time_unix_nanos,
                name: event.name.clone(),
                attributes: attributes_to_otlp(&event.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        links: record
            .links
            .iter()
            .map(|link| span::Link {
                trace_id: link.trace_id.to_bytes().to_vec(),
                span_id: link.span_id.to_bytes().to_vec(),
                attributes: attributes_to_otlp(&link.attributes),
                ..Default::default()
            })
            .collect(),
        status: Some(OtlpStatus {
            code: match record.status.code {
                StatusCode::Unset => 0,
                StatusCode::Ok => 1,
                StatusCode::Error => 2,
            },
            message: record.status.message.clone(),
        }),
        ..Default::default()
    }
}
