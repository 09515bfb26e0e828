//! Property-based testing of P2P marketplaces: proptest strategies for inputs and for
//! operation sequences over a mesh, a reference model that says what each operation may
//! and must return, and the trace invariants every run must satisfy.
//!
//! Everything here is public so marketplace crates can reuse it on their own traces.
//! Depth is set the proptest way: `PROPTEST_CASES=1000 cargo test --test properties`;
//! failures shrink to the shortest failing sequence, persisted under
//! `proptest-regressions/` (commit it).

mod generators;
pub mod invariants;
mod model;

pub use generators::{
    arb_invalid_package_id, arb_invalid_version, arb_operations, arb_package, arb_package_id,
    arb_query, arb_span_set, arb_version, Operation, PACKAGE_NAMES,
};
pub use model::{node_of, package_of, Expectation, Model, Outcome};
