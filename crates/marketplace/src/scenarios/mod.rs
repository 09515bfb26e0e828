//! The validation plan's six scenarios (its section 3), defined once: each starts its own
//! nodes with the [`Launcher`] it is given — [`InProcess`] (a memory mesh in this
//! process) or the CLI's node processes over TCP or QUIC — whose telemetry goes over
//! OTLP/gRPC to the receiver it is given, runs the plan's operations, and checks what the
//! receiver got — never command output. The crate's tests assert that every check passed
//! and snapshot [`Run::traces`]; the CLI's validation turns the checks into its report.
//!
//! Every scenario uses its own peer ids (its own seed) and reads only the spans and metric
//! points of its own nodes, so scenarios can share one receiver, one after the other or
//! at the same time.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use p2p_otel_marketplace::scenarios::{self, InProcess};
//! use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
//!
//! let receiver = OtlpReceiver::start(Config::default()).await?;
//! let run = scenarios::publish(&InProcess::default(), &receiver).await;
//! assert!(run.passed(), "{run}");
//! # Ok(()) }
//! ```

// What the scenarios share: what a run returns (`result`), how a scenario records its
// checks and the check they all make (`checks`), what it sees of its nodes (`observed`),
// and where those run (`network`).
mod checks;
mod network;
mod observed;
mod result;
mod simulated;
mod simulation;

// The scenarios: 1–3, one operation at a time (`operations`); 4, a search across nodes
// (`distributed`); 5 and 6, misbehaving peers (`faults`); the rest of the API (`api`).
mod api;
mod distributed;
mod faults;
mod operations;

use p2p_otel_testkit::receiver::OtlpReceiver;

pub use api::lifecycle;
pub use distributed::distributed_search;
pub use faults::{silent_peer_reputation, timeout};
pub use network::{InProcess, Launcher, Network};
pub use observed::Observed;
pub use operations::{bootstrap, publish, search};
pub use result::{Check, Run, ScenarioError};
pub use simulated::{Simulated, DEFAULT_LATENCY};
pub use simulation::{digest, first_divergence, simulate, transcript, Divergence, Simulation};

use crate::{MarketplaceError, Package};

/// The `service.name` every scenario node exports under.
pub const SERVICE: &str = "ggen-p2p";

/// What the plan requires the exported OTLP-JSON traces file to contain: the root span
/// names of scenarios 1–3 and the attributes every operation carries.
pub const EXPORTED_NAMES: [&str; 6] = [
    "\"p2p_bootstrap\"",
    "\"p2p_publish\"",
    "\"p2p_search\"",
    "\"operation\"",
    "\"peer_id\"",
    "\"service.name\"",
];

/// Scenarios 1–6 and [`lifecycle`], all at once on `receiver` (each reads only its own
/// nodes), in the plan's order, their nodes started by `on`; `nodes` sizes the bootstrap
/// and the distributed search (at least 3).
pub async fn all(on: &dyn Launcher, receiver: &OtlpReceiver, nodes: usize) -> Vec<Run> {
    let (one, two, three, four, five, six, rest) = tokio::join!(
        bootstrap(on, receiver, nodes),
        publish(on, receiver),
        search(on, receiver),
        distributed_search(on, receiver, nodes),
        silent_peer_reputation(on, receiver),
        timeout(on, receiver),
        lifecycle(on, receiver),
    );
    vec![one, two, three, four, five, six, rest]
}

fn package(name: &str, title: &str) -> Result<Package, MarketplaceError> {
    Ok(Package::new(name.parse()?, "1.0.0".parse()?, title))
}
