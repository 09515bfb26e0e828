//! Property-based tests of the reference marketplace: generated operation sequences over a
//! real mesh, checked against its reference model and against the kit's trace invariants
//! on what arrived over OTLP; and its validated inputs.
//!
//! `PROPTEST_CASES=N` raises the depth (defaults are sized for CI); failures shrink to the
//! smallest failing input and are persisted in `proptest-regressions/properties.txt`.

use p2p_otel_marketplace::strategy::{
    arb_invalid_package_id, arb_invalid_version, arb_operations, arb_package, MeshSystem, Operation,
};
use p2p_otel_marketplace::{self as marketplace, Config, Package};
use p2p_otel_testkit::receiver::{self, OtlpReceiver};
use p2p_otel_testkit::strategy;
use p2p_otel_testkit::strategy::sequence::Harness;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const NODES: usize = 3;

/// CI-sized defaults; `PROPTEST_CASES` raises them.
fn config(cases: u32) -> ProptestConfig {
    strategy::config(cases, "proptest-regressions/properties.txt")
}

fn node_config(meter: Option<opentelemetry::metrics::Meter>) -> Config {
    Config {
        meter,
        ..Config::for_tests()
    }
}

/// Runs a sequence with the kit's harness: every outcome against the marketplace's model,
/// every generic trace invariant over OTLP, nothing dropped between capture and wire, then
/// the marketplace's own metric invariant.
async fn check_sequence(operations: Vec<Operation>) -> Result<(), String> {
    let receiver = OtlpReceiver::start(receiver::Config::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut system = MeshSystem::start(&receiver, NODES, 11, node_config(None))
        .await
        .map_err(|e| e.to_string())?;
    let harness = Harness::new()
        .handler_joins("handle_dht_query", "p2p_search")
        .contract(marketplace::contract().map_err(|e| e.to_string())?)
        .render_settings(system.render_settings());
    let verified = harness.run(&mut system, &operations, &receiver).await?;
    marketplace::strategy::invariants::operation_counters_match(
        &receiver.metric_points(),
        &verified.executed,
    )?;
    system.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn operation_sequences_match_the_model_and_the_trace_invariants(operations in arb_operations(NODES, 10)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(check_sequence(operations));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn invalid_ids_and_versions_are_refused_and_valid_packages_accepted(
        bad_id in arb_invalid_package_id(),
        bad_version in arb_invalid_version(),
        package in arb_package(),
    ) {
        prop_assert!(bad_id.parse::<marketplace::PackageId>().is_err(), "{bad_id:?} accepted");
        prop_assert!(bad_version.parse::<marketplace::Version>().is_err(), "{bad_version:?} accepted");
        let text = serde_json::to_string(&package).unwrap();
        prop_assert_eq!(serde_json::from_str::<Package>(&text).unwrap(), package.clone());
        prop_assert_eq!(package.version.to_string().parse::<marketplace::Version>().unwrap(), package.version);
    }
}
