//! Beyond the plan's six scenarios: the rest of the registry's API (get, list versions,
//! exists, delete), so that a run covers every span the contract declares.

use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::TraceSet;

use super::checks::{contract_and_service, finish, Checks};
use super::{package, Launcher, Observed, Run, ScenarioError};
use crate::{Config, NodeCondition, PackageId, Version};

/// Beyond the plan's six scenarios, the rest of the registry's API — get, list versions,
/// exists, delete — so that a run covers every span the contract declares: each operation
/// succeeds and emits its span, a read the local index cannot answer asks the DHT
/// (`dht_get`), and a delete stores a tombstone and announces it.
pub async fn lifecycle(on: &dyn Launcher, receiver: &OtlpReceiver) -> Run {
    let mut checks = Checks::default();
    let result = lifecycle_body(on, receiver, &mut checks).await;
    finish(
        "the rest of the API: get, list versions, exists and delete emit their spans",
        "9.3",
        checks,
        result,
    )
}

async fn lifecycle_body(
    on: &dyn Launcher,
    receiver: &OtlpReceiver,
    checks: &mut Checks,
) -> Result<TraceSet, ScenarioError> {
    let mut o = Observed::start_on(on, receiver, 3, 13, Config::for_tests()).await?;
    o.ready().await?;
    let id: PackageId = "acme/life".parse()?;
    let version: Version = "1.0.0".parse()?;
    checks.ok(
        "the publish succeeds",
        o.node(0)?
            .publish(package("acme/life", "A lifecycle")?)
            .await,
    );
    o.wait_for(&[1, 2], &NodeCondition::packages(1)).await?;
    let got = o.node(1)?.get_package_version(&id, &version).await;
    checks.that(
        "get returns the published version",
        got.as_ref().is_ok_and(|p| p.id == id),
        format!("{:?}", got.map(|p| p.id)),
    );
    let versions = o.node(2)?.list_versions(&id).await;
    checks.that(
        "list_versions lists it",
        versions.as_ref().is_ok_and(|v| v.contains(&version)),
        format!("{versions:?}"),
    );
    let absent = o.node(2)?.exists(&"acme/none".parse()?).await;
    checks.that(
        "exists says no for a package nobody published (after asking the DHT)",
        matches!(absent, Ok(false)),
        format!("{absent:?}"),
    );
    checks.ok("the delete succeeds", o.node(0)?.delete(&id).await);
    let names = [
        "p2p_get",
        "p2p_list_versions",
        "p2p_exists",
        "p2p_delete",
        "dht_get",
    ];
    let traces = o
        .wait("a span of every operation and a DHT read", |spans| {
            names.iter().all(|n| spans.iter().any(|s| s.name == *n))
        })
        .await?;
    contract_and_service(checks, &traces);
    o.shutdown().await;
    Ok(traces)
}
