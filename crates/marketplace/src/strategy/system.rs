//! The reference marketplace as the kit's sequence harness drives it: a mesh whose nodes
//! export over OTLP, each operation of [`Operation`] run on its node, its outcome checked
//! against the [`Model`], and the root span it must leave.

use std::time::Duration;

use p2p_otel_testkit::mesh::{self, Mesh, MeshError, Security, Topology};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::strategy::invariants::Executed;
use p2p_otel_testkit::strategy::sequence::System;
use p2p_otel_testkit::telemetry::{PerNode, Protocol};
use p2p_otel_testkit::tree::RenderSettings;
use p2p_otel_testkit::CaptureHandle;

use super::{node_of, package_of, Model, Operation, Outcome};
use crate::{Config, MarketplaceError, P2PRegistry, Package, Registry, RegistryNode};

/// How long mesh changes (restart, partition, heal, readiness) may take.
/// Generous: a wait ends at the notification, and only a failure waits this long — so a
/// busy machine slows a run down instead of failing it.
const WAIT: Duration = Duration::from_secs(30);

/// A marketplace mesh under a generated sequence.
#[derive(Debug)]
pub struct MeshSystem {
    telemetry: PerNode,
    mesh: Mesh<RegistryNode>,
    nodes: Vec<P2PRegistry>,
    config: Config,
    model: Model,
}

impl MeshSystem {
    /// `nodes` fully connected marketplace nodes (keys from `seed`, plaintext), exporting
    /// over OTLP/gRPC to `receiver`, ready for writes.
    pub async fn start(
        receiver: &OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: Config,
    ) -> Result<MeshSystem, MeshError> {
        let telemetry =
            PerNode::new(Protocol::Grpc, receiver).service("ggen-p2p", env!("CARGO_PKG_VERSION"));
        let builder = mesh::Builder::new(nodes)
            .seed(seed)
            .security(Security::Plaintext);
        let mut mesh = crate::start_mesh(builder, config.clone(), Some(&telemetry)).await?;
        mesh.connect_topology(Topology::Full, WAIT).await?;
        crate::wait_ready(&mesh, WAIT).await?;
        let registries = (0..nodes)
            .map(|i| crate::registry(&mesh, i, &config))
            .collect::<Result<_, _>>()?;
        Ok(MeshSystem {
            telemetry,
            mesh,
            nodes: registries,
            config,
            model: Model::new(nodes),
        })
    }

    /// Render settings naming the nodes `[node N]`.
    pub fn render_settings(&self) -> RenderSettings {
        self.mesh.render_settings()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        self.mesh.shutdown().await;
    }
}

/// The root span an operation leaves, by name.
fn root_of(operation: &Operation) -> Option<&'static str> {
    Some(match operation {
        Operation::Publish { .. } => "p2p_publish",
        Operation::Search { .. } => "p2p_search",
        Operation::Get { .. } => "p2p_get",
        Operation::ListVersions { .. } => "p2p_list_versions",
        Operation::Exists { .. } => "p2p_exists",
        Operation::Delete { .. } => "p2p_delete",
        Operation::Bootstrap { .. } => "p2p_bootstrap",
        Operation::Kill { .. }
        | Operation::Restart { .. }
        | Operation::Partition { .. }
        | Operation::Heal => return None,
    })
}

impl System for MeshSystem {
    type Operation = Operation;
    type Outcome = Outcome;

    async fn run(&mut self, operation: &Operation) -> Outcome {
        execute(self, operation).await
    }

    fn check(&mut self, operation: &Operation, outcome: &Outcome) -> Result<(), String> {
        self.model.apply(operation, outcome)
    }

    fn expected_root(&self, operation: &Operation, outcome: &Outcome) -> Option<Executed> {
        let node = node_of(operation)? % self.nodes.len();
        // A call to a stopped node leaves nothing (the model has it stopped all along).
        if !self.model.alive(node) {
            return None;
        }
        Some(Executed {
            instance: self.mesh.peer_id(node).ok()?.to_string(),
            root: root_of(operation)?,
            failed: outcome.is_err(),
        })
    }

    async fn flush(&self) -> Result<(), String> {
        self.telemetry.flush().await.map_err(|e| e.to_string())
    }

    fn captures(&self) -> Vec<CaptureHandle> {
        (0..self.nodes.len())
            .filter_map(|i| self.telemetry.get(i))
            .map(|t| t.capture().clone())
            .collect()
    }
}

/// A stopped node's answer is `Stopped`, whatever the call; any other result is `wrap`ped.
fn or_stopped<T>(
    result: Result<T, MarketplaceError>,
    wrap: impl FnOnce(Result<T, MarketplaceError>) -> Outcome,
) -> Outcome {
    match result {
        Err(MarketplaceError::NodeStopped) => Outcome::Stopped(MarketplaceError::NodeStopped),
        other => wrap(other),
    }
}

/// A write's outcome: `Unit`, its error as text.
fn unit(result: Result<(), MarketplaceError>) -> Outcome {
    Outcome::Unit(result.map_err(|e| e.to_string()))
}

/// Runs one operation, returning its outcome.
async fn execute(r: &mut MeshSystem, operation: &Operation) -> Outcome {
    match package_for(operation) {
        Ok(package) => execute_with(r, operation, package).await,
        Err(error) => Outcome::Unit(Err(error.to_string())),
    }
}

/// The package id and version an operation names (minor 0 when it names no version).
fn package_for(
    operation: &Operation,
) -> Result<Option<(crate::PackageId, crate::Version)>, MarketplaceError> {
    match operation {
        Operation::Publish { package, minor, .. } | Operation::Get { package, minor, .. } => {
            package_of(*package, *minor).map(Some)
        }
        Operation::Delete { package, .. }
        | Operation::ListVersions { package, .. }
        | Operation::Exists { package, .. } => package_of(*package, 0).map(Some),
        _ => Ok(None),
    }
}

async fn execute_with(
    r: &mut MeshSystem,
    operation: &Operation,
    package: Option<(crate::PackageId, crate::Version)>,
) -> Outcome {
    let nodes = r.nodes.len();
    let node = |n: &usize| n % nodes;
    match (operation, package) {
        (Operation::Publish { node: n, .. }, Some((id, version))) => or_stopped(
            r.nodes[node(n)]
                .publish(Package::new(id, version, "generated"))
                .await,
            unit,
        ),
        (Operation::Delete { node: n, .. }, Some((id, _))) => {
            or_stopped(r.nodes[node(n)].delete(&id).await, unit)
        }
        (Operation::Search { node: n, query }, _) => {
            or_stopped(r.nodes[node(n)].search(query).await, Outcome::Hits)
        }
        (Operation::Get { node: n, .. }, Some((id, version))) => or_stopped(
            r.nodes[node(n)].get_package_version(&id, &version).await,
            Outcome::Package,
        ),
        (Operation::ListVersions { node: n, .. }, Some((id, _))) => {
            or_stopped(r.nodes[node(n)].list_versions(&id).await, Outcome::Versions)
        }
        (Operation::Exists { node: n, .. }, Some((id, _))) => {
            or_stopped(r.nodes[node(n)].exists(&id).await, Outcome::Exists)
        }
        (Operation::Bootstrap { node: n }, _) => {
            let peers = (0..nodes)
                .filter(|&i| i != node(n) && r.mesh.is_alive(i))
                .filter_map(|i| Some((r.mesh.peer_id(i).ok()?, r.mesh.addr(i).ok()?)))
                .collect();
            or_stopped(
                r.nodes[node(n)].bootstrap_from(peers).await,
                Outcome::Bootstrap,
            )
        }
        (Operation::Kill { node: n }, _) => {
            Outcome::Unit(r.mesh.kill(node(n)).await.map_err(|e| e.to_string()))
        }
        (Operation::Restart { node: n }, _) => {
            let result = r
                .mesh
                .restart(node(n), WAIT)
                .await
                .map_err(|e| e.to_string());
            if let Ok(handle) = crate::registry(&r.mesh, node(n), &r.config) {
                r.nodes[node(n)] = handle;
            }
            Outcome::Unit(result)
        }
        (Operation::Partition { node: n }, _) => {
            let isolated = [node(n)];
            let others: Vec<usize> = (0..nodes).filter(|&i| i != node(n)).collect();
            Outcome::Unit(
                r.mesh
                    .partition(&[&isolated, &others], WAIT)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }
        (Operation::Heal, _) => Outcome::Unit(r.mesh.heal(WAIT).await.map_err(|e| e.to_string())),
        // package_for names a package for every operation that needs one.
        (_, None) => Outcome::Unit(Err("no package for this operation".to_owned())),
    }
}
