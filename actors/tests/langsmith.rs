//! LangSmithBridge: local traces, remote batches, retries, a hanging endpoint, restarts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_actors::config::HttpRetryPolicy;
use vigil_actors::langsmith::{ExportStatus, LangSmithBridge, LangSmithConfig, STATUS_KEY, TRACE_EVENT};
use vigil_persistence::SharedState;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::testing::TestDb;
use vigil_runtime::testkit::{Fault, FaultPlan, Faulty};
use vigil_runtime::{EventKind, RestartIntensity, Runtime};

use crate::common::{FakeServer, LIMIT, Reply, Ticker, eventually};

async fn export_status(state: &SharedState) -> Option<ExportStatus> {
    let value = state.get_system_state(STATUS_KEY).await.unwrap()?;
    Some(serde_json::from_value(value).unwrap())
}

/// Every run recorded locally so far.
async fn local_runs(state: &SharedState) -> Vec<Value> {
    let events = state
        .recent_events(EventFilter {
            event_type: Some(TRACE_EVENT.into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    events
        .iter()
        .rev()
        .flat_map(|e| e.event_data.as_ref().unwrap().0["runs"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn log_conversations(state: &SharedState, n: usize) {
    for i in 0..n {
        let meta = json!({"latency_ms": 120, "model": "m"});
        state
            .log_llm_conversation(None, &format!("conv-{i}"), &format!("q{i}"), &format!("a{i}"), Some(meta))
            .await
            .unwrap();
    }
}

fn assert_run_shape(run: &Value) {
    for field in ["id", "name", "run_type", "start_time", "end_time", "inputs", "outputs", "extra"] {
        assert!(!run[field].is_null(), "run lacks `{field}`: {run}");
    }
    assert!(uuid::Uuid::parse_str(run["id"].as_str().unwrap()).is_ok(), "{run}");
}

#[actix_rt::test]
async fn without_an_endpoint_transitions_and_conversations_are_recorded_locally() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let (tick, _ticks) = mpsc::unbounded_channel();
    let runtime = Runtime::builder(state.clone())
        .agent(LangSmithBridge::default)
        .agent(move || Ticker { cycles: 0, tick: tick.clone() })
        .start()
        .await
        .unwrap();
    log_conversations(&state, 1).await;
    let runs = eventually("the ticker's transitions and the conversation as runs", || async {
        let runs = local_runs(&state).await;
        let transition = runs.iter().any(|r| r["name"] == "ticker: monitoring -> active");
        let llm = runs.iter().any(|r| r["run_type"] == "llm" && r["name"] == "llm: conv-0");
        (transition && llm).then_some(runs)
    })
    .await;
    for run in &runs {
        assert_run_shape(run);
    }
    let llm = runs.iter().find(|r| r["run_type"] == "llm").unwrap();
    assert_eq!(llm["inputs"]["messages"][0]["content"], "q0");
    assert_eq!(llm["outputs"]["content"], "a0");
    assert_eq!(llm["session_name"], "vigil");
    let transition = runs.iter().find(|r| r["name"] == "ticker: monitoring -> active").unwrap();
    assert_eq!(transition["run_type"], "chain");
    assert_eq!(transition["outputs"]["to"], "active");
    let status = eventually("export status", || async {
        export_status(&state).await.filter(|s| s.exported as usize >= runs.len())
    })
    .await;
    assert_eq!(status.mode, "local");
    assert!(status.conversation_cursor >= 1);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn runs_are_batched_to_the_endpoint_with_the_api_key() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    log_conversations(&state, 7).await;
    let mut server = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let config = LangSmithConfig::default().endpoint(&server.url, "ls-key").batch_size(3).export(false, true);
    let runtime = Runtime::builder(state.clone())
        .agent(move || LangSmithBridge::new(config.clone()))
        .start()
        .await
        .unwrap();
    let mut sizes = Vec::new();
    let mut names = Vec::new();
    while sizes.iter().sum::<usize>() < 7 {
        let request = server.next().await;
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/runs/batch"));
        assert_eq!(request.headers.get("x-api-key").map(String::as_str), Some("ls-key"));
        let post = request.body["post"].as_array().expect("body is {\"post\": [...]}");
        for run in post {
            assert_run_shape(run);
            assert_eq!(run["run_type"], "llm");
            names.push(run["name"].as_str().unwrap().to_owned());
        }
        sizes.push(post.len());
    }
    assert_eq!(sizes, [3, 3, 1]);
    let expected: Vec<String> = (0..7).map(|i| format!("llm: conv-{i}")).collect();
    assert_eq!(names, expected, "oldest first, each once");
    let status = eventually("status after the export", || async {
        export_status(&state).await.filter(|s| s.exported == 7)
    })
    .await;
    assert_eq!((status.mode.as_str(), status.batches, status.failed_batches), ("remote", 3, 0));
    assert_eq!(status.buffered, 0);
    assert!(status.last_error.is_none());
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_500_is_retried_with_the_same_runs_until_it_succeeds() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    log_conversations(&state, 2).await;
    let mut server = FakeServer::start(|n| {
        if n < 2 { Reply::Json(500, json!({"detail": "try later"})) } else { Reply::Json(200, json!({})) }
    })
    .await;
    let config = LangSmithConfig::default()
        .endpoint(&server.url, "ls-key")
        .export(false, true)
        .retry(HttpRetryPolicy::new(3, Duration::from_millis(20)));
    let runtime = Runtime::builder(state.clone())
        .agent(move || LangSmithBridge::new(config.clone()))
        .start()
        .await
        .unwrap();
    let attempts = [server.next().await, server.next().await, server.next().await];
    let ids: Vec<Vec<Value>> = attempts
        .iter()
        .map(|r| r.body["post"].as_array().unwrap().iter().map(|run| run["id"].clone()).collect())
        .collect();
    assert_eq!(ids[0].len(), 2);
    assert!(ids.iter().all(|i| *i == ids[0]), "a retry resends the same runs (same ids): {ids:?}");
    let status = eventually("the batch delivered", || async {
        export_status(&state).await.filter(|s| s.exported == 2)
    })
    .await;
    assert_eq!((status.batches, status.failed_batches), (1, 0));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_hanging_endpoint_records_the_error_and_blocks_no_agent() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    log_conversations(&state, 3).await;
    let server = FakeServer::start(|_| Reply::Hang).await;
    let config = LangSmithConfig::default()
        .endpoint(&server.url, "ls-key")
        .timeout(Duration::from_millis(300))
        .retry(HttpRetryPolicy::new(2, Duration::from_millis(10)))
        .buffer_capacity(5);
    let (tick, mut ticks) = mpsc::unbounded_channel();
    let runtime = Runtime::builder(state.clone())
        .agent(move || LangSmithBridge::new(config.clone()))
        .agent(move || Ticker { cycles: 0, tick: tick.clone() })
        .start()
        .await
        .unwrap();
    let status = eventually("the export error recorded", || async {
        export_status(&state).await.filter(|s| s.last_error.is_some())
    })
    .await;
    let error = status.last_error.unwrap();
    assert!(error.contains("no answer") && error.contains("after 2 attempt(s)"), "{error}");
    assert_eq!(status.failed_batches, 1);
    assert!(status.buffered > 0, "the runs wait for the endpoint");
    assert_eq!(server.count(), 2, "two attempts");
    // Meanwhile, and after, the other agent keeps cycling at its own pace.
    let mut seen = 0;
    while seen < 5 {
        tokio::time::timeout(LIMIT, ticks.recv()).await.expect("the ticker is not blocked").unwrap();
        seen += 1;
    }
    // The bounded buffer drops the oldest runs, counted, rather than growing.
    log_conversations(&state, 10).await;
    let status =
        eventually("overflow counted", || async { export_status(&state).await.filter(|s| s.dropped > 0) })
            .await;
    assert!(status.buffered <= 5, "{status:?}");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn the_bridge_survives_a_panic_restart_and_keeps_exporting() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    // The testkit counts the bridge's cycles across restarts and injects the panic
    // once: the restarted bridge runs undisturbed.
    let plan = FaultPlan::new().at_cycle("langsmith", 2, Fault::Panic);
    let factory = {
        let plan = plan.clone();
        move || Faulty::new(LangSmithBridge::default(), plan.clone())
    };
    let runtime = Runtime::builder(state.clone())
        .intensity(RestartIntensity::new(5, Duration::from_secs(60)))
        .agent_with_id("langsmith", factory)
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    events
        .wait_for(LIMIT, |e| e.agent_id == "langsmith" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .expect("the panic restarted the bridge");
    log_conversations(&state, 1).await;
    eventually("the restarted bridge exports its recovery and the new conversation", || async {
        let runs = local_runs(&state).await;
        let recovered = runs.iter().any(|r| r["name"] == "langsmith: recovery -> active");
        let llm = runs.iter().any(|r| r["name"] == "llm: conv-0");
        (recovered && llm).then_some(())
    })
    .await;
    let status = export_status(&state).await.unwrap();
    assert!(status.conversation_cursor >= 1, "the cursor is kept across the restart");
    assert_eq!(plan.cycle_faults("langsmith"), [(2, Fault::Panic)]);
    runtime.shutdown().await;
}
