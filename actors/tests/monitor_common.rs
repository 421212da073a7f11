//! Shared test helpers: a worker whose heartbeats can be made to stop, fast configs,
//! and waiting helpers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use vigil_actors::monitoring_config::MonitoringConfig;
use vigil_persistence::SharedState;
use vigil_persistence::lifecycle::{State, TransitionRecord};
use vigil_persistence::shared_state::EventFilter;
use vigil_runtime::{Agent, AgentContext, AgentResult, RestartIntensity, Runtime, RuntimeBuilder};

pub(crate) use crate::common::{LIMIT, eventually as wait_for_value};

/// The user agent of the incidents: cycles every 50 ms, beats every 200 ms. When its
/// wedge is set, its heartbeats carry `{"wedged": true}` and the trigger installed by
/// [`install_heartbeat_blackhole`] makes the database refuse them: the agent lives
/// on, but no heartbeat of it reaches the shared state — an agent that stopped
/// heartbeating, as the monitors see it. By default only the first instance is
/// wedged, so a restart (a fresh instance from the factory) cures it.
#[derive(vigil_runtime::Agent, Debug)]
#[agent(name = "worker", cycle = "50ms", heartbeat = "200ms")]
pub(crate) struct Worker {
    instance: u64,
    wedge: Wedge,
}

impl Agent for Worker {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }

    fn heartbeat_payload(&self) -> Option<Value> {
        Some(serde_json::json!({ "wedged": self.wedge.applies_to(self.instance), "instance": self.instance }))
    }
}

/// The switch that stops a worker's heartbeats.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wedge {
    on: Arc<AtomicBool>,
    every_instance: bool,
    instances: Arc<AtomicU64>,
}

impl Wedge {
    /// A wedge for the first instance only (a restart cures it).
    pub(crate) fn first_instance() -> Self {
        Self::default()
    }

    /// A wedge for every instance (restarts do not help).
    pub(crate) fn every_instance() -> Self {
        Self { every_instance: true, ..Self::default() }
    }

    /// Stops the heartbeats.
    pub(crate) fn set(&self) {
        self.on.store(true, Ordering::SeqCst);
    }

    fn applies_to(&self, instance: u64) -> bool {
        self.on.load(Ordering::SeqCst) && (self.every_instance || instance == 0)
    }

    /// A factory of workers counting instances.
    pub(crate) fn factory(&self) -> impl Fn() -> Worker + Send + Sync + 'static {
        let wedge = self.clone();
        move || Worker { instance: wedge.instances.fetch_add(1, Ordering::SeqCst), wedge: wedge.clone() }
    }
}

/// Makes the database refuse heartbeats whose metadata says `"wedged": true`.
pub(crate) async fn install_heartbeat_blackhole(shared: &SharedState) {
    let store = shared.store();
    if store.is_postgres() {
        store
            .execute_raw_for_tests(
                "CREATE FUNCTION refuse_wedged() RETURNS trigger AS $$ BEGIN \
                 IF NEW.metadata->>'wedged' = 'true' THEN RAISE EXCEPTION 'wedged agent: heartbeat refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await
            .unwrap();
        store
            .execute_raw_for_tests(
                "CREATE TRIGGER refuse_wedged BEFORE INSERT ON agent_heartbeats \
                 FOR EACH ROW EXECUTE FUNCTION refuse_wedged()",
            )
            .await
            .unwrap();
    } else {
        store
            .execute_raw_for_tests(
                "CREATE TRIGGER refuse_wedged BEFORE INSERT ON agent_heartbeats \
                 WHEN json_extract(NEW.metadata, '$.wedged') = 1 \
                 BEGIN SELECT RAISE(ABORT, 'wedged agent: heartbeat refused'); END",
            )
            .await
            .unwrap();
    }
}

/// Every monitor with short passes and thresholds scaled down from the defaults.
pub(crate) fn fast_config() -> MonitoringConfig {
    let mut c = MonitoringConfig::default();
    let pass = Duration::from_millis(200);
    let claim = Duration::from_secs(10);
    c.coordinator.pass_interval = pass;
    c.coordinator.claim_ttl = claim;
    c.heartbeat_health.pass_interval = pass;
    c.heartbeat_health.unresponsive_min_age = Duration::from_secs(1);
    c.heartbeat_health.claim_ttl = claim;
    c.heartbeat_health.recovery_timeout = Duration::from_secs(20);
    c.performance.pass_interval = pass;
    c.shared_state.pass_interval = pass;
    c.shared_state.active_within = Duration::from_secs(1);
    c.shared_state.stale_within = Duration::from_secs(3);
    c.enhanced_shared_state.pass_interval = pass;
    c.enhanced_shared_state.active_without_heartbeat = Duration::from_secs(1);
    c.self_healing.pass_interval = pass;
    c.self_healing.failed_after = Duration::from_secs(1);
    c.self_healing.claim_ttl = claim;
    c.restart_manager.pass_interval = pass;
    c.restart_manager.stale_after = Duration::from_secs(1);
    c.restart_manager.critical_after = Duration::from_secs(3);
    c.restart_manager.cooldown = Duration::from_secs(2);
    c.restart_manager.claim_ttl = claim;
    c
}

/// A builder over `shared` whose supervisor tolerates the restarts of a test.
pub(crate) fn builder(shared: &SharedState) -> RuntimeBuilder {
    Runtime::builder(shared.clone()).intensity(RestartIntensity::new(10, Duration::from_secs(60)))
}

/// Polls `condition` until it holds; panics with `what` after [`LIMIT`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value(what, || {
        let met = condition();
        async move { met.await.then_some(()) }
    })
    .await
}

/// Payloads of the events of `event_type`, oldest first.
pub(crate) async fn events(shared: &SharedState, event_type: &str) -> Vec<Value> {
    let mut found: Vec<Value> = shared
        .recent_events(EventFilter {
            event_type: Some(event_type.into()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.event_data.map(|d| d.0))
        .collect();
    found.reverse();
    found
}

/// Payloads of the events of `event_type` about `agent`.
pub(crate) async fn events_about(shared: &SharedState, event_type: &str, agent: &str) -> Vec<Value> {
    events(shared, event_type).await.into_iter().filter(|e| e["agent_id"] == agent).collect()
}

/// Waits for the first event of `event_type` about `agent` and returns it.
pub(crate) async fn wait_for_event(shared: &SharedState, event_type: &str, agent: &str) -> Value {
    wait_for_value(&format!("`{event_type}` about `{agent}`"), || async {
        events_about(shared, event_type, agent).await.into_iter().next()
    })
    .await
}

/// The transitions of `agent` recorded in `state_transition` events, oldest first.
pub(crate) async fn transitions_of(shared: &SharedState, agent: &str) -> Vec<TransitionRecord> {
    let filter = EventFilter { limit: Some(10_000), ..Default::default() };
    let mut found: Vec<_> = shared
        .recent_transitions(filter)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.agent_id == agent)
        .collect();
    found.reverse();
    found
}

/// Transitions of `agent` into `to` recorded in `state_transition` events.
pub(crate) async fn transitions_into(shared: &SharedState, agent: &str, to: State) -> usize {
    transitions_of(shared, agent).await.iter().filter(|t| t.to == to).count()
}

/// Passes `monitor` has completed (its `monitor_pass_ms` samples).
pub(crate) async fn passes(shared: &SharedState, monitor: &str) -> usize {
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).into();
    shared.metric_series("monitor_pass_ms", Some(monitor), since).await.unwrap().len()
}

/// Waits until each of `monitors` has completed `more` passes beyond now.
pub(crate) async fn wait_for_passes(shared: &SharedState, monitors: &[&str], more: usize) {
    for monitor in monitors {
        let start = passes(shared, monitor).await;
        wait_until(&format!("{more} more passes of {monitor}"), || async {
            passes(shared, monitor).await >= start + more
        })
        .await;
    }
}

/// Waits until `agent` has at least `n` heartbeats on record.
pub(crate) async fn wait_for_heartbeats(shared: &SharedState, agent: &str, n: usize) {
    wait_until(&format!("{n} heartbeats of {agent}"), || async {
        shared.recent_heartbeats(agent, n as i64).await.unwrap().len() >= n
    })
    .await;
}

/// Stops `worker`'s heartbeats and waits until the database has refused one. Heartbeats
/// are fire-and-forget writes of the runtime's writer, so the refusal shows in its
/// statistics (a rejected write), not to the agent.
pub(crate) async fn stop_heartbeats(runtime: &Runtime, wedge: &Wedge) {
    let rejected = || runtime.shared_state().writer_stats().expect("the runtime's writer").rejected_writes;
    let before = rejected();
    wedge.set();
    wait_until("a heartbeat of the wedged worker refused", || async { rejected() > before }).await;
}
