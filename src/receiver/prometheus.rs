//! Prometheus text exposition of the receiver's own counters (the Collector's port 8888)
//! and of the application metrics it received (the Collector's Prometheus exporter).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ingest::Shared;
use crate::model::{MetricKind, MetricPoint, PointValue, Temporality, Value};

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric or label name as Prometheus accepts it: what is not a letter, digit, `_` or
/// `:` becomes `_`, and a leading digit gets a `_` before it.
pub(crate) fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn labels(pairs: &BTreeMap<String, String>, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{}\"", escape(v)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The receiver's counters, labelled by receiver, transport and `service.name`.
pub(crate) fn receiver_metrics(shared: &Shared) -> String {
    let mut out = String::new();
    let mut last_name = "";
    for ((counter, transport, service), value) in shared.counters() {
        if counter.name() != last_name {
            let _ = writeln!(out, "# HELP {} {}", counter.name(), counter.help());
            let _ = writeln!(out, "# TYPE {} counter", counter.name());
            last_name = counter.name();
        }
        let _ = writeln!(
            out,
            "{}{{receiver=\"otlp\",transport=\"{}\",service_name=\"{}\"}} {value}",
            counter.name(),
            transport.as_str(),
            escape(&service)
        );
    }
    if let Some(files) = &shared.files {
        let _ = writeln!(
            out,
            "# HELP otelcol_exporter_send_failed_requests Failed writes to the OTLP-JSON files."
        );
        let _ = writeln!(out, "# TYPE otelcol_exporter_send_failed_requests counter");
        let _ = writeln!(
            out,
            "otelcol_exporter_send_failed_requests{{exporter=\"file\"}} {}",
            files.errors()
        );
    }
    out
}

/// One series: the latest cumulative/gauge point, or the running total of delta points.
#[derive(Debug)]
struct Series {
    kind: MetricKind,
    value: PointValue,
    time: u64,
}

fn accumulate(series: &mut Series, point: &MetricPoint) {
    let delta = point.temporality == Temporality::Delta;
    match (&mut series.value, &point.value) {
        (PointValue::Int(total), PointValue::Int(v)) if delta => *total += v,
        (PointValue::Double(total), PointValue::Double(v)) if delta => *total += v,
        (
            PointValue::Distribution {
                count,
                sum,
                bucket_counts,
                bounds,
                ..
            },
            PointValue::Distribution {
                count: c,
                sum: s,
                bucket_counts: b,
                bounds: bb,
                ..
            },
        ) if delta && bounds == bb && bucket_counts.len() == b.len() => {
            *count += c;
            *sum = match (*sum, s) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(*b),
            };
            for (total, v) in bucket_counts.iter_mut().zip(b) {
                *total += v;
            }
        }
        _ if point.time_unix_nanos >= series.time => {
            series.value = point.value.clone();
            series.time = point.time_unix_nanos;
        }
        _ => {}
    }
}

/// Received application metrics as Prometheus text: one series per metric name, point
/// attributes and producing service (`service_name`, plus `service_instance_id` when the
/// resource has one, so per-node series stay apart).
pub(crate) fn received_metrics(points: &[MetricPoint]) -> String {
    let mut series: BTreeMap<(String, BTreeMap<String, String>), Series> = BTreeMap::new();
    for point in points {
        let mut labels: BTreeMap<String, String> = point
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), as_label(v)))
            .collect();
        for (key, label) in [
            ("service.name", "service_name"),
            ("service.instance.id", "service_instance_id"),
        ] {
            if let Some(value) = point.resource.attributes.get(key) {
                labels.insert(label.to_owned(), as_label(value));
            }
        }
        let key = (sanitize(&point.name), labels);
        match series.get_mut(&key) {
            Some(existing) => accumulate(existing, point),
            None => {
                series.insert(
                    key,
                    Series {
                        kind: point.kind,
                        value: point.value.clone(),
                        time: point.time_unix_nanos,
                    },
                );
            }
        }
    }
    let mut out = String::new();
    let mut last_name = String::new();
    for ((name, label_pairs), series) in &series {
        if *name != last_name {
            let kind = match series.kind {
                MetricKind::Sum { monotonic: true } => "counter",
                MetricKind::Sum { monotonic: false } | MetricKind::Gauge => "gauge",
                MetricKind::Histogram | MetricKind::ExponentialHistogram => "histogram",
                MetricKind::Summary => "summary",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            last_name.clone_from(name);
        }
        match &series.value {
            PointValue::Int(v) => {
                let _ = writeln!(out, "{name}{} {v}", labels(label_pairs, None));
            }
            PointValue::Double(v) => {
                let _ = writeln!(out, "{name}{} {v}", labels(label_pairs, None));
            }
            PointValue::Distribution {
                count,
                sum,
                bounds,
                bucket_counts,
                ..
            } => {
                let mut cumulative = 0u64;
                for (bound, bucket) in bounds.iter().zip(bucket_counts) {
                    cumulative += bucket;
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(label_pairs, Some(("le", &le)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {count}",
                    labels(label_pairs, Some(("le", "+Inf")))
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(label_pairs, None),
                    sum.unwrap_or(0.0)
                );
                let _ = writeln!(out, "{name}_count{} {count}", labels(label_pairs, None));
            }
        }
    }
    out
}

fn as_label(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}
