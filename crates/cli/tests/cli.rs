//! The `p2p-otel-testkit` binary, run as a separate process.

use std::process::Stdio;
use std::time::Duration;

use p2p_otel_testkit::telemetry::{Protocol, Telemetry};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_p2p-otel-testkit");

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("p2p-otel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn serve(args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads stdout until the `listening` line; returns the gRPC and HTTP endpoints.
async fn endpoints(child: &mut Child) -> (String, String, BufReader<tokio::process::ChildStdout>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), lines.read_line(&mut line))
        .await
        .expect("serve printed its endpoints")
        .unwrap();
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_owned()
    };
    (field("grpc="), field("http="), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_receives_spans_from_another_process_over_grpc_and_http_then_exits() {
    let out = temp_dir("serve");
    let mut child = serve(&[
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--exit-after-spans",
        "3",
        "--timeout",
        "30",
    ]);
    let (grpc, http, mut stdout) = endpoints(&mut child).await;
    for (protocol, name) in [
        (Protocol::Grpc, "over_grpc"),
        (Protocol::HttpProtobuf, "over_http"),
    ] {
        let telemetry = Telemetry::builder_for_endpoints(protocol, grpc.clone(), http.clone())
            .resource_attribute("service.name", "cli-test")
            .build()
            .unwrap();
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            tracing::info_span!("root", otel.name = name).in_scope(|| {
                if name == "over_grpc" {
                    tracing::info_span!("child").in_scope(|| {});
                }
            });
        });
        telemetry.flush().await.unwrap();
        telemetry.shutdown().await.unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve exits after 3 spans")
        .unwrap();
    let mut printed = String::new();
    while stdout.read_line(&mut printed).await.unwrap() > 0 {}
    assert!(status.success(), "{printed}");
    assert!(
        printed.contains("over_grpc service=cli-test spans=2"),
        "{printed}"
    );
    assert!(
        printed.contains("over_http service=cli-test spans=1"),
        "{printed}"
    );
    assert!(
        printed.contains("summary: EnoughSpans: 3 span(s) in 2 trace(s)"),
        "{printed}"
    );
    let file = std::fs::read_to_string(out.join("traces.jsonl")).unwrap();
    for name in ["over_grpc", "over_http", "child"] {
        assert!(
            file.contains(&format!("\"{name}\"")),
            "{name} missing from {file}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn serve_times_out_with_a_summary_and_exit_code_1() {
    let out = temp_dir("timeout");
    let child = serve(&[
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--exit-after-spans",
        "5",
        "--timeout",
        "1",
    ]);
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("summary: TimedOut: 0 span(s)"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = temp_dir("busy");
    let child = serve(&[
        "--grpc",
        &format!("127.0.0.1:{port}"),
        "--http",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not bind the OTLP/gRPC listener on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_without_the_flag() {
    let out = temp_dir("loopback");
    let child = serve(&[
        "--grpc",
        "0.0.0.0:0",
        "--http",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to bind 0.0.0.0:0: not a loopback address"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing was written");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_serve_with_a_summary() {
    let out = temp_dir("sigterm");
    let mut child = serve(&[
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, _, mut stdout) = endpoints(&mut child).await;
    let pid = child.id().unwrap().to_string();
    // The shell's builtin `kill`: no dependency on a procps binary being installed.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("serve ends on SIGTERM")
        .unwrap();
    let mut printed = String::new();
    while stdout.read_line(&mut printed).await.unwrap() > 0 {}
    assert!(status.success(), "{printed}");
    assert!(
        printed.contains("summary: Signalled: 0 span(s)"),
        "{printed}"
    );
    assert!(out.join("traces.jsonl").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_run_passes_and_writes_every_report() {
    let out = temp_dir("validate");
    let output = Command::new(BIN)
        .args(["--out", out.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in 1..=6 {
        assert!(
            stdout.contains(&format!("[{step}/6]")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("VALIDATION PASSED"), "{stdout}");
    for file in [
        "report.json",
        "junit.xml",
        "report.md",
        "traces.html",
        "otlp/traces.jsonl",
        "otlp/metrics.jsonl",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 10);
    assert!(checks.iter().all(|c| c["passed"] == true));
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), checks.len());
    assert!(!junit.contains("<failure"));
    let html = std::fs::read_to_string(out.join("traces.html")).unwrap();
    assert!(html.contains("p2p_publish") && html.contains("handle_dht_query"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained: no external resources"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_forwards_everything_to_an_external_collector() {
    let external = p2p_otel_testkit::receiver::OtlpReceiver::start(Default::default())
        .await
        .unwrap();
    let out = temp_dir("forward");
    let output = Command::new(BIN)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--otlp-endpoint",
            &external.grpc_endpoint(),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("PASS [9.2] everything forwarded to the external collector"),
        "{stdout}"
    );
    let traces = external.traces();
    for name in [
        "p2p_bootstrap",
        "p2p_publish",
        "p2p_search",
        "handle_dht_query",
    ] {
        assert!(!traces.find_named(name).is_empty(), "{name} not forwarded");
    }
    assert!(!external
        .metric_points_named("p2p_operations_total")
        .is_empty());
    let _ = std::fs::remove_dir_all(&out);
}
