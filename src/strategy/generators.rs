//! Strategies for span sets: valid trace trees with typed attributes, for properties of
//! anything that consumes spans (renderers, conversions, checkers).

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::model::{
    ParentRef, Resource, SpanId, SpanKind, SpanRecord, Status, StatusCode, TraceId, Value,
};

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-z ]{0,8}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        (-1e6f64..1e6).prop_map(Value::Double),
        any::<bool>().prop_map(Value::Bool),
        vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| vec(inner, 0..3).prop_map(Value::Array))
}

/// A valid set of spans: one to three traces, each a tree (parents before children),
/// with typed attributes, kinds, statuses, distinct start times and two resources.
pub fn arb_span_set() -> impl Strategy<Value = Vec<SpanRecord>> {
    let span = (
        "[a-z_]{1,10}",
        proptest::collection::btree_map("[a-z_]{1,6}", arb_value(), 0..4),
        0usize..5,
        0usize..3,
        any::<bool>(),
    );
    vec(vec(span, 1..6), 1..4).prop_map(|traces| {
        let resources: Vec<Arc<Resource>> = ["node-a", "node-b"]
            .iter()
            .map(|instance| {
                let mut resource = Resource::default();
                resource
                    .attributes
                    .insert("service.instance.id".into(), Value::from(*instance));
                Arc::new(resource)
            })
            .collect();
        let mut out = Vec::new();
        let mut clock = 1_000u64;
        for (t, spans) in traces.into_iter().enumerate() {
            let trace_id = TraceId::from_bytes([t as u8 + 1; 16]);
            let mut ids = Vec::new();
            for (i, (name, attributes, kind, status, resource)) in spans.into_iter().enumerate() {
                let span_id = SpanId::from_bytes([t as u8 + 1, i as u8 + 1, 0, 0, 0, 0, 0, 1]);
                let mut record = SpanRecord::new(trace_id, span_id, name);
                if i > 0 {
                    let parent = ids[(i * 7) % ids.len()];
                    record.parent = Some(ParentRef {
                        span_id: parent,
                        remote: Some(i % 2 == 0),
                    });
                }
                record.attributes = attributes;
                record.kind = [
                    SpanKind::Internal,
                    SpanKind::Server,
                    SpanKind::Client,
                    SpanKind::Producer,
                    SpanKind::Consumer,
                ][kind];
                record.status = match status {
                    0 => Status::default(),
                    1 => Status {
                        code: StatusCode::Ok,
                        message: String::new(),
                    },
                    _ => Status {
                        code: StatusCode::Error,
                        message: "boom".into(),
                    },
                };
                record.resource = Arc::clone(&resources[usize::from(resource)]);
                clock += 10;
                record.start_unix_nanos = clock;
                record.end_unix_nanos = Some(clock + 5);
                ids.push(span_id);
                out.push(record);
            }
        }
        out
    })
}
