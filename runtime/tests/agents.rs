//! An agent's whole life: start, cycles, heartbeats, typed messages, failure and
//! restart, shutdown. Waits on events and signals, never on sleeps.
//!
//! The SQLite tests run on **virtual time**: `tokio::time::pause()` and an in-memory
//! store in process (`vigil_persistence::testing::in_memory_shared_state`), whose
//! queries take no virtual time. Intervals of seconds or hours then run at once and
//! exactly on schedule; a safety-net timeout still fails a test that hangs, at once
//! too, since the paused clock jumps to it when nothing else can happen. (Advancing by
//! hand needs a round trip to a new actor first, or its `started()` has not run;
//! `Runtime::start` does that by waiting until every agent is active.)
//!
//! PostgreSQL's socket I/O does not hold a paused clock, so its full-life test runs on
//! real time.

use std::time::Duration;

use tokio::sync::mpsc;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::testing::{TestDb, in_memory_shared_state};
use vigil_persistence::{SharedState, Store};
use vigil_runtime::{
    Agent, AgentContext, AgentError, AgentMessage, AgentResult, EventKind, Handles, Runtime, State,
};

mod common;

// Safety net for one awaited step (virtual time in the SQLite tests, real on PostgreSQL).
use common::LIMIT;

/// Whether `elapsed` (virtual) is `expected`, allowing for tokio's timer wheel, which
/// rounds each deadline up to the next millisecond.
fn on_time(elapsed: Duration, expected: Duration) -> bool {
    elapsed >= expected && elapsed - expected <= Duration::from_millis(5)
}

/// Starts virtual time and opens an in-memory store on it.
async fn on_virtual_time() -> SharedState {
    tokio::time::pause();
    in_memory_shared_state().await
}

/// Signals each cycle; panics at the cycle numbers it is told to.
#[derive(vigil_runtime::Agent)]
#[agent(name = "worker", cycle = "2s", heartbeat = "5s")]
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

async fn full_life(store: Store, through_actor: bool) {
    let shared = if through_actor { common::with_own_writer(store) } else { SharedState::direct(store) };
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
    assert_eq!(agent.status, Some(State::Active));
    assert!(agent.last_heartbeat.is_some(), "heartbeats are persisted");
    // Each heartbeat also refreshes the agent's uptime figures in its row.
    let uptime = agent.uptime_details.expect("uptime_details written").0;
    assert_eq!(uptime["restarts"], 0, "{uptime}");
    assert!(uptime["cycles"].is_u64() && uptime["spawned_at"].is_string(), "{uptime}");
    assert!(!shared.recent_heartbeats("worker", 5).await.unwrap().is_empty());
    let transitions = shared.recent_transitions(EventFilter::default()).await.unwrap();
    let worker_steps: Vec<State> =
        transitions.iter().rev().filter(|t| t.agent_id == "worker").map(|t| t.to).collect();
    assert_eq!(worker_steps, [State::Deploying, State::Monitoring, State::Active]);

    // Shutdown goes in reverse start order and persists `shutdown`.
    let mut events = runtime.subscribe();
    let report = runtime.shutdown().await;
    assert_eq!(report.stopped, ["second", "worker"]);
    assert!(report.failed.is_empty());
    let first = events.wait_for_state("second", State::Shutdown, LIMIT).await.unwrap();
    let second = events.wait_for_state("worker", State::Shutdown, LIMIT).await.unwrap();
    assert!(first.at <= second.at);
    assert_eq!(shared.get_agent("worker").await.unwrap().unwrap().status, Some(State::Shutdown));
}

#[actix_rt::test]
async fn full_life_on_sqlite_on_virtual_time() {
    let started = std::time::Instant::now();
    let shared = on_virtual_time().await;
    full_life(shared.store().clone(), false).await;
    assert!(started.elapsed() < Duration::from_secs(5), "three 2 s cycles took {:?}", started.elapsed());
}

#[actix_rt::test]
async fn full_life_on_sqlite_through_the_persistence_actor_on_virtual_time() {
    let shared = on_virtual_time().await;
    full_life(shared.store().clone(), true).await;
}

/// The production set-up, on real time: PostgreSQL, the store's own runtime, the
/// persistence actor.
#[actix_rt::test]
async fn full_life_on_postgres_through_the_persistence_actor() {
    let Some(db) = TestDb::postgres().await else { return };
    full_life(db.store().await, true).await;
}

#[actix_rt::test]
async fn a_panicking_cycle_is_restarted_with_fresh_state() {
    let shared = on_virtual_time().await;
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
    let EventKind::Failure { failure } = &failure.kind else { unreachable!() };
    assert_eq!(failure.stage, vigil_runtime::Stage::Cycle);
    assert!(
        matches!(&failure.kind, vigil_runtime::FailureKind::Panic { message } if message.contains("injected failure at cycle 2")),
        "{failure:?}"
    );
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

/// Hangs in its second cycle (the first instance only): stuck on an await that never
/// completes, while its heartbeats go on.
#[derive(vigil_runtime::Agent)]
#[agent(name = "stuck", cycle = "2s", cycle_timeout = "1m", heartbeat = "5s")]
struct Stuck {
    cycles: u64,
    hang: bool,
    tick: mpsc::UnboundedSender<(bool, u64)>,
}

impl Agent for Stuck {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        self.cycles += 1;
        let _ = self.tick.send((self.hang, self.cycles));
        if self.hang && self.cycles == 2 {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[actix_rt::test]
async fn a_cycle_past_its_timeout_is_cancelled_and_the_agent_restarted() {
    let shared = on_virtual_time().await;
    let (tick, mut ticks) = mpsc::unbounded_channel();
    let first = std::sync::atomic::AtomicBool::new(true);
    let factory = move || Stuck {
        cycles: 0,
        hang: first.swap(false, std::sync::atomic::Ordering::Relaxed),
        tick: tick.clone(),
    };
    let runtime = Runtime::builder(shared.clone()).agent_with_id("stuck", factory).start().await.unwrap();
    let mut events = runtime.subscribe();
    assert_eq!(tokio::time::timeout(LIMIT, ticks.recv()).await.unwrap(), Some((true, 1)));
    assert_eq!(tokio::time::timeout(LIMIT, ticks.recv()).await.unwrap(), Some((true, 2)));
    let hung_at = tokio::time::Instant::now();
    let failure = events
        .wait_for(Duration::from_secs(120), |e| matches!(e.kind, EventKind::Failure { .. }))
        .await
        .expect("the hung cycle became a failure");
    // At its timeout, not before (virtual time: exactly one minute later).
    assert!(on_time(hung_at.elapsed(), Duration::from_secs(60)), "{:?}", hung_at.elapsed());
    let EventKind::Failure { failure } = &failure.kind else { unreachable!() };
    assert_eq!(
        (failure.stage, &failure.kind),
        (vigil_runtime::Stage::Cycle, &vigil_runtime::FailureKind::Timeout { limit_ms: 60_000 })
    );
    events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { attempt: 1 })).await.unwrap();
    // The fresh instance cycles again; the hung one was dropped with its cycle.
    assert_eq!(tokio::time::timeout(LIMIT, ticks.recv()).await.unwrap(), Some((false, 1)));
    assert_eq!(tokio::time::timeout(LIMIT, ticks.recv()).await.unwrap(), Some((false, 2)));
    let status = &runtime.statuses().await[0];
    assert_eq!((status.state, status.restarts), (State::Active, 1));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn exceeding_the_intensity_parks_the_agent_in_manual_until_fixed() {
    let shared = on_virtual_time().await;
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
    // Transitions are queued in the runtime's writer: flush to read them back.
    runtime.shared_state().flush().await.unwrap();
    assert_eq!(shared.get_agent("worker").await.unwrap().unwrap().status, Some(State::Manual));
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

/// Reports the virtual instant of each cycle.
#[derive(vigil_runtime::Agent)]
#[agent(name = "hourly", cycle = "1h", heartbeat = "10m")]
struct Hourly {
    tick: mpsc::UnboundedSender<tokio::time::Instant>,
}

impl Agent for Hourly {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        let _ = self.tick.send(tokio::time::Instant::now());
        Ok(())
    }
}

/// Three hours of an agent's life in moments: cycles on the hour, heartbeats every
/// ten virtual minutes, all persisted.
#[actix_rt::test]
async fn hours_of_cycles_and_heartbeats_run_at_once_on_virtual_time() {
    let real = std::time::Instant::now();
    let shared = on_virtual_time().await;
    let (tick, mut ticks) = mpsc::unbounded_channel();
    let runtime =
        Runtime::builder(shared.clone()).agent(move || Hourly { tick: tick.clone() }).start().await.unwrap();
    // Queries take no virtual time: the timers started at this very instant.
    let timers_started = tokio::time::Instant::now();
    const HOUR: Duration = Duration::from_secs(3600);
    for n in 1..=3u32 {
        let at = tokio::time::timeout(2 * HOUR, ticks.recv()).await.expect("a cycle ran").unwrap();
        let since = at - timers_started;
        assert!(on_time(since, n * HOUR), "cycle {n} at {since:?}");
    }
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "3 virtual hours took {:?} of real time",
        real.elapsed()
    );

    let status = &runtime.statuses().await[0];
    assert_eq!((status.cycles, status.overruns), (3, 0));
    // One heartbeat at start, then one per 10 minutes: 18 or 19 by the third hour (the
    // one due with the third cycle may still be on its way).
    let beats = shared.recent_heartbeats("hourly", 1000).await.unwrap().len();
    assert!((18..=19).contains(&beats), "{beats} heartbeats in 3 virtual hours");
    runtime.shutdown().await;
}

/// What one overrunning cycle saw.
#[derive(Debug)]
struct SlowCycle {
    started: tokio::time::Instant,
    ended: tokio::time::Instant,
    /// The agent's heartbeat rows when the cycle began and when it ended.
    heartbeats: (usize, usize),
}

/// Its cycle takes three of its intervals.
#[derive(vigil_runtime::Agent)]
#[agent(name = "slow", cycle = "2s", heartbeat = "1s")]
struct Slow {
    report: mpsc::UnboundedSender<SlowCycle>,
}

impl Agent for Slow {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let count = || async {
            Ok::<_, AgentError>(ctx.shared_state().recent_heartbeats(ctx.agent_id(), 1000).await?.len())
        };
        let before = count().await?;
        let started = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let ended = tokio::time::Instant::now();
        let after = count().await?;
        let _ = self.report.send(SlowCycle { started, ended, heartbeats: (before, after) });
        Ok(())
    }
}

/// A cycle that runs three times its interval is not run twice: the ticks it spans are
/// skipped and counted as overruns, not queued; heartbeats keep their own timer and go
/// on being persisted while it runs.
#[actix_rt::test]
async fn an_overrunning_cycle_is_not_run_twice_and_heartbeats_go_on() {
    let shared = on_virtual_time().await;
    let (report, mut reports) = mpsc::unbounded_channel();
    let runtime = Runtime::builder(shared.clone())
        .agent(move || Slow { report: report.clone() })
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let mut cycles: Vec<SlowCycle> = Vec::new();
    while cycles.len() < 3 {
        cycles.push(tokio::time::timeout(LIMIT, reports.recv()).await.expect("a slow cycle ended").unwrap());
    }
    let status = &runtime.statuses().await[0];
    assert_eq!(status.cycles, 3, "each cycle counted once");
    // Two ticks fall inside every 6 s cycle (the one at its very end may go either way).
    assert!(status.overruns >= 6, "overruns: {}", status.overruns);
    events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::CycleOverrun)).await.unwrap();

    for (n, cycle) in cycles.iter().enumerate() {
        assert!(on_time(cycle.ended - cycle.started, Duration::from_secs(6)), "cycle {n}: {cycle:?}");
        let (before, after) = cycle.heartbeats;
        assert!(
            (5..=7).contains(&(after - before)),
            "cycle {n}: {} heartbeats persisted during it",
            after - before
        );
    }
    for pair in cycles.windows(2) {
        let gap = pair[1].started - pair[0].ended;
        // Not queued (no back-to-back rerun of skipped ticks) ... on the next tick.
        assert!(
            gap <= Duration::from_secs(2) + Duration::from_millis(5),
            "next cycle {gap:?} after the last ended"
        );
        assert!(pair[1].started >= pair[0].ended, "never two at once");
    }
    runtime.shutdown().await;
}

/// `Runtime::builder` over a direct shared state starts a persistence actor of its
/// own: every registration, transition and heartbeat of the platform goes through that
/// one writer, in batches, and is committed when `shutdown` returns.
#[actix_rt::test]
async fn one_writer_carries_every_write_of_the_runtime() {
    use vigil_persistence::writes::WriteKind;
    use vigil_runtime::testkit::{FaultPlan, FaultyAgent};
    const AGENTS: u64 = 50;

    let direct = in_memory_shared_state().await;
    assert!(direct.writer_stats().is_none(), "a direct shared state has no writer of its own");
    let plan = FaultPlan::new();
    let mut builder = Runtime::builder(direct.clone());
    for i in 0..AGENTS {
        let plan = plan.clone();
        builder = builder.agent_with_id(format!("agent-{i}"), move || FaultyAgent::new(plan.clone()));
    }
    let runtime = builder.start().await.unwrap();
    let report = runtime.shutdown().await;
    assert_eq!(report.stopped.len() as u64, AGENTS, "{report:?}");

    let stats = runtime.shared_state().writer_stats().expect("the runtime's own writer");
    let rows = |kind| stats.rows_by_kind.get(&kind).copied().unwrap_or(0);
    assert_eq!(rows(WriteKind::RegisterAgent), AGENTS);
    // initializing -> deploying -> monitoring -> active -> shutdown: four each.
    assert_eq!(rows(WriteKind::StateChange), 4 * AGENTS);
    assert_eq!(rows(WriteKind::Event), 4 * AGENTS, "one state_transition event per transition");
    assert!(rows(WriteKind::Heartbeat) >= AGENTS, "every agent beats once at start: {stats:?}");
    assert!(
        stats.batches_committed * 5 < stats.writes_committed,
        "group commit: {} writes in {} transactions",
        stats.writes_committed,
        stats.batches_committed
    );
    // Nothing went around the writer: the database holds exactly what it committed.
    let counts = direct.table_counts().await.unwrap();
    assert_eq!(counts["agent_heartbeats"] as u64, rows(WriteKind::Heartbeat));
    assert_eq!(counts["system_events"] as u64, rows(WriteKind::Event));
    for agent in direct.get_registered_agents().await.unwrap() {
        assert_eq!(agent.status, Some(State::Shutdown), "committed when shutdown returned");
    }
}
