//! The command line: every subcommand, option and value parser (clap), and what an
//! option's value means.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use p2p_otel_testkit::contract::Contract;
use p2p_otel_testkit::receiver::DEFAULT_SPAN_CAPACITY;

use crate::{check, node, query, validate};

/// Prove OpenTelemetry instrumentation without Docker.
///
/// Without a subcommand: run the P2P marketplace's validation in-process — embedded
/// receiver, health, scenarios 1-6 on a memory-transport mesh exporting over OTLP,
/// checks of the plan's success criteria — and write report.json, junit.xml,
/// report.md, traces.html and the OTLP-JSON files. Exit 0 only if every check passes.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) validate: ValidateArgs,
}

/// The validation run's options (with or without the `validate` subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Nodes in the validation mesh (at least 3).
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: usize,
    /// Output folder for the reports (recreated).
    #[arg(long, default_value = "target/p2p-otel-validation")]
    pub(crate) out: PathBuf,
    /// Also forward everything received to this external collector (e.g.
    /// http://127.0.0.1:4317 of a real Collector or Jaeger for gRPC, :4318 for HTTP);
    /// repeatable, each gets the same requests.
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Vec<String>,
    /// The protocol --otlp-endpoint speaks.
    #[arg(long, value_enum, default_value_t = validate::Forwarding::Grpc, requires = "otlp_endpoint")]
    pub(crate) otlp_protocol: validate::Forwarding,
    /// Run every node as its own OS process (this binary's `node`) on loopback, N nodes
    /// (3 to 64) in the bootstrap and distributed-search scenarios; the other scenarios
    /// add 13. No process outlives the run, whether it passes, fails or is interrupted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(3..=64))]
    pub(crate) processes: Option<u16>,
    /// The wire between node processes.
    #[arg(long, value_enum, default_value_t = validate::Transport::Tcp, requires = "processes")]
    pub(crate) transport: validate::Transport,
    /// Drive a testnet's nodes, started elsewhere, instead of starting any: a file with
    /// one control URL (http://host:port) or node ready line per line, or `-` for
    /// standard input (read after the receiver's endpoints are printed). The nodes, or a
    /// Collector in front of them, must export to this run's receiver (--receiver-grpc).
    #[arg(long, value_name = "FILE", conflicts_with = "processes")]
    pub(crate) nodes_from: Option<validate::NodeList>,
    /// Give healthy nodes N times the usual time: the scenarios' waits and scenario 5's
    /// request timeout, which the good peer races while the silent peer times out. For a
    /// loaded machine (a CI runner with parallel jobs, a debug build); the run takes
    /// about 2 s longer per step of N.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60), conflicts_with = "nodes_from")]
    pub(crate) time_scale: u32,
    /// Run the scenarios on a simulated network in virtual time: every node in this
    /// process, each connection delaying what it carries by 20 ms, libp2p's timers and
    /// every span on a paused clock, peer and trace ids from --seed, telemetry handed to
    /// the receiver in process. Prints `digest <hex>` (the same seed gives the same
    /// digest) and the virtual time beside the wall time: scenario 5's timeouts cost no
    /// wall time.
    #[arg(long, conflicts_with_all = ["processes", "nodes_from", "otlp_endpoint", "time_scale"])]
    pub(crate) simulate: bool,
    /// The simulation's seed.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "simulate")]
    pub(crate) seed: u64,
    /// Run the simulation twice (the second into OUT/self-check) and compare the
    /// transcripts: name the first line where the runs part, exit 1 if they do.
    #[arg(long, requires = "simulate")]
    pub(crate) self_check: bool,
    /// The embedded receiver's OTLP/gRPC address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) receiver_grpc: SocketAddr,
    /// The embedded receiver's OTLP/HTTP address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) receiver_http: SocketAddr,
    /// Accept non-loopback receiver addresses (nodes on other machines send to it).
    #[arg(long)]
    pub(crate) allow_non_loopback: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the validation (what running without a subcommand does).
    Validate(ValidateArgs),
    /// Run the embedded OTLP receiver as a local collector for other processes.
    ///
    /// Prints a line per finished trace, writes OTLP-JSON lines files, and on Ctrl-C or
    /// SIGTERM prints a summary. With --contract, checks every finished trace against
    /// the contract as it arrives, printing each new finding, and the metrics and logs
    /// at exit, with the contract's summary (and the report as JSON, Weaver
    /// live-check's shape, in <out>/contract.json). Exit codes: 0 on a signal or
    /// --exit-after-spans reached, 1 at --timeout or when a contract finding is a
    /// violation, 2 on a configuration error (busy port, non-loopback address without
    /// --allow-non-loopback, a contract that does not load).
    Serve {
        /// OTLP/gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc: SocketAddr,
        /// OTLP/HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:4318")]
        http: SocketAddr,
        /// Accept binding addresses other than loopback (other machines can then send).
        #[arg(long)]
        allow_non_loopback: bool,
        /// Folder for traces.jsonl, metrics.jsonl and logs.jsonl.
        #[arg(long, default_value = "target/otel-serve")]
        out: PathBuf,
        /// Exit 0 once this many spans arrived.
        #[arg(long)]
        exit_after_spans: Option<usize>,
        /// Exit 1, with a summary, if still running after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Most spans stored; past it requests are refused (429 / RESOURCE_EXHAUSTED with
        /// a retry delay), unless --keep-last makes room.
        #[arg(long, default_value_t = DEFAULT_SPAN_CAPACITY)]
        span_capacity: usize,
        /// Most memory the span store holds, as it estimates it: bytes, or with a suffix
        /// KiB, MiB, GiB. Past it requests are refused, unless --keep-last makes room.
        #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
        span_byte_capacity: usize,
        /// Keep only the last N traces: the oldest are evicted (and counted) to make room,
        /// for a collector that runs for days.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Seconds requests in flight may take to finish once stopping; then every
        /// connection is closed, whatever clients do.
        #[arg(long, default_value = "5", value_parser = parse_seconds)]
        shutdown_grace: Duration,
        /// Seconds a connection may stay without a byte moving either way before it is
        /// closed (0: never); exporters reconnect on their next export.
        #[arg(long, default_value = "120", value_parser = parse_seconds)]
        idle_timeout: Duration,
        /// Seconds an OTLP/HTTP client has to send a request's headers once it starts
        /// them (0: no limit).
        #[arg(long, default_value = "30", value_parser = parse_seconds)]
        header_read_timeout: Duration,
        #[command(flatten)]
        contract: ContractArgs,
    },
    /// Check OTLP-JSON lines files against a telemetry contract.
    ///
    /// Reads the kit's files (traces.jsonl, metrics.jsonl, logs.jsonl) or an
    /// OpenTelemetry Collector's `file` exporter output, checks every span, metric point
    /// and event against the contract (Weaver registry YAML), and prints the findings and
    /// the coverage. Exit codes: 0 when no finding is a violation, 1 when one is, 2 when
    /// the contract or a file cannot be read.
    Check {
        #[command(flatten)]
        contract: ContractArgs,
        /// The OTLP-JSON lines files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = check::Format::Text)]
        format: check::Format,
        /// Least share (0-1) of everything the contract declares that must be seen.
        #[arg(long, value_parser = parse_ratio)]
        min_coverage: Option<f64>,
        /// Least share (0-1) of each declared span, metric and event group.
        #[arg(long, value_parser = parse_ratio)]
        min_group_coverage: Option<f64>,
    },
    /// Run a TraceQL query over OTLP-JSON lines files.
    ///
    /// Reads the kit's traces.jsonl or an OpenTelemetry Collector's `file` exporter
    /// output and prints every matching spanset: the path from the root to each match
    /// (marked ◀), or with --format json Tempo's search response. The language is
    /// Grafana Tempo's TraceQL (filters, structural operators, pipelines), plus
    /// `span:remoteParent`. Exit codes: 0 when something matched, 1 when nothing did, 2
    /// on a bad query or an unreadable file.
    Query {
        /// The query, e.g. '{ name = "p2p_search" } >> { kind = server && status = error }'.
        query: String,
        /// The OTLP-JSON lines files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How to print what matched.
        #[arg(long, value_enum, default_value_t = query::Format::Text)]
        format: query::Format,
    },
    /// Run one reference-marketplace node as its own process.
    ///
    /// Listens on TCP and QUIC (loopback, ports the OS picks, by default), exports its
    /// telemetry over OTLP with `service.instance.id` = its peer id and `process.pid`,
    /// and serves a control API (HTTP/JSON: GET /state; POST /bootstrap, /publish,
    /// /search, /get, /list_versions, /exists, /delete, /block, /unblock). Prints
    /// `node peer_id=… control=http://… listen=… pid=…` once ready. SIGTERM stops it
    /// cleanly, flushing its telemetry. Exit code 2 when it cannot start.
    Node {
        /// A listen address; repeatable.
        #[arg(long, value_name = "MULTIADDR", default_values = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"])]
        listen: Vec<String>,
        /// The identity, a protobuf-encoded keypair (created if missing): a node restarted
        /// from it keeps its peer id.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Without --key-file, the seed the identity is derived from.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A peer to bootstrap from, `/ip4/…/tcp/…/p2p/<peer id>`; repeatable.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Where to export telemetry: `http://host:4317` for gRPC, `http://host:4318` for
        /// HTTP. Without it the node exports nothing.
        #[arg(long)]
        otlp_endpoint: Option<String>,
        /// The OTLP protocol.
        #[arg(long, value_enum, default_value_t = OtlpProtocol::Grpc)]
        otlp_protocol: OtlpProtocol,
        /// The control API's address.
        #[arg(long, default_value = "127.0.0.1:0")]
        control: SocketAddr,
        /// Accept a non-loopback control address (other machines can then drive the node).
        #[arg(long)]
        allow_non_loopback: bool,
        /// Timings: production's, or the tests' (fast gossip heartbeat, no cache).
        #[arg(long, value_enum, default_value_t = node::Profile::Production)]
        profile: node::Profile,
        /// Kademlia query timeout in milliseconds (the profile's by default: 30000).
        #[arg(long, value_name = "MS")]
        query_timeout_ms: Option<u64>,
        /// Remote search request timeout in milliseconds (the profile's by default: 10000).
        #[arg(long, value_name = "MS")]
        request_timeout_ms: Option<u64>,
        /// How many peers a search asks (the profile's by default: 3).
        #[arg(long, value_name = "N")]
        search_fanout: Option<usize>,
        /// How long search results are cached, in milliseconds (production 30000, test 0).
        #[arg(long, value_name = "MS")]
        cache_ttl_ms: Option<u64>,
        /// How often the node compares its index with a peer's and catches up on missed
        /// announcements, in milliseconds; 0 turns it off (production 10000, test 2000).
        #[arg(long, value_name = "MS")]
        sync_interval_ms: Option<u64>,
    },
    /// Telemetry contract tools.
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
}

/// OTLP's transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl From<OtlpProtocol> for p2p_otel_testkit::telemetry::Protocol {
    fn from(protocol: OtlpProtocol) -> Self {
        match protocol {
            OtlpProtocol::Grpc => Self::Grpc,
            OtlpProtocol::HttpProtobuf => Self::HttpProtobuf,
            OtlpProtocol::HttpJson => Self::HttpJson,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContractCommand {
    /// Generate production artifacts from a contract: an OpenTelemetry Collector
    /// configuration (otel-collector.yaml), Prometheus alerting rules (alerts.yaml) and a
    /// Grafana dashboard (dashboard.json). Without --contract: the reference
    /// marketplace's.
    Generate {
        /// The contract folder (default: the reference marketplace's, built in).
        #[arg(long, value_name = "DIR")]
        contract: Option<PathBuf>,
        /// Registries the contract depends on.
        #[arg(long, value_name = "DIR")]
        dependency: Vec<PathBuf>,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The tracing backend's OTLP/gRPC endpoint in the Collector configuration.
        #[arg(long, default_value = "jaeger:4317")]
        tracing_backend: String,
        /// Where the Collector's file exporter writes.
        #[arg(long, default_value = "/var/lib/otelcol/telemetry.jsonl")]
        file: String,
        /// The service name the Collector inserts when a sender gave none.
        #[arg(long, default_value = "ggen-p2p")]
        service_name: String,
        /// The dashboard's title.
        #[arg(long, default_value = "P2P marketplace")]
        title: String,
    },
    /// Draft a contract from a run's OTLP-JSON lines files (the kit's or a Collector's):
    /// a group per span name (kind, attributes with requirement levels, structure: root,
    /// parents, remote parent, children, events), per metric (instrument, unit, labels)
    /// and per log event; the registry with the types and enum values seen. The draft
    /// loads, and `check --contract` keeps it on the files it came from. Exit code 2 when
    /// a file cannot be read or the draft cannot be written.
    Infer {
        /// The folder to write the draft into (created; existing files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A registry to refer to instead of declaring its attributes again (e.g.
        /// semantic-conventions' model/).
        #[arg(long, value_name = "DIR")]
        dependency: Option<PathBuf>,
        /// The OTLP-JSON lines files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// A telemetry contract to check against.
#[derive(Debug, clap::Args)]
pub(crate) struct ContractArgs {
    /// A telemetry contract: a folder of Weaver registry YAML files.
    #[arg(long, value_name = "DIR")]
    pub(crate) contract: Option<PathBuf>,
    /// A registry the contract depends on (e.g. semantic-conventions' model/); repeatable.
    #[arg(long, value_name = "DIR", requires = "contract")]
    pub(crate) dependency: Vec<PathBuf>,
    /// Leave out Weaver's built-in advice (missing_namespace, not_stable, invalid_format,
    /// …): only what the registry's own rules find.
    #[arg(long, requires = "contract")]
    pub(crate) no_advice: bool,
}

impl ContractArgs {
    /// The contract, if one was given; an error message if it does not load.
    pub(crate) fn load(&self) -> Result<Option<Contract>, String> {
        let Some(folder) = &self.contract else {
            return Ok(None);
        };
        load_contract(folder, &self.dependency)
            .map(|contract| Some(contract.with_advice(!self.no_advice)))
    }
}

pub(crate) fn load_contract(
    folder: &PathBuf,
    dependencies: &[PathBuf],
) -> Result<Contract, String> {
    let loader = dependencies
        .iter()
        .fold(Contract::loader(), |loader, d| loader.dependency(d));
    loader.load(folder).map_err(|e| e.to_string())
}

/// Parses a share between 0 and 1.
pub(crate) fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "{text:?} is not a share between 0 and 1 (e.g. 0.8)"
        )),
    }
}

/// Parses `1048576`, `512KiB`, `64MiB` or `1GiB`.
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}: use B, KiB, MiB or GiB")),
    };
    let count: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1048576, 64MiB or 1GiB"))?;
    count
        .checked_mul(scale)
        .ok_or_else(|| format!("{text} is too large"))
}

/// Parses a non-negative number of seconds, such as `5` or `0.5`.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(value).map_err(|error| format!("{text} seconds: {error}"))
}
