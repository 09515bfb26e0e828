//! What a check found, shaped like Weaver live-check's findings, and how much of the
//! contract the telemetry covered.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::advice::IMPROVEMENTS;
use crate::junit::{TestCase, TestSuite};
use crate::tree::AssertionError;

/// How serious a finding is (Weaver's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Worth knowing (an enum value the contract does not list, an opt-in attribute
    /// absent).
    Information,
    /// Should be fixed (a recommended attribute absent).
    Improvement,
    /// Breaks the contract.
    Violation,
}

impl Level {
    /// `violation`, `improvement` or `information`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Information => "information",
            Level::Improvement => "improvement",
            Level::Violation => "violation",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The span a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpanLocation {
    /// Its trace, in hex.
    pub trace_id: String,
    /// The span, in hex.
    pub span_id: String,
    /// The node that emitted it: its alias (`[node 2]`) when the traces name nodes, else
    /// its `service.instance.id` or `service.name`.
    pub node: String,
}

/// One finding: the same problem on every sample it occurs on counts once, with the
/// first sample as its example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Weaver's finding ids (`missing_attribute`, `type_mismatch`,
    /// `undefined_enum_variant`, `required_attribute_not_present`, `missing_metric`,
    /// `unexpected_instrument`, `unit_mismatch`, `deprecated`, and the advice
    /// `missing_namespace`, `not_stable`, `invalid_format`, `illegal_namespace`,
    /// `extends_namespace`, `template_attribute`) and ours for structure
    /// (`missing_child`, `unexpected_child`, `unexpected_parent`, `missing_remote_parent`,
    /// `missing_required_event`, `missing_error_attribute`, `unexpected_span_kind`,
    /// `undeclared_span`, `coverage_below_minimum`).
    pub id: String,
    /// How serious it is.
    pub level: Level,
    /// `span`, `metric`, `log`, `event`, `resource` or `contract` (coverage).
    pub signal_type: String,
    /// The span, metric or event name.
    pub signal_name: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Structured details (`attribute_key`, `expected`, `found`, …).
    pub context: BTreeMap<String, String>,
    /// The first span it was found on (for span findings).
    pub span: Option<SpanLocation>,
    /// On how many samples.
    pub occurrences: u64,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}: {}",
            self.level, self.id, self.signal_type, self.signal_name, self.message
        )?;
        if let Some(span) = &self.span {
            write!(
                f,
                " (span {} of trace {} on {})",
                span.span_id, span.trace_id, span.node
            )?;
        }
        if self.occurrences > 1 {
            write!(f, " ×{}", self.occurrences)?;
        }
        Ok(())
    }
}

/// How much of one group the telemetry showed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupCoverage {
    /// The group id.
    pub id: String,
    /// `span`, `metric` or `event`.
    pub signal_type: String,
    /// The span, metric or event name.
    pub name: String,
    /// How many samples of it were checked.
    pub samples: u64,
    /// Declared attributes seen at least once.
    pub attributes_seen: Vec<String>,
    /// Declared attributes never seen.
    pub attributes_missing: Vec<String>,
}

impl GroupCoverage {
    /// The share of the group covered: the signal itself and each declared attribute count
    /// one each.
    pub fn ratio(&self) -> f64 {
        let seen = usize::from(self.samples > 0) + self.attributes_seen.len();
        let total = 1 + self.attributes_seen.len() + self.attributes_missing.len();
        seen as f64 / total as f64
    }
}

/// Coverage of a contract, per group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// Every span, metric and event group, in id order.
    pub groups: Vec<GroupCoverage>,
}

impl Coverage {
    /// The share of everything declared (signals and their attributes) that was seen.
    pub fn ratio(&self) -> f64 {
        let (seen, total) = self.groups.iter().fold((0, 0), |(seen, total), g| {
            (
                seen + usize::from(g.samples > 0) + g.attributes_seen.len(),
                total + 1 + g.attributes_seen.len() + g.attributes_missing.len(),
            )
        });
        if total == 0 {
            1.0
        } else {
            seen as f64 / total as f64
        }
    }

    /// Declared signals never seen.
    pub fn unseen(&self) -> Vec<&GroupCoverage> {
        self.groups.iter().filter(|g| g.samples == 0).collect()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "coverage {:.1} % of the contract", self.ratio() * 100.0)?;
        for group in &self.groups {
            write!(
                f,
                "  {:>5.1} %  {} {} ({} sample(s))",
                group.ratio() * 100.0,
                group.signal_type,
                group.name,
                group.samples
            )?;
            if !group.attributes_missing.is_empty() {
                write!(f, " — never seen: {}", group.attributes_missing.join(", "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The least coverage a run must reach.
///
/// ```
/// use p2p_otel_testkit::contract::CoverageGate;
/// let gate = CoverageGate::overall(0.9).per_group(0.5);
/// assert_eq!(gate.minimum_overall, Some(0.9));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CoverageGate {
    /// Least share of the whole contract (0–1).
    pub minimum_overall: Option<f64>,
    /// Least share of every group (0–1).
    pub minimum_per_group: Option<f64>,
}

impl CoverageGate {
    /// At least `ratio` (0–1) of the whole contract.
    pub fn overall(ratio: f64) -> Self {
        CoverageGate {
            minimum_overall: Some(ratio),
            minimum_per_group: None,
        }
    }

    /// And at least `ratio` (0–1) of each group.
    #[must_use]
    pub fn per_group(mut self, ratio: f64) -> Self {
        self.minimum_per_group = Some(ratio);
        self
    }
}

/// What [`Contract::check`](super::Contract::check) found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub(super) findings: Vec<Finding>,
    pub(super) coverage: Coverage,
    pub(super) spans: u64,
    pub(super) metric_points: u64,
    pub(super) logs: u64,
    /// The traces that hold violations, rendered (the first few).
    pub(super) rendered: String,
}

impl Report {
    /// Every finding, most serious first, then by id and signal.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings of one level.
    pub fn at_level(&self, level: Level) -> impl Iterator<Item = &Finding> + '_ {
        self.findings.iter().filter(move |f| f.level == level)
    }

    /// The findings with this id.
    pub fn with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.id == id)
    }

    /// Whether any finding is a violation.
    pub fn has_violations(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Violation)
    }

    /// Coverage of the contract.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// How many spans, metric points and log records were checked.
    pub fn samples(&self) -> (u64, u64, u64) {
        (self.spans, self.metric_points, self.logs)
    }

    /// Applies a coverage gate: a `coverage_below_minimum` violation for the contract, or
    /// for each group, below its minimum.
    #[must_use]
    pub fn gate(mut self, gate: CoverageGate) -> Self {
        let mut added = Vec::new();
        if let Some(minimum) = gate.minimum_overall {
            let ratio = self.coverage.ratio();
            if ratio < minimum {
                added.push(coverage_finding(
                    "contract".into(),
                    ratio,
                    minimum,
                    format!(
                        "{:.1} % of what the contract declares was seen, below the minimum {:.1} %: exercise the signals never seen ({})",
                        ratio * 100.0,
                        minimum * 100.0,
                        self.coverage
                            .unseen()
                            .iter()
                            .map(|g| g.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if let Some(minimum) = gate.minimum_per_group {
            for group in &self.coverage.groups {
                let ratio = group.ratio();
                if ratio < minimum {
                    added.push(coverage_finding(
                        group.name.clone(),
                        ratio,
                        minimum,
                        format!(
                            "{:.1} % of {} {} was seen, below the minimum {:.1} %{}",
                            ratio * 100.0,
                            group.signal_type,
                            group.name,
                            minimum * 100.0,
                            if group.samples == 0 {
                                " — no sample at all: exercise it".to_owned()
                            } else {
                                format!(" — never seen: {}", group.attributes_missing.join(", "))
                            }
                        ),
                    ));
                }
            }
        }
        self.findings.extend(added);
        sort(&mut self.findings);
        self
    }

    /// `Ok` when no finding is a violation; else an error listing every finding, the
    /// coverage, and the traces that hold violations, rendered.
    pub fn assert_no_violations(&self) -> Result<(), AssertionError> {
        if !self.has_violations() {
            return Ok(());
        }
        let mut message = format!(
            "{} violation(s) of the contract\n{self}",
            self.at_level(Level::Violation).count()
        );
        if !self.rendered.is_empty() {
            message.push_str("traces with violations:\n");
            message.push_str(&self.rendered);
        }
        Err(AssertionError::new(message))
    }

    /// The report as JSON in Weaver live-check's shape: `findings` (id, level,
    /// signal_type, signal_name, message, context) and `statistics`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut level_counts = BTreeMap::new();
        let mut id_counts = BTreeMap::new();
        for finding in &self.findings {
            *level_counts.entry(finding.level.as_str()).or_insert(0u64) += finding.occurrences;
            *id_counts.entry(finding.id.as_str()).or_insert(0u64) += finding.occurrences;
        }
        serde_json::json!({
            "findings": self.findings,
            "statistics": {
                "total_spans": self.spans,
                "total_metric_points": self.metric_points,
                "total_logs": self.logs,
                "advice_level_counts": level_counts,
                "advice_type_counts": id_counts,
                "highest_advice_level": self.findings.iter().map(|f| f.level).max(),
                "registry_coverage": self.coverage.ratio(),
                "groups": self.coverage.groups,
            }
        })
    }

    /// The report as a JUnit XML document (see [`to_junit_suite`](Self::to_junit_suite)).
    pub fn to_junit(&self, suite: &str) -> String {
        crate::junit::document(&[self.junit_suite(suite)])
    }

    /// The report as one JUnit `<testsuite>` element: a test case per declared group
    /// (failing with its violations), and one per violation not tied to a group.
    pub fn to_junit_suite(&self, suite: &str) -> String {
        self.junit_suite(suite).to_xml()
    }

    /// The same suite as a value, to put beside others in one document
    /// ([`junit::document`](crate::junit::document)).
    pub fn junit_suite(&self, suite: &str) -> TestSuite {
        let mut cases = Vec::new();
        let mut tied = std::collections::HashSet::new();
        for group in &self.coverage.groups {
            let violations: Vec<&Finding> = self
                .at_level(Level::Violation)
                .filter(|f| f.signal_name == group.name && f.signal_type == group.signal_type)
                .collect();
            tied.extend(violations.iter().map(|f| (&f.id, &f.signal_name)));
            cases.push((format!("{} {}", group.signal_type, group.name), violations));
        }
        for finding in self.at_level(Level::Violation) {
            if !tied.contains(&(&finding.id, &finding.signal_name)) {
                cases.push((
                    format!("{} {}", finding.signal_type, finding.signal_name),
                    vec![finding],
                ));
            }
        }
        let mut junit = TestSuite::new(suite);
        for (name, violations) in cases {
            junit = junit.case(match violations.first() {
                None => TestCase::passed("contract", name),
                Some(first) => {
                    let text: Vec<String> = violations.iter().map(|f| f.to_string()).collect();
                    TestCase::failed("contract", name, &first.message, text.join("\n"))
                }
            });
        }
        junit
    }
}

fn coverage_finding(name: String, ratio: f64, minimum: f64, message: String) -> Finding {
    Finding {
        id: "coverage_below_minimum".into(),
        level: Level::Violation,
        signal_type: "contract".into(),
        signal_name: name,
        message,
        context: BTreeMap::from([
            ("coverage".into(), format!("{ratio:.3}")),
            ("minimum".into(), format!("{minimum:.3}")),
        ]),
        span: None,
        occurrences: 1,
    }
}

/// Most serious first, then by id, signal and message.
pub(super) fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.level.cmp(&a.level).then_with(|| {
            (&a.id, &a.signal_type, &a.signal_name, &a.message).cmp(&(
                &b.id,
                &b.signal_type,
                &b.signal_name,
                &b.message,
            ))
        })
    });
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |level| self.at_level(level).count();
        writeln!(
            f,
            "checked {} span(s), {} metric point(s), {} log record(s): {} violation(s), {} improvement(s), {} information",
            self.spans,
            self.metric_points,
            self.logs,
            count(Level::Violation),
            count(Level::Improvement),
            count(Level::Information)
        )?;
        for finding in self
            .findings
            .iter()
            .filter(|f| f.level != Level::Information && !IMPROVEMENTS.contains(&f.id.as_str()))
        {
            writeln!(f, "  {finding}")?;
        }
        // Weaver's advice about names and stability, one line per id with the keys it is
        // about (each is in the JSON report).
        let mut advice: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
        for finding in self
            .findings
            .iter()
            .filter(|f| f.level == Level::Improvement && IMPROVEMENTS.contains(&f.id.as_str()))
        {
            let entry = advice.entry(&finding.id).or_default();
            entry.0 += finding.occurrences;
            let about = finding
                .context
                .get("attribute_key")
                .or_else(|| finding.context.get("metric_name"))
                .or_else(|| finding.context.get("event_name"))
                .map_or(finding.signal_name.as_str(), String::as_str);
            if !entry.1.contains(&about) {
                entry.1.push(about);
            }
        }
        for (id, (occurrences, about)) in &advice {
            const SHOWN: usize = 8;
            let mut list = about
                .iter()
                .take(SHOWN)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if about.len() > SHOWN {
                list.push_str(&format!(", and {} more", about.len() - SHOWN));
            }
            writeln!(
                f,
                "  improvement {id} ×{occurrences} (Weaver's advice): {list}"
            )?;
        }
        // Information is what Weaver calls it: worth knowing, listed by id (every one is in
        // the JSON report).
        let mut information: BTreeMap<&str, u64> = BTreeMap::new();
        for finding in self.at_level(Level::Information) {
            *information.entry(&finding.id).or_default() += finding.occurrences;
        }
        if !information.is_empty() {
            let list: Vec<String> = information
                .iter()
                .map(|(id, n)| format!("{id} ×{n}"))
                .collect();
            writeln!(f, "  information: {}", list.join(", "))?;
        }
        write!(f, "{}", self.coverage)
    }
}
