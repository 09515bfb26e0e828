//! `validate --processes`: the scenarios' nodes as `node` processes of this binary, on
//! loopback over real TCP or QUIC, driven through their control API; the same scenarios
//! and checks as in one process. A process is killed when its scenario ends, fails or is
//! abandoned (Ctrl-C): dropping a [`NodeProcess`] kills it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::node::api;

use p2p_otel_marketplace::scenarios::{Launcher, Network, ScenarioError};
use p2p_otel_marketplace::{
    silent_peer_listening, Config, MarketplaceError, NodeCondition, Package, PackageId, Query,
    Registry, SilentPeer, Version,
};
use p2p_otel_testkit::libp2p::multiaddr::Protocol;
use p2p_otel_testkit::libp2p::{Multiaddr, PeerId};
use p2p_otel_testkit::mesh::Mesh;
use p2p_otel_testkit::process::{Control, NodeProcess, ProcessError, ProcessGroup};
use p2p_otel_testkit::receiver::OtlpReceiver;

/// The wire between node processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP with noise and yamux.
    Tcp,
    /// QUIC (TLS 1.3 built in).
    Quic,
}

impl Transport {
    /// A loopback listen address on a port the OS picks.
    pub fn listen(self) -> Multiaddr {
        let loopback = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::LOCALHOST));
        match self {
            Transport::Tcp => loopback.with(Protocol::Tcp(0)),
            Transport::Quic => loopback.with(Protocol::Udp(0)).with(Protocol::QuicV1),
        }
    }
}

/// One node process the run started, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Started {
    /// Its process id.
    pub pid: u32,
    /// Its peer id.
    pub peer_id: String,
    /// The address it listens on.
    pub listen: String,
}

/// Called with each node process once it is ready.
pub type OnStart = Box<dyn Fn(&Started) + Send + Sync>;

/// Starts scenario nodes as `binary node …` processes.
pub struct Processes {
    binary: PathBuf,
    transport: Transport,
    started: Arc<Mutex<Vec<Started>>>,
    /// Resolves once each process started has ended and been reaped.
    exits: Mutex<Vec<futures::future::BoxFuture<'static, ()>>>,
    on_start: OnStart,
    time_scale: u32,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("binary", &self.binary)
            .field("transport", &self.transport)
            .field("started", &self.started)
            .field("time_scale", &self.time_scale)
            .finish_non_exhaustive()
    }
}

/// How long a node process may take to print its ready line.
const READY: Duration = Duration::from_secs(30);

/// How long a node process may take to flush and stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Processes {
    /// A launcher of `binary`'s `node` subcommand over `transport`; `on_start` hears of
    /// each process once it is ready.
    pub fn new(binary: PathBuf, transport: Transport, on_start: OnStart) -> Self {
        Processes {
            binary,
            transport,
            started: Arc::default(),
            exits: Mutex::default(),
            on_start,
            time_scale: 1,
        }
    }

    /// Gives the nodes `factor` times the usual time (see [`Launcher::time_scale`]; 0
    /// counts as 1).
    pub fn with_time_scale(mut self, factor: u32) -> Self {
        self.time_scale = factor.max(1);
        self
    }

    /// Waits, up to `limit`, until every process started has ended and been reaped
    /// (each is killed when its scenario drops it); the pids still there after it.
    pub async fn all_ended(&self, limit: Duration) -> Vec<u32> {
        let exits = self
            .exits
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        let _ = tokio::time::timeout(limit, futures::future::join_all(exits)).await;
        self.started()
            .iter()
            .map(|s| s.pid)
            .filter(|&pid| still_running(pid))
            .collect()
    }

    /// Every process started so far, by pid.
    pub fn started(&self) -> Vec<Started> {
        let mut started = self.started.lock().map(|s| s.clone()).unwrap_or_default();
        started.sort_by_key(|s| s.pid);
        started
    }

    /// The `node` flags of a scenario node with `config`'s settings.
    fn args(&self, endpoint: &str, seed: u64, config: &Config) -> Vec<String> {
        let millis = |d: Duration| d.as_millis().to_string();
        [
            "node",
            "--listen",
            &self.transport.listen().to_string(),
            "--seed",
            &seed.to_string(),
            "--profile",
            "test",
            "--otlp-endpoint",
            endpoint,
            "--query-timeout-ms",
            &millis(config.query_timeout),
            "--request-timeout-ms",
            &millis(config.request_timeout),
            "--search-fanout",
            &config.search_fanout.to_string(),
            "--cache-ttl-ms",
            &millis(config.cache_ttl),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Notes a started process: announced, listed for the report, its end awaited.
    fn record(&self, process: &NodeProcess, node: &RemoteNode) {
        let started = Started {
            pid: process.pid(),
            peer_id: node.peer.to_string(),
            listen: node.addr.to_string(),
        };
        (self.on_start)(&started);
        if let Ok(mut exits) = self.exits.lock() {
            exits.push(Box::pin(process.exited()));
        }
        if let Ok(mut all) = self.started.lock() {
            all.push(started);
        }
    }
}

/// Whether `pid` runs (a zombie has ended: only its parent's reaping is left).
fn still_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn driver(error: impl std::error::Error + Send + Sync + 'static) -> ScenarioError {
    ScenarioError::Driver(Box::new(error))
}

/// A ready line that does not say what a driver needs.
#[derive(Debug, thiserror::Error)]
#[error("node process {pid}'s ready line lacks a usable {field}")]
struct ReadyLine {
    pid: u32,
    field: &'static str,
}

#[async_trait::async_trait]
impl Launcher for Processes {
    async fn start(
        &self,
        receiver: &OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: &Config,
    ) -> Result<Box<dyn Network>, ScenarioError> {
        let endpoint = receiver.grpc_endpoint();
        // Seeds apart per scenario: scenario 5's nodes never share an identity with
        // scenario 8's.
        let group = ProcessGroup::spawn(
            &self.binary,
            nodes,
            |i| self.args(&endpoint, seed * 1000 + i as u64, config),
            READY,
        )
        .await
        .map_err(driver)?;
        let mut remotes = Vec::new();
        for process in group.nodes() {
            let node = RemoteNode::new(process)?;
            self.record(process, &node);
            remotes.push(node);
        }
        Ok(Box::new(ProcessNetwork {
            group,
            nodes: remotes,
        }))
    }

    async fn silent_peer(
        &self,
        protocol: &'static str,
        seed: u64,
    ) -> Result<Mesh<SilentPeer>, ScenarioError> {
        Ok(silent_peer_listening(protocol, seed, vec![self.transport.listen()]).await?)
    }

    fn time_scale(&self) -> u32 {
        self.time_scale
    }
}

/// A node process's control API, as a [`Registry`].
#[derive(Debug)]
struct RemoteNode {
    control: Control,
    peer: PeerId,
    addr: Multiaddr,
}

impl RemoteNode {
    fn new(process: &NodeProcess) -> Result<Self, ScenarioError> {
        let pid = process.pid();
        let peer: PeerId = process
            .field("peer_id")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                driver(ReadyLine {
                    pid,
                    field: "peer_id",
                })
            })?;
        let addr: Multiaddr = process
            .field("listen")
            .and_then(|l| l.split(',').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                driver(ReadyLine {
                    pid,
                    field: "listen",
                })
            })?;
        Ok(RemoteNode {
            control: process.control().clone(),
            peer,
            addr,
        })
    }

    /// `POST path`; a failure is the node's own error when it sent one.
    async fn call(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<serde_json::Value, MarketplaceError> {
        self.control
            .post(path, body)
            .await
            .map_err(|error| match &error {
                ProcessError::Control {
                    answer: Some(answer),
                    ..
                } => serde_json::from_value(answer.clone())
                    .unwrap_or_else(|_| MarketplaceError::Network(error.to_string())),
                _ => MarketplaceError::Network(error.to_string()),
            })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, MarketplaceError> {
    serde_json::from_value(value.clone())
        .map_err(|e| MarketplaceError::Malformed(format!("control API answer {value}: {e}")))
}

#[async_trait::async_trait]
impl Registry for RemoteNode {
    async fn search(&self, query: &Query) -> Result<Vec<Package>, MarketplaceError> {
        let answer = self.call("/search", &api::Search::from(query)).await?;
        decode(&answer["packages"])
    }

    async fn get_package(&self, id: &PackageId) -> Result<Package, MarketplaceError> {
        let versions = self.list_versions(id).await?;
        match versions.last() {
            Some(latest) => self.get_package_version(id, latest).await,
            None => Err(MarketplaceError::NotFound(id.to_string())),
        }
    }

    async fn get_package_version(
        &self,
        id: &PackageId,
        version: &Version,
    ) -> Result<Package, MarketplaceError> {
        let body = api::IdVersion {
            id: id.to_string(),
            version: version.to_string(),
        };
        decode(&self.call("/get", &body).await?["package"])
    }

    async fn list_versions(&self, id: &PackageId) -> Result<Vec<Version>, MarketplaceError> {
        let answer = self
            .call("/list_versions", &api::Id { id: id.to_string() })
            .await?;
        decode(&answer["versions"])
    }

    async fn publish(&self, package: Package) -> Result<(), MarketplaceError> {
        let body = api::Publish::from(&package);
        self.call("/publish", &body).await.map(drop)
    }

    async fn delete(&self, id: &PackageId) -> Result<(), MarketplaceError> {
        self.call("/delete", &api::Id { id: id.to_string() })
            .await
            .map(drop)
    }

    async fn exists(&self, id: &PackageId) -> Result<bool, MarketplaceError> {
        let answer = self
            .call("/exists", &api::Id { id: id.to_string() })
            .await?;
        decode(&answer["exists"])
    }
}

/// A scenario's node processes.
#[derive(Debug)]
struct ProcessNetwork {
    group: ProcessGroup,
    nodes: Vec<RemoteNode>,
}

impl ProcessNetwork {
    fn node(&self, index: usize) -> Result<&RemoteNode, ScenarioError> {
        self.nodes
            .get(index)
            .ok_or(ScenarioError::NoSuchNode(index))
    }
}

/// `addr/p2p/peer`: what a bootstrap dials.
fn dialable(peer: &PeerId, addr: &Multiaddr) -> String {
    format!("{addr}/p2p/{peer}")
}

#[async_trait::async_trait]
impl Network for ProcessNetwork {
    fn peer_ids(&self) -> Vec<PeerId> {
        self.nodes.iter().map(|n| n.peer).collect()
    }

    fn peer(&self, node: usize) -> Result<(PeerId, Multiaddr), ScenarioError> {
        let node = self.node(node)?;
        Ok((node.peer, node.addr.clone()))
    }

    fn registry(&self, node: usize) -> Result<&dyn Registry, ScenarioError> {
        Ok(self.node(node)?)
    }

    async fn bootstrap(
        &self,
        node: usize,
        peers: Vec<(PeerId, Multiaddr)>,
    ) -> Result<usize, MarketplaceError> {
        let Some(node) = self.nodes.get(node) else {
            return Err(MarketplaceError::NodeStopped);
        };
        let peers: Vec<String> = peers
            .iter()
            .map(|(peer, addr)| dialable(peer, addr))
            .collect();
        let answer = node.call("/bootstrap", &api::Peers { peers }).await?;
        decode(&answer["connected"])
    }

    async fn connect_all(&mut self, timeout: Duration) -> Result<(), ScenarioError> {
        // Node i dials every node before it: every pair connected once, through the
        // production path (a bootstrap from addresses).
        for i in 1..self.nodes.len() {
            let earlier: Vec<String> = self.nodes[..i]
                .iter()
                .map(|n| dialable(&n.peer, &n.addr))
                .collect();
            self.nodes[i]
                .call("/bootstrap", &api::Peers { peers: earlier })
                .await?;
        }
        // A lone node has nobody to route to or mesh with.
        let ready = match self.nodes.len() {
            0 | 1 => NodeCondition::default(),
            n => NodeCondition {
                connected_peers: n - 1,
                ..NodeCondition::ready()
            },
        };
        for i in 0..self.nodes.len() {
            self.wait_for(i, &ready, timeout).await?;
        }
        Ok(())
    }

    async fn wait_for(
        &self,
        node: usize,
        condition: &NodeCondition,
        timeout: Duration,
    ) -> Result<(), ScenarioError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let body = api::Wait::new(condition, timeout_ms);
        self.node(node)?
            .control
            .post("/wait", &body)
            .await
            .map(drop)
            .map_err(driver)
    }

    async fn flush(&self) -> Result<(), ScenarioError> {
        self.group
            .post_all("/flush", &serde_json::Map::new())
            .await
            .map(drop)
            .map_err(driver)
    }

    async fn shutdown(self: Box<Self>) {
        // SIGTERM: each node flushes its last spans and stops; one that does not in time
        // is killed.
        let _ = self.group.stop(STOP_GRACE).await;
    }
}
