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
