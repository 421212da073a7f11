//! The built-in tree through a real PostgreSQL outage: `vigil run`'s ten agents, its
//! restart intensity and its group-commit writer on a [`PrivateCluster`] of the test's
//! own, which is stopped (`pg_ctl stop -m fast`) and started again. Every agent waits
//! the outage out — the AI agents' cycles are deferred, the monitors' passes fail and
//! are retried — and is `active` afterwards; nothing failed, so no outage, however
//! long, can add up to the intensity that parks agents in `manual`. A monitor may
//! still ask for the restart of an agent whose heartbeats the outage held back: that is
//! a requested restart, not a failure, and is allowed.
//!
//! The agents run at test pace (cycles every 100 ms, passes every 200 ms) so that an
//! outage of a few seconds holds dozens of cycles of each.

use std::time::Duration;

use vigil::cli::run::{PlatformConfig, builtin_agents, builtin_intensity};
use vigil_persistence::shared_state::Writer;
use vigil_persistence::testing::PrivateCluster;
use vigil_persistence::{PersistenceActor, SharedState};
use vigil_runtime::testkit::{assert_undisturbed, wait_until_active};
use vigil_runtime::{EventBus, EventKind, Runtime};

const LIMIT: Duration = Duration::from_secs(60);
const OUTAGE: Duration = Duration::from_secs(8);

fn at_test_pace() -> PlatformConfig {
    let mut config = PlatformConfig::default();
    let pass = Duration::from_millis(200);
    let monitoring = &mut config.monitoring;
    monitoring.coordinator.pass_interval = pass;
    monitoring.heartbeat_health.pass_interval = pass;
    monitoring.performance.pass_interval = pass;
    monitoring.shared_state.pass_interval = pass;
    monitoring.enhanced_shared_state.pass_interval = pass;
    monitoring.self_healing.pass_interval = pass;
    monitoring.restart_manager.pass_interval = pass;
    config
}

#[actix_rt::test]
async fn the_built_in_agents_wait_out_a_database_outage() {
    let Some(cluster) = PrivateCluster::start() else { return };
    // Readers give up within a second, so cycles meet the outage.
    let store = cluster.impatient_store().await;
    let writer = PersistenceActor::start(store.clone(), Default::default());
    let shared = SharedState::with_writer(store, Writer::Actor(writer));

    let bus = EventBus::new(1 << 16);
    let mut events = bus.subscribe();
    let mut builder = Runtime::builder(shared.clone()).events(bus).intensity(builtin_intensity());
    for child in builtin_agents(&at_test_pace()).unwrap() {
        builder = builder.child(
            child.cycle_interval(Duration::from_millis(100)).heartbeat_interval(Duration::from_millis(500)),
        );
    }
    let runtime = builder.start().await.unwrap();
    assert_eq!(runtime.agent_ids().len(), 10);

    cluster.stop();
    let mut deferred = 0;
    let outage = tokio::time::Instant::now();
    while let Some(left) = OUTAGE.checked_sub(outage.elapsed()) {
        match events.wait_for(left, |e| matches!(e.kind, EventKind::CycleDeferred { .. })).await {
            Ok(_) => deferred += 1,
            Err(_) => break,
        }
    }
    cluster.start_again();

    // Every agent is back at work: a heartbeat of each reaches the database again.
    let back = tokio::time::Instant::now();
    loop {
        let registered = shared.get_registered_agents().await;
        let fresh = registered
            .iter()
            .flatten()
            .filter(|a| {
                a.last_heartbeat.is_some_and(|t| t.get() > chrono::Utc::now() - chrono::Duration::seconds(2))
            })
            .count();
        if fresh == 10 {
            break;
        }
        assert!(back.elapsed() < LIMIT, "only {fresh} of 10 agents beat again after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until_active(&runtime, LIMIT).await.unwrap();
    assert_undisturbed(&runtime, &mut events).await;
    let report = runtime.shutdown().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(deferred > 0, "the outage was felt: cycles were deferred");
}
