//! `p2p-otel-testkit`: the end-to-end P2P OpenTelemetry validation (default, or
//! `validate`), a local OTLP collector for other processes (`serve`), telemetry-contract
//! checks of OTLP-JSON files (`check`), TraceQL queries over them (`query`),
//! Collector/alert/dashboard generation (`contract generate`), and one
//! reference-marketplace node as its own process (`node`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use p2p_otel_testkit::contract::{generate, CoverageGate};

use args::{load_contract, Cli, Command, ContractArgs, ContractCommand, ValidateArgs};

mod args;
mod check;
mod node;
mod printer;
mod query;
mod serve;
mod validate;

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

/// Exit code 2 for an error before any work: printed to stderr with its causes.
fn configuration_error(error: impl Into<Box<dyn std::error::Error>>) -> ExitCode {
    let error = error.into();
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = source.source();
    }
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn validate(cli: ValidateArgs) -> ExitCode {
    let options = validate::Options {
        nodes: cli.processes.map_or(cli.nodes, usize::from),
        out: cli.out,
        otlp_endpoint: cli.otlp_endpoint,
        otlp_protocol: cli.otlp_protocol,
        processes: cli.processes.map(|_| cli.transport),
        nodes_from: cli.nodes_from,
        time_scale: cli.time_scale,
        receiver_addrs: (cli.receiver_grpc, cli.receiver_http),
        allow_non_loopback: cli.allow_non_loopback,
        simulate: cli.simulate.then_some(cli.seed),
    };
    let report = match validate_once(&options) {
        Ok(report) => report,
        Err(code) => return code,
    };
    if !report.passed() {
        return ExitCode::from(1);
    }
    match (&report.simulation, cli.self_check) {
        (Some(first), true) => {
            let again = validate::Options {
                out: options.out.join("self-check"),
                ..options.clone()
            };
            let second = match validate_once(&again) {
                Ok(report) => report,
                Err(code) => return code,
            };
            self_check(first, second.simulation.as_ref())
        }
        _ => ExitCode::SUCCESS,
    }
}

/// One validation run, on a runtime of its own: a simulation's in `mesh::simulate` (a
/// thread whose every random draw is the seed's, a paused clock that moves only when every
/// node waits); any other on the wall clock.
fn validate_once(options: &validate::Options) -> Result<validate::Report, ExitCode> {
    let outcome = match options.simulate {
        Some(seed) => {
            let options = options.clone();
            p2p_otel_testkit::mesh::simulate(seed, move || async move {
                validate::run(&options, &mut std::io::stdout(), interrupted()).await
            })
            .map_err(|error| eprintln!("error: cannot start the simulation: {error}"))
            .ok()
        }
        None => runtime().map(|runtime| {
            runtime.block_on(validate::run(
                options,
                &mut std::io::stdout(),
                interrupted(),
            ))
        }),
    };
    match outcome {
        None => Err(ExitCode::from(2)),
        Some(Ok(report)) => Ok(report),
        Some(Err(error @ validate::ValidateError::Interrupted { .. })) => {
            eprintln!("{error}");
            Err(ExitCode::from(130))
        }
        Some(Err(error)) => Err(configuration_error(error)),
    }
}

/// `--self-check`: the second run's transcript against the first's.
fn self_check(
    first: &validate::SimulationSummary,
    second: Option<&validate::SimulationSummary>,
) -> ExitCode {
    let Some(second) = second else {
        eprintln!("self-check: the second run did not simulate");
        return ExitCode::from(1);
    };
    match p2p_otel_marketplace::scenarios::first_divergence(&first.transcript, &second.transcript) {
        None => {
            println!(
                "self-check: two runs of seed {} agree line for line (digest {})",
                first.seed, first.digest
            );
            ExitCode::SUCCESS
        }
        Some(parted) => {
            println!("self-check: seed {}: {parted}", first.seed);
            ExitCode::from(1)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn check(
    contract: &ContractArgs,
    files: Vec<PathBuf>,
    format: check::Format,
    gate: CoverageGate,
) -> ExitCode {
    let contract = match contract.load() {
        Ok(Some(contract)) => contract,
        Ok(None) => return configuration_error("check needs --contract DIR"),
        Err(error) => return configuration_error(error),
    };
    let options = check::Options {
        contract,
        files,
        format,
        gate,
    };
    match check::run(&options, &mut std::io::stdout()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => configuration_error(error),
    }
}

/// `contract infer`: reads the files, drafts, writes, checks that the draft loads and
/// keeps what it came from.
fn infer(out: PathBuf, dependency: Option<PathBuf>, files: Vec<PathBuf>) -> ExitCode {
    let mut signals = p2p_otel_testkit::model::Signals::default();
    for file in &files {
        if let Err(error) = signals.read_file(file) {
            return configuration_error(error);
        }
    }
    let traces = p2p_otel_testkit::TraceSet::new(std::mem::take(&mut signals.spans));
    let draft = match p2p_otel_testkit::contract::infer(
        &traces,
        &signals.metrics,
        &signals.logs,
        dependency.as_deref(),
    ) {
        Ok(draft) => draft,
        Err(error) => return configuration_error(error),
    };
    let written = match draft.write(&out) {
        Ok(written) => written,
        Err(error) => {
            return configuration_error(format!("cannot write into {}: {error}", out.display()))
        }
    };
    for path in written {
        println!("wrote {}", path.display());
    }
    // The draft keeps the telemetry by the registry's rules; Weaver's advice judges the
    // names the telemetry chose, which no draft can change, so it is summarised apart.
    let kept = draft.load().map(|contract| {
        let check = |contract: &p2p_otel_testkit::contract::Contract| {
            contract.check(&traces, &signals.metrics, &signals.logs)
        };
        (
            check(&contract.clone().with_advice(false)),
            check(&contract),
        )
    });
    match kept {
        Ok((report, advised)) if !report.has_violations() => {
            println!(
                "drafted {} lines from {} spans, {} metric points and {} log records; the draft \
                 loads and keeps them (coverage {:.0} %)",
                draft.line_count(),
                traces.span_count(),
                signals.metrics.len(),
                signals.logs.len(),
                report.coverage().ratio() * 100.0
            );
            let mut advice: std::collections::BTreeMap<(String, String), u64> =
                std::collections::BTreeMap::new();
            for finding in advised.findings() {
                if !report.findings().iter().any(|f| f.id == finding.id) {
                    *advice
                        .entry((finding.level.to_string(), finding.id.clone()))
                        .or_default() += finding.occurrences;
                }
            }
            if !advice.is_empty() {
                let list: Vec<String> = advice
                    .iter()
                    .map(|((level, id), n)| format!("{level} {id} ×{n}"))
                    .collect();
                println!(
                    "Weaver's advice on the telemetry's names (check --contract reports it; \
                     --no-advice leaves it out): {}",
                    list.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Ok((report, _)) => {
            eprintln!("error: the draft does not keep the telemetry it came from:\n{report}");
            ExitCode::from(1)
        }
        Err(error) => configuration_error(error),
    }
}

fn contract_command(command: ContractCommand) -> ExitCode {
    match command {
        ContractCommand::Infer {
            out,
            dependency,
            files,
        } => infer(out, dependency, files),
        ContractCommand::Generate {
            contract,
            dependency,
            out,
            tracing_backend,
            file,
            service_name,
            title,
        } => generate(
            contract,
            &dependency,
            out,
            tracing_backend,
            file,
            service_name,
            title,
        ),
    }
}

/// `contract generate`: the Collector configuration, alert rules and dashboard.
fn generate(
    contract: Option<PathBuf>,
    dependency: &[PathBuf],
    out: PathBuf,
    tracing_backend: String,
    file: String,
    service_name: String,
    title: String,
) -> ExitCode {
    let contract = match &contract {
        Some(folder) => load_contract(folder, dependency),
        None => p2p_otel_marketplace::contract().map_err(|e| e.to_string()),
    };
    let contract = match contract {
        Ok(contract) => contract,
        Err(error) => return configuration_error(error),
    };
    let options = generate::CollectorOptions {
        tracing_backend,
        file,
        service_name,
        ..generate::CollectorOptions::default()
    };
    match generate::write_all(&contract, &out, &options, &title) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => configuration_error(format!("cannot write into {}: {error}", out.display())),
    }
}

fn serve(options: serve::Options) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(serve::run(&options, std::io::stdout())) {
        Ok(finished) if finished.outcome == serve::Outcome::TimedOut => ExitCode::from(1),
        Ok(finished) if finished.violations => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => configuration_error(error),
    }
}

/// Parses multiaddrs, naming the one that is not.
fn multiaddrs(texts: &[String]) -> Result<Vec<p2p_otel_testkit::libp2p::Multiaddr>, String> {
    texts
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|e| format!("{t:?} is not a multiaddr: {e}"))
        })
        .collect()
}

fn run_node(options: Result<node::Options, String>) -> ExitCode {
    let options = match options {
        Ok(options) => options,
        Err(error) => return configuration_error(error),
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(node::run(&options, &mut std::io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => configuration_error(error),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        None => return validate(cli.validate),
        Some(command) => command,
    };
    match command {
        Command::Validate(args) => validate(args),
        Command::Check {
            contract,
            files,
            format,
            min_coverage,
            min_group_coverage,
        } => check(
            &contract,
            files,
            format,
            CoverageGate {
                minimum_overall: min_coverage,
                minimum_per_group: min_group_coverage,
            },
        ),
        Command::Contract { command } => contract_command(command),
        Command::Query {
            query,
            files,
            format,
        } => match query::run(&query, &files, format, &mut std::io::stdout()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(error) => configuration_error(error),
        },
        Command::Node {
            listen,
            key_file,
            seed,
            bootstrap,
            otlp_endpoint,
            otlp_protocol,
            control,
            allow_non_loopback,
            profile,
            query_timeout_ms,
            request_timeout_ms,
            search_fanout,
            cache_ttl_ms,
            sync_interval_ms,
        } => run_node((|| {
            Ok(node::Options {
                listen: multiaddrs(&listen)?,
                key_file,
                seed,
                bootstrap: multiaddrs(&bootstrap)?,
                otlp_endpoint,
                otlp_protocol: otlp_protocol.into(),
                control,
                allow_non_loopback,
                profile,
                overrides: node::Overrides {
                    query_timeout: query_timeout_ms.map(Duration::from_millis),
                    request_timeout: request_timeout_ms.map(Duration::from_millis),
                    search_fanout,
                    cache_ttl: cache_ttl_ms.map(Duration::from_millis),
                    sync_interval: sync_interval_ms.map(Duration::from_millis),
                },
            })
        })()),
        Command::Serve {
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
            contract,
        } => match contract.load() {
            Ok(contract) => serve(serve::Options {
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
                header_read_timeout: (!header_read_timeout.is_zero())
                    .then_some(header_read_timeout),
                contract,
            }),
            Err(error) => configuration_error(error),
        },
    }
}
