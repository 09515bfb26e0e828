//! `p2p-otel-testkit`: the end-to-end P2P OpenTelemetry validation (default), and a
//! local OTLP collector for other processes (`serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use p2p_otel_testkit::receiver::DEFAULT_SPAN_CAPACITY;

mod printer;
mod serve;
mod validate;

/// Prove OpenTelemetry instrumentation without Docker.
///
/// Without a subcommand: run the P2P marketplace's validation in-process — embedded
/// receiver, health, scenarios 1-6 on a memory-transport mesh exporting over OTLP,
/// checks of the plan's success criteria — and write report.json, junit.xml,
/// report.md, traces.html and the OTLP-JSON files. Exit 0 only if every check passes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Nodes in the validation mesh (at least 3).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Output folder for the reports (recreated).
    #[arg(long, default_value = "target/p2p-otel-validation")]
    out: PathBuf,
    /// Also forward everything received to this external OTLP/gRPC collector
    /// (e.g. http://127.0.0.1:4317 of a real Collector or Jaeger).
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded OTLP receiver as a local collector for other processes.
    ///
    /// Prints a line per finished trace, writes OTLP-JSON lines files, and on Ctrl-C or
    /// SIGTERM prints a summary. Exit codes: 0 on a signal or --exit-after-spans
    /// reached, 1 at --timeout, 2 on a configuration error (busy port, non-loopback
    /// address without --allow-non-loopback).
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
    },
}

/// Parses `1048576`, `512KiB`, `64MiB` or `1GiB`.
fn parse_bytes(text: &str) -> Result<usize, String> {
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
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(value).map_err(|error| format!("{text} seconds: {error}"))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

fn validate(nodes: usize, out: PathBuf, otlp_endpoint: Option<String>) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    let options = validate::Options {
        nodes,
        out,
        otlp_endpoint,
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(validate::run(&options, &mut stdout)) {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(Command::Serve {
        grpc,
        http,
        allow_non_loopback,
        out,
        exit_after_spans,
        timeout,
        span_capacity,
        span_byte_capacity,
        keep_last,
        shutdown_grace,
        idle_timeout,
        header_read_timeout,
    }) = cli.command
    else {
        return validate(cli.nodes, cli.out, cli.otlp_endpoint);
    };
    let options = serve::Options {
        grpc,
        http,
        allow_non_loopback,
        out,
        exit_after_spans,
        timeout: timeout.map(Duration::from_secs),
        span_capacity,
        span_byte_capacity,
        keep_last,
        shutdown_grace,
        idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
        header_read_timeout: (!header_read_timeout.is_zero()).then_some(header_read_timeout),
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(serve::run(&options, std::io::stdout())) {
        Ok(serve::Outcome::TimedOut) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
