//! What a scenario returns: its [`Run`] — every [`Check`] with its evidence, and the
//! trace(s) it is about — or, when it could not go on, a [`ScenarioError`], which becomes
//! a failed check of the run.

use std::fmt;

use p2p_otel_testkit::mesh::MeshError;
use p2p_otel_testkit::telemetry::TelemetryError;
use p2p_otel_testkit::tree::TraceSet;
use p2p_otel_testkit::WaitError;

use crate::MarketplaceError;

/// Why a scenario could not go on; it becomes a failed check of its [`Run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The mesh or a node failed.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// Telemetry could not be built or flushed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// What the scenario waited for never came.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A marketplace call the scenario's set-up depends on failed.
    #[error(transparent)]
    Marketplace(#[from] MarketplaceError),
    /// The scenario asked for a node its network does not have.
    #[error("there is no node {0}")]
    NoSuchNode(usize),
    /// Whatever drives the nodes (a launcher of node processes, say) failed.
    #[error("the nodes' driver: {0}")]
    Driver(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One checked expectation, with what was observed: a scenario's, and (with the plan's
/// section beside it) each of the CLI validation's criteria.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was observed.
    pub evidence: String,
}

impl Check {
    /// `name` checked: whether it `passed`, and the `evidence` that decided it.
    pub fn new(name: impl Into<String>, passed: bool, evidence: impl fmt::Display) -> Self {
        Check {
            name: name.into(),
            passed,
            evidence: evidence.to_string(),
        }
    }
}

/// What one scenario did and found.
#[derive(Clone, Debug)]
pub struct Run {
    /// The plan's name for it, such as `scenario 2: publish`.
    pub scenario: &'static str,
    /// The plan's section of success criteria it belongs to ("9.3" or "9.4").
    pub section: &'static str,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The trace(s) the scenario is about, for snapshots and reports.
    pub traces: TraceSet,
}

impl Run {
    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The evidence of every check, failed ones first, on one line each.
    pub fn evidence(&self) -> String {
        let mut checks: Vec<&Check> = self.checks.iter().collect();
        checks.sort_by_key(|c| c.passed);
        checks
            .iter()
            .map(|c| {
                let mark = if c.passed { "ok" } else { "FAILED" };
                format!("{mark}: {}: {}", c.name, c.evidence)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The rendering scenario snapshots use: nodes named `[node N]`, children of
    /// concurrent spans (gossip receivers, remote handlers on other nodes) ordered by name.
    pub fn render(&self) -> String {
        self.traces.render()
    }
}

/// Prints the checks and the rendered traces, so `assert!(run.passed(), "{run}")` shows
/// everything a failure needs.
impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ({}):", self.scenario, self.section)?;
        writeln!(f, "{}", self.evidence())?;
        write!(f, "traces:\n{}", self.render())
    }
}
