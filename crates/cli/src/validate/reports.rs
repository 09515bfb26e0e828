//! The report files: `report.json`, `junit.xml`, `report.md`, `traces.html`, and the
//! terminal summary.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::Report;
use p2p_otel_testkit::junit::{self, TestCase, TestSuite};
use p2p_otel_testkit::tree::TraceSet;

fn junit(report: &Report) -> String {
    let mut plan = TestSuite::new("p2p-otel-validation");
    plan.time = Some(Duration::from_millis(
        u64::try_from(report.duration_ms).unwrap_or(u64::MAX),
    ));
    for check in &report.checks {
        let classname = format!("plan.section-{}", check.section);
        let case = if check.passed {
            TestCase::passed(classname, &check.name)
        } else {
            TestCase::failed(classname, &check.name, &check.evidence, "")
        };
        plan = plan.case(case.with_system_out(&check.evidence));
    }
    let suites: Vec<TestSuite> = std::iter::once(plan)
        .chain(report.contract_junit.clone())
        .collect();
    junit::document(&suites)
}

fn markdown(report: &Report) -> String {
    let mut md = format!(
        "# P2P OpenTelemetry validation\n\n**{}** — {} of {} checks passed in {} ms.\n\n| section | check | result | evidence |\n|---|---|---|---|\n",
        if report.passed() { "PASS" } else { "FAIL" },
        report.checks.iter().filter(|c| c.passed).count(),
        report.checks.len(),
        report.duration_ms
    );
    for check in &report.checks {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            check.section,
            check.name,
            if check.passed { "pass" } else { "**FAIL**" },
            check.evidence.replace('|', "\\|").replace('\n', "<br>")
        ));
    }
    md.push_str("\n## Spans by service\n\n");
    for (service, count) in &report.spans_by_service {
        md.push_str(&format!("- {service}: {count}\n"));
    }
    if !report.processes.is_empty() {
        md.push_str("\n## Node processes\n\n| pid | peer id | listen | spans | metric points |\n|---|---|---|---|---|\n");
        for p in &report.processes {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                p.pid, p.peer_id, p.listen, p.spans, p.metric_points
            ));
        }
    }
    md.push_str(&format!(
        "\n## Telemetry contract\n\n```text\n{}```\n",
        report.contract_text
    ));
    md.push_str(&format!(
        "\n## Trace trees\n\n```text\n{}```\n",
        report.traces
    ));
    md
}

/// Writes every report file into `folder`.
pub(super) fn write_all(folder: &Path, report: &Report, traces: &TraceSet) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(folder.join("report.json"), json)?;
    std::fs::write(folder.join("junit.xml"), junit(report))?;
    std::fs::write(folder.join("report.md"), markdown(report))?;
    // The trace viewer `serve` shows, as one file holding this run's traces.
    std::fs::write(
        folder.join("traces.html"),
        p2p_otel_testkit::receiver::trace_viewer_html(
            traces,
            p2p_otel_marketplace::contract().ok().as_ref(),
        ),
    )?;
    if let Some(simulation) = &report.simulation {
        // What the digest is of: diff two runs' files to see where they part.
        std::fs::write(folder.join("transcript.txt"), &simulation.transcript)?;
    }
    Ok(())
}

/// The terminal report: every criterion with its evidence, then the verdict.
pub(super) fn terminal(report: &Report, out: &mut impl Write) {
    let _ = writeln!(out);
    for check in &report.checks {
        let _ = writeln!(
            out,
            "  {} [{}] {}",
            if check.passed { "PASS" } else { "FAIL" },
            check.section,
            check.name,
        );
        for line in check.evidence.lines() {
            let _ = writeln!(out, "         {line}");
        }
    }
    for (service, count) in &report.spans_by_service {
        let _ = writeln!(out, "  spans from {service}: {count}");
    }
    if !report.processes.is_empty() {
        let with_spans = report.processes.iter().filter(|p| p.spans > 0).count();
        let _ = writeln!(
            out,
            "  node processes: {} started, {with_spans} exported spans (report.md lists each)",
            report.processes.len()
        );
    }
    let coverage = report
        .contract_text
        .lines()
        .skip_while(|line| !line.starts_with("coverage"));
    for line in coverage {
        let _ = writeln!(out, "  {line}");
    }
    let passed = report.checks.iter().filter(|c| c.passed).count();
    let _ = writeln!(
        out,
        "\n{} — {passed}/{} checks passed in {} ms",
        if report.passed() {
            "VALIDATION PASSED"
        } else {
            "VALIDATION FAILED"
        },
        report.checks.len(),
        report.duration_ms
    );
    if let Some(simulation) = &report.simulation {
        let _ = writeln!(
            out,
            "simulated (seed {}): {} ms of virtual time in {} ms of wall time\ndigest {}",
            simulation.seed, simulation.virtual_ms, simulation.wall_ms, simulation.digest
        );
    }
    let _ = out.flush();
}
