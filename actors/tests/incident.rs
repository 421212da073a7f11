//! The scripted incident, end to end on both backends: the seven monitors and a user
//! agent run; the user agent stops heartbeating; it is detected, restarted once — one
//! restart for the incident although four monitors want one — and everything is
//! recorded in `system_events`.

use vigil_persistence::testing::TestDb;
use vigil_runtime::{EventKind, State};

use crate::monitor_common::*;

/// The monitors that may restart an agent.
const RESTARTERS: [&str; 4] =
    ["agent_coordinator", "heartbeat_health", "self_healing", "agent_restart_manager"];

async fn scripted_incident(db: TestDb) {
    let shared = db.shared_state().await;
    install_heartbeat_blackhole(&shared).await;
    let wedge = Wedge::first_instance();
    let runtime = vigil_actors::with_monitoring(builder(&shared).agent(wedge.factory()), &fast_config())
        .start()
        .await
        .unwrap();
    assert_eq!(runtime.agent_ids().len(), 8);
    wait_for_heartbeats(&shared, "worker", 4).await;
    // Every monitor has run before the incident.
    wait_for_passes(
        &shared,
        &[
            "agent_coordinator",
            "heartbeat_health",
            "performance_monitor",
            "shared_state_monitor",
            "enhanced_shared_state_monitor",
            "self_healing",
            "agent_restart_manager",
        ],
        1,
    )
    .await;

    // The incident.
    let mut lifecycle = runtime.subscribe();
    stop_heartbeats(&runtime, &wedge).await;

    // Detected and restarted through the supervisor ...
    lifecycle
        .wait_for(LIMIT, |e| e.agent_id == "worker" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .expect("the worker was restarted");
    lifecycle.wait_for_state("worker", State::Active, LIMIT).await.unwrap();
    // ... and confirmed healthy by its next heartbeat.
    let confirmed = wait_for_event(&shared, "recovery_confirmed", "worker").await;
    let claimant = shared.incident_claim("worker").await.unwrap().expect("the incident was claimed").claimant;
    assert!(RESTARTERS.contains(&claimant.as_str()), "{claimant}");
    assert_eq!(confirmed["restarted_by"], claimant.as_str());

    // Let every restarter look again a few times: nobody restarts it a second time.
    wait_for_passes(&shared, &RESTARTERS, 3).await;
    assert_eq!(transitions_into(&shared, "worker", State::Recovery).await, 1, "one restart for one incident");
    let worker = runtime.control().status("worker").await.unwrap();
    assert_eq!((worker.restarts, worker.state), (1, State::Active));
    // The monitors left each other alone.
    for status in runtime.statuses().await {
        if status.agent_id != "worker" {
            assert_eq!((status.restarts, status.state), (0, State::Active), "{}", status.agent_id);
        }
    }
    let mut executed = 0;
    for attempt in events_about(&shared, "agent_restart_attempt", "worker").await {
        executed += usize::from(attempt["outcome"] == "requested");
    }
    for action in events_about(&shared, "recovery_action_executed", "worker").await {
        executed += usize::from(action["action"] == "restart");
    }
    executed += events_about(&shared, "agent_recovery_requested", "worker").await.len();
    for request in events_about(&shared, "agent_restart_requested", "worker").await {
        executed += usize::from(request["outcome"] == "requested");
    }
    assert_eq!(executed, 1, "exactly one monitor acted");

    // The record: the transitions, the summaries, the score.
    // A monitor's restart is a requested one: straight to recovery, not a failure.
    let transitions = transitions_of(&shared, "worker").await;
    let steps: Vec<State> = transitions.iter().map(|t| t.to).collect();
    assert!(steps.ends_with(&[State::Recovery, State::Active]), "{steps:?}");
    assert!(!steps.contains(&State::Error) && transitions.iter().all(|t| !t.is_failure()), "{transitions:?}");
    let restart = transitions.iter().find(|t| t.to == State::Recovery).unwrap();
    assert!(matches!(restart.cause, vigil_runtime::Cause::RestartRequested { .. }), "{:?}", restart.cause);
    assert!(shared.get_system_state("system_health_summary").await.unwrap().is_some());
    assert!(shared.get_system_state("shared_state_summary").await.unwrap().is_some());
    assert!(!events(&shared, "shared_state_consistency_report").await.is_empty());
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).into();
    assert!(!shared.metric_series("cycle_duration_ms", Some("worker"), since).await.unwrap().is_empty());
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn scripted_incident_on_sqlite() {
    scripted_incident(TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn scripted_incident_on_postgres() {
    let Some(db) = TestDb::postgres().await else { return };
    scripted_incident(db).await;
}
