//! One [`Telemetry`] per node of a system under test, all exporting to one receiver: the
//! resource of each node names the service and carries the node's instance id (a mesh
//! node's peer id) as `service.instance.id`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Builder, Protocol, Telemetry, TelemetryError};
use crate::capture::done_trace;
use crate::capture::CaptureHandle;
use crate::model::{SpanId, TraceId};
use crate::receiver::OtlpReceiver;
use crate::source::{only_trace, spans_timed_out};
use crate::store::Notifier;
use crate::tree::TraceSet;
use crate::SpanSource;

/// Telemetry for every node of a mesh, created as the mesh starts each node
/// ([`mesh::Builder::telemetry_per_node`](crate::mesh::Builder::telemetry_per_node)), or
/// by hand with [`node_telemetry`](Self::node_telemetry) for nodes of any kind.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
/// use p2p_otel_testkit::telemetry::{PerNode, Protocol};
/// use p2p_otel_testkit::mesh::{self, Mesh, Passive};
///
/// let receiver = OtlpReceiver::start(Config::default()).await?;
/// let telemetry = PerNode::new(Protocol::Grpc, &receiver).service("ggen-p2p", "0.1.0");
/// let mesh = mesh::Builder::new(3)
///     .telemetry_per_node(&telemetry)
///     .start(|_| Ok((libp2p::swarm::dummy::Behaviour, Passive::default())))
///     .await?;
/// telemetry.flush().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PerNode {
    /// Every node's settings but its resource: each node's builder is a clone.
    builder: Builder,
    service_name: String,
    service_version: String,
    resource: Vec<(String, crate::model::Value)>,
    nodes: Arc<Mutex<BTreeMap<usize, Arc<Telemetry>>>>,
    /// Shared by every node's capture: a wait over all of them wakes on any change.
    changed: Arc<Notifier>,
}

impl PerNode {
    /// Telemetry exporting with `protocol` to `receiver`; service `unknown_service`
    /// until [`service`](Self::service) names it.
    pub fn new(protocol: Protocol, receiver: &OtlpReceiver) -> Self {
        let mut per_node =
            Self::for_endpoints(protocol, receiver.grpc_endpoint(), receiver.http_endpoint());
        per_node.builder.in_process = Some(receiver.shared());
        per_node
    }

    /// Telemetry exporting with `protocol` to any OTLP endpoints (a Collector, `serve` in
    /// another process): `grpc_endpoint` such as `http://127.0.0.1:4317`, `http_endpoint`
    /// a base URL such as `http://127.0.0.1:4318`.
    ///
    /// ```
    /// use p2p_otel_testkit::telemetry::{PerNode, Protocol};
    /// let telemetry = PerNode::for_endpoints(Protocol::HttpProtobuf, "http://127.0.0.1:4317", "http://127.0.0.1:4318")
    ///     .service("ggen-p2p", "0.1.0")
    ///     .resource_attribute("process.pid", i64::from(std::process::id()));
    /// # drop(telemetry);
    /// ```
    pub fn for_endpoints(
        protocol: Protocol,
        grpc_endpoint: impl Into<String>,
        http_endpoint: impl Into<String>,
    ) -> Self {
        let changed = Arc::new(Notifier::default());
        let mut builder = Telemetry::builder_for_endpoints(protocol, grpc_endpoint, http_endpoint);
        builder.capture_notifier = Some(Arc::clone(&changed));
        PerNode {
            builder,
            service_name: "unknown_service".to_owned(),
            service_version: String::new(),
            resource: Vec::new(),
            nodes: Arc::default(),
            changed,
        }
    }

    /// The `service.name` and `service.version` of every node.
    pub fn service(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.service_name = name.into();
        self.service_version = version.into();
        self
    }

    /// The instrumentation scope of every node's spans, metrics and logs (by default the
    /// kit's, `p2p-otel-testkit`): name yours, such as `scope("my-service", "1.2.0")`.
    pub fn scope(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.builder = self.builder.scope(name, version);
        self
    }

    /// The most verbose level every node captures and exports (default `INFO`).
    pub fn max_level(mut self, level: tracing::level_filters::LevelFilter) -> Self {
        self.builder = self.builder.max_level(level);
        self
    }

    /// Whether every node's exporters compress (see [`Builder::gzip`](super::Builder::gzip)).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.builder = self.builder.gzip(gzip);
        self
    }

    /// Every node's export timeout (see [`Builder::timeout`](super::Builder::timeout)).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.builder = self.builder.timeout(timeout);
        self
    }

    /// Every node's span and log queue (see
    /// [`Builder::max_queue_size`](super::Builder::max_queue_size)).
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.builder = self.builder.max_queue_size(size);
        self
    }

    /// How many span exports every node keeps in flight (see
    /// [`Builder::max_concurrent_exports`](super::Builder::max_concurrent_exports)).
    pub fn max_concurrent_exports(mut self, exports: usize) -> Self {
        self.builder = self.builder.max_concurrent_exports(exports);
        self
    }

    /// Every node's spans stamped from tokio's clock counted from `origin` (see
    /// [`Builder::virtual_time`](super::Builder::virtual_time)): give a simulated mesh's
    /// start.
    pub fn virtual_time(mut self, origin: tokio::time::Instant) -> Self {
        self.builder = self.builder.virtual_time(origin);
        self
    }

    /// Every node's trace and span ids drawn from `seed`, one stream per node (see
    /// [`Builder::ids_from_seed`](super::Builder::ids_from_seed)).
    pub fn ids_from_seed(mut self, seed: u64) -> Self {
        self.builder = self.builder.ids_from_seed(seed);
        self
    }

    /// A resource attribute every node carries besides the service and its instance id
    /// (`deployment.environment`, a region…).
    pub fn resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<crate::model::Value>,
    ) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<Telemetry>>> {
        crate::store::lock(&self.nodes)
    }

    /// Node `index`'s telemetry, created on first use (a restarted node keeps its own).
    pub fn node_telemetry(
        &self,
        index: usize,
        instance_id: &str,
    ) -> Result<Arc<Telemetry>, TelemetryError> {
        if let Some(existing) = self.nodes().get(&index) {
            return Ok(Arc::clone(existing));
        }
        let telemetry = Arc::new(self.node_builder(index, instance_id).build()?);
        self.nodes().insert(index, Arc::clone(&telemetry));
        Ok(telemetry)
    }

    /// A node's builder: every setting of this `PerNode`, and the node's instance id.
    fn node_builder(&self, index: usize, instance_id: &str) -> Builder {
        let mut builder = self.builder.clone();
        if let Some(seed) = builder.id_seed {
            // One stream per node: the node's ids do not depend on what others drew.
            let node = crate::splitmix::SplitMix64::new(index as u64).next_u64();
            builder = builder.ids_from_seed(seed ^ node);
        }
        let mut builder = builder
            .resource_attribute("service.name", self.service_name.clone())
            .resource_attribute("service.version", self.service_version.clone())
            .resource_attribute("service.instance.id", instance_id.to_owned());
        for (key, value) in &self.resource {
            builder = builder.resource_attribute(key.clone(), value.clone());
        }
        builder
    }

    /// Moved to [`mesh::Builder::telemetry_per_node`](crate::mesh::Builder::telemetry_per_node).
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// use p2p_otel_testkit::telemetry::{PerNode, Protocol};
    /// let telemetry = PerNode::for_endpoints(Protocol::Grpc, "http://127.0.0.1:4317", "http://127.0.0.1:4318");
    /// let builder = p2p_otel_testkit::mesh::Builder::new(3).dispatch_per_node(telemetry.dispatch_factory());
    /// # drop(builder);
    /// ```
    #[cfg(feature = "mesh")]
    #[deprecated(since = "0.2.0", note = "use `mesh::Builder::telemetry_per_node`")]
    pub fn dispatch_factory(
        &self,
    ) -> impl Fn(usize, libp2p::PeerId) -> Result<tracing::Dispatch, crate::mesh::MeshError>
           + Send
           + Sync
           + 'static {
        let this = self.clone();
        move |index, peer| {
            this.node_telemetry(index, &peer.to_string())
                .map(|node| node.dispatch().clone())
                .map_err(|e| crate::mesh::MeshError::Build {
                    index,
                    source: crate::mesh::cause(e),
                })
        }
    }

    /// Render settings that name every node created so far by its index, `[node N]`,
    /// wherever its instance id appears: ids in node order, gaps left unnamed.
    pub fn render_settings(&self) -> crate::tree::RenderSettings {
        let nodes = self.nodes();
        let last = nodes.keys().next_back().copied().map_or(0, |i| i + 1);
        let ids = (0..last).map(|index| {
            nodes
                .get(&index)
                .and_then(|t| t.instance_id())
                .unwrap_or_default()
        });
        crate::tree::RenderSettings::default().nodes(ids.collect::<Vec<_>>())
    }

    /// Node `index`'s meter, once its telemetry exists.
    pub fn meter(&self, index: usize) -> Option<opentelemetry::metrics::Meter> {
        self.nodes().get(&index).map(|t| t.meter())
    }

    /// Node `index`'s telemetry, once it exists.
    pub fn get(&self, index: usize) -> Option<Arc<Telemetry>> {
        self.nodes().get(&index).cloned()
    }

    /// Waits until a trace holding a span named `name` is done on every node — complete,
    /// and no span of it still open on any node (a handler whose span closes after the
    /// caller has its answer included) — then flushes every node and waits until
    /// `receiver` (or any [`SpanSource`] fed by these nodes) holds each of that trace's
    /// spans. Returns the trace as the receiver has it, nodes named. Nothing is counted:
    /// the nodes' in-process captures say when the trace is done.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
    /// use p2p_otel_testkit::telemetry::{PerNode, Protocol};
    ///
    /// let receiver = OtlpReceiver::start(Config::default()).await?;
    /// let telemetry = PerNode::new(Protocol::Grpc, &receiver);
    /// let caller = telemetry.node_telemetry(0, "node-a")?;
    /// let handler = telemetry.node_telemetry(1, "node-b")?;
    /// let call = tracing::dispatcher::with_default(caller.dispatch(), || tracing::info_span!("call"));
    /// let context = p2p_otel_testkit::propagation::TraceContext::of(&call);
    /// drop(call);
    /// tracing::dispatcher::with_default(handler.dispatch(), || {
    ///     let span = tracing::info_span!("handle");
    ///     p2p_otel_testkit::propagation::set_parent(&span, &context).map(|()| drop(span))
    /// })?;
    /// let trace = telemetry.wait_for_distributed_trace("call", &receiver, Duration::from_secs(10)).await?;
    /// assert_eq!(trace.span_count(), 2);
    /// # receiver.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_distributed_trace(
        &self,
        name: &str,
        receiver: &impl SpanSource,
        timeout: std::time::Duration,
    ) -> Result<TraceSet, TelemetryError> {
        let started = std::time::Instant::now();
        let expected = format!("a trace with a span named {name:?}, done on every node");
        let captured = self
            .changed
            .wait_until(
                timeout,
                || {
                    let captures = self.captures();
                    let set = TraceSet::new(captures.iter().flat_map(CaptureHandle::spans));
                    let id = done_trace(&captures, &set, name)?;
                    Some(only_trace(&set, Some(id)))
                },
                || {
                    let spans = self
                        .captures()
                        .iter()
                        .flat_map(CaptureHandle::spans)
                        .collect();
                    spans_timed_out(&expected, timeout, spans, Some(self.render_settings()))
                },
            )
            .await?;
        self.flush().await?;
        let wanted: std::collections::HashSet<(TraceId, SpanId)> = captured
            .spans()
            .map(|span| (span.record().trace_id, span.record().span_id))
            .collect();
        let trace_id = captured.traces().first().map(|trace| trace.trace_id());
        let count = wanted.len();
        let arrived = receiver
            .wait_until(
                &format!("the {count} span(s) of that trace the nodes captured"),
                timeout.saturating_sub(started.elapsed()),
                |spans| {
                    // Distinct spans: a source that keeps duplicates cannot end it early.
                    let held: std::collections::HashSet<(TraceId, SpanId)> = spans
                        .iter()
                        .map(|span| (span.trace_id, span.span_id))
                        .filter(|id| wanted.contains(id))
                        .collect();
                    held.len() >= count
                },
            )
            .await?;
        Ok(only_trace(&arrived, trace_id).with_render_settings(self.render_settings()))
    }

    /// Every node's in-process capture, in node order.
    fn captures(&self) -> Vec<CaptureHandle> {
        self.nodes()
            .values()
            .map(|node| node.capture().clone())
            .collect()
    }

    /// Flushes every node's spans, metrics and logs to the receiver.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let nodes: Vec<Arc<Telemetry>> = self.nodes().values().cloned().collect();
        for node in nodes {
            node.flush().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every setting given to `PerNode` reaches each node's builder; unset ones keep the
    /// builder's defaults.
    #[test]
    fn every_setting_reaches_each_nodes_builder() {
        let per_node = PerNode::for_endpoints(
            Protocol::HttpJson,
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
        )
        .service("svc", "2.0.0")
        .scope("scope", "3.0.0")
        .max_level(tracing::level_filters::LevelFilter::DEBUG)
        .gzip(false)
        .timeout(Duration::from_millis(1234))
        .max_queue_size(77)
        .max_concurrent_exports(3)
        .resource_attribute("region", "eu");
        let builder = per_node.node_builder(7, "node-7");
        assert!(!builder.gzip);
        assert_eq!(builder.timeout, Duration::from_millis(1234));
        assert_eq!(builder.max_queue_size, 77);
        assert_eq!(builder.max_concurrent_exports, 3);
        assert_eq!(
            builder.max_level,
            tracing::level_filters::LevelFilter::DEBUG
        );
        assert_eq!(
            (builder.scope.as_str(), builder.scope_version.as_str()),
            ("scope", "3.0.0")
        );
        for (key, value) in [
            ("service.name", "svc"),
            ("service.version", "2.0.0"),
            ("service.instance.id", "node-7"),
            ("region", "eu"),
        ] {
            assert!(
                builder
                    .resource
                    .iter()
                    .any(|(k, v)| k == key && *v == crate::model::Value::from(value)),
                "{key} = {value} missing from {:?}",
                builder.resource
            );
        }

        let defaults =
            PerNode::for_endpoints(Protocol::Grpc, "http://127.0.0.1:1", "http://127.0.0.1:2")
                .node_builder(0, "node-0");
        let plain = Telemetry::builder_for_endpoints(
            Protocol::Grpc,
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
        );
        assert_eq!(
            (
                defaults.gzip,
                defaults.timeout,
                defaults.max_queue_size,
                defaults.max_concurrent_exports
            ),
            (
                plain.gzip,
                plain.timeout,
                plain.max_queue_size,
                plain.max_concurrent_exports
            )
        );
    }
}
