//! What a scenario sees of its nodes: [`Observed`] drives the nodes a [`Launcher`]
//! started and reads, of the receiver they all export to, only their own spans and metric
//! points; with the helpers that read spans and the receiver's counters.

use std::collections::BTreeSet;
use std::time::Duration;

use libp2p::PeerId;
use p2p_otel_testkit::model::{MetricPoint, SpanRecord, Value};
use p2p_otel_testkit::receiver::{Counter, OtlpReceiver};
use p2p_otel_testkit::tree::{ChildOrder, RenderSettings, SpanRef, TraceSet};
use p2p_otel_testkit::SpanSource;

use super::{InProcess, Launcher, Network, ScenarioError, SERVICE};
use crate::{Config, MarketplaceError, NodeCondition, Registry};

/// How long a scenario waits for a network state or for telemetry. Generous: a wait
/// ends at the notification, and only a failure waits this long — so a busy machine
/// slows a run down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

/// A scenario's nodes — started by a [`Launcher`], all exporting to one receiver — and
/// what the scenario reads of that receiver: only the spans and metric points of its own
/// nodes (by `service.instance.id`).
#[derive(Debug)]
pub struct Observed<'r> {
    /// Where the nodes export to.
    pub receiver: &'r OtlpReceiver,
    network: Box<dyn Network>,
    instances: BTreeSet<String>,
    /// How long a wait for healthy nodes may take: [`WAIT`] times the launcher's scale.
    patience: Duration,
}

impl<'r> Observed<'r> {
    /// Starts `nodes` marketplace nodes in this process (keys from `seed`) exporting to
    /// `receiver`.
    pub async fn start(
        receiver: &'r OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: Config,
    ) -> Result<Observed<'r>, ScenarioError> {
        Observed::start_on(&InProcess::default(), receiver, nodes, seed, config).await
    }

    /// Starts `nodes` nodes with `launcher` (keys from `seed`) exporting to `receiver`.
    pub async fn start_on(
        launcher: &dyn Launcher,
        receiver: &'r OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: Config,
    ) -> Result<Observed<'r>, ScenarioError> {
        let network = launcher.start(receiver, nodes, seed, &config).await?;
        let instances = network.peer_ids().iter().map(ToString::to_string).collect();
        Ok(Observed {
            receiver,
            network,
            instances,
            patience: WAIT * launcher.time_scale(),
        })
    }

    /// Connects every node to every other and waits for routing entries and gossip
    /// meshes.
    pub async fn ready(&mut self) -> Result<(), ScenarioError> {
        self.network.connect_all(self.patience).await
    }

    /// Node `index`'s registry.
    pub fn node(&self, index: usize) -> Result<&dyn Registry, ScenarioError> {
        self.network.registry(index)
    }

    /// Node `index` bootstraps from `peers`; the number it connected to.
    pub async fn bootstrap(
        &self,
        index: usize,
        peers: Vec<(PeerId, libp2p::Multiaddr)>,
    ) -> Result<usize, MarketplaceError> {
        self.network.bootstrap(index, peers).await
    }

    /// Node `index`'s peer id and address, for bootstrapping from it.
    pub fn peer(&self, index: usize) -> Result<(PeerId, libp2p::Multiaddr), ScenarioError> {
        self.network.peer(index)
    }

    /// Node `index`'s peer id.
    pub fn peer_id(&self, index: usize) -> Result<PeerId, ScenarioError> {
        Ok(self.network.peer(index)?.0)
    }

    /// Waits until each of `nodes` satisfies `condition`.
    pub async fn wait_for(
        &self,
        nodes: &[usize],
        condition: &NodeCondition,
    ) -> Result<(), ScenarioError> {
        for &node in nodes {
            self.network
                .wait_for(node, condition, self.patience)
                .await?;
        }
        Ok(())
    }

    /// Exports every node's buffered telemetry now.
    pub async fn flush(&self) -> Result<(), ScenarioError> {
        self.network.flush().await
    }

    fn is_mine(&self, attribute: Option<&Value>) -> bool {
        matches!(attribute, Some(Value::Str(id)) if self.instances.contains(id))
    }

    fn mine(&self, spans: &[SpanRecord]) -> Vec<SpanRecord> {
        spans
            .iter()
            .filter(|span| self.is_mine(span.attribute("service.instance.id")))
            .cloned()
            .collect()
    }

    /// Flushes every node's telemetry, then waits until `condition` holds over the spans
    /// of this scenario's nodes; returns them.
    pub async fn wait(
        &self,
        expected: &str,
        mut condition: impl FnMut(&[SpanRecord]) -> bool + Send,
    ) -> Result<TraceSet, ScenarioError> {
        self.flush().await?;
        let all = self
            .receiver
            .wait_until(expected, self.patience, |spans| {
                condition(&self.mine(spans))
            })
            .await?;
        let spans: Vec<SpanRecord> = all.spans().map(|s| s.record().clone()).collect();
        Ok(self.set(self.mine(&spans)))
    }

    /// Render settings naming the nodes `[node 0]`, `[node 1]`, … by peer id, with
    /// concurrent children (gossip receivers, remote handlers) ordered by name.
    pub fn render_settings(&self) -> RenderSettings {
        RenderSettings::default()
            .nodes(self.network.peer_ids())
            .redact_key("process.pid")
            .child_order(ChildOrder::Name)
    }

    /// `spans` as trees that render, and fail, with this scenario's node names.
    pub fn set(&self, spans: impl IntoIterator<Item = SpanRecord>) -> TraceSet {
        TraceSet::new(spans).with_render_settings(self.render_settings())
    }

    /// Flushes, then waits for a complete trace of these nodes holding a span named
    /// `name`; returns that trace alone.
    pub async fn trace_of(&self, name: &str) -> Result<TraceSet, ScenarioError> {
        let complete = |set: &TraceSet| {
            set.traces()
                .iter()
                .find(|t| t.is_complete() && t.spans().any(|s| s.name() == name))
                .map(|t| self.set(t.spans().map(|s| s.record().clone())))
        };
        let mine = self
            .wait(
                &format!("a complete trace with a span named {name:?}"),
                |spans| complete(&TraceSet::new(spans.to_vec())).is_some(),
            )
            .await?;
        Ok(complete(&mine).unwrap_or(mine))
    }

    /// The points of metric `name` from these nodes.
    pub fn metric_points_named(&self, name: &str) -> Vec<MetricPoint> {
        self.receiver
            .metric_points_named(name)
            .into_iter()
            .filter(|p| self.is_mine(p.attribute("service.instance.id")))
            .collect()
    }

    /// Waits until these nodes exported a point of `name` satisfying `condition`.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        mut condition: impl FnMut(&MetricPoint) -> bool,
    ) -> Result<Vec<MetricPoint>, ScenarioError> {
        self.flush().await?;
        Ok(self
            .receiver
            .wait_for_metric(name, self.patience, |p| {
                self.is_mine(p.attribute("service.instance.id")) && condition(p)
            })
            .await?)
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        self.network.shutdown().await;
    }
}

pub(super) fn records<'a>(spans: impl Iterator<Item = SpanRef<'a>>) -> Vec<SpanRecord> {
    spans.map(|s| s.record().clone()).collect()
}

/// The receiver's accepted-span count for the scenarios' service.
pub(super) fn accepted(receiver: &OtlpReceiver) -> u64 {
    receiver.counter(Counter::AcceptedSpans, Some(SERVICE))
}
