//! Operator commands through the database reach the running tree: restart, stop, fix
//! and the operational transitions (maintenance, standby, optimization) by agent id,
//! submitted from a second connection as another process would.

use std::time::{Duration, Instant};

mod common;

use vigil_persistence::SharedState;
use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::testing::TestDb;
use vigil_runtime::supervisor::ChildSpec;
use vigil_runtime::testkit::{FaultPlan, FaultyAgent, eventually, wait_for_cycle};
use vigil_runtime::{EventBus, EventStream, RestartIntensity, Runtime, State};

use common::LIMIT;

/// Submits a command from a separate store and waits for its outcome.
async fn run_command(
    operator: &SharedState,
    agent: &str,
    action: CommandAction,
) -> (String, String, Duration) {
    let id = operator.submit_agent_command(agent, action, Some("test")).await.unwrap();
    let started = Instant::now();
    let command = eventually(&format!("command {id} to be carried out"), LIMIT, || async move {
        operator.get_agent_command(id).await.unwrap().filter(|command| command.is_finished())
    })
    .await;
    (command.status, command.outcome.unwrap_or_default(), started.elapsed())
}

/// Waits until `agent` has completed `n` more cycles (the bus publishes cycle events).
async fn wait_for_more_cycles(runtime: &Runtime, events: &mut EventStream, agent: &str, n: u64) {
    let done = runtime.control().status(agent).await.unwrap().cycles;
    wait_for_cycle(events, agent, done + n, LIMIT).await.unwrap();
}

async fn commands_reach_the_runtime(db: TestDb) {
    let plan = FaultPlan::new();
    let agent = |id: &str| {
        let plan = plan.clone();
        ChildSpec::agent(id, move || FaultyAgent::new(plan.clone()))
    };
    let runtime = Runtime::builder(SharedState::direct(db.store().await))
        .events(EventBus::default().with_cycle_events())
        .intensity(RestartIntensity::new(10, Duration::from_secs(60)))
        .operator_commands(true)
        .child(agent("alpha"))
        .child(agent("beta"))
        .start()
        .await
        .unwrap();
    let operator = SharedState::direct(db.store().await);
    let mut cycles = runtime.subscribe();

    let (status, outcome, took) = run_command(&operator, "alpha", CommandAction::Restart).await;
    assert_eq!(status, "done", "{outcome}");
    assert!(outcome.contains("active again"), "{outcome}");
    println!("restart command carried out in {took:?}");
    assert_eq!(runtime.control().status("alpha").await.unwrap().restarts, 1);

    let (status, outcome, _) = run_command(&operator, "alpha", CommandAction::Fix).await;
    assert_eq!(status, "failed", "fix is refused unless the agent is parked: {outcome}");

    // Maintenance pauses the cycles (they run only in `active`), and ending it resumes
    // them; both transitions are persisted.
    let (status, outcome, _) = run_command(&operator, "alpha", CommandAction::Maintenance).await;
    assert_eq!((status.as_str(), outcome.as_str()), ("done", "MaintenanceRequest: active -> maintenance"));
    assert_eq!(
        operator.get_agent("alpha").await.unwrap().unwrap().status,
        Some(vigil_persistence::State::Maintenance)
    );
    let paused_at = plan.cycles("alpha");
    // Three of beta's cycles (10 ms each) go by; alpha's count stays where it was.
    wait_for_more_cycles(&runtime, &mut cycles, "beta", 3).await;
    assert!(plan.cycles("alpha") <= paused_at + 1, "at most the cycle already running finished");
    let (status, outcome, _) = run_command(&operator, "alpha", CommandAction::Standby).await;
    assert_eq!(status, "failed", "standby is only from active: {outcome}");
    assert!(outcome.contains("maintenance"), "the error names the state: {outcome}");
    let (status, _, _) = run_command(&operator, "alpha", CommandAction::EndMaintenance).await;
    assert_eq!(status, "done");
    wait_for_more_cycles(&runtime, &mut cycles, "alpha", 2).await;
    // Only operational triggers are accepted by id.
    assert!(matches!(
        runtime.control().transition("alpha", vigil_runtime::Trigger::ErrorOccurred).await,
        Err(vigil_runtime::ControlError::NotOperational(_))
    ));

    let (status, _, _) = run_command(&operator, "beta", CommandAction::Stop).await;
    assert_eq!(status, "done");
    assert_eq!(operator.get_agent("beta").await.unwrap().unwrap().status, Some(State::Shutdown));

    // A command for an agent this runtime does not run stays pending for another one.
    let id = operator.submit_agent_command("elsewhere", CommandAction::Restart, None).await.unwrap();
    let alpha = run_command(&operator, "alpha", CommandAction::Restart).await;
    assert_eq!(alpha.0, "done");
    assert_eq!(operator.get_agent_command(id).await.unwrap().unwrap().status, "pending");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn commands_on_sqlite() {
    commands_reach_the_runtime(TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn commands_on_postgres_with_notify() {
    let Some(db) = TestDb::postgres().await else { return };
    commands_reach_the_runtime(db).await;
}
