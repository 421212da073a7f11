//! Each restarting agent alone against a worker that stops heartbeating: detected
//! within its thresholds, restarted through the supervisor, recorded; the restart
//! manager's cooldown and cap.

use std::time::{Duration, Instant};

use vigil_actors::{AgentCoordinator, AgentRestartManager, HeartbeatHealthAgent, SelfHealingAgent};
use vigil_persistence::SharedState;
use vigil_persistence::testing::TestDb;
use vigil_runtime::{EventKind, Runtime, State};

use crate::monitor_common::*;

/// A runtime with `monitor` and a worker whose heartbeats are about to stop.
async fn setup(monitor: vigil_runtime::ChildSpec, wedge: &Wedge) -> (TestDb, SharedState, Runtime) {
    let db = TestDb::sqlite();
    let shared = db.shared_state().await;
    install_heartbeat_blackhole(&shared).await;
    let runtime = builder(&shared).agent(wedge.factory()).child(monitor).start().await.unwrap();
    // Enough heartbeats on record for the worker's interval to be known.
    wait_for_heartbeats(&shared, "worker", 4).await;
    (db, shared, runtime)
}

async fn wait_restarted(runtime: &Runtime) {
    let mut events = runtime.subscribe();
    let restarted = |statuses: Vec<vigil_runtime::AgentStatus>| {
        statuses.iter().any(|s| s.agent_id == "worker" && s.restarts >= 1 && s.state == State::Active)
    };
    if !restarted(runtime.statuses().await) {
        events
            .wait_for(LIMIT, |e| e.agent_id == "worker" && matches!(e.kind, EventKind::Restarted { .. }))
            .await
            .expect("the worker was restarted");
    }
}

#[actix_rt::test]
async fn the_restart_manager_restarts_a_stalled_agent_after_its_stale_threshold() {
    let mut config = fast_config().restart_manager;
    // Far from the stale threshold, so a pass delayed on a loaded machine still sees a
    // stale (not critical) agent.
    config.critical_after = Duration::from_secs(10);
    let wedge = Wedge::first_instance();
    let (_db, shared, runtime) = setup(AgentRestartManager::child_spec(config.clone()), &wedge).await;
    let wedged_at = Instant::now();
    stop_heartbeats(&runtime, &wedge).await;
    let attempt = wait_for_event(&shared, "agent_restart_attempt", "worker").await;
    let detected_after = wedged_at.elapsed();
    assert_eq!(attempt["outcome"], "requested", "{attempt}");
    assert_eq!(attempt["level"], "stale");
    assert_eq!(attempt["attempt"], 1);
    // Not before the threshold (1 s; the worker's own 3 × 200 ms is shorter), and
    // within it plus a few passes (200 ms each; generous for loaded machines).
    let age = attempt["heartbeat_age_secs"].as_f64().unwrap();
    assert!((1.0..8.0).contains(&age), "{attempt}");
    assert!(detected_after < Duration::from_secs(8), "{detected_after:?}");
    wait_restarted(&runtime).await;
    // Cured by the restart: its heartbeats reach the database again.
    let before = shared.get_agent("worker").await.unwrap().unwrap().last_heartbeat;
    wait_until("a fresh heartbeat", || async {
        shared.get_agent("worker").await.unwrap().unwrap().last_heartbeat > before
    })
    .await;
    assert_eq!(transitions_into(&shared, "worker", State::Recovery).await, 1);
    assert_eq!(shared.incident_claim("worker").await.unwrap().unwrap().claimant, "agent_restart_manager");
    // The request is on record as a message from the manager to the worker.
    let manager = shared.get_agent("agent_restart_manager").await.unwrap().unwrap().id;
    let messages = shared.agent_communications("worker").await.unwrap();
    let request =
        messages.iter().find(|m| m.message_type.as_deref() == Some("restart_request")).expect("recorded");
    assert_eq!((request.from_agent_id, request.status.as_deref()), (Some(manager), Some("requested")));
    assert!(request.message_content.as_deref().unwrap().contains("stale"), "{request:?}");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn the_restart_manager_keeps_its_cooldown_and_gives_up_at_the_cap() {
    let mut config = fast_config().restart_manager;
    config.max_attempts = 2;
    config.cooldown = Duration::from_millis(1500);
    let wedge = Wedge::every_instance();
    let (_db, shared, runtime) = setup(AgentRestartManager::child_spec(config.clone()), &wedge).await;
    stop_heartbeats(&runtime, &wedge).await;
    let abandoned = wait_for_event(&shared, "agent_restart_abandoned", "worker").await;
    assert_eq!(abandoned["attempts"], 2);
    assert!(abandoned["reason"].as_str().unwrap().contains("2 restarts"), "{abandoned}");
    let attempts = events_about(&shared, "agent_restart_attempt", "worker").await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    // The two attempts are a cooldown apart, by the decision times they record (the
    // rows' own timestamps are commit times, which a group commit may shift).
    let requested_at = |event: &serde_json::Value| {
        serde_json::from_value::<chrono::DateTime<chrono::Utc>>(event["requested_at"].clone()).unwrap()
    };
    let (first, second) = (requested_at(&attempts[0]), requested_at(&attempts[1]));
    let gap = (second - first).abs().to_std().unwrap();
    assert!(gap >= config.cooldown, "{first} {second}");
    // More passes: no third attempt, no second abandonment.
    wait_for_passes(&shared, &["agent_restart_manager"], 5).await;
    assert_eq!(events_about(&shared, "agent_restart_attempt", "worker").await.len(), 2);
    assert_eq!(events_about(&shared, "agent_restart_abandoned", "worker").await.len(), 1);
    // The history survives a restart of the manager itself: still capped.
    runtime.control().restart("agent_restart_manager", "test").await.unwrap();
    wait_for_passes(&shared, &["agent_restart_manager"], 3).await;
    assert_eq!(events_about(&shared, "agent_restart_attempt", "worker").await.len(), 2);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn self_healing_restarts_an_agent_whose_heartbeats_stopped() {
    let config = fast_config().self_healing;
    let wedge = Wedge::first_instance();
    let (_db, shared, runtime) = setup(SelfHealingAgent::child_spec(config), &wedge).await;
    stop_heartbeats(&runtime, &wedge).await;
    let action = wait_for_event(&shared, "recovery_action_executed", "worker").await;
    assert_eq!(action["action"], "restart");
    assert_eq!(action["outcome"], "success");
    assert_eq!(action["issue"]["issue"], "missing_heartbeats");
    assert!(action["issue"]["age_secs"].as_f64().unwrap() >= 1.0, "{action}");
    wait_restarted(&runtime).await;
    wait_for_passes(&shared, &["self_healing"], 3).await;
    assert_eq!(transitions_into(&shared, "worker", State::Recovery).await, 1);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn heartbeat_health_alerts_restarts_and_confirms_the_recovery() {
    let config = fast_config().heartbeat_health;
    let wedge = Wedge::first_instance();
    let (_db, shared, runtime) = setup(HeartbeatHealthAgent::child_spec(config), &wedge).await;
    // Healthy first: scores recorded, in a good band.
    wait_until("a health score of the worker", || async {
        let since = (chrono::Utc::now() - chrono::Duration::minutes(1)).into();
        !shared.metric_series("heartbeat_health_score", Some("worker"), since).await.unwrap().is_empty()
    })
    .await;
    stop_heartbeats(&runtime, &wedge).await;
    let alert = wait_for_event(&shared, "critical_health_alert", "worker").await;
    assert_eq!(alert["band"], "critical");
    let requested = wait_for_event(&shared, "agent_restart_requested", "worker").await;
    assert_eq!(requested["outcome"], "requested", "{requested}");
    assert_eq!(requested["restarted_by"], "heartbeat_health");
    let confirmed = wait_for_event(&shared, "recovery_confirmed", "worker").await;
    assert_eq!(confirmed["restarted_by"], "heartbeat_health");
    assert_eq!(transitions_into(&shared, "worker", State::Recovery).await, 1);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn the_coordinator_requests_a_recovery_below_fifty_and_publishes_the_summary() {
    let config = fast_config().coordinator;
    let wedge = Wedge::first_instance();
    let (_db, shared, runtime) = setup(AgentCoordinator::child_spec(config), &wedge).await;
    wait_until("a healthy summary", || async {
        shared.get_system_state("system_health_summary").await.unwrap().is_some_and(|s| s["total"] == 2)
    })
    .await;
    let summary = shared.get_system_state("system_health_summary").await.unwrap().unwrap();
    assert_eq!(summary["active"], 2);
    assert_eq!(summary["healthy"], true);
    assert!(summary["agents"]["worker"]["health"].as_f64().unwrap() >= 90.0, "{summary}");
    stop_heartbeats(&runtime, &wedge).await;
    let requested = wait_for_event(&shared, "agent_recovery_requested", "worker").await;
    assert!(requested["health"].as_f64().unwrap() < 50.0, "{requested}");
    assert_eq!(requested["outcome"], "requested");
    wait_restarted(&runtime).await;
    assert!(!events(&shared, "system_health_summary").await.is_empty());
    runtime.shutdown().await;
}

/// Three operator restarts within a second under the default intensity (1 in 5 s):
/// every agent comes back `active`, and the coordinator's health score counts no
/// failure for any of them — a restart somebody asked for is not a crash.
#[actix_rt::test]
async fn operator_restarts_are_not_failures_in_health_scores() {
    let db = TestDb::sqlite();
    let shared = db.shared_state().await;
    let wedge = Wedge::first_instance(); // never set: the workers stay healthy
    let workers = ["worker-a", "worker-b", "worker-c"];
    let mut builder = vigil_runtime::Runtime::builder(shared.clone())
        .intensity(vigil_runtime::RestartIntensity::default())
        .child(AgentCoordinator::child_spec(fast_config().coordinator));
    for id in workers {
        builder = builder.agent_with_id(id, wedge.factory());
    }
    let runtime = builder.start().await.unwrap();
    wait_for_passes(&shared, &["agent_coordinator"], 1).await;

    let mut events = runtime.subscribe();
    for id in workers {
        runtime.control().restart(id, "operator").await.unwrap();
    }
    for id in workers {
        events
            .wait_for(LIMIT, |e| e.agent_id == id && matches!(e.kind, EventKind::Restarted { .. }))
            .await
            .unwrap();
    }
    vigil_runtime::testkit::wait_until_active(&runtime, LIMIT).await.unwrap();
    wait_for_passes(&shared, &["agent_coordinator"], 2).await;

    let summary = shared.get_system_state("system_health_summary").await.unwrap().expect("a summary");
    for id in workers {
        let status = runtime.control().status(id).await.unwrap();
        assert_eq!((status.state, status.restarts), (State::Active, 1), "{id}");
        let scored = &summary["agents"][id];
        assert_eq!(
            (scored["state"].as_str(), scored["failures"].as_u64()),
            (Some("active"), Some(0)),
            "{summary}"
        );
        assert!(transitions_of(&shared, id).await.iter().all(|t| !t.is_failure() && t.to != State::Manual));
    }
    runtime.shutdown().await;
}
