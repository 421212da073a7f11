//! An outage is not a crash loop: while PostgreSQL is down, agents whose cycles read
//! and write through the shared state wait — their cycles are deferred, the writer
//! retries — and when it is back every agent is `active`, none was parked in `manual`,
//! and no acknowledged write was lost.
//!
//! The outage is real: a [`PrivateCluster`] of the test's own is stopped with
//! `pg_ctl stop -m fast` for longer than the restart intensity window, then started
//! again. So is the failover: a primary crashed and its standby promoted under the
//! same agents. The shared server on 5432 is never touched.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

mod common;

use tokio::sync::mpsc;
use vigil_persistence::shared_state::Metric;
use vigil_persistence::testing::{PrivateCluster, Replication};
use vigil_persistence::types::Ts;
use vigil_persistence::{SharedState, Store};
use vigil_runtime::testkit::assert_undisturbed;
use vigil_runtime::{
    Agent, AgentContext, AgentResult, ChildSpec, EventBus, EventKind, EventStream, RestartIntensity, Runtime,
};

/// Safety net for one awaited step.
const LIMIT: Duration = Duration::from_secs(60);

/// The root supervisor's intensity: one restart in 5 s, the default. Two failures of an
/// agent within 5 s park it, so an outage that failed cycles would park every agent.
const WINDOW: Duration = Duration::from_secs(5);

/// Reads its own row, then writes a numbered sample and waits for the commit; reports
/// each acknowledged sample.
#[derive(vigil_runtime::Agent)]
#[agent(name = "reader", cycle = "100ms", heartbeat = "200ms")]
struct Reader {
    written: u32,
    acknowledged: mpsc::UnboundedSender<(String, u32)>,
}

impl Agent for Reader {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let shared = ctx.shared_state();
        shared.get_agent(ctx.agent_id()).await?;
        self.written += 1;
        shared.add_performance_metric(Metric::new(ctx.agent_id(), f64::from(self.written))).await?;
        let _ = self.acknowledged.send((ctx.agent_id().to_owned(), self.written));
        Ok(())
    }
}

/// The samples each agent reported as committed.
#[derive(Default)]
struct Acked(HashMap<String, Vec<u32>>);

impl Acked {
    fn record(&mut self, (id, n): (String, u32)) {
        self.0.entry(id).or_default().push(n);
    }

    /// Waits until each of `ids` has acknowledged a new sample.
    async fn wait_for_a_cycle_of_each(
        &mut self,
        acks: &mut mpsc::UnboundedReceiver<(String, u32)>,
        ids: &[&str],
    ) {
        let mut fresh = HashSet::new();
        while fresh.len() < ids.len() {
            let ack = tokio::time::timeout(LIMIT, acks.recv()).await.expect("every agent cycles").unwrap();
            fresh.insert(ack.0.clone());
            self.record(ack);
        }
    }
}

/// Three [`Reader`]s under a root supervisor of the default intensity, on `shared`.
struct Fleet {
    shared: SharedState,
    runtime: Runtime,
    events: EventStream,
    acks: mpsc::UnboundedReceiver<(String, u32)>,
    acked: Acked,
    since: Ts,
}

const IDS: [&str; 3] = ["r1", "r2", "r3"];

impl Fleet {
    /// Starts the readers and waits until each has written once.
    async fn start(store: Store) -> Fleet {
        let shared = common::with_own_writer(store);
        let since = Ts::now();
        let (acknowledged, acks) = mpsc::unbounded_channel();
        let bus = EventBus::default();
        let events = bus.subscribe();
        let mut builder =
            Runtime::builder(shared.clone()).events(bus).intensity(RestartIntensity::new(1, WINDOW));
        for id in IDS {
            let acknowledged = acknowledged.clone();
            builder = builder.child(ChildSpec::agent(id, move || Reader {
                written: 0,
                acknowledged: acknowledged.clone(),
            }));
        }
        let runtime = builder.start().await.unwrap();
        let mut fleet = Fleet { shared, runtime, events, acks, acked: Acked::default(), since };
        fleet.acked.wait_for_a_cycle_of_each(&mut fleet.acks, &IDS).await;
        fleet
    }

    /// After the disruption: each agent comes back on its own and writes again, none
    /// was disturbed, and every sample it was told was committed is in the database.
    async fn carries_on_and_lost_nothing(mut self) {
        self.acked.wait_for_a_cycle_of_each(&mut self.acks, &IDS).await;
        assert_undisturbed(&self.runtime, &mut self.events).await;

        self.runtime.shutdown().await;
        while let Ok(ack) = self.acks.try_recv() {
            self.acked.record(ack);
        }
        for id in IDS {
            let stored: HashSet<u32> = self
                .shared
                .metric_series(id, None, self.since)
                .await
                .unwrap()
                .iter()
                .map(|m| m.metric_value as u32)
                .collect();
            let lost: Vec<&u32> = self.acked.0[id].iter().filter(|n| !stored.contains(n)).collect();
            assert!(lost.is_empty(), "{id}: acknowledged samples {lost:?} are not in the database");
        }
    }
}

#[actix_rt::test]
async fn a_database_outage_longer_than_the_intensity_window_parks_no_agent() {
    let Some(cluster) = PrivateCluster::start() else { return };
    // Readers give up within a second, so cycles meet the outage.
    let mut fleet = Fleet::start(cluster.impatient_store().await).await;

    // The outage: longer than the intensity window.
    cluster.stop();
    let down = tokio::time::Instant::now();
    let mut deferred = 0;
    while down.elapsed() < WINDOW + Duration::from_secs(1) {
        let left = (WINDOW + Duration::from_secs(1)).saturating_sub(down.elapsed());
        match fleet.events.wait_for(left, |e| matches!(e.kind, EventKind::CycleDeferred { .. })).await {
            Ok(_) => deferred += 1,
            Err(_) => break,
        }
    }
    cluster.start_again();
    assert!(deferred > 0, "the outage was felt: cycles were deferred");
    fleet.carries_on_and_lost_nothing().await;
}

/// A failover is not a crash loop either: agents reading and writing through a two-host
/// URL (`target_session_attrs=read-write`) carry on when the primary crashes and its
/// synchronous standby is promoted — no restart of the application, none parked, and
/// every sample acknowledged before or after the failover on the new primary.
#[actix_rt::test]
async fn a_failover_to_a_promoted_standby_parks_no_agent() {
    let Some((primary, standby)) = PrivateCluster::primary_and_standby(Replication::Synchronous) else {
        return;
    };
    let fleet = Fleet::start(primary.impatient_store_with(&standby).await).await;
    primary.crash();
    standby.promote();
    fleet.carries_on_and_lost_nothing().await;
}
