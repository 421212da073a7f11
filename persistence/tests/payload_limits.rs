//! Payload limits (`vigil_persistence::limits`): what a write may carry is checked at
//! the edge, a refused payload cannot crash the process, and a stored document that
//! cannot be read does not fail a listing. Also SQLite's `synchronous` setting.

use serde_json::{Value, json};
use vigil_persistence::config::{DatabaseConfigError, SqliteSynchronous};
use vigil_persistence::limits::{MAX_JSON_DEPTH, PayloadLimits};
use vigil_persistence::shared_state::{EventFilter, Heartbeat, Writer};
use vigil_persistence::types::{Json, Ts};
use vigil_persistence::{
    DatabaseConfig, EnqueueError, PersistenceActor, PersistenceConfig, Severity, SharedState, Store,
    StoreError, Write,
};

use vigil_persistence::on_both_backends;

use crate::common::TestDb;

/// `depth` nested arrays around `1`, built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = Value::from(1);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// The result is [`StoreError::InvalidInput`] for `field`, its reason mentioning each
/// of `needles` (the measured value and the limit).
#[track_caller]
fn assert_refused<T>(result: Result<T, StoreError>, field: &str, needles: &[&str]) {
    match result {
        Err(StoreError::InvalidInput { field: refused, reason, .. }) => {
            assert_eq!(refused, field, "{reason}");
            for needle in needles {
                assert!(reason.contains(needle), "`{reason}` does not mention {needle}");
            }
        }
        Err(other) => panic!("expected InvalidInput for {field}, got {other}"),
        Ok(_) => panic!("expected InvalidInput for {field}, the write was accepted"),
    }
}

async fn store_with(db: &TestDb, limits: PayloadLimits) -> Store {
    let config = db.config().with_payload_limits(limits).expect("valid limits");
    Store::connect(config).await.expect("connect")
}

fn heartbeat_with(metadata: Value) -> Heartbeat {
    Heartbeat::new().metadata(metadata)
}

on_both_backends! {
    async fn deep_heartbeat_metadata_is_refused_with_the_field(db) {
        let state = db.shared_state().await;
        state.register_agent("deep", "Deep").await.unwrap();
        let result = state.update_agent_heartbeat("deep", heartbeat_with(nested(200))).await;
        assert_refused(result, "metadata", &["200", "64"]);
        // Nothing was written, and every listing still reads.
        assert!(state.recent_heartbeats("deep", 10).await.unwrap().is_empty());
        assert_eq!(state.get_registered_agents().await.unwrap().len(), 1);
        assert_eq!(state.get_agent("deep").await.unwrap().unwrap().metrics, None);

        // Every document of every write is checked, requests included.
        let event = state.log_system_event("deep_event", Some(nested(65)), Severity::Info).await;
        assert_refused(event, "event_data", &["65"]);
        let run = state.submit_workflow_run("graph", "run-1", nested(65)).await;
        assert_refused(run, "state", &["65"]);
    }
}

on_both_backends! {
    async fn thirty_thousand_levels_are_refused_without_crashing(db) {
        // A document this deep overflows a thread's stack when serialized or dropped
        // recursively; the test thread (2 MiB of stack) would abort.
        const DEPTH: usize = 30_000;
        let state = db.shared_state().await;
        state.register_agent("deep", "Deep").await.unwrap();
        let result = state.update_agent_heartbeat("deep", heartbeat_with(nested(DEPTH))).await;
        assert_refused(result, "metadata", &["30000"]);
        let result = state.set_system_state("deep", nested(DEPTH)).await;
        assert_refused(result, "value", &["30000"]);
        assert!(state.recent_heartbeats("deep", 10).await.unwrap().is_empty());
    }
}

/// Through the persistence actor: `persist` and `SharedState::enqueue` drop the
/// refused write themselves; `PersistenceHandle::enqueue` hands it back.
async fn deep_writes_through_the_actor(db: &TestDb) {
    const DEPTH: usize = 30_000;
    let store = db.store().await;
    let handle = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let state = SharedState::with_writer(store, Writer::Actor(handle.clone()));
    state.register_agent("deep", "Deep").await.unwrap();

    let heartbeat = |depth| Write::Heartbeat {
        agent_id: "deep".into(),
        at: Ts::now(),
        status: None,
        message: None,
        metadata: None,
        uptime: Some(nested(depth)),
    };
    assert_refused(handle.persist(heartbeat(DEPTH)).await, "uptime_details", &["30000", "64"]);
    assert_refused(state.enqueue(heartbeat(DEPTH)).await, "uptime_details", &["30000"]);
    match handle.enqueue(heartbeat(DEPTH)) {
        Err(EnqueueError::Invalid { write, error }) => {
            assert_refused::<()>(Err(error), "uptime_details", &["30000"]);
            write.drop_deep();
        }
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(()) => panic!("a 30,000-deep write was queued"),
    }
    // The writer is unharmed: a write within the limits still commits.
    handle.persist(heartbeat(64)).await.expect("a 64-deep document is accepted");
    let agent = state.get_agent("deep").await.unwrap().unwrap();
    assert_eq!(agent.uptime_details, Some(Json(nested(64))));
    handle.shutdown().await;
}

mod deep_writes_through_the_actor {
    #[actix_rt::test]
    async fn postgres() {
        let Some(db) = crate::common::TestDb::postgres().await else { return };
        super::deep_writes_through_the_actor(&db).await;
    }

    #[actix_rt::test]
    async fn sqlite() {
        super::deep_writes_through_the_actor(&crate::common::TestDb::sqlite()).await;
    }
}

on_both_backends! {
    async fn oversize_json_and_text_are_refused(db) {
        let state = db.shared_state().await;
        let limits = PayloadLimits::default();
        // `{"pad":"…"}` is 10 bytes around the padding.
        let json_of = |bytes: usize| json!({ "pad": "x".repeat(bytes - 10) });
        let over = state.log_system_event("big", Some(json_of(limits.max_json_bytes + 1)), Severity::Info).await;
        assert_refused(over, "event_data", &["1048577", "1048576"]);
        let help = state.create_help_request("big-help", "why?", Some(json_of(limits.max_json_bytes + 1))).await;
        assert_refused(help, "context", &["1048577"]);

        let text = "y".repeat(limits.max_text_bytes + 1);
        let conversation = state.log_llm_conversation(None, "c-big", "prompt", &text, None).await;
        assert_refused(conversation, "response_content", &["16777217", "16777216"]);
        let query = state.create_help_request("big-query", &text, None).await;
        assert_refused(query, "query", &["16777217"]);
        let message = state.update_agent_heartbeat("big", Heartbeat::new().message(text.as_str())).await;
        assert_refused(message, "message", &["16777217"]);
        assert!(state.recent_events(EventFilter::default()).await.unwrap().is_empty());
        assert!(state.llm_conversation("c-big").await.unwrap().is_empty());
    }
}

on_both_backends! {
    async fn values_at_the_limits_are_accepted_and_read_back(db) {
        let state = db.shared_state().await;
        let limits = PayloadLimits::default();
        state.register_agent("edge", "Edge").await.unwrap();

        // Depth: exactly max_json_depth.
        let deep = nested(limits.max_json_depth);
        state.update_agent_heartbeat("edge", heartbeat_with(deep.clone())).await.expect("64 levels");
        assert_eq!(state.get_agent("edge").await.unwrap().unwrap().metrics, Some(Json(deep.clone())));
        let beats = state.recent_heartbeats("edge", 1).await.unwrap();
        assert_eq!(beats[0].metadata, Some(Json(deep)));

        // Size: a document of exactly max_json_bytes, serialized.
        let big = json!({ "pad": "x".repeat(limits.max_json_bytes - 10) });
        assert_eq!(serde_json::to_string(&big).unwrap().len(), limits.max_json_bytes);
        state.log_system_event("big", Some(big.clone()), Severity::Info).await.expect("1 MiB of JSON");
        let events = state.recent_events(EventFilter::default()).await.unwrap();
        assert_eq!(events[0].event_data, Some(Json(big)));

        // Text: exactly max_text_bytes.
        let text = "z".repeat(limits.max_text_bytes);
        state.log_llm_conversation(Some("edge"), "c-edge", "prompt", &text, None).await.expect("16 MiB of text");
        let rows = state.llm_conversation("c-edge").await.unwrap();
        assert_eq!(rows[0].response_content.as_deref(), Some(text.as_str()));
    }
}

on_both_backends! {
    async fn limits_are_configurable(db) {
        // Raised: what the default refuses is accepted, and reads back.
        let raised = PayloadLimits::default().with_max_json_depth(MAX_JSON_DEPTH);
        let state = SharedState::direct(store_with(db, raised).await);
        state.register_agent("cfg", "Cfg").await.unwrap();
        let deep = nested(MAX_JSON_DEPTH);
        state.update_agent_heartbeat("cfg", heartbeat_with(deep.clone())).await.expect("100 levels");
        assert_eq!(state.get_agent("cfg").await.unwrap().unwrap().metrics, Some(Json(deep)));
        let result = state.update_agent_heartbeat("cfg", heartbeat_with(nested(MAX_JSON_DEPTH + 1))).await;
        assert_refused(result, "metadata", &["101", "100"]);
        drop(state);

        // The default refuses the same document.
        let state = db.shared_state().await;
        let result = state.update_agent_heartbeat("cfg", heartbeat_with(nested(MAX_JSON_DEPTH))).await;
        assert_refused(result, "metadata", &["100", "64"]);

        // Lowered: a small text limit is enforced, on requests too.
        let small = PayloadLimits::default().with_max_text_bytes(10).with_max_json_bytes(20);
        let state = SharedState::direct(store_with(db, small).await);
        state.update_agent_heartbeat("cfg", Heartbeat::new().message("0123456789")).await.expect("10 bytes");
        let result = state.update_agent_heartbeat("cfg", Heartbeat::new().message("0123456789!")).await;
        assert_refused(result, "message", &["11", "10"]);
        let result = state.submit_workflow_run("graph", "run", json!({"key": "0123456789ab"})).await;
        assert_refused(result, "state", &["22", "20"]);
    }
}

#[test]
fn limits_above_what_can_be_read_back_are_refused() {
    for depth in [0, MAX_JSON_DEPTH + 1, 127, 128, 10_000] {
        let limits = PayloadLimits::default().with_max_json_depth(depth);
        match DatabaseConfig::sqlite_memory().with_payload_limits(limits) {
            Err(DatabaseConfigError::InvalidValue { name, reason }) => {
                assert_eq!(name, "max_json_depth");
                assert!(reason.contains(&depth.to_string()), "{reason}");
            }
            other => panic!("depth {depth} accepted: {other:?}"),
        }
    }
    for limits in
        [PayloadLimits::default().with_max_json_bytes(0), PayloadLimits::default().with_max_text_bytes(0)]
    {
        assert!(DatabaseConfig::sqlite_memory().with_payload_limits(limits).is_err());
    }
    let config =
        DatabaseConfig::sqlite_memory().with_payload_limits(PayloadLimits::default().with_max_json_depth(1));
    assert_eq!(config.unwrap().payload_limits().max_json_depth, 1);
}

on_both_backends! {
    async fn an_unreadable_stored_document_does_not_fail_the_listings(db) {
        let state = db.shared_state().await;
        state.register_agent("bad", "Bad").await.unwrap();
        state.register_agent("good", "Good").await.unwrap();
        for agent in ["bad", "good"] {
            let beat = Heartbeat::new().metadata(json!({"ok": true})).uptime(json!({"s": 1}));
            state.update_agent_heartbeat(agent, beat).await.unwrap();
        }
        state.log_system_event("bad_event", Some(json!({"ok": true})), Severity::Info).await.unwrap();
        state.log_system_event("good_event", Some(json!({"ok": true})), Severity::Info).await.unwrap();

        // What an older Vigil, or a hand, could store: 200 levels, more than serde_json
        // reads back (PostgreSQL's JSONB takes it).
        let deep = serde_json::to_string(&nested(200)).unwrap();
        let store = state.store();
        let bad_agent = "(SELECT id FROM agents WHERE agent_id = 'bad')";
        for sql in [
            format!("UPDATE agents SET metrics = '{deep}', uptime_details = '{deep}' WHERE agent_id = 'bad'"),
            format!("UPDATE agent_heartbeats SET metadata = '{deep}' WHERE agent_id = {bad_agent}"),
            format!("UPDATE system_events SET event_data = '{deep}' WHERE event_type = 'bad_event'"),
        ] {
            assert_eq!(store.execute_raw_for_tests(&sql).await.unwrap(), 1, "{sql}");
        }

        let unreadable = |json: &Option<Json>| json.as_ref().and_then(Json::unreadable_reason).map(str::to_owned);
        let agents = state.get_registered_agents().await.expect("the listing reads");
        assert_eq!(agents.len(), 2);
        for agent in &agents {
            let reason = unreadable(&agent.metrics);
            assert_eq!(reason.is_some(), agent.agent_id == "bad", "{:?}", agent.metrics);
            assert_eq!(unreadable(&agent.uptime_details).is_some(), agent.agent_id == "bad");
        }
        let reason = unreadable(&state.get_agent("bad").await.unwrap().unwrap().metrics).unwrap();
        assert!(reason.contains("recursion limit"), "{reason}");
        assert_eq!(state.get_agent("good").await.unwrap().unwrap().metrics, Some(Json(json!({"ok": true}))));

        let beats = state.recent_heartbeats("bad", 10).await.expect("heartbeats read");
        assert!(unreadable(&beats[0].metadata).is_some());
        let beats = state.recent_heartbeats("good", 10).await.unwrap();
        assert_eq!(beats[0].metadata, Some(Json(json!({"ok": true}))));

        let events = state.recent_events(EventFilter::default()).await.expect("events read");
        assert_eq!(events.len(), 2);
        for event in &events {
            assert_eq!(unreadable(&event.event_data).is_some(), event.event_type == "bad_event");
        }
        // The marker is itself a document within every limit.
        let marker = events.iter().find(|e| e.event_type == "bad_event").unwrap().event_data.clone().unwrap();
        assert_eq!(marker.0.as_object().unwrap().keys().collect::<Vec<_>>(), [Json::UNREADABLE_KEY]);
    }
}

/// What `PRAGMA synchronous` is on the store's pooled connections.
async fn synchronous_in_effect(store: &Store) -> Value {
    store.execute_raw_for_tests("DELETE FROM system_state WHERE key = 'pragma'").await.unwrap();
    store
        .execute_raw_for_tests(
            "INSERT INTO system_state (key, value) SELECT 'pragma', synchronous FROM pragma_synchronous",
        )
        .await
        .unwrap();
    SharedState::direct(store.clone()).get_system_state("pragma").await.unwrap().expect("the row")
}

#[tokio::test]
async fn sqlite_synchronous_is_what_the_config_says() {
    let db = TestDb::sqlite();
    assert_eq!(db.config().sqlite_synchronous(), Some(SqliteSynchronous::Full));
    for (setting, expected) in
        [(None, 2), (Some(SqliteSynchronous::Normal), 1), (Some(SqliteSynchronous::Full), 2)]
    {
        let config = match setting {
            Some(setting) => db.config().with_sqlite_synchronous(setting),
            None => db.config(),
        };
        let store = Store::connect(config).await.unwrap();
        // Every connection of the pool is set up alike; ask a few times.
        for _ in 0..3 {
            assert_eq!(synchronous_in_effect(&store).await, json!(expected), "{setting:?}");
        }
        assert_eq!(expected, setting.unwrap_or_default().pragma_value());
    }
}

#[test]
fn sqlite_synchronous_resolves_from_the_environment_variable() {
    use vigil_persistence::config::ConfigInputs;
    let inputs = |value: Option<&str>| ConfigInputs {
        sqlite_path: Some("/tmp/x.db".into()),
        sqlite_synchronous: value.map(Into::into),
        ..Default::default()
    };
    let resolved = |value| DatabaseConfig::resolve(&inputs(value)).map(|c| c.sqlite_synchronous());
    assert_eq!(resolved(None), Ok(Some(SqliteSynchronous::Full)));
    assert_eq!(resolved(Some("normal")), Ok(Some(SqliteSynchronous::Normal)));
    assert_eq!(resolved(Some(" FULL ")), Ok(Some(SqliteSynchronous::Full)));
    assert!(matches!(resolved(Some("off")), Err(DatabaseConfigError::InvalidValue { .. })));
}
