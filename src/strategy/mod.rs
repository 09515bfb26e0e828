//! Property-based testing of any traced system: proptest strategies for span sets, the
//! trace invariants every run of an operation sequence must satisfy (one root per
//! operation with the right status, spans closed and nested, handlers in their caller's
//! trace, a telemetry contract), and [`sequence`], the harness that
//! runs your operations against your model and checks them all.
//!
//! Depth is set the proptest way: `PROPTEST_CASES=1000 cargo test`; failures shrink to
//! the smallest failing input, persisted under `proptest-regressions/` (commit it).
//! Behind the `proptest` feature (on by default).

mod generators;
pub mod invariants;
pub mod sequence;

pub use generators::arb_span_set;

use proptest::test_runner::{Config, FileFailurePersistence};

/// A proptest configuration sized for CI that a deep run can raise: `PROPTEST_CASES`, when
/// set, wins over `cases`; failing inputs are persisted in `regressions` (a path relative
/// to the crate's root, such as `proptest-regressions/properties.txt`: commit it).
///
/// ```
/// use p2p_otel_testkit::proptest::prelude::*;
/// use p2p_otel_testkit::strategy::{arb_span_set, config};
///
/// proptest! {
///     #![proptest_config(config(8, "proptest-regressions/doc.txt"))]
///     fn spans_have_names(spans in arb_span_set()) {
///         prop_assert!(spans.iter().all(|s| !s.name.is_empty()));
///     }
/// }
/// # spans_have_names();
/// ```
pub fn config(cases: u32, regressions: &'static str) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}
