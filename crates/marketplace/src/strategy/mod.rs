//! Property-based testing of the reference marketplace: proptest strategies for its
//! inputs and for operation sequences over a mesh, a reference model that says what each
//! operation may and must return, and the invariants of its own metrics. The generic
//! trace invariants live in [`p2p_otel_testkit::strategy::invariants`].
//!
//! Depth is set the proptest way: `PROPTEST_CASES=1000 cargo test -p p2p-otel-marketplace
//! --test properties`; failures shrink to the shortest failing sequence, persisted under
//! `proptest-regressions/` (commit it).

mod generators;
pub mod invariants;
mod model;
mod system;

pub use generators::{
    arb_invalid_package_id, arb_invalid_version, arb_operations, arb_package, arb_package_id,
    arb_query, arb_version, Operation, PACKAGE_NAMES,
};
pub use model::{node_of, package_of, Expectation, Model, Outcome};
pub use system::MeshSystem;
