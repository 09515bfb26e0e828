//! How a scenario body records its checks ([`Checks`]), the check every scenario shares
//! (its spans keep the marketplace's contract and name the service), and how the checks
//! and the body's result become the scenario's [`Run`].

use std::fmt;

use p2p_otel_testkit::model::Value;
use p2p_otel_testkit::tree::TraceSet;

use super::{Check, Run, ScenarioError, SERVICE};

/// Checks in the making.
#[derive(Debug, Default)]
pub(super) struct Checks(Vec<Check>);

impl Checks {
    pub(super) fn that(&mut self, name: &str, passed: bool, evidence: impl fmt::Display) -> bool {
        self.0.push(Check::new(name, passed, evidence));
        passed
    }

    /// Passed when `result` is `Ok`; the error's message is the evidence otherwise.
    pub(super) fn ok<T, E: fmt::Display>(&mut self, name: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => {
                self.that(name, true, "as expected");
                Some(value)
            }
            Err(error) => {
                self.that(name, false, error);
                None
            }
        }
    }
}

/// Checks the spans against the marketplace's contract (the plan's required attributes,
/// their types, the scenarios' structure), and that every declared span names the service
/// and its version.
pub(super) fn contract_and_service(checks: &mut Checks, traces: &TraceSet) {
    let contract = match crate::contract() {
        Ok(contract) => contract,
        Err(error) => {
            checks.that("the marketplace's contract loads", false, error);
            return;
        }
    };
    let report = contract.check(traces, &[], &[]);
    checks.ok(
        "every span keeps the marketplace's contract (attributes, types, structure)",
        report.assert_no_violations().and_then(|()| {
            let declared = traces
                .spans()
                .filter(|s| contract.required_attributes(s.name()).is_some())
                .count();
            if declared > 0 {
                Ok(declared)
            } else {
                Err(p2p_otel_testkit::tree::AssertionError::new(format!(
                    "no span the contract declares in:\n{traces}"
                )))
            }
        }),
    );
    let unnamed: Vec<String> = traces
        .spans()
        .filter(|s| contract.required_attributes(s.name()).is_some())
        .filter(|s| {
            s.attribute("service.name") != Some(&Value::from(SERVICE))
                || s.attribute("service.version") != Some(&Value::from(env!("CARGO_PKG_VERSION")))
        })
        .map(|s| s.name().to_owned())
        .collect();
    checks.that(
        "every span names service.name and service.version",
        unnamed.is_empty(),
        format!("spans without them: {unnamed:?}"),
    );
}

/// Turns a scenario body's checks and result into its [`Run`]; a set-up failure or a
/// wait that timed out is a failed check.
pub(super) fn finish(
    scenario: &'static str,
    section: &'static str,
    checks: Checks,
    result: Result<TraceSet, ScenarioError>,
) -> Run {
    let mut checks = checks.0;
    let traces = match result {
        Ok(traces) => traces,
        Err(error) => {
            checks.push(Check::new("the scenario ran to its end", false, error));
            TraceSet::new(Vec::new())
        }
    };
    Run {
        scenario,
        section,
        checks,
        traces,
    }
}
