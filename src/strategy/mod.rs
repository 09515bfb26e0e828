//! Property-based testing of any traced system: proptest strategies for span sets, and
//! the trace invariants every run of an operation sequence must satisfy (one root per
//! operation with the right status, spans closed and nested, handlers in their caller's
//! trace, a schema on every span that did not fail).
//!
//! Depth is set the proptest way: `PROPTEST_CASES=1000 cargo test`; failures shrink to
//! the smallest failing input, persisted under `proptest-regressions/` (commit it).
//! Behind the `proptest` feature (on by default).

mod generators;
pub mod invariants;

pub use generators::arb_span_set;
