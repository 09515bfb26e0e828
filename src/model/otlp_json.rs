//! OTLP/JSON as the protobuf JSON mapping allows it: enum fields by number (what the OTLP
//! specification's examples and most SDKs write) or by name (what the mapping permits, the
//! Collector's reader takes, and Python's `MessageToJson` writes: `"SPAN_KIND_SERVER"`).
//! opentelemetry-proto's serde types take numbers only, so names are turned into numbers
//! first — and only when the bytes hold one, so the common request pays one scan.

use memchr::memmem;
use serde::de::{DeserializeOwned, Error as _};
use serde_json::Value;

/// Each enum field of OTLP: its JSON name, the prefix of its values' names, and the names
/// by number.
const ENUMS: [(&str, &str, &[&str]); 4] = [
    (
        "kind",
        "SPAN_KIND_",
        &[
            "UNSPECIFIED",
            "INTERNAL",
            "SERVER",
            "CLIENT",
            "PRODUCER",
            "CONSUMER",
        ],
    ),
    ("code", "STATUS_CODE_", &["UNSET", "OK", "ERROR"]),
    (
        "aggregationTemporality",
        "AGGREGATION_TEMPORALITY_",
        &["UNSPECIFIED", "DELTA", "CUMULATIVE"],
    ),
    (
        "severityNumber",
        "SEVERITY_NUMBER_",
        &[
            "UNSPECIFIED",
            "TRACE",
            "TRACE2",
            "TRACE3",
            "TRACE4",
            "DEBUG",
            "DEBUG2",
            "DEBUG3",
            "DEBUG4",
            "INFO",
            "INFO2",
            "INFO3",
            "INFO4",
            "WARN",
            "WARN2",
            "WARN3",
            "WARN4",
            "ERROR",
            "ERROR2",
            "ERROR3",
            "ERROR4",
            "FATAL",
            "FATAL2",
            "FATAL3",
            "FATAL4",
        ],
    ),
];

/// Reads an OTLP/JSON message, its enum fields by number or by name.
pub(crate) fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    // A prefix anywhere (not only after a quote) is a cheap, safe pre-filter: a false hit
    // costs only the second parse.
    let named = ENUMS
        .iter()
        .any(|(_, prefix, _)| memmem::find(bytes, prefix.as_bytes()).is_some());
    if !named {
        return serde_json::from_slice(bytes);
    }
    let mut value: Value = serde_json::from_slice(bytes)?;
    numbers_for_names(&mut value)?;
    serde_json::from_value(value)
}

/// Replaces every enum value given by name with its number, in place.
fn numbers_for_names(value: &mut Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if let Value::String(name) = field {
                    if let Some((_, prefix, names)) = ENUMS.iter().find(|(k, _, _)| k == key) {
                        *field = Value::from(number(name, prefix, names)?);
                        continue;
                    }
                }
                numbers_for_names(field)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                numbers_for_names(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn number(name: &str, prefix: &str, names: &[&str]) -> Result<usize, serde_json::Error> {
    name.strip_prefix(prefix)
        .and_then(|short| names.iter().position(|n| *n == short))
        .ok_or_else(|| {
            serde_json::Error::custom(format!(
                "unknown enum value {name:?}: expected a number or one of {}",
                names
                    .iter()
                    .map(|n| format!("{prefix}{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    use super::from_slice;

    const SPAN: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"handle","kind":KIND,"status":{"code":CODE}}]}]}]}"#;

    fn span(kind: &str, code: &str) -> Result<ExportTraceServiceRequest, serde_json::Error> {
        from_slice(SPAN.replace("KIND", kind).replace("CODE", code).as_bytes())
    }

    #[test]
    fn span_kinds_and_status_codes_read_by_name_or_by_number_alike() {
        for (kind, code) in [
            ("2", "2"),
            (r#""SPAN_KIND_SERVER""#, r#""STATUS_CODE_ERROR""#),
        ] {
            let request = span(kind, code).unwrap();
            let span = &request.resource_spans[0].scope_spans[0].spans[0];
            assert_eq!(
                (span.kind, span.status.as_ref().map(|s| s.code)),
                (2, Some(2))
            );
        }
        let error = span(r#""SPAN_KIND_SERVERLESS""#, "0")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SPAN_KIND_SERVERLESS") && error.contains("SPAN_KIND_CONSUMER"),
            "{error}"
        );
    }

    /// An attribute whose value is an enum's name stays text: only enum fields change.
    #[test]
    fn text_that_looks_like_an_enum_name_elsewhere_is_left_alone() {
        let json = SPAN.replace("KIND", r#""SPAN_KIND_CLIENT""#).replace("CODE", "0").replace(
            r#""name":"handle""#,
            r#""name":"SPAN_KIND_CLIENT","attributes":[{"key":"kind","value":{"stringValue":"STATUS_CODE_OK"}}]"#,
        );
        let request: ExportTraceServiceRequest = from_slice(json.as_bytes()).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.name.as_str()), (3, "SPAN_KIND_CLIENT"));
        let value = span.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref());
        assert!(format!("{value:?}").contains("STATUS_CODE_OK"), "{value:?}");
    }

    #[test]
    fn temporality_and_severity_read_by_name() {
        let metrics: ExportMetricsServiceRequest = from_slice(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,"dataPoints":[{"asInt":"3"}]}}]}]}]}"#,
        )
        .unwrap();
        let data = &metrics.resource_metrics[0].scope_metrics[0].metrics[0].data;
        assert!(matches!(data, Some(Data::Sum(sum)) if sum.aggregation_temporality == 2));
        let logs: ExportLogsServiceRequest = from_slice(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_WARN2","severityText":"WARN"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            logs.resource_logs[0].scope_logs[0].log_records[0].severity_number,
            14
        );
    }
}
