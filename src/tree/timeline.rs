//! A trace set as a timeline: every span's start and end in nanoseconds, one line each,
//! durations kept — what two runs of a simulation compare byte for byte, where a rendering
//! redacts time.

use super::TraceSet;
use crate::model::{SpanRecord, Value};

impl TraceSet {
    /// Every span as a line `start end node name kind`, ordered by start, end, node and
    /// name: times in Unix nanoseconds, the node as these settings alias its
    /// `service.instance.id` (`[node 1]` for a mesh's nodes). Nothing is redacted, so two
    /// runs of a simulation (spans stamped in virtual time) compare byte for byte.
    ///
    /// ```
    /// use p2p_otel_testkit::model::{SpanId, SpanRecord, TraceId};
    /// use p2p_otel_testkit::tree::TraceSet;
    /// let mut span = SpanRecord::new(TraceId::from_bytes([1; 16]), SpanId::from_bytes([2; 8]), "tick");
    /// span.start_unix_nanos = 5;
    /// span.end_unix_nanos = Some(9);
    /// assert_eq!(TraceSet::new([span]).timeline(), "5 9  tick internal\n");
    /// ```
    pub fn timeline(&self) -> String {
        let node = |span: &SpanRecord| {
            span.resource
                .attributes
                .get("service.instance.id")
                .and_then(Value::as_str)
                .map(|id| self.alias_text(id))
                .unwrap_or_default()
        };
        let mut lines: Vec<(u64, u64, String, &str, String)> = self
            .spans()
            .map(|span| {
                let span = span.record();
                (
                    span.start_unix_nanos,
                    span.end_unix_nanos.unwrap_or_default(),
                    node(span),
                    span.name.as_ref(),
                    span.kind.to_string(),
                )
            })
            .collect();
        lines.sort();
        lines
            .into_iter()
            .map(|(start, end, node, name, kind)| format!("{start} {end} {node} {name} {kind}\n"))
            .collect()
    }
}
