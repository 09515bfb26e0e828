//! `node`: one reference-marketplace node as its own process — listening on TCP and QUIC,
//! its identity from a seed or a key file, exporting its telemetry over OTLP (resource:
//! `service.instance.id` = its peer id, `process.pid`), driven through a small HTTP/JSON
//! control API. SIGTERM (or Ctrl-C) stops it cleanly: the API closes, the node stops,
//! its telemetry is flushed.
//!
//! Once ready it prints one line on stdout, for whoever started it:
//! `node peer_id=12D3… control=http://127.0.0.1:PORT listen=/ip4/…/tcp/…,/ip4/…/quic-v1 pid=N`.

pub(crate) mod api;
mod control;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use p2p_otel_marketplace::{self as marketplace, Config};
use p2p_otel_testkit::libp2p::identity::Keypair;
use p2p_otel_testkit::libp2p::{Multiaddr, PeerId};
use p2p_otel_testkit::mesh::{self, Discovery, MeshError};
use p2p_otel_testkit::telemetry::{PerNode, Protocol, TelemetryError};

/// The `service.name` node processes export under, as the scenarios' nodes do.
pub const SERVICE: &str = "ggen-p2p";

/// Timings for the node: production's, or the tests' (a fast gossip heartbeat, no cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// `Config::default()`.
    Production,
    /// `Config::for_tests()`.
    Test,
}

/// What `node` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Addresses to listen on (TCP and QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// The identity: a protobuf-encoded keypair file, created if missing.
    pub key_file: Option<PathBuf>,
    /// Else, the identity derived from this seed.
    pub seed: u64,
    /// Peers to bootstrap from at start (`/ip4/…/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Where the telemetry goes: a gRPC endpoint (`http://host:4317`) or an HTTP base URL.
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol.
    pub otlp_protocol: Protocol,
    /// The control API's address.
    pub control: SocketAddr,
    /// Accept a non-loopback control address.
    pub allow_non_loopback: bool,
    /// Timings.
    pub profile: Profile,
    /// What overrides the profile's timings.
    pub overrides: Overrides,
}

/// Settings that override the profile's, for scenarios that provoke a timeout or need a
/// cache (`validate --processes` sets them as the in-process scenarios do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Kademlia query timeout.
    pub query_timeout: Option<Duration>,
    /// Remote search request timeout.
    pub request_timeout: Option<Duration>,
    /// How many peers a search asks.
    pub search_fanout: Option<usize>,
    /// How long search results are cached.
    pub cache_ttl: Option<Duration>,
    /// How often the node catches up with a peer's index (zero: never).
    pub sync_interval: Option<Duration>,
}

impl Options {
    /// The node's settings: the profile's, then the overrides.
    pub fn config(&self) -> Config {
        let base = match self.profile {
            Profile::Production => Config::default(),
            Profile::Test => Config::for_tests(),
        };
        let o = &self.overrides;
        Config {
            query_timeout: o.query_timeout.unwrap_or(base.query_timeout),
            request_timeout: o.request_timeout.unwrap_or(base.request_timeout),
            search_fanout: o.search_fanout.unwrap_or(base.search_fanout),
            cache_ttl: o.cache_ttl.unwrap_or(base.cache_ttl),
            sync_interval: o.sync_interval.unwrap_or(base.sync_interval),
            ..base
        }
    }
}

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A non-loopback control address without `--allow-non-loopback`.
    #[error("refusing to serve the control API on {0}: not a loopback address (pass --allow-non-loopback to accept other machines)")]
    NotLoopback(SocketAddr),
    /// The key file could not be read, written or decoded.
    #[error("key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The node (its swarm, its listeners) could not start.
    #[error("the node did not start: {0}")]
    Mesh(#[from] MeshError),
    /// Its telemetry could not be set up or flushed.
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    /// The control API could not bind or serve.
    #[error("control API on {address}: {source}")]
    Control {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bootstrap peer address without `/p2p/<peer id>`.
    #[error("bootstrap peer {0} does not end in /p2p/<peer id>")]
    BootstrapPeer(Multiaddr),
    /// The start-up bootstrap failed.
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] marketplace::MarketplaceError),
    /// The signal handler could not be installed.
    #[error("cannot listen for SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// The node's identity: from the key file (created with a new key if missing), else from
/// the seed.
fn keypair(options: &Options) -> Result<Option<Keypair>, NodeError> {
    let Some(path) = &options.key_file else {
        return Ok(None);
    };
    let key_error = |message: String| NodeError::KeyFile {
        path: path.clone(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map(Some)
            .map_err(|e| key_error(format!("not a protobuf-encoded keypair: {e}"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| key_error(e.to_string()))?;
            std::fs::write(path, bytes).map_err(|e| key_error(format!("cannot write: {e}")))?;
            Ok(Some(keypair))
        }
        Err(error) => Err(key_error(error.to_string())),
    }
}

fn bootstrap_peers(addrs: &[Multiaddr]) -> Result<Vec<(PeerId, Multiaddr)>, NodeError> {
    addrs
        .iter()
        .map(|addr| match addr.iter().last() {
            Some(p2p_otel_testkit::libp2p::multiaddr::Protocol::P2p(peer)) => {
                Ok((peer, addr.clone()))
            }
            _ => Err(NodeError::BootstrapPeer(addr.clone())),
        })
        .collect()
}

/// Runs the node until SIGTERM or Ctrl-C; prints its ready line to `out`.
pub async fn run(options: &Options, out: &mut impl std::io::Write) -> Result<(), NodeError> {
    if !options.allow_non_loopback && !options.control.ip().is_loopback() {
        return Err(NodeError::NotLoopback(options.control));
    }
    let bootstrap = bootstrap_peers(&options.bootstrap)?;
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(NodeError::Signal)?;
    let config = options.config();
    let telemetry = options.otlp_endpoint.as_ref().map(|endpoint| {
        PerNode::for_endpoints(options.otlp_protocol, endpoint.clone(), endpoint.clone())
            .service(SERVICE, env!("CARGO_PKG_VERSION"))
            .resource_attribute("process.pid", i64::from(std::process::id()))
    });
    let mut builder = mesh::Builder::new(1)
        .seed(options.seed)
        .listen_on(options.listen.clone())
        .discovery(Discovery::Open)
        .timeout(Duration::from_secs(10));
    if let Some(keypair) = keypair(options)? {
        builder = builder.keypair(0, keypair);
    }
    let mesh = marketplace::start_mesh(builder, config.clone(), telemetry.as_ref()).await?;
    let registry = marketplace::registry(&mesh, 0, &config)?;
    if !bootstrap.is_empty() {
        registry.bootstrap_from(bootstrap).await?;
    }
    let listener = tokio::net::TcpListener::bind(options.control)
        .await
        .map_err(|source| NodeError::Control {
            address: options.control,
            source,
        })?;
    let control = listener.local_addr().map_err(|source| NodeError::Control {
        address: options.control,
        source,
    })?;
    let listen: Vec<String> = mesh
        .listen_addrs(0)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(
        out,
        "node peer_id={} control=http://{control} listen={} pid={}",
        mesh.peer_id(0)?,
        listen.join(","),
        std::process::id()
    );
    let _ = out.flush();
    let node = Arc::new(control::Node {
        mesh,
        registry,
        telemetry,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        axum::serve(listener, control::router(Arc::clone(&node))).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
    let served = tokio::spawn(async move { server.await });
    #[cfg(unix)]
    let terminated = terminate.recv();
    #[cfg(not(unix))]
    let terminated = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop.send(());
    // Requests in flight get a few seconds; then the node stops whatever they do.
    let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    // The node's last spans (its shutdown's) are exported too.
    let telemetry = match Arc::try_unwrap(node) {
        Ok(node) => {
            node.mesh.shutdown().await;
            node.telemetry
        }
        Err(shared) => {
            if let Some(telemetry) = &shared.telemetry {
                telemetry.flush().await?;
            }
            None
        }
    };
    if let Some(telemetry) = telemetry {
        telemetry.flush().await?;
    }
    Ok(())
}
