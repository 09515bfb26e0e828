//! One capture per node of a system under test — no exporter, no receiver — each node's
//! spans carrying its instance id (a mesh node's peer id) as `service.instance.id`, all
//! read and awaited together.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::Dispatch;

use super::{Builder, CaptureHandle};
use crate::model::{SpanRecord, Value};
use crate::source::SpanSource;
use crate::store::{lock, Notifier, WaitError};
use crate::tree::{RenderSettings, TraceSet};

/// A capture for every node of a mesh, created as the mesh starts each node
/// ([`mesh::Builder::capture_per_node`](crate::mesh::Builder::capture_per_node)), or by
/// hand with [`node_dispatch`](Self::node_dispatch) for nodes of any kind.
///
/// Each node gets its own dispatch from a [`Builder`] (by default `INFO`, with
/// [`opentelemetry_layer`](Builder::opentelemetry_layer) on, so remote parents made with
/// the standard OpenTelemetry API show); its spans carry `service.name` and the node's
/// `service.instance.id`. It is a [`SpanSource`] over every node at once: a wait wakes on
/// a span closing on any node.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use p2p_otel_testkit::{capture, mesh::{self, Passive}, SpanSource};
///
/// let captures = capture::PerNode::new().service("my-service", "1.0.0");
/// let mesh = mesh::Builder::new(2)
///     .capture_per_node(&captures)
///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
///     .await?;
/// tracing::dispatcher::with_default(&captures.dispatch(1).unwrap(), || {
///     tracing::info_span!("work").in_scope(|| {});
/// });
/// let traces = captures.wait_for_span_named("work", Duration::from_secs(5)).await?;
/// assert!(traces.render().contains("service.instance.id = [node 1]"), "{traces}");
/// mesh.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PerNode {
    builder: Builder,
    service: Option<(String, String)>,
    nodes: Arc<Mutex<BTreeMap<usize, NodeCapture>>>,
    changed: Arc<Notifier>,
}

#[derive(Clone, Debug)]
struct NodeCapture {
    instance_id: String,
    dispatch: Dispatch,
    handle: CaptureHandle,
}

impl Default for PerNode {
    fn default() -> Self {
        PerNode::new()
    }
}

impl PerNode {
    /// Captures at `INFO` and above, with tracing-opentelemetry's layer in each node's
    /// dispatch.
    pub fn new() -> Self {
        PerNode::with_builder(Builder::default().opentelemetry_layer(true))
    }

    /// Captures made from `builder` (its level, targets, scope, resource, busy/idle
    /// timing, OpenTelemetry layer), one per node.
    ///
    /// ```
    /// use p2p_otel_testkit::capture;
    /// use tracing::level_filters::LevelFilter;
    /// let captures = capture::PerNode::with_builder(
    ///     capture::Builder::default().max_level(LevelFilter::DEBUG).opentelemetry_layer(false),
    /// );
    /// # drop(captures);
    /// ```
    pub fn with_builder(builder: Builder) -> Self {
        let changed = Arc::new(Notifier::default());
        PerNode {
            builder: builder.notifier(Arc::clone(&changed)),
            service: None,
            nodes: Arc::default(),
            changed,
        }
    }

    /// The `service.name` and `service.version` of every node's spans.
    pub fn service(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.service = Some((name.into(), version.into()));
        self
    }

    fn nodes(&self) -> MutexGuard<'_, BTreeMap<usize, NodeCapture>> {
        lock(&self.nodes)
    }

    /// Node `index`'s dispatch and capture, created on first use with `instance_id` as
    /// its `service.instance.id` (a restarted node keeps its own).
    pub fn node_dispatch(&self, index: usize, instance_id: &str) -> (Dispatch, CaptureHandle) {
        let mut nodes = self.nodes();
        let node = nodes.entry(index).or_insert_with(|| {
            let mut builder = self.builder.clone();
            if let Some((name, version)) = &self.service {
                builder = builder
                    .resource_attribute("service.name", name.clone())
                    .resource_attribute("service.version", version.clone());
            }
            let (dispatch, handle) = builder
                .resource_attribute("service.instance.id", Value::from(instance_id))
                .dispatch();
            NodeCapture {
                instance_id: instance_id.to_owned(),
                dispatch,
                handle,
            }
        });
        (node.dispatch.clone(), node.handle.clone())
    }

    /// Node `index`'s capture, once the node exists.
    pub fn get(&self, index: usize) -> Option<CaptureHandle> {
        self.nodes().get(&index).map(|node| node.handle.clone())
    }

    /// Node `index`'s dispatch, once the node exists: run a task as that node with
    /// `tracing::dispatcher::with_default` or `WithSubscriber`.
    pub fn dispatch(&self, index: usize) -> Option<Dispatch> {
        self.nodes().get(&index).map(|node| node.dispatch.clone())
    }

    /// Waits until a trace holding a span named `name` is done on every node: no span of
    /// it points at a parent no node captured, and no node still has a span of it open —
    /// the handler on the far node included, whose span may close after the caller already
    /// has its answer. Returns that trace alone, its nodes named. Nothing is counted:
    /// unlike [`SpanSource::wait_for_complete_trace`], which returns as soon as the spans
    /// that closed have no missing parent, this waits for the other nodes' spans too.
    ///
    /// What it cannot see is a message still on its way to a node whose span has not
    /// opened yet (a fire-and-forget gossip announcement): wait for that span by name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), p2p_otel_testkit::WaitError> {
    /// use std::time::Duration;
    /// let captures = p2p_otel_testkit::capture::PerNode::new();
    /// let (caller, _) = captures.node_dispatch(0, "node-a");
    /// let (handler, _) = captures.node_dispatch(1, "node-b");
    /// let call = tracing::dispatcher::with_default(&caller, || tracing::info_span!("call"));
    /// let context = p2p_otel_testkit::propagation::TraceContext::of(&call);
    /// drop(call); // the caller is done; the handler is still working
    /// let handle = tracing::dispatcher::with_default(&handler, || {
    ///     let span = tracing::info_span!("handle");
    ///     p2p_otel_testkit::propagation::set_parent(&span, &context).map(|()| span)
    /// })
    /// .expect("a valid context");
    /// let done = captures.wait_for_distributed_trace("call", Duration::from_millis(50));
    /// assert!(done.await.is_err(), "the handler's span is still open on node 1");
    /// drop(handle);
    /// let trace = captures.wait_for_distributed_trace("call", Duration::from_secs(5)).await?;
    /// assert_eq!(trace.span_count(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_distributed_trace(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<TraceSet, WaitError> {
        let expected = format!("a trace with a span named {name:?}, done on every node");
        let all = self
            .wait_until(&expected, timeout, |spans| {
                self.done_trace(&TraceSet::new(spans.to_vec()), name)
                    .is_some()
            })
            .await?;
        let id = self.done_trace(&all, name);
        Ok(crate::source::only_trace(&all, id).with_render_settings(self.render_settings()))
    }

    /// The first trace of `set` holding a span named `name` that is complete and has no
    /// span open on any node. A handler's span learns its remote parent's trace from
    /// OpenTelemetry, which the capture hears of only when the span closes: so an open
    /// handler root (server or consumer kind, no local parent) that started after the
    /// trace began counts as open in it.
    fn done_trace(&self, set: &TraceSet, name: &str) -> Option<crate::model::TraceId> {
        done_trace(&self.handles(), set, name)
    }

    /// Every node's capture, in node order.
    pub fn handles(&self) -> Vec<CaptureHandle> {
        self.nodes()
            .values()
            .map(|node| node.handle.clone())
            .collect()
    }

    /// Render settings that name every node created so far by its index, `[node N]`,
    /// wherever its instance id appears: ids in node order, gaps left unnamed.
    pub fn render_settings(&self) -> RenderSettings {
        let nodes = self.nodes();
        let last = nodes.keys().next_back().copied().map_or(0, |i| i + 1);
        let ids = (0..last).map(|index| {
            nodes
                .get(&index)
                .map(|node| node.instance_id.clone())
                .unwrap_or_default()
        });
        RenderSettings::default().nodes(ids.collect::<Vec<_>>())
    }

    /// Every closed span of every node, one line each in the order they began: start and
    /// end in Unix nanoseconds, the node (`[node N]`), the name and the kind. Times are
    /// kept, so two runs of a simulation — captures in virtual time
    /// ([`Builder::virtual_time`](super::Builder::virtual_time)) — compare byte for byte.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use p2p_otel_testkit::{capture, SpanCaptureLayer};
    /// let origin = tokio::time::Instant::now();
    /// let captures = capture::PerNode::with_builder(SpanCaptureLayer::builder().virtual_time(origin));
    /// let (dispatch, _) = captures.node_dispatch(0, "node-a");
    /// tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("tick").in_scope(|| {}));
    /// assert_eq!(captures.timeline(), "1767225600005000000 1767225600005000000 [node 0] tick internal\n");
    /// # }
    /// ```
    pub fn timeline(&self) -> String {
        TraceSet::new(self.all_spans())
            .with_render_settings(self.render_settings())
            .timeline()
    }

    /// Forgets every node's closed spans (open spans stay tracked).
    pub fn clear(&self) {
        for handle in self.handles() {
            handle.clear();
        }
    }

    fn all_spans(&self) -> Vec<SpanRecord> {
        self.handles()
            .iter()
            .flat_map(CaptureHandle::spans)
            .collect()
    }
}

/// The first trace of `set` holding a span named `name` that is complete and has no span
/// open on any of `captures` (see [`PerNode::wait_for_distributed_trace`]).
pub(crate) fn done_trace(
    captures: &[CaptureHandle],
    set: &TraceSet,
    name: &str,
) -> Option<crate::model::TraceId> {
    let open: Vec<(crate::model::TraceId, Option<u64>)> = captures
        .iter()
        .flat_map(CaptureHandle::open_for_barrier)
        .collect();
    crate::source::complete_trace_with(set, name, |trace| {
        let began = trace.spans().map(|s| s.record().start_unix_nanos).min();
        !open.iter().any(|(id, handler_start)| {
            *id == trace.trace_id()
                || handler_start
                    .zip(began)
                    .is_some_and(|(start, began)| start >= began)
        })
    })
}

impl SpanSource for PerNode {
    /// Every node's closed spans, node by node.
    fn spans(&self) -> Vec<SpanRecord> {
        self.all_spans()
    }

    /// Every node's spans as trace trees, rendered with the nodes named.
    fn traces(&self) -> TraceSet {
        TraceSet::new(self.all_spans()).with_render_settings(self.render_settings())
    }

    fn wait_until<'a>(
        &'a self,
        expected: &'a str,
        timeout: Duration,
        mut condition: impl FnMut(&[SpanRecord]) -> bool + Send + 'a,
    ) -> impl std::future::Future<Output = Result<TraceSet, WaitError>> + Send + 'a {
        self.changed.wait_until(
            timeout,
            move || {
                let spans = self.all_spans();
                condition(&spans)
                    .then(|| TraceSet::new(spans).with_render_settings(self.render_settings()))
            },
            move || {
                crate::source::spans_timed_out(
                    expected,
                    timeout,
                    self.all_spans(),
                    Some(self.render_settings()),
                )
            },
        )
    }
}
