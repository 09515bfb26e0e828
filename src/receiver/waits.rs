//! Waiting for what a test needs: each wait re-checks its condition on every change to
//! the store — never a poll — and fails at its timeout with what did arrive.

use std::time::Duration;

use super::OtlpReceiver;
use crate::model::{LogRecord, MetricPoint, SpanRecord, TraceId};
use crate::source::SpanSource;
use crate::store::WaitError;
use crate::tree::TraceSet;

impl OtlpReceiver {
    /// Waits until at least `count` spans are stored, and returns how many there are,
    /// without copying them: the cheap wait for throughput-sensitive code.
    pub async fn wait_for_span_count(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        self.shared
            .spans
            .wait_until(&format!("{count} span(s)"), timeout, |store| {
                let stored = store.len();
                (stored >= count).then_some(stored)
            })
            .await
    }

    /// Waits until some data point of metric `name` satisfies `condition`; returns every
    /// point of that metric that does.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        timeout: Duration,
        mut condition: impl FnMut(&MetricPoint) -> bool,
    ) -> Result<Vec<MetricPoint>, WaitError> {
        self.shared
            .metrics
            .wait_until(
                "metric point(s)",
                &format!("a point of metric {name:?} that satisfies the condition"),
                timeout,
                |points| {
                    let found: Vec<MetricPoint> = points
                        .iter()
                        .filter(|point| point.name == name && condition(point))
                        .cloned()
                        .collect();
                    (!found.is_empty()).then_some(found)
                },
                describe_metrics,
            )
            .await
    }

    /// Waits until at least `count` log records have arrived.
    pub async fn wait_for_log_records(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<LogRecord>, WaitError> {
        self.shared
            .logs
            .wait_until(
                "log record(s)",
                &format!("{count} log record(s)"),
                timeout,
                |records| (records.len() >= count).then(|| records.to_vec()),
                |records| {
                    records
                        .iter()
                        .map(|r| {
                            let body = r.body.as_ref().map(ToString::to_string).unwrap_or_default();
                            format!("  {} {body}\n", r.severity_text)
                        })
                        .collect()
                },
            )
            .await
    }
}

impl SpanSource for OtlpReceiver {
    fn spans(&self) -> Vec<SpanRecord> {
        OtlpReceiver::spans(self)
    }

    /// Copies the store on every change to test `condition`: fine for a test's spans; for
    /// a large store, [`OtlpReceiver::wait_for_span_count`] and
    /// [`SpanSource::wait_for_complete_trace`] cost only what changed.
    fn wait_until<'a>(
        &'a self,
        expected: &'a str,
        timeout: Duration,
        mut condition: impl FnMut(&[SpanRecord]) -> bool + Send + 'a,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        self.shared
            .spans
            .wait_until(expected, timeout, move |store| {
                let spans = store.spans();
                condition(&spans).then(|| TraceSet::new(spans))
            })
    }

    /// Looks only at the traces each request touched, through the store's index.
    fn wait_for_complete_trace<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        let mut watch = self.watch_traces();
        let mut pending: Vec<TraceId> = self.trace_ids();
        let expected = format!("a complete trace with a span named {name:?}");
        async move {
            let check = |ids: &[TraceId]| {
                ids.iter().find_map(|id| {
                    let trace = self.trace(*id);
                    trace
                        .traces()
                        .iter()
                        .any(|t| t.is_complete() && t.spans().any(|span| span.name() == name))
                        .then_some(trace)
                })
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Some(found) = check(&pending) {
                    return Ok(found);
                }
                match tokio::time::timeout_at(deadline, watch.changed()).await {
                    Ok(touched) => pending = touched,
                    Err(_) => {
                        let spans = self.spans();
                        return Err(WaitError::Timeout {
                            expected,
                            waited: timeout,
                            arrived: spans.len(),
                            unit: "span(s)",
                            rendered: TraceSet::new(spans).render(),
                        });
                    }
                }
            }
        }
    }
}

/// Metric names with their point counts, for wait timeouts.
fn describe_metrics(points: &[MetricPoint]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for point in points {
        *counts.entry(point.name.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, count)| format!("  {name}: {count} point(s)\n"))
        .collect()
}
