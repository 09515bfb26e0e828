//! Scenario nodes on a simulated network: the memory mesh of [`InProcess`](super::InProcess)
//! with a latency on every connection, libp2p's timers and the telemetry's clock on
//! tokio's paused clock, ids and peer ids drawn from one seed, and telemetry handed to
//! the receiver in process — so a whole validation runs in virtual time and the same seed
//! replays it span for span.

use std::time::Duration;

use p2p_otel_testkit::mesh::{Link, LinkStats, Mesh};
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::telemetry::{PerNode, Protocol};

use super::network::{memory_mesh, LinkRecord, MemoryNetwork};
use super::{Launcher, Network, ScenarioError, SERVICE};
use crate::{silent::silent_on, Config, SilentPeer, WallClock};

/// The one-way latency of every simulated connection unless [`Simulated::latency`] says
/// otherwise.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(20);

/// Nodes in this process on a simulated network, for a runtime whose clock is paused
/// (`start_paused`, current thread): every memory connection delays what it carries by a
/// one-way latency in virtual time, libp2p's timers and every span are on tokio's clock
/// (the workspace patches `futures-timer` and `web-time`), peer ids and trace ids come
/// from the run's seed mixed with each scenario's, the nodes read the time of day from
/// the virtual time line ([`WallClock::Virtual`]), and each flush hands the receiver the
/// nodes' telemetry in process ([`Protocol::InProcess`]). Scenario 5's two-second
/// timeout is two virtual seconds and no wall time.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use p2p_otel_marketplace::scenarios::{self, Simulated};
/// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
///
/// let runtime = tokio::runtime::Builder::new_current_thread()
///     .enable_all()
///     .start_paused(true)
///     .build()?;
/// runtime.block_on(async {
///     let receiver = OtlpReceiver::start(Config::default()).await?;
///     let run = scenarios::publish(&Simulated::new(7), &receiver).await;
///     assert!(run.passed(), "{run}");
///     Ok(())
/// })
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Simulated {
    seed: u64,
    link: Link,
    origin: tokio::time::Instant,
    links: LinkRecord,
}

impl Simulated {
    /// A simulated network for the run `seed`, its virtual time starting now (create it
    /// inside the paused runtime, before the first scenario).
    pub fn new(seed: u64) -> Self {
        Simulated {
            seed,
            link: Link::new(DEFAULT_LATENCY),
            origin: tokio::time::Instant::now(),
            links: LinkRecord::default(),
        }
    }

    /// Every connection's one-way latency (default [`DEFAULT_LATENCY`]), without jitter,
    /// bandwidth limit or loss.
    pub fn latency(self, one_way: Duration) -> Self {
        self.link(Link::new(one_way))
    }

    /// Every connection behaves as `link` (latency, jitter, bandwidth, loss), its random
    /// draws from the run's seed.
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What the links of each scenario's mesh carried — segments, bytes, retransmissions
    /// and the digest of every delivery — by the mesh's seed, for the meshes shut down so
    /// far.
    pub fn link_stats(&self) -> Vec<(u64, LinkStats)> {
        let mut stats = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        stats.sort_by_key(|(seed, stats)| (*seed, stats.deliveries_digest));
        stats
    }

    /// A scenario's seed mixed with the run's: another run seed, other peer ids.
    fn mixed(&self, scenario_seed: u64) -> u64 {
        scenario_seed
            ^ self
                .seed
                .rotate_left(17)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

#[async_trait::async_trait]
impl Launcher for Simulated {
    async fn start(
        &self,
        receiver: &OtlpReceiver,
        nodes: usize,
        seed: u64,
        config: &Config,
    ) -> Result<Box<dyn Network>, ScenarioError> {
        let seed = self.mixed(seed);
        let telemetry = PerNode::new(Protocol::InProcess, receiver)
            .service(SERVICE, env!("CARGO_PKG_VERSION"))
            .virtual_time(self.origin)
            .ids_from_seed(seed);
        let mesh = memory_mesh(nodes, seed).link(self.link);
        let config = Config {
            wall_clock: WallClock::Virtual(self.origin),
            ..config.clone()
        };
        let network = MemoryNetwork::start(mesh, telemetry, &config).await?;
        Ok(Box::new(
            network.recording_links(seed, std::sync::Arc::clone(&self.links)),
        ))
    }

    async fn silent_peer(
        &self,
        protocol: &'static str,
        seed: u64,
    ) -> Result<Mesh<SilentPeer>, ScenarioError> {
        let mesh = memory_mesh(1, self.mixed(seed)).link(self.link);
        Ok(silent_on(protocol, mesh).await?)
    }
}
