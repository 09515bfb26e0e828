//! Metric data points in the model: one [`MetricPoint`] per OTLP data point, carrying its
//! metric's name, kind, temporality, resource and scope, so a test can query points
//! directly by name and attributes.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, NumberDataPoint, ResourceMetrics,
};
use serde::{Deserialize, Serialize};

use super::otlp::attributes_from_otlp;
use super::{Attributes, Resource, Scope, SpanId, TraceId};

/// How a metric aggregates over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    /// Not given (gauges).
    Unspecified,
    /// Each point covers the time since the previous one.
    Delta,
    /// Each point covers the time since a fixed start.
    Cumulative,
}

impl Temporality {
    fn from_otlp(value: i32) -> Self {
        match value {
            1 => Temporality::Delta,
            2 => Temporality::Cumulative,
            _ => Temporality::Unspecified,
        }
    }
}

/// The kind of metric a point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A sum (counter or up-down counter).
    Sum {
        /// Whether the sum only grows (a counter).
        monotonic: bool,
    },
    /// A gauge: the last value observed.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
    /// An exponential histogram.
    ExponentialHistogram,
    /// A summary (legacy, quantiles).
    Summary,
}

/// The value of one data point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointValue {
    /// An integer sum or gauge value.
    Int(i64),
    /// A floating-point sum or gauge value.
    Double(f64),
    /// A histogram (explicit or exponential buckets, or a summary): count, sum and bounds.
    Distribution {
        /// How many measurements.
        count: u64,
        /// Their sum, when recorded.
        sum: Option<f64>,
        /// The smallest, when recorded.
        min: Option<f64>,
        /// The largest, when recorded.
        max: Option<f64>,
        /// Explicit bucket bounds (empty for exponential histograms and summaries).
        bounds: Vec<f64>,
        /// Counts per bucket; for exponential histograms, the positive buckets.
        bucket_counts: Vec<u64>,
    },
}

impl PointValue {
    /// The value as a number: an int or double, or a distribution's sum.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PointValue::Int(i) => Some(*i as f64),
            PointValue::Double(d) => Some(*d),
            PointValue::Distribution { sum, .. } => *sum,
        }
    }

    /// A distribution's count of measurements.
    pub fn count(&self) -> Option<u64> {
        match self {
            PointValue::Distribution { count, .. } => Some(*count),
            _ => None,
        }
    }
}

/// One data point of one metric, with everything needed to query it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The metric name.
    pub name: String,
    /// The metric's description.
    pub description: String,
    /// The metric's unit.
    pub unit: String,
    /// Sum, gauge, histogram…
    pub kind: MetricKind,
    /// Delta or cumulative.
    pub temporality: Temporality,
    /// The point's attributes (labels).
    pub attributes: Attributes,
    /// The value.
    pub value: PointValue,
    /// Start of the aggregation window, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When the point was taken, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// The producing resource.
    pub resource: Arc<Resource>,
    /// The instrumentation scope.
    pub scope: Arc<Scope>,
}

impl MetricPoint {
    /// An attribute of the point or, failing that, of its resource.
    pub fn attribute(&self, key: &str) -> Option<&super::Value> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
    }
}

pub(super) fn scope_from_otlp(scope: Option<&InstrumentationScope>) -> Arc<Scope> {
    Arc::new(
        scope
            .map(|scope| Scope {
                name: scope.name.clone(),
                version: scope.version.clone(),
                attributes: attributes_from_otlp(&scope.attributes),
            })
            .unwrap_or_default(),
    )
}

pub(super) fn resource_from_otlp(
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Arc<Resource> {
    Arc::new(Resource::from_otlp(resource.cloned()))
}

/// Checks the ids metric data points carry (their exemplars' trace and span ids) as
/// strictly as a span's: empty or all zeroes mean "no span", any other length than 16
/// and 8 bytes is an error naming the metric and the point.
pub fn check_metric_ids(resource_metrics: &[ResourceMetrics]) -> Result<(), super::ModelError> {
    use opentelemetry_proto::tonic::metrics::v1::Exemplar;
    for (r, rm) in resource_metrics.iter().enumerate() {
        for (s, sm) in rm.scope_metrics.iter().enumerate() {
            for m in &sm.metrics {
                let exemplars: Vec<&[Exemplar]> = match &m.data {
                    Some(metric::Data::Sum(sum)) => {
                        sum.data_points.iter().map(|p| &p.exemplars[..]).collect()
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        gauge.data_points.iter().map(|p| &p.exemplars[..]).collect()
                    }
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| &p.exemplars[..]).collect()
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().map(|p| &p.exemplars[..]).collect()
                    }
                    Some(metric::Data::Summary(_)) | None => Vec::new(),
                };
                for (point, exemplars) in exemplars.into_iter().enumerate() {
                    for exemplar in exemplars {
                        let checked =
                            super::logs::optional_id(&exemplar.trace_id, TraceId::from_slice)
                                .and_then(|_| {
                                    super::logs::optional_id(&exemplar.span_id, SpanId::from_slice)
                                });
                        if let Err(source) = checked {
                            return Err(super::ModelError::InvalidExemplar {
                                metric: m.name.clone(),
                                resource: r,
                                scope: s,
                                point,
                                source: Box::new(source),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Flattens OTLP `ResourceMetrics` into one [`MetricPoint`] per data point. Metrics with
/// no data are skipped (they carry no point); nothing else is.
pub fn metric_points_from_otlp(resource_metrics: &[ResourceMetrics]) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for rm in resource_metrics {
        let resource = resource_from_otlp(rm.resource.as_ref());
        for sm in &rm.scope_metrics {
            let scope = scope_from_otlp(sm.scope.as_ref());
            for m in &sm.metrics {
                let point = |kind, temporality, attributes, value, start, time| MetricPoint {
                    name: m.name.clone(),
                    description: m.description.clone(),
                    unit: m.unit.clone(),
                    kind,
                    temporality,
                    attributes,
                    value,
                    start_unix_nanos: start,
                    time_unix_nanos: time,
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                };
                let number = |p: &NumberDataPoint| match p.value {
                    Some(number_data_point::Value::AsInt(i)) => PointValue::Int(i),
                    Some(number_data_point::Value::AsDouble(d)) => PointValue::Double(d),
                    None => PointValue::Double(f64::NAN),
                };
                match &m.data {
                    Some(metric::Data::Sum(sum)) => {
                        let kind = MetricKind::Sum {
                            monotonic: sum.is_monotonic,
                        };
                        let temporality = Temporality::from_otlp(sum.aggregation_temporality);
                        out.extend(sum.data_points.iter().map(|p| {
                            point(
                                kind,
                                temporality,
                                attributes_from_otlp(&p.attributes),
                                number(p),
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            )
                        }));
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        out.extend(gauge.data_points.iter().map(|p| {
                            point(
                                MetricKind::Gauge,
                                Temporality::Unspecified,
                                attributes_from_otlp(&p.attributes),
                                number(p),
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            )
                        }));
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        let temporality = Temporality::from_otlp(histogram.aggregation_temporality);
                        out.extend(histogram.data_points.iter().map(|p| {
                            point(
                                MetricKind::Histogram,
                                temporality,
                                attributes_from_otlp(&p.attributes),
                                PointValue::Distribution {
                                    count: p.count,
                                    sum: p.sum,
                                    min: p.min,
                                    max: p.max,
                                    bounds: p.explicit_bounds.clone(),
                                    bucket_counts: p.bucket_counts.clone(),
                                },
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            )
                        }));
                    }
                    Some(metric::Data::ExponentialHistogram(histogram)) => {
                        let temporality = Temporality::from_otlp(histogram.aggregation_temporality);
                        out.extend(histogram.data_points.iter().map(|p| {
                            point(
                                MetricKind::ExponentialHistogram,
                                temporality,
                                attributes_from_otlp(&p.attributes),
                                PointValue::Distribution {
                                    count: p.count,
                                    sum: p.sum,
                                    min: p.min,
                                    max: p.max,
                                    bounds: Vec::new(),
                                    bucket_counts: p
                                        .positive
                                        .as_ref()
                                        .map(|b| b.bucket_counts.clone())
                                        .unwrap_or_default(),
                                },
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            )
                        }));
                    }
                    Some(metric::Data::Summary(summary)) => {
                        out.extend(summary.data_points.iter().map(|p| {
                            point(
                                MetricKind::Summary,
                                Temporality::Unspecified,
                                attributes_from_otlp(&p.attributes),
                                PointValue::Distribution {
                                    count: p.count,
                                    sum: Some(p.sum),
                                    min: None,
                                    max: None,
                                    bounds: Vec::new(),
                                    bucket_counts: Vec::new(),
                                },
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                            )
                        }));
                    }
                    None => {}
                }
            }
        }
    }
    out
}
