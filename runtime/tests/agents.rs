//! An agent's whole life on both backends: start, cycles, heartbeats, typed messages,
//! failure and restart, shutdown. Waits on events and signals, never on sleeps.
//! Timers run on real time with short intervals: the store does its I/O on a runtime of
//! its own, and a paused clock would auto-advance past every safety-net timeout while
//! a query is in flight.

use std::time::Duration;

use tokio::sync::mpsc;
use vigil_persistence::SharedState;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::testing::TestDb;
use vigil_runtime::{
    Agent, AgentContext, AgentError, AgentMessage, AgentResult, EventKind, Handles, Runtime, State,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Signals each cycle; panics at the cycle numbers it is told to.
#[derive(vigil_runtime::Agent)]
#[agent(name = "worker", cycle = "50ms", heartbeat = "100ms")]
struct Worker {
    cycles: u64,
    panic_at: Option<u64>,
    tick: mpsc::UnboundedSender<u64>,
}

impl Agent for Worker {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        self.cycles += 1;
        if self.panic_at == Some(self.cycles) {
            panic!("injected failure at cycle {}", self.cycles);
        }
        let _ = self.tick.send(self.cycles);
        Ok(())
    }
}

/// A typed question with a typed answer.
struct HowMany;
impl AgentMessage for HowMany {
    type Reply = u64;
}

impl Handles<HowMany> for Worker {
    async fn handle(&mut self, _: HowMany, _ctx: &AgentContext) -> Result<u64, AgentError> {
        Ok(self.cycles)
    }
}

#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "second", cycle = "1h")]
struct Second;

impl Agent for Second {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

async fn full_life(db: TestDb, through_actor: bool) {
    let store = db.store().await;
    let shared = if through_actor {
        let writer = vigil_persistence::PersistenceActor::start(store.clone(), Default::default());
        SharedState::with_writer(store, vigil_persistence::shared_state::Writer::Actor(writer))
    } else {
        SharedState::new(store)
    };
    let (tick, mut ticks) = mpsc::unbounded_channel();
    let factory = move || Worker { cycles: 0, panic_at: None, tick: tick.clone() };
    let runtime =
        Runtime::builder(shared.clone()).agent(factory).agent(Second::default).start().await.unwrap();
    assert_eq!(runtime.agent_ids(), ["worker", "second"]);

    for expected in 1..=3 {
        let n = tokio::time::timeout(LIMIT, ticks.recv()).await.expect("a cycle ran").unwrap();
        assert_eq!(n, expected);
    }
    let asked = runtime.ask::<Worker, HowMany>("worker", HowMany).await.unwrap();
    assert!(asked >= 3, "{asked}");

    let agent = shared.get_agent("worker").await.unwrap().unwrap();
    assert_eq!(agent.status.as_deref(), Some("active"));
    assert!(agent.last_heartbeat.is_some(), "heartbeats are persisted");
    assert!(!shared.recent_heartbeats("worker", 5).await.unwrap().is_empty());
    let transitions = shared
        .recent_events(EventFilter { event_type: Some("state_transition".into()), ..Default::default() })
        .await
        .unwrap();
    let worker_steps: Vec<String> = transitions
        .iter()
        .rev()
        .filter(|e| e.event_data.as_ref().unwrap().0["agent_id"] == "worker")
        .map(|e| e.event_data.as_ref().unwrap().0["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(worker_steps, ["deploying", "monitoring", "active"]);

    // Shutdown goes in reverse start order and persists `shutdown`.
    let mut events = runtime.subscribe();
    let report = runtime.shutdown().await;
    assert_eq!(report.stopped, ["second", "worker"]);
    assert!(report.failed.is_empty());
    let first = events.wait_for_state("second", State::Shutdown, LIMIT).await.unwrap();
    let second = events.wait_for_state("worker", State::Shutdown, LIMIT).await.unwrap();
    assert!(first.at <= second.at);
    assert_eq!(shared.get_agent("worker").await.unwrap().unwrap().status.as_deref(), Some("shutdown"));
}

#[actix_rt::test]
async fn full_life_on_sqlite() {
    full_life(TestDb::sqlite(), false).await;
}

#[actix_rt::test]
async fn full_life_on_postgres_through_the_persistence_actor() {
    let Some(db) = TestDb::postgres().await else { return };
    full_life(db, true).await;
}

#[actix_rt::test]
async fn a_panicking_cycle_is_restarted_with_fresh_state() {
    let db = TestDb::sqlite();
    let shared = SharedState::new(db.store().await);
    let (tick, mut ticks) = mpsc::unbounded_channel();
    // Every fresh instance panics at its second cycle.
    let factory = move || Worker { cycles: 0, panic_at: Some(2), tick: tick.clone() };
    let runtime = Runtime::builder(shared.clone())
        .intensity(vigil_runtime::RestartIntensity::new(5, Duration::from_secs(60)))
        .agent_with_id("worker", factory)
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let failure = events
        .wait_for(LIMIT, |e| matches!(e.kind, EventKind::Failure { .. }))
        .await
        .expect("the panic became a failure");
    let EventKind::Failure { reason } = &failure.kind else { unreachable!() };
    assert!(reason.contains("injected failure at cycle 2"), "{reason}");
    events.wait_for_state("worker", State::Error, LIMIT).await.unwrap();
    events.wait_for_state("worker", State::Recovery, LIMIT).await.unwrap();
    events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { attempt: 1 })).await.unwrap();
    events.wait_for_state("worker", State::Active, LIMIT).await.unwrap();
    // The fresh instance counts from 1 again: state came from the factory.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(tokio::time::timeout(LIMIT, ticks.recv()).await.unwrap().unwrap());
    }
    assert_eq!(seen, [1, 1], "first instance's cycle 1, then the restarted instance's cycle 1");
    let statuses = runtime.statuses().await;
    assert!(statuses[0].restarts >= 1);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn exceeding_the_intensity_parks_the_agent_in_manual_until_fixed() {
    let db = TestDb::sqlite();
    let shared = SharedState::new(db.store().await);
    let (tick, _ticks) = mpsc::unbounded_channel();
    let factory = move || Worker { cycles: 0, panic_at: Some(1), tick: tick.clone() };
    let runtime = Runtime::builder(shared.clone())
        .intensity(vigil_runtime::RestartIntensity::new(1, Duration::from_secs(60)))
        .agent_with_id("worker", factory)
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let parked = events.wait_for_state("worker", State::Manual, LIMIT).await.unwrap();
    assert!(matches!(parked.cause, vigil_runtime::Cause::Escalation { .. }), "{:?}", parked.cause);
    assert_eq!(shared.get_agent("worker").await.unwrap().unwrap().status.as_deref(), Some("manual"));
    // Typed messages are refused while parked, with the state named.
    let refused = runtime.ask::<Worker, HowMany>("worker", HowMany).await.unwrap_err();
    assert!(matches!(refused, vigil_runtime::AskError::Unavailable(State::Manual)), "{refused:?}");
    // An illegal transition is a typed error and changes nothing.
    let illegal =
        runtime.transition::<Worker, _>("worker", vigil_runtime::lifecycle::Start).await.unwrap_err();
    assert!(matches!(illegal, vigil_runtime::LifecycleError::Illegal(_)), "{illegal:?}");
    let fixed =
        runtime.transition::<Worker, _>("worker", vigil_runtime::lifecycle::ManualFixed).await.unwrap();
    assert_eq!((fixed.from, fixed.to), (State::Manual, State::Active));
    runtime.shutdown().await;
}
