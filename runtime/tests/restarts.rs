//! Restarts that are not failures, and fixes that hold.
//!
//! A restart somebody asked for (an operator, a monitor) and a sibling restarted with
//! a failed child walk `active -> recovery -> active` with their own cause: no
//! `error`, no failure recorded, nothing counted against restart intensity. A fix
//! (`RuntimeControl::fix`) that cannot initialize the fresh instance leaves the agent
//! parked, and a fix that works clears the restart history that parked the agent. A
//! restart whose RecoveryStart cannot be recorded is a failed restart, not a silent one.
//! Every wait is on an event, with a timeout as a safety net.

use std::time::Duration;

use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::shared_state::Writer;
use vigil_persistence::{PersistenceActor, PersistenceConfig, SharedState};
use vigil_runtime::lifecycle::TransitionRecord;
use vigil_runtime::supervisor::Strategy;
use vigil_runtime::testkit::{Fault, FaultPlan, faulty_child, memory_state, wait_until_active};
use vigil_runtime::{
    Cause, ControlError, EventKind, LifecycleError, RestartIntensity, Runtime, Stage, State,
};

mod common;

use common::LIMIT;

/// The transitions of `agent` on record, newest first, once everything queued in the
/// runtime's writer has committed.
async fn transitions_of(state: &SharedState, agent: &str) -> Vec<TransitionRecord> {
    state.flush().await.unwrap();
    let all =
        state.recent_transitions(EventFilter { limit: Some(10_000), ..Default::default() }).await.unwrap();
    all.into_iter().filter(|t| t.agent_id == agent).collect()
}

#[actix_rt::test]
async fn three_operator_restarts_within_a_second_are_not_failures() {
    let plan = FaultPlan::new();
    // The default intensity, 1 restart in 5 s: two restarts counted as failures would
    // park the second agent.
    let runtime = Runtime::builder(memory_state().await)
        .intensity(RestartIntensity::default())
        .child(faulty_child(&plan, "a"))
        .child(faulty_child(&plan, "b"))
        .child(faulty_child(&plan, "c"))
        .start()
        .await
        .unwrap();
    let state = runtime.shared_state().clone(); // reads after its writer's flush
    let control = runtime.control().clone();
    let mut events = runtime.subscribe();
    for id in ["a", "b", "c"] {
        control.restart(id, "operator asked").await.unwrap();
    }
    for _ in 0..3 {
        let restarted =
            events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { .. })).await.unwrap();
        assert_eq!(restarted.cause, Cause::RestartRequested { reason: "operator asked".into() });
    }
    wait_until_active(&runtime, LIMIT).await.unwrap();
    state.flush().await.unwrap();
    for status in runtime.statuses().await {
        assert_eq!((status.state, status.restarts), (State::Active, 1), "{status:?}");
        assert_eq!(state.get_agent(&status.agent_id).await.unwrap().unwrap().status, Some(State::Active));
        let recorded = transitions_of(&state, &status.agent_id).await;
        assert!(recorded.iter().all(|t| !t.is_failure() && t.to != State::Error && t.to != State::Manual));
        let restart = recorded.iter().find(|t| t.to == State::Recovery).expect("the restart was recorded");
        assert_eq!(restart.from, State::Active, "straight from active, not through error");
        assert_eq!(restart.severity(), vigil_persistence::Severity::Info);
    }
    // Nothing was counted: a real failure now is still the first restart of the period.
    let _ = plan.clone().at_cycle("a", plan.cycles("a") + 3, Fault::Panic);
    let restarted = events
        .wait_for(LIMIT, |e| e.agent_id == "a" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .unwrap();
    assert_eq!(restarted.cause, Cause::Restart { attempt: 1 });
    events.wait_for_state("a", State::Active, LIMIT).await.unwrap();
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_sibling_restarted_under_one_for_all_records_the_sibling_not_a_failure() {
    let plan = FaultPlan::new().at_cycle("b", 3, Fault::Panic);
    let runtime = Runtime::builder(memory_state().await)
        .strategy(Strategy::OneForAll)
        .intensity(RestartIntensity::new(10, Duration::from_secs(60)))
        .child(faulty_child(&plan, "a"))
        .child(faulty_child(&plan, "b"))
        .start()
        .await
        .unwrap();
    let state = runtime.shared_state().clone(); // reads after its writer's flush
    let mut events = runtime.subscribe();
    let sibling = events.wait_for_state("a", State::Recovery, LIMIT).await.unwrap();
    assert_eq!(sibling.cause, Cause::SiblingRestart { sibling: "b".into() });
    wait_until_active(&runtime, LIMIT).await.unwrap();

    let a = transitions_of(&state, "a").await;
    assert!(a.iter().all(|t| t.to != State::Error), "the sibling never failed: {a:?}");
    let restart = a.iter().find(|t| t.to == State::Recovery).unwrap();
    assert_eq!(
        (restart.from, &restart.cause),
        (State::Active, &Cause::SiblingRestart { sibling: "b".into() })
    );
    let b = transitions_of(&state, "b").await;
    assert_eq!(b.iter().filter(|t| t.is_failure()).count(), 1, "{b:?}");
    runtime.shutdown().await;
}

/// Parks `w` (two panics, intensity 1 in 60 s) next to a healthy bystander.
async fn parked_w(plan: &FaultPlan) -> (Runtime, SharedState) {
    let _ = plan.clone().at_cycle("w", 1, Fault::Panic).at_cycle("w", 2, Fault::Panic);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(faulty_child(plan, "w"))
        .child(faulty_child(plan, "bystander"))
        .start()
        .await
        .unwrap();
    runtime.subscribe().wait_for_state("w", State::Manual, LIMIT).await.unwrap();
    // The runtime's shared state: it writes through the runtime's writer, and its
    // `flush` makes the queued transitions readable.
    let state = runtime.shared_state().clone();
    (runtime, state)
}

#[actix_rt::test]
async fn a_fix_whose_initialize_fails_stays_manual() {
    let plan = FaultPlan::new();
    let (runtime, state) = parked_w(&plan).await;
    let _ = plan.clone().on_initialize("w", Fault::Error, 1);

    let refused = runtime.control().fix("w").await.unwrap_err();
    let ControlError::Lifecycle(LifecycleError::InitializeFailed(failure)) = &refused else {
        panic!("expected a typed initialize failure, got {refused:?}")
    };
    assert_eq!(failure.stage, Stage::Initialize);
    assert!(refused.to_string().contains("injected error in w.initialize"), "{refused}");
    assert_eq!(runtime.control().status("w").await.unwrap().state, State::Manual);
    state.flush().await.unwrap();
    assert_eq!(state.get_agent("w").await.unwrap().unwrap().status, Some(State::Manual));
    let last = transitions_of(&state, "w").await.into_iter().next().unwrap();
    assert_eq!(last.to, State::Manual, "no ManualFixed was recorded");

    // The next fix, with a healthy initialize, brings it back.
    let fixed = runtime.control().fix("w").await.unwrap();
    assert_eq!((fixed.from, fixed.to), (State::Manual, State::Active));
    state.flush().await.unwrap();
    assert_eq!(state.get_agent("w").await.unwrap().unwrap().status, Some(State::Active));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn one_fault_after_a_fix_is_an_ordinary_restart() {
    let plan = FaultPlan::new();
    let (runtime, _state) = parked_w(&plan).await;
    runtime.control().fix("w").await.unwrap();
    let mut events = runtime.subscribe();

    let _ = plan.clone().at_cycle("w", plan.cycles("w") + 3, Fault::Panic);
    let mut seen = Vec::new();
    while seen.last() != Some(&State::Active) || !seen.contains(&State::Recovery) {
        let event = events.wait_for(LIMIT, |e| e.agent_id == "w" && e.entered().is_some()).await.unwrap();
        seen.extend(event.entered());
    }
    assert_eq!(seen, [State::Error, State::Recovery, State::Active], "restarted, not parked");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_restart_whose_recovery_start_cannot_be_recorded_is_a_failed_restart() {
    let plan = FaultPlan::new();
    // A writer the test owns, so it can take it away from the running tree.
    let store = memory_state().await.store().clone();
    let writer = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let state = SharedState::with_writer(store, Writer::Actor(writer.clone()));
    let runtime = Runtime::builder(state)
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(faulty_child(&plan, "w"))
        .start()
        .await
        .unwrap();
    // The writer gone, no transition of `w` can be recorded.
    writer.shutdown().await;
    let mut events = runtime.subscribe();
    runtime.control().restart("w", "operator asked").await.unwrap();

    // RecoveryStart failed: a failure of the restart, retried once, then escalated ...
    let gave_up = events
        .wait_for(LIMIT, |e| e.agent_id == "root" && matches!(e.kind, EventKind::Failure { .. }))
        .await
        .unwrap();
    let Cause::Escalation { reason } = &gave_up.cause else { panic!("{:?}", gave_up.cause) };
    assert!(reason.contains("could not be persisted"), "{reason}");
    // ... and the instance was never replaced behind a transition that did not happen.
    let w = runtime.control().status("w").await.unwrap();
    assert_eq!((w.state, w.restarts), (State::Active, 0), "{w:?}");
    runtime.shutdown().await;
}
