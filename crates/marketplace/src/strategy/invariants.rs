//! Invariants of the reference marketplace's own telemetry, beside the generic ones of
//! [`p2p_otel_testkit::strategy::invariants`].

use std::collections::{BTreeMap, HashMap};

use p2p_otel_testkit::model::MetricPoint;
use p2p_otel_testkit::strategy::invariants::Executed;

/// The `operation` label of an operation's metrics: its root span name without `p2p_`.
pub fn operation_label(root: &str) -> &str {
    root.strip_prefix("p2p_").unwrap_or(root)
}

/// `p2p_operations_total{operation,status}`, summed over nodes (latest cumulative point
/// of each), equals the operations run, by outcome.
pub fn operation_counters_match(
    points: &[MetricPoint],
    executed: &[Executed],
) -> Result<(), String> {
    let mut latest: HashMap<(String, String, String), (u64, i64)> = HashMap::new();
    for point in points.iter().filter(|p| p.name == "p2p_operations_total") {
        let label = |key: &str| {
            point
                .attribute(key)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default()
        };
        let key = (
            label("service.instance.id"),
            label("operation"),
            label("status"),
        );
        let value = point.value.as_f64().unwrap_or(0.0) as i64;
        let entry = latest.entry(key).or_insert((0, 0));
        if point.time_unix_nanos >= entry.0 {
            *entry = (point.time_unix_nanos, value);
        }
    }
    let mut measured: BTreeMap<(String, String), i64> = BTreeMap::new();
    for ((_, operation, status), (_, value)) in latest {
        *measured.entry((operation, status)).or_default() += value;
    }
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for op in executed {
        let status = if op.failed { "error" } else { "ok" };
        *expected
            .entry((operation_label(op.root).to_owned(), status.to_owned()))
            .or_default() += 1;
    }
    measured.retain(|_, v| *v != 0);
    if measured == expected {
        Ok(())
    } else {
        Err(format!(
            "p2p_operations_total {measured:?} != operations run {expected:?}"
        ))
    }
}
