//! Every SharedState method, on both backends.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use vigil_persistence::shared_state::{EventFilter, Heartbeat, Metric};
use vigil_persistence::types::Ts;
use vigil_persistence::{HelpStatus, Severity, StoreError};

use vigil_persistence::on_both_backends;

on_both_backends! {
    async fn register_is_an_upsert(db) {
        let state = db.shared_state().await;
        let first = state.register_agent("worker", "Worker").await.unwrap();
        assert_eq!(first.status, Some(vigil_persistence::State::Initializing));
        state.update_agent_state("worker", vigil_persistence::State::Active).await.unwrap();
        let again = state.register_agent("worker", "Worker v2").await.unwrap();
        assert_eq!(again.id, first.id, "same row");
        assert_eq!(again.agent_name, "Worker v2");
        assert_eq!(again.status, Some(vigil_persistence::State::Initializing), "re-registration resets the state");
        assert_eq!(state.get_registered_agents().await.unwrap().len(), 1);
    }
}

on_both_backends! {
    async fn heartbeat_inserts_a_row_and_updates_the_agent(db) {
        let state = db.shared_state().await;
        state.register_agent("hb", "Heart").await.unwrap();
        let at = Ts::from(Utc::now() - chrono::Duration::seconds(3));
        state
            .update_agent_heartbeat("hb", Heartbeat::new().status(vigil_persistence::State::Active).message("ok").metadata(json!({"load": 0.5})).at(at))
            .await
            .unwrap();
        let agent = state.get_agent("hb").await.unwrap().unwrap();
        assert_eq!(agent.last_heartbeat, Some(at), "timestamps round-trip at microsecond precision");
        let beats = state.recent_heartbeats("hb", 10).await.unwrap();
        assert_eq!(beats.len(), 1);
        assert_eq!(beats[0].status, Some(vigil_persistence::State::Active));
        assert_eq!(beats[0].message.as_deref(), Some("ok"));
        assert_eq!(beats[0].metadata.as_ref().unwrap().0, json!({"load": 0.5}));
        assert_eq!(beats[0].agent_id, Some(agent.id));
        // A heartbeat of an agent never registered registers it ("INSERT/UPDATE agents").
        state.update_agent_heartbeat("ghost", Heartbeat::new()).await.unwrap();
        let ghost = state.get_agent("ghost").await.unwrap().expect("registered by its heartbeat");
        assert_eq!(ghost.agent_name, "ghost");
    }
}

on_both_backends! {
    async fn heartbeats_keep_the_agents_current_metrics_and_uptime(db) {
        let state = db.shared_state().await;
        state.register_agent("hb", "Heart").await.unwrap();
        let ago = |secs: i64| Ts::from(Utc::now() - chrono::Duration::seconds(secs));
        let beat = |at: Ts, n: i64| vigil_persistence::Write::Heartbeat {
            agent_id: "hb".into(),
            at,
            status: None,
            message: None,
            metadata: Some(json!({ "load": n })),
            uptime: Some(json!({ "cycles": n })),
        };
        // One batch, out of order: the newest heartbeat's figures are the agent's.
        let results = state.store().write_batch(vec![beat(ago(2), 2), beat(ago(1), 3), beat(ago(3), 1)]).await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let agent = state.get_agent("hb").await.unwrap().unwrap();
        assert_eq!(agent.metrics.unwrap().0, json!({ "load": 3 }));
        assert_eq!(agent.uptime_details.unwrap().0, json!({ "cycles": 3 }));
        // A heartbeat without them leaves the last ones in place.
        state.update_agent_heartbeat("hb", Heartbeat::new()).await.unwrap();
        let agent = state.get_agent("hb").await.unwrap().unwrap();
        assert_eq!(agent.metrics.unwrap().0, json!({ "load": 3 }));
        assert_eq!(agent.uptime_details.unwrap().0, json!({ "cycles": 3 }));
    }
}

on_both_backends! {
    async fn state_changes_set_status_and_time(db) {
        let state = db.shared_state().await;
        state.register_agent("s", "S").await.unwrap();
        let before = Ts::now();
        state.update_agent_state("s", vigil_persistence::State::Active).await.unwrap();
        let agent = state.get_agent("s").await.unwrap().unwrap();
        assert_eq!(agent.status, Some(vigil_persistence::State::Active));
        assert!(agent.last_state_change.unwrap() >= before);
        assert_eq!(state.get_active_agents().await.unwrap().len(), 1);
        state.update_agent_state("s", vigil_persistence::State::Standby).await.unwrap();
        assert!(state.get_active_agents().await.unwrap().is_empty());
        // A status no writer can produce (typed), put there by hand: reading it is a
        // typed error naming the bad value, not a panic and not a guess.
        state.store().execute_raw_for_tests("UPDATE agents SET status = 'exploded' WHERE agent_id = 's'").await.unwrap();
        let error = state.get_agent("s").await.unwrap_err();
        assert!(matches!(error, StoreError::Query(diesel::result::Error::DeserializationError(_))), "{error:?}");
        let parse = crate::common::unknown_state_in(&error).expect("a ParseStateError in the chain");
        assert_eq!(parse.input, "exploded");
    }
}

on_both_backends! {
    async fn metrics_are_recorded_and_read_in_time_order(db) {
        let state = db.shared_state().await;
        state.register_agent("m", "M").await.unwrap();
        let start = Utc::now() - chrono::Duration::minutes(1);
        for (i, value) in [3.0, 1.0, 2.0].into_iter().enumerate() {
            let at = Ts::from(start + chrono::Duration::seconds(i as i64));
            state
                .add_performance_metric(Metric::new("latency_ms", value).agent("m").source("tester").metadata(json!({"i": i})).at(at))
                .await
                .unwrap();
        }
        state.add_performance_metric(Metric::new("latency_ms", 9.0)).await.unwrap(); // no agent
        let series = state.metric_series("latency_ms", Some("m"), Ts::from(start)).await.unwrap();
        let values: Vec<f32> = series.iter().map(|m| m.metric_value).collect();
        assert_eq!(values, [3.0, 1.0, 2.0]);
        assert_eq!(series[0].source_agent.as_deref(), Some("tester"));
        assert_eq!(state.metric_series("latency_ms", None, Ts::from(start)).await.unwrap().len(), 4);
        assert!(matches!(
            state.add_performance_metric(Metric::new("bad", f64::NAN)).await,
            Err(StoreError::InvalidInput { field: "metric_value", .. })
        ));
    }
}

on_both_backends! {
    async fn events_with_severity_and_filters(db) {
        let state = db.shared_state().await;
        state.log_system_event("boot", Some(json!({"v": 1})), Severity::Info).await.unwrap();
        state.log_system_event("disk", None, Severity::Warning).await.unwrap();
        state.log_system_event("crash", Some(json!({"why": "oom"})), Severity::Critical).await.unwrap();
        let all = state.recent_events(EventFilter::default()).await.unwrap();
        assert_eq!(all.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["crash", "disk", "boot"]);
        assert_eq!(all[0].severity.as_deref(), Some("critical"));
        let bad = state
            .recent_events(EventFilter { min_severity: Some(Severity::Warning), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(bad.len(), 2);
        let boots = state.recent_events(EventFilter { event_type: Some("boot".into()), ..Default::default() }).await.unwrap();
        assert_eq!(boots[0].event_data.as_ref().unwrap().0, json!({"v": 1}));
        let after = state.recent_events(EventFilter { after_id: Some(all[1].id), ..Default::default() }).await.unwrap();
        assert_eq!(after.len(), 1);
    }
}

on_both_backends! {
    async fn system_state_round_trips_json(db) {
        let state = db.shared_state().await;
        assert_eq!(state.get_system_state("mode").await.unwrap(), None);
        let value = json!({"mode": "degraded", "since": [1, 2, 3], "nested": {"ok": false}, "text": "héllo ✓"});
        state.set_system_state("mode", value.clone()).await.unwrap();
        assert_eq!(state.get_system_state("mode").await.unwrap(), Some(value));
        state.set_system_state("mode", json!("normal")).await.unwrap();
        assert_eq!(state.get_system_state("mode").await.unwrap(), Some(json!("normal")));
    }
}

on_both_backends! {
    async fn help_requests_flow(db) {
        let state = db.shared_state().await;
        state.create_help_request("r1", "why is X slow?", Some(json!({"agent": "x"}))).await.unwrap();
        state.create_help_request("r2", "status of Y?", None).await.unwrap();
        let pending = state.get_pending_help_requests().await.unwrap();
        assert_eq!(pending.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"], "oldest first");
        // The backlog, counted by the database: two pending, the oldest r1's.
        let backlog = state.help_backlog().await.unwrap();
        assert_eq!((backlog.pending, backlog.processing), (2, 0));
        assert_eq!(backlog.oldest_pending_at, pending[0].created_at);
        state.respond_to_help_request("r1", "because", HelpStatus::Complete).await.unwrap();
        let pending = state.get_pending_help_requests().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(state.get_help_request("r1").await.unwrap().unwrap().status.as_deref(), Some("complete"));
        assert_eq!(state.get_help_response("r1").await.unwrap().unwrap().response, "because");
        assert!(matches!(
            state.respond_to_help_request("nope", "x", HelpStatus::Complete).await,
            Err(StoreError::UnknownHelpRequest(_))
        ));
        // Answering twice is refused by the database; the first answer stands.
        assert!(state.respond_to_help_request("r1", "again", HelpStatus::Complete).await.is_err());
        assert_eq!(state.get_help_response("r1").await.unwrap().unwrap().response, "because");
        // A duplicate request id is refused.
        assert!(state.create_help_request("r2", "dup", None).await.is_err());
        // r2 claimed: nothing pending, one processing.
        assert_eq!(state.claim_help_requests("helper", 5).await.unwrap().len(), 1);
        let backlog = state.help_backlog().await.unwrap();
        assert_eq!((backlog.pending, backlog.processing, backlog.oldest_pending_at), (0, 1, None));
    }
}

on_both_backends! {
    async fn communications_and_conversations(db) {
        let state = db.shared_state().await;
        state.register_agent("a", "A").await.unwrap();
        state.register_agent("b", "B").await.unwrap();
        state.record_agent_communication("a", "b", "ping", "hello").await.unwrap();
        state.record_agent_communication("b", "a", "pong", "hi").await.unwrap();
        let messages = state.agent_communications("a").await.unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].status.as_deref(), Some("sent"));
        assert_eq!(messages[0].message_content.as_deref(), Some("hello"));
        assert!(matches!(
            state.record_agent_communication("a", "ghost", "x", "y").await,
            Err(StoreError::UnknownAgent(_))
        ));
        state.log_llm_conversation(Some("a"), "c1", "question", "answer", Some(json!({"model": "local"}))).await.unwrap();
        state.log_llm_conversation(None, "c1", "q2", "a2", None).await.unwrap();
        let conversation = state.llm_conversation("c1").await.unwrap();
        assert_eq!(conversation.len(), 2);
        assert_eq!(conversation[0].response_content.as_deref(), Some("answer"));
        assert!(conversation[0].agent_id.is_some() && conversation[1].agent_id.is_none());
    }
}

on_both_backends! {
    async fn stale_agents_boundaries(db) {
        let state = db.shared_state().await;
        let now = Utc::now();
        for id in ["fresh", "edge", "old", "never", "gone"] {
            state.register_agent(id, id).await.unwrap();
        }
        let at = |secs: i64| Ts::from(now - chrono::Duration::seconds(secs));
        state.update_agent_heartbeat("fresh", Heartbeat::new().at(at(10))).await.unwrap();
        state.update_agent_heartbeat("edge", Heartbeat::new().at(at(300))).await.unwrap();
        state.update_agent_heartbeat("old", Heartbeat::new().at(at(301))).await.unwrap();
        state.update_agent_heartbeat("gone", Heartbeat::new().at(at(1000))).await.unwrap();
        state.update_agent_state("gone", vigil_persistence::State::Shutdown).await.unwrap();
        let window = Duration::from_secs(300);
        let stale = state.get_stale_agents_at(Ts::from(now), window).await.unwrap();
        // Exactly 300 s is not stale; 301 s is; shut-down agents are not expected to beat.
        assert_eq!(stale.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(), ["old"]);
        // An agent without heartbeats counts from its registration.
        let later = Ts::from(Utc::now() + chrono::Duration::seconds(301));
        let stale = state.get_stale_agents_at(later, window).await.unwrap();
        let ids: Vec<&str> = stale.iter().map(|a| a.agent_id.as_str()).collect();
        assert!(ids.contains(&"never") && ids.contains(&"fresh") && !ids.contains(&"gone"), "{ids:?}");
        assert!(state.get_stale_agents(window).await.unwrap().iter().any(|a| a.agent_id == "old"));
    }
}

on_both_backends! {
    async fn cleanup_counts_and_keeps_errors(db) {
        let state = db.shared_state().await;
        // Beyond a hundred years is a typed error, not an overflow panic.
        let too_far = state.cleanup_old_data(u32::MAX).await.unwrap_err();
        assert!(matches!(too_far, StoreError::InvalidInput { field: "days_to_keep", .. }), "{too_far:?}");
        state.register_agent("a", "A").await.unwrap();
        state.register_agent("b", "B").await.unwrap();
        let old = Ts::from(Utc::now() - chrono::Duration::days(10));
        let store = state.store();
        let mut writes = Vec::new();
        for i in 0..3 {
            writes.push(vigil_persistence::Write::Heartbeat { agent_id: "a".into(), at: old, status: None, message: Some(format!("{i}")), metadata: None, uptime: None });
        }
        writes.push(Metric::new("cpu", 1.0).agent("a").at(old).into_write());
        for (severity, n) in [(Severity::Info, 2), (Severity::Warning, 1), (Severity::Error, 1), (Severity::Critical, 1)] {
            for _ in 0..n {
                writes.push(vigil_persistence::Write::Event { event_type: "e".into(), severity, data: None, at: old });
            }
        }
        writes.push(vigil_persistence::Write::Communication { from_agent: "a".into(), to_agent: "b".into(), message_type: None, content: None, status: None, at: old });
        writes.push(vigil_persistence::Write::Conversation { agent_id: None, conversation_id: Some("c".into()), message: None, response: None, metadata: None, at: old });
        for result in store.write_batch(writes).await.unwrap() {
            result.unwrap();
        }
        // Recent rows of every kind, which must survive.
        state.update_agent_heartbeat("a", Heartbeat::new()).await.unwrap();
        state.add_performance_metric(Metric::new("cpu", 2.0).agent("a")).await.unwrap();
        state.log_system_event("recent", None, Severity::Info).await.unwrap();
        state.record_agent_communication("a", "b", "t", "c").await.unwrap();
        state.log_llm_conversation(None, "c", "m", "r", None).await.unwrap();

        let report = state.cleanup_old_data(7).await.unwrap();
        assert_eq!((report.heartbeats, report.metrics, report.events, report.communications, report.conversations), (3, 1, 3, 1, 1));
        assert_eq!(report.total(), 9);
        let counts = state.table_counts().await.unwrap();
        assert_eq!(counts["agent_heartbeats"], 1);
        assert_eq!(counts["performance_metrics"], 1);
        assert_eq!(counts["system_events"], 3, "error + critical kept, recent kept");
        assert_eq!(counts["agent_communications"], 1);
        assert_eq!(counts["llm_conversations"], 1);
        assert_eq!(counts["agents"], 2, "agents are never cleaned up");
        assert_eq!(state.cleanup_old_data(7).await.unwrap().total(), 0, "a second run finds nothing");
    }
}

on_both_backends! {
    async fn health_and_statistics(db) {
        let state = db.shared_state().await;
        state.register_agent("a", "A").await.unwrap();
        let health = state.get_database_health().await.unwrap();
        assert_eq!(health.status, vigil_persistence::store::HealthStatus::Healthy);
        assert!(health.server_version.is_some());
        assert!(health.database_size_bytes.unwrap() > 0);
        assert_eq!(health.tables.iter().find(|t| t.table == "agents").unwrap().rows, 1);
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["status"], "healthy");
        let stats = state.get_query_stats();
        assert!(stats.total_queries >= 3, "{stats:?}");
        assert_eq!(stats.query_errors, 0);
        assert!(stats.average_query_time > 0.0);
        let pool = state.get_pool_stats();
        assert!(pool.size >= 1 && pool.size <= pool.max_size, "{pool:?}");
        assert!(pool.checkouts >= 3 && pool.timed_out == 0, "every query checked a connection out: {pool:?}");
    }
}

on_both_backends! {
    async fn concurrent_writers_lose_nothing(db) {
        let state = db.shared_state().await;
        for i in 0..4 {
            state.register_agent(&format!("w{i}"), "W").await.unwrap();
        }
        let mut tasks = Vec::new();
        for i in 0..4 {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..25 {
                    state.update_agent_heartbeat(&format!("w{i}"), Heartbeat::new().message(n.to_string())).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(state.table_counts().await.unwrap()["agent_heartbeats"], 100);
    }
}
