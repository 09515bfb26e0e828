//! # p2p-otel-testkit
//!
//! Prove the OpenTelemetry instrumentation of a libp2p system in plain `cargo test`.
//!
//! - [`capture`]: [`SpanCaptureLayer`] captures the spans of one subscriber (one test, one
//!   mesh node) in-process, with parents, late records, events, links, status and every
//!   declared field that was never recorded.
//! - [`receiver`]: an embedded OTLP receiver (gRPC, HTTP protobuf and JSON) that keeps
//!   every span, metric point and log record a real exporter sends, answers bad input the
//!   way the OTLP specification says, and lets a test wait for what it needs.
//! - [`telemetry`]: one node's tracer, meter and logger providers with real
//!   opentelemetry-otlp exporters, and its tracing `Dispatch`.
//! - [`model`] is the one span model every source converts into (including OTLP protobuf).
//! - [`tree`] builds trace trees, queries and asserts on them, and renders them
//!   deterministically for insta snapshots.
//! - [`traceql`]: Grafana Tempo's TraceQL evaluated in-process over any trace set
//!   (`traces.expect_query("{ kind = client } > { kind = server && status = error }")`).
//! - [`mesh`] runs N libp2p nodes on the memory transport (feature `mesh`; TCP and QUIC
//!   with feature `network`), one task per swarm, with topologies, partitions, kills and
//!   restarts, each node with its own capture or telemetry.
//! - [`propagation`]: W3C trace context in any message — the crate `p2p-otel-context`,
//!   the one piece production code may depend on. Code that propagates with the standard
//!   OpenTelemetry API needs nothing of the kit at all.
//! - [`strategy`]: proptest strategies for span sets, generic trace invariants and the
//!   harness for generated operation sequences (feature `proptest`).
//! - [`contract`]: telemetry contracts in OpenTelemetry Weaver's registry format, checked
//!   against what a system emits.
//! - [`junit`]: the JUnit XML writer behind the contract's and the CLI's reports.
//! - [`process`]: node binaries as child processes, driven over their control API and
//!   never outliving the test.
//!
//! Nothing here touches global state: no global subscriber, provider or propagator, no
//! environment variable written. The kit reads one itself, `PROPTEST_CASES`, in
//! `strategy::config` (whose other settings are proptest's defaults, which read proptest's
//! own `PROPTEST_*` variables).
//!
//! ## Waiting
//!
//! Nothing sleeps. [`CaptureHandle::wait_until`], the receiver's `wait_for_*` and
//! [`mesh::Mesh::wait_until`] re-check their condition on every change and fail, at their
//! timeout, with what did arrive (rendered trees, metric names, node states).
//!
//! ## Environment
//!
//! - `CI=true`: insta refuses new or changed snapshots instead of writing them.
//! - `INSTA_UPDATE=always`: write new snapshots (then review them with `cargo insta review`
//!   or `git diff snapshots/`).
//! - `OTEL_*` variables are ignored by [`telemetry`]: everything they could change is set
//!   explicitly.
//!
//! ## The smallest test
//!
//! ```
//! use p2p_otel_testkit::tree::expect;
//!
//! let (dispatch, handle) = p2p_otel_testkit::capture::dispatch();
//! tracing::dispatcher::with_default(&dispatch, || {
//!     let span = tracing::info_span!("p2p_search", query_text = "serde", local_results = tracing::field::Empty);
//!     span.in_scope(|| span.record("local_results", 3));
//! });
//! let traces = handle.traces();
//! traces.expect(&expect::span().named("p2p_search").with_attr("local_results", 3).fully_recorded()).unwrap();
//! assert_eq!(traces.render(), "trace 1\n└─ p2p_search\n     local_results = 3\n     query_text = \"serde\"\n");
//! ```
//!
//! Snapshot a rendering with `insta::assert_snapshot!(traces.render())`, or the structured
//! form with `insta::assert_yaml_snapshot!(traces.normalized())`.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod capture;
pub mod contract;
mod hash;
pub mod junit;
#[cfg(feature = "mesh")]
pub mod mesh;
pub mod model;
pub mod process;
pub mod propagation;
pub mod receiver;
mod source;
mod splitmix;
mod store;
#[cfg(feature = "proptest")]
pub mod strategy;
pub mod telemetry;
pub mod traceql;
pub mod tree;

pub use capture::{CaptureHandle, SpanCaptureLayer};

/// The README's examples run as doctests, so they never drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

// The exact versions the kit speaks, so a test never guesses compatible ones.
#[cfg(feature = "mesh")]
pub use libp2p;
pub use model::SpanRecord;
pub use opentelemetry;
pub use opentelemetry_sdk;
#[cfg(feature = "proptest")]
pub use proptest;
pub use source::SpanSource;
pub use store::WaitError;
pub use tracing;
pub use tracing_opentelemetry;
pub use tracing_subscriber;
pub use tree::TraceSet;
