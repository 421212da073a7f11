//! The shared-state monitors on a database with known faults, and self-healing's
//! action budget.

use std::time::Duration;

use vigil_actors::{EnhancedSharedStateMonitorAgent, SelfHealingAgent, SharedStateMonitorAgent};
use vigil_persistence::shared_state::Heartbeat;
use vigil_persistence::testing::TestDb;

use crate::monitor_common::*;

#[actix_rt::test]
async fn the_enhanced_monitor_reports_faults_and_syncs_states_to_the_runtime() {
    let db = TestDb::sqlite();
    let shared = db.shared_state().await;
    // A heartbeat without an agent, a help request stuck in processing, and an agent
    // of no runtime marked active whose last heartbeat is an hour old.
    shared
        .store()
        .execute_raw_for_tests("INSERT INTO agent_heartbeats (agent_id, status) VALUES (NULL, 'active')")
        .await
        .unwrap();
    // Queued for ages but claimed just now: not stuck, the helper has only begun.
    shared.create_help_request("queued-long", "how?", None).await.unwrap();
    shared
        .store()
        .execute_raw_for_tests(
            "UPDATE help_requests SET created_at = '2000-01-01T00:00:00+00:00' WHERE request_id = 'queued-long'",
        )
        .await
        .unwrap();
    let claimed = shared.claim_help_requests("helper", 1).await.unwrap();
    assert_eq!(claimed[0].request_id, "queued-long");
    assert_eq!(claimed[0].claimed_by.as_deref(), Some("helper"));
    shared.create_help_request("stuck-1", "why?", None).await.unwrap();
    shared
        .store()
        .execute_raw_for_tests(
            "UPDATE help_requests SET status = 'processing', created_at = '2000-01-01T00:00:00+00:00', \
             claimed_at = '2000-01-01T00:00:01+00:00' WHERE request_id = 'stuck-1'",
        )
        .await
        .unwrap();
    // A workflow run no executor has touched since 2000, and a fresh one.
    shared.submit_workflow_run("nobody_knows", "forgotten", serde_json::json!({})).await.unwrap();
    shared.submit_workflow_run("nobody_knows", "fresh", serde_json::json!({})).await.unwrap();
    shared
        .store()
        .execute_raw_for_tests(
            "UPDATE workflow_runs SET created_at = '2000-01-01T00:00:00+00:00', \
             updated_at = '2000-01-01T00:00:00+00:00' WHERE run_id = 'forgotten'",
        )
        .await
        .unwrap();
    shared.register_agent("ghost", "Ghost").await.unwrap();
    shared.update_agent_state("ghost", vigil_persistence::State::Active).await.unwrap();
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    shared.update_agent_heartbeat("ghost", Heartbeat::new().at(hour_ago)).await.unwrap();

    let config = fast_config().enhanced_shared_state;
    let wedge = Wedge::first_instance();
    let runtime = builder(&shared)
        .agent(wedge.factory())
        .child(EnhancedSharedStateMonitorAgent::child_spec(config))
        .start()
        .await
        .unwrap();
    let report = wait_for_value("a consistency report", || async {
        events(&shared, "shared_state_consistency_report").await.pop()
    })
    .await;
    assert_eq!(report["orphan_rows"]["heartbeats_without_agent"], 1, "{report}");
    assert_eq!(report["stuck_help_requests"], serde_json::json!(["stuck-1"]));
    let stalled = report["stalled_workflow_runs"].as_array().unwrap();
    assert_eq!(stalled.len(), 1, "{report}");
    assert_eq!(
        (stalled[0]["run_id"].as_str(), stalled[0]["status"].as_str()),
        (Some("forgotten"), Some("pending"))
    );
    let unheard = report["active_without_heartbeat"].as_array().unwrap();
    assert!(unheard.iter().any(|a| a["agent_id"] == "ghost" && a["in_this_runtime"] == false), "{report}");
    let score = report["score"]["overall"].as_f64().unwrap();
    assert!(score < 100.0 && score > 0.0, "{report}");
    let since = (chrono::Utc::now() - chrono::Duration::minutes(1)).into();
    assert!(!shared.metric_series("shared_state_health_score", None, since).await.unwrap().is_empty());
    // Nothing unsafe was repaired: the ghost is still "active", the request still stuck.
    assert_eq!(
        shared.get_agent("ghost").await.unwrap().unwrap().status,
        Some(vigil_persistence::State::Active)
    );

    // The database says the worker is in maintenance; the runtime knows it is active.
    shared.update_agent_state("worker", vigil_persistence::State::Maintenance).await.unwrap();
    let repair = wait_for_event(&shared, "state_sync_repair", "worker").await;
    assert_eq!((repair["from"].as_str(), repair["to"].as_str()), (Some("maintenance"), Some("active")));
    assert_eq!(
        shared.get_agent("worker").await.unwrap().unwrap().status,
        Some(vigil_persistence::State::Active)
    );
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn the_state_monitor_classifies_agents_and_warns_on_size() {
    let db = TestDb::sqlite();
    let shared = db.shared_state().await;
    let now = chrono::Utc::now();
    for (agent, age) in [("fresh", Some(0)), ("late", Some(2)), ("gone", Some(60)), ("silent", None)] {
        shared.register_agent(agent, "Synthetic").await.unwrap();
        if let Some(age) = age {
            shared
                .update_agent_heartbeat(agent, Heartbeat::new().at(now - chrono::Duration::seconds(age)))
                .await
                .unwrap();
        }
    }
    let mut config = fast_config().shared_state;
    config.size_warning_bytes = 1; // any database
    config.active_within = Duration::from_secs(1);
    config.stale_within = Duration::from_secs(30);
    let runtime = builder(&shared).child(SharedStateMonitorAgent::child_spec(config)).start().await.unwrap();
    wait_until("two summaries (growth needs a previous pass)", || async {
        events(&shared, "shared_state_summary").await.len() >= 2
    })
    .await;
    let summary = shared.get_system_state("shared_state_summary").await.unwrap().unwrap();
    let agents = &summary["agents"];
    assert!(agents["stale"].as_array().unwrap().contains(&"late".into()), "{summary}");
    assert!(agents["inactive"].as_array().unwrap().contains(&"gone".into()), "{summary}");
    assert_eq!(agents["no_heartbeat"], serde_json::json!(["silent"]));
    assert!(agents["active"].as_array().unwrap().contains(&"shared_state_monitor".into()));
    assert!(summary["database"]["size_bytes"].as_i64().unwrap() > 0);
    assert!(summary["database"]["growth"]["system_events"]["rows"].as_i64().unwrap() >= 1, "{summary}");
    assert_eq!(events(&shared, "database_size_warning").await.len(), 1, "warned once, not every pass");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn self_healing_spends_at_most_its_budget_per_pass() {
    let db = TestDb::sqlite();
    let shared = db.shared_state().await;
    let mut config = fast_config().self_healing;
    config.max_actions_per_pass = 1;
    config.pass_interval = Duration::from_millis(500);
    let (a, b) = (Wedge::first_instance(), Wedge::first_instance());
    let runtime = builder(&shared)
        .agent_with_id("one", a.factory())
        .agent_with_id("two", b.factory())
        .child(SelfHealingAgent::child_spec(config.clone()))
        .start()
        .await
        .unwrap();
    // Two inconsistencies at once; one action per pass.
    // Through the runtime's writer, behind the agents' own registrations.
    runtime.shared_state().update_agent_state("one", vigil_persistence::State::Standby).await.unwrap();
    runtime.shared_state().update_agent_state("two", vigil_persistence::State::Standby).await.unwrap();
    wait_until("both repaired", || async {
        let actions = events(&shared, "recovery_action_executed").await;
        actions.iter().filter(|a| a["action"] == "state_sync").count() >= 2
    })
    .await;
    let rows = shared
        .recent_events(vigil_persistence::shared_state::EventFilter {
            event_type: Some("recovery_action_executed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let gap = (rows[0].timestamp.unwrap().get() - rows[1].timestamp.unwrap().get()).to_std().unwrap();
    // One pass (500 ms) apart, not one after the other. The rows carry commit times,
    // which group commit can shift by a flush, so the bound is half a pass.
    assert!(gap >= Duration::from_millis(250), "one pass apart, not one after the other: {gap:?}");
    for agent in ["one", "two"] {
        assert_eq!(
            shared.get_agent(agent).await.unwrap().unwrap().status,
            Some(vigil_persistence::State::Active)
        );
    }
    runtime.shutdown().await;
}
