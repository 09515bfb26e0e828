//! The end-to-end validation behind `cargo run --release`: the original plan's validation
//! script (start the collector, check health, clear the output, run the scenarios, verify
//! what was exported, report) done without Docker in a few seconds (about 2.4 s in a
//! release build, scenario 5 waiting out a 2 s request timeout).

mod forward;
mod processes;
mod reports;
mod scenarios;
mod testnet;

pub use forward::Forwarding;
pub use processes::Transport;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use p2p_otel_marketplace::scenarios::{
    digest, transcript, Check, InProcess, Launcher, Simulated, DEFAULT_LATENCY,
};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};

/// What the validation run was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Nodes in the mesh (at least 3).
    pub nodes: usize,
    /// Output folder (recreated).
    pub out: PathBuf,
    /// Also forward everything received to these external collectors (each gets it all).
    pub otlp_endpoint: Vec<String>,
    /// How: OTLP/gRPC or OTLP/HTTP.
    pub otlp_protocol: Forwarding,
    /// Run every node as its own process of this binary (`node`), over this transport.
    pub processes: Option<Transport>,
    /// Drive a testnet's nodes, started elsewhere, instead of starting any.
    pub nodes_from: Option<NodeList>,
    /// How many times the usual time healthy nodes are given (see
    /// [`Launcher::time_scale`]); at least 1.
    pub time_scale: u32,
    /// The embedded receiver's gRPC and HTTP addresses (port 0: the OS picks).
    pub receiver_addrs: (SocketAddr, SocketAddr),
    /// Accept non-loopback receiver addresses.
    pub allow_non_loopback: bool,
    /// Run the scenarios on a simulated network in virtual time with this seed (see
    /// [`Simulated`]); `run` must then be on a paused current-thread runtime.
    pub simulate: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            out: PathBuf::from("target/p2p-otel-validation"),
            otlp_endpoint: Vec::new(),
            otlp_protocol: Forwarding::Grpc,
            processes: None,
            nodes_from: None,
            time_scale: 1,
            receiver_addrs: (
                SocketAddr::from(([127, 0, 0, 1], 0)),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            ),
            allow_non_loopback: false,
            simulate: None,
        }
    }
}

/// A node process of the run, and what it exported.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessRow {
    /// Its process id.
    pub pid: u32,
    /// Its peer id.
    pub peer_id: String,
    /// The address it listened on.
    pub listen: String,
    /// Spans received from it (by `process.pid`).
    pub spans: usize,
    /// Metric points received from it.
    pub metric_points: usize,
}

/// One success criterion of the plan: its section, and the check with its evidence
/// (the marketplace's [`Check`], which a scenario's checks are too).
#[derive(Clone, Debug, Serialize)]
pub struct Criterion {
    /// The plan's section, e.g. "9.3".
    pub section: &'static str,
    /// What was checked, whether it holds, and what was observed.
    #[serde(flatten)]
    pub check: Check,
}

impl Criterion {
    /// Section `section`'s `name`, checked.
    pub fn new(
        section: &'static str,
        name: impl Into<String>,
        passed: bool,
        evidence: impl std::fmt::Display,
    ) -> Self {
        Criterion {
            section,
            check: Check::new(name, passed, evidence),
        }
    }
}

impl std::ops::Deref for Criterion {
    type Target = Check;
    fn deref(&self) -> &Check {
        &self.check
    }
}

/// The outcome of a validation run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Criterion>,
    /// Spans received, by service.
    pub spans_by_service: std::collections::BTreeMap<String, u64>,
    /// The node processes, with `--processes`: a row per process.
    pub processes: Vec<ProcessRow>,
    /// Wall time of the run, milliseconds.
    pub duration_ms: u128,
    /// The rendered trace trees.
    pub traces: String,
    /// The contract check: findings and coverage in Weaver live-check's shape.
    pub contract: serde_json::Value,
    /// The contract check as text (findings, then coverage per group).
    #[serde(skip)]
    pub contract_text: String,
    /// The contract check's groups as JUnit test cases.
    #[serde(skip)]
    pub contract_junit: Option<p2p_otel_testkit::junit::TestSuite>,
    /// With `--simulate`: the seed, the transcript's digest, virtual and wall time.
    pub simulation: Option<SimulationSummary>,
}

/// What a simulated run reports besides its checks.
#[derive(Clone, Debug, Serialize)]
pub struct SimulationSummary {
    /// The seed.
    pub seed: u64,
    /// SHA-256 of the run's transcript (every rendering, span time and id, metric
    /// point): the same for every run of the seed.
    pub digest: String,
    /// Virtual time the scenarios took, milliseconds.
    pub virtual_ms: u128,
    /// Wall time of the run, milliseconds.
    pub wall_ms: u128,
    /// The transcript the digest is of (written to `transcript.txt`).
    #[serde(skip)]
    pub transcript: String,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Errors that stop the run before a report exists.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The output folder could not be prepared or written.
    #[error("output folder {path}: {source}")]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The receiver could not start.
    #[error(transparent)]
    Receiver(#[from] receiver::ReceiverError),
    /// This binary's path, which node processes run, is unknown.
    #[error("cannot find this binary to start node processes: {0}")]
    Binary(#[source] std::io::Error),
    /// A receiver address that is not loopback, without the flag that allows it.
    #[error("refusing to bind the receiver on {0}: not a loopback address (pass --allow-non-loopback for nodes on other machines)")]
    NotLoopback(SocketAddr),
    /// The node list could not be read.
    #[error("cannot read the node list from {list}: {source}")]
    ReadNodeList {
        /// Where it was read from.
        list: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node list is not a list of control endpoints.
    #[error("node list {list}: {message}")]
    NodeList {
        /// Where it was read from.
        list: String,
        /// What is wrong, with the line.
        message: String,
    },
    /// Interrupted (Ctrl-C, SIGTERM) before the report: every node process was stopped.
    #[error("interrupted: no report written; node processes still running: {left:?}")]
    Interrupted {
        /// Node processes that did not end in time (none, normally).
        left: Vec<u32>,
    },
}

fn output(path: &Path) -> impl Fn(std::io::Error) -> ValidateError + '_ {
    move |source| ValidateError::Output {
        path: path.to_owned(),
        source,
    }
}

/// The least share of each declared span and metric group (the signal and its
/// attributes) the scenarios must show.
const COVERAGE_PER_GROUP: f64 = 0.5;

/// What the scenarios gave: the checks, a row per node process, and a simulation's
/// transcript with the virtual time its scenarios took.
type Exercised = (Vec<Criterion>, Vec<ProcessRow>, Option<(String, Duration)>);

/// Scenarios 1–6 on nodes in this process, or on node processes with `--processes`, or
/// simulated with `--simulate`; the checks, a row per node process, the transcript.
async fn scenarios_on_nodes(
    options: &Options,
    receiver: &OtlpReceiver,
    out: &mut impl Write,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Exercised, ValidateError> {
    let nodes = options.nodes.max(3);
    if let Some(seed) = options.simulate {
        step(
            out,
            4,
            &format!("run scenarios 1-6 on a simulated {nodes}-node network in virtual time (seed {seed}, {} ms per hop)", DEFAULT_LATENCY.as_millis()),
        );
        let simulated = Simulated::new(seed);
        let started = tokio::time::Instant::now();
        return tokio::select! {
            (checks, runs) = scenarios::run(&simulated, receiver, nodes, false) => {
                let took = started.elapsed();
                Ok((checks, Vec::new(), Some((transcript(&simulated, &runs, receiver), took))))
            }
            () = interrupted => Err(ValidateError::Interrupted { left: Vec::new() }),
        };
    }
    let launcher = match options.processes {
        Some(transport) => {
            let binary = std::env::current_exe().map_err(ValidateError::Binary)?;
            step(
                out,
                4,
                &format!("run scenarios 1-6 on node processes over {transport:?} ({nodes} in scenarios 1 and 4) exporting over OTLP"),
            );
            // Each process as it starts, so whoever runs this sees what to look for.
            let announce = Box::new(|started: &processes::Started| {
                println!(
                    "      node pid={} peer_id={} listen={}",
                    started.pid, started.peer_id, started.listen
                );
            });
            Some(
                processes::Processes::new(binary, transport, announce)
                    .with_time_scale(options.time_scale),
            )
        }
        None => {
            step(
                out,
                4,
                &format!("run scenarios 1-6 on a {nodes}-node memory mesh exporting over OTLP"),
            );
            None
        }
    };
    let in_process = InProcess::with_time_scale(options.time_scale);
    let on: &dyn Launcher = match &launcher {
        Some(processes) => processes,
        None => &in_process,
    };
    let ran = {
        let scenarios = scenarios::run(on, receiver, nodes, launcher.is_some());
        tokio::select! {
            checks = scenarios => Some(checks),
            () = interrupted => None,
        }
    };
    // The scenarios are over (or dropped, which kills their processes): wait until every
    // process is gone, so none outlives the run.
    let left = match &launcher {
        Some(processes) => processes.all_ended(PROCESSES_END_WITHIN).await,
        None => Vec::new(),
    };
    let Some((mut checks, _)) = ran else {
        return Err(ValidateError::Interrupted { left });
    };
    if !left.is_empty() {
        checks.push(Criterion::new(
            "9.2",
            "every node process ended with the run",
            false,
            format!("still running: {left:?}"),
        ));
    }
    let rows = launcher
        .as_ref()
        .map(|l| scenarios::per_process(receiver, &l.started()))
        .unwrap_or_default();
    Ok((checks, rows, None))
}

/// `--nodes-from`: the testnet's checks on nodes started elsewhere.
async fn testnet(
    list: &NodeList,
    receiver: &OtlpReceiver,
    out: &mut impl Write,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Exercised, ValidateError> {
    step(
        out,
        4,
        &format!(
            "drive the testnet's nodes listed in {list}; they (or a Collector) export to the receiver above"
        ),
    );
    let exercised = async {
        let text = list.read().await?;
        let nodes = testnet::endpoints(&text).map_err(|message| ValidateError::NodeList {
            list: list.to_string(),
            message,
        })?;
        Ok(testnet::run(receiver, nodes).await)
    };
    tokio::select! {
        checks = exercised => checks.map(|c| (c, Vec::new(), None)),
        () = interrupted => Err(ValidateError::Interrupted { left: Vec::new() }),
    }
}

/// Where `--nodes-from` reads the nodes' control endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeList {
    /// A file.
    File(PathBuf),
    /// Standard input, to its end (`-`): a driver starts the nodes once it has read the
    /// receiver's endpoint, then writes their ready lines.
    Stdin,
}

impl NodeList {
    async fn read(&self) -> Result<String, ValidateError> {
        let failed = |source| ValidateError::ReadNodeList {
            list: self.to_string(),
            source,
        };
        let list = self.clone();
        let read = tokio::task::spawn_blocking(move || match list {
            NodeList::File(path) => std::fs::read_to_string(path),
            NodeList::Stdin => std::io::read_to_string(std::io::stdin()),
        });
        match read.await {
            Ok(read) => read.map_err(failed),
            Err(joined) => Err(failed(std::io::Error::other(joined))),
        }
    }
}

impl std::fmt::Display for NodeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeList::File(path) => write!(f, "{}", path.display()),
            NodeList::Stdin => f.write_str("standard input"),
        }
    }
}

impl std::str::FromStr for NodeList {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "-" => NodeList::Stdin,
            path => NodeList::File(PathBuf::from(path)),
        })
    }
}

fn step(out: &mut impl Write, n: usize, what: &str) {
    let _ = writeln!(out, "[{n}/6] {what}");
    let _ = out.flush();
}

/// How long the run waits for its node processes to end once it stopped them.
const PROCESSES_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the validation, printing progress to `out`, and writes the reports. When
/// `interrupted` resolves first, the scenarios stop, every node process is killed and
/// reaped, and the run ends with [`ValidateError::Interrupted`].
pub async fn run(
    options: &Options,
    out: &mut impl Write,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Report, ValidateError> {
    let started = Instant::now();
    let (grpc, http) = options.receiver_addrs;
    for addr in [grpc, http] {
        if !options.allow_non_loopback && !addr.ip().is_loopback() {
            return Err(ValidateError::NotLoopback(addr));
        }
    }
    step(out, 1, "fresh output folder");
    if options.out.exists() {
        std::fs::remove_dir_all(&options.out).map_err(output(&options.out))?;
    }
    std::fs::create_dir_all(&options.out).map_err(output(&options.out))?;

    step(out, 2, "start the embedded OTLP receiver (gRPC + HTTP)");
    let otlp_dir = options.out.join("otlp");
    let receiver = OtlpReceiver::start(
        receiver::Config::default()
            .with_grpc_addr(grpc)
            .with_http_addr(http)
            .with_json_lines_dir(&otlp_dir),
    )
    .await?;
    let _ = writeln!(
        out,
        "      grpc={} http={}",
        receiver.grpc_endpoint(),
        receiver.http_endpoint()
    );

    step(out, 3, "check receiver health");
    let mut checks = vec![scenarios::health(&receiver).await];

    let exercised = match &options.nodes_from {
        Some(list) => testnet(list, &receiver, out, interrupted).await,
        None => scenarios_on_nodes(options, &receiver, out, interrupted).await,
    };
    let (ran, processes, transcript) = match exercised {
        Ok(exercised) => exercised,
        Err(error) => {
            let _ = receiver.shutdown().await;
            return Err(error);
        }
    };
    checks.extend(ran);

    step(out, 5, "verify exported telemetry");
    // A testnet's nodes have their own history: what the scenarios provoke (errors, every
    // operation) may not be there, so only the contract's violations count.
    let per_group = match options.nodes_from {
        Some(_) => None,
        None => {
            checks.extend(scenarios::verify(&receiver, &otlp_dir));
            Some(COVERAGE_PER_GROUP)
        }
    };
    let (contract_check, contract) = scenarios::contract(&receiver, per_group);
    checks.push(contract_check);
    if !options.otlp_endpoint.is_empty() {
        // Read once: every collector gets the same requests.
        let received = forward::Received::read(&otlp_dir);
        for endpoint in &options.otlp_endpoint {
            checks.push(forward::forward(endpoint, options.otlp_protocol, &received).await);
        }
    }

    step(out, 6, "report");
    let traces = receiver.traces();
    let wall = started.elapsed();
    let report = Report {
        checks,
        spans_by_service: scenarios::spans_by_service(&receiver),
        processes,
        duration_ms: wall.as_millis(),
        traces: traces.render(),
        contract: contract
            .as_ref()
            .map_or(serde_json::Value::Null, |c| c.to_json()),
        contract_text: contract
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        contract_junit: contract
            .as_ref()
            .map(|c| c.junit_suite("p2p-otel-contract")),
        simulation: options
            .simulate
            .zip(transcript)
            .map(|(seed, (transcript, took))| SimulationSummary {
                seed,
                digest: digest(&transcript),
                virtual_ms: took.as_millis(),
                wall_ms: wall.as_millis(),
                transcript,
            }),
    };
    reports::write_all(&options.out, &report, &traces).map_err(output(&options.out))?;
    reports::terminal(&report, out);
    let _ = writeln!(out, "reports in {}", options.out.display());
    let _ = receiver.shutdown().await;
    Ok(report)
}
