//! AIHelpAgent: safe claims, the platform responder's facts, the OpenAI client, restarts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vigil_actors::ai_help::{AIHelpAgent, AiHelpConfig, Answer, OpenAiConfig, Responder, ResponderError};
use vigil_actors::config::HttpRetryPolicy;
use vigil_persistence::models::HelpRequestRecord;
use vigil_persistence::presence::Presence;
use vigil_persistence::shared_state::Heartbeat;
use vigil_persistence::testing::TestDb;
use vigil_persistence::types::Ts;
use vigil_persistence::{HelpStatus, SharedState};
use vigil_runtime::{AgentContext, EventKind, RestartIntensity, Runtime};

use crate::common::{FakeServer, LIMIT, Reply, databases, eventually};

/// Waits until `request_id` has an answer; returns (status, response).
async fn answer_of(state: &SharedState, request_id: &str) -> (String, String) {
    eventually(&format!("an answer to {request_id}"), || async {
        let response = state.get_help_response(request_id).await.unwrap()?;
        let request = state.get_help_request(request_id).await.unwrap()?;
        Some((request.status.unwrap_or_default(), response.response))
    })
    .await
}

#[tokio::test]
async fn claims_hand_each_request_out_once_and_reclaim_stuck_ones() {
    for db in databases().await {
        let state = db.shared_state().await;
        for i in 0..3 {
            state.create_help_request(&format!("r{i}"), "q", None).await.unwrap();
        }
        let first = state.claim_help_requests("a", 2).await.unwrap();
        assert_eq!(
            first.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
            ["r0", "r1"],
            "oldest first on {db:?}"
        );
        assert!(first.iter().all(|r| r.status.as_deref() == Some("processing")));
        let second = state.claim_help_requests("b", 5).await.unwrap();
        assert_eq!(second.len(), 1);
        assert!(state.claim_help_requests("c", 5).await.unwrap().is_empty(), "nothing left to claim");
        // Nothing is stuck yet; an hour later all three are.
        assert_eq!(state.reclaim_stuck_help_requests(Duration::from_secs(60)).await.unwrap(), 0);
        let later = Ts::from(chrono::Utc::now() + chrono::Duration::hours(1));
        state.respond_to_help_request("r2", "done", HelpStatus::Complete).await.unwrap();
        assert_eq!(state.reclaim_stuck_help_requests_at(later, Duration::from_secs(60)).await.unwrap(), 2);
        let again = state.claim_help_requests("d", 5).await.unwrap();
        assert_eq!(again.len(), 2, "the two unanswered requests come back; the answered one does not");
    }
}

/// Records which helper answered which request.
struct Recording {
    log: Arc<Mutex<Vec<(String, String)>>>,
}

impl Responder for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    async fn respond(
        &self,
        request: &HelpRequestRecord,
        ctx: &AgentContext,
    ) -> Result<Answer, ResponderError> {
        // Give the other runtime a chance to interleave.
        tokio::task::yield_now().await;
        self.log.lock().unwrap().push((request.request_id.clone(), ctx.agent_id().to_owned()));
        Ok(Answer::new(format!("answered by {}", ctx.agent_id()), json!({})))
    }
}

async fn two_runtimes_answer_each_request_exactly_once(db: TestDb) {
    const N: usize = 50;
    let seed = db.shared_state().await;
    for i in 0..N {
        seed.create_help_request(&format!("req-{i:02}"), &format!("question {i}"), None).await.unwrap();
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut runtimes = Vec::new();
    for helper in ["helper_a", "helper_b"] {
        // Each runtime has its own store: its own pool, as two processes would.
        let state = db.shared_state().await;
        let log = log.clone();
        let config = AiHelpConfig::default().batch_size(3);
        let factory = move || AIHelpAgent::with_responder(config.clone(), Recording { log: log.clone() });
        runtimes.push(Runtime::builder(state).agent_with_id(helper, factory).start().await.unwrap());
    }
    eventually("all requests answered and logged", || async {
        let counts = seed.table_counts().await.unwrap();
        (counts["help_responses"] >= N as i64 && counts["llm_conversations"] >= N as i64).then_some(())
    })
    .await;
    for runtime in &runtimes {
        runtime.shutdown().await;
    }
    let log = log.lock().unwrap().clone();
    let ids: HashSet<&str> = log.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(log.len(), N, "each request answered exactly once: {log:?}");
    assert_eq!(ids.len(), N);
    for i in 0..N {
        let id = format!("req-{i:02}");
        let request = seed.get_help_request(&id).await.unwrap().unwrap();
        assert_eq!(request.status.as_deref(), Some("complete"));
        let (_, helper) = log.iter().find(|(r, _)| *r == id).unwrap();
        let response = seed.get_help_response(&id).await.unwrap().unwrap();
        assert_eq!(response.response, format!("answered by {helper}"));
        assert_eq!(seed.llm_conversation(&id).await.unwrap().len(), 1, "one logged exchange for {id}");
    }
    let by_a = log.iter().filter(|(_, h)| h == "helper_a").count();
    eprintln!("helper_a answered {by_a}, helper_b {}", N - by_a);
}

#[actix_rt::test]
async fn two_runtimes_on_postgres_answer_each_request_exactly_once() {
    let Some(db) = TestDb::postgres().await else { return };
    two_runtimes_answer_each_request_exactly_once(db).await;
}

#[actix_rt::test]
async fn two_runtimes_on_sqlite_answer_each_request_exactly_once() {
    two_runtimes_answer_each_request_exactly_once(TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn the_platform_responder_answers_with_the_facts() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    // The platform as the responder will find it: agents of a node that runs (this test
    // process records its presence, and their heartbeats name it)...
    let node = Presence::new(Presence::new_node_id(), 2);
    state.record_presence(&node).await.unwrap();
    let beat = || Heartbeat::new().uptime(json!({ "node": node.node, "heartbeat_interval_secs": 30 }));
    state.register_agent("worker_1", "Worker").await.unwrap();
    state.update_agent_state("worker_1", vigil_persistence::State::Active).await.unwrap();
    state.update_agent_heartbeat("worker_1", beat().status(vigil_persistence::State::Active)).await.unwrap();
    state.register_agent("billing-sync", "BillingSync").await.unwrap();
    state.update_agent_state("billing-sync", vigil_persistence::State::Error).await.unwrap();
    state.update_agent_heartbeat("billing-sync", beat()).await.unwrap();
    // ... and one whose row says `active` but that nothing runs.
    state.register_agent("orphan", "Orphan").await.unwrap();
    state.update_agent_state("orphan", vigil_persistence::State::Active).await.unwrap();
    state.update_agent_heartbeat("orphan", Heartbeat::new()).await.unwrap();
    use vigil_persistence::lifecycle::{Cause, Failure, Stage, State::*, TransitionRecord, Trigger};
    let failed = |failure| Cause::Failure { failure };
    for (from, trigger, cause) in [
        (Active, Trigger::ErrorOccurred, failed(Failure::message(Stage::Cycle, "ledger database timed out"))),
        (Error, Trigger::RecoveryStart, Cause::Restart { attempt: 1 }),
        (Recovery, Trigger::RecoveryComplete, Cause::Startup),
        // Asked for by an operator: a restart, but not a failure.
        (Active, Trigger::RecoveryStart, Cause::RestartRequested { reason: "operator".into() }),
        (Recovery, Trigger::RecoveryComplete, Cause::Startup),
        (Active, Trigger::ErrorOccurred, failed(Failure::panic(Stage::Cycle, "invoice 7 is malformed"))),
    ] {
        let record = TransitionRecord::new("billing-sync", from, trigger, cause).unwrap();
        let data = serde_json::to_value(&record).unwrap();
        state.log_system_event(TransitionRecord::EVENT_TYPE, Some(data), record.severity()).await.unwrap();
    }
    state.register_agent("old_agent", "Old").await.unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    state.update_agent_heartbeat("old_agent", Heartbeat::new().at(long_ago)).await.unwrap();
    // As many agents as a platform of ten built-ins and a few of its own: the fallback
    // answer names them all.
    for i in 0..10 {
        state.register_agent(&format!("extra_{i}"), "Extra").await.unwrap();
    }

    let runtime = Runtime::builder(state.clone()).agent(AIHelpAgent::default).start().await.unwrap();
    let questions = [
        ("status", "What's the STATUS of worker_1 right now?"),
        ("errors", "did the billing sync agent have errors?"),
        ("stale", "Which agents are stale or not responding?"),
        ("health", "how is the overall system health"),
        ("list", "list all agents please"),
        ("help", "hello there"),
    ];
    for (id, question) in questions {
        state.create_help_request(id, question, None).await.unwrap();
    }
    let (status, text) = answer_of(&state, "status").await;
    assert_eq!(status, "complete");
    assert!(text.contains("worker_1") && text.contains("state active"), "{text}");
    assert!(text.contains("recent errors: 0, restarts: 0"), "{text}");

    let (_, text) = answer_of(&state, "errors").await;
    assert!(text.contains("billing-sync") && text.contains("state error"), "{text}");
    // Two failures; the operator's restart is a restart, not an error.
    assert!(text.contains("recent errors: 2, restarts: 2"), "{text}");
    assert!(text.contains("ledger database timed out") && text.contains("invoice 7 is malformed"), "{text}");
    assert!(!text.contains("worker_1"), "only the agent asked about: {text}");

    state.create_help_request("orphan", "status of orphan?", None).await.unwrap();
    let (_, text) = answer_of(&state, "orphan").await;
    assert!(text.contains("orphan") && text.contains("not running (last recorded active)"), "{text}");

    let (_, text) = answer_of(&state, "stale").await;
    assert!(text.contains("old_agent") && !text.contains("worker_1"), "{text}");

    let (_, text) = answer_of(&state, "health").await;
    assert!(text.contains("needs attention"), "{text}");
    assert!(text.contains("error: 1") && text.contains("old_agent"), "{text}");
    assert!(text.contains("not running: "), "agents nothing runs are not counted by their rows: {text}");
    assert!(text.contains("recent failures: 2"), "{text}");

    let (_, text) = answer_of(&state, "list").await;
    for id in ["ai_help", "billing-sync", "old_agent", "worker_1"] {
        assert!(text.contains(id), "{id} in {text}");
    }
    let (_, text) = answer_of(&state, "help").await;
    assert!(text.contains("Ask, for example"), "{text}");
    for agent in state.get_registered_agents().await.unwrap() {
        assert!(text.contains(&agent.agent_id), "{} in {text}", agent.agent_id);
    }

    // Every exchange is logged, with the responder and the intent.
    let logged = state.llm_conversation("errors").await.unwrap();
    assert_eq!(logged.len(), 1);
    let meta = &logged[0].metadata.as_ref().unwrap().0;
    assert_eq!(meta["responder"], "platform");
    assert_eq!(meta["intent"], "agent_status");
    assert_eq!(meta["agents"], json!(["billing-sync"]));
    assert_eq!(logged[0].message_content.as_deref(), Some("did the billing sync agent have errors?"));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn the_openai_responder_sends_the_expected_request() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let mut server = FakeServer::start(|_| {
        Reply::Json(
            200,
            json!({
                "model": "test-model-1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Restart it with `vigil restart`."}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
            }),
        )
    })
    .await;
    let config =
        AiHelpConfig::default().openai(OpenAiConfig::new(&server.url, "sk-test").model("test-model"));
    let helper = AIHelpAgent::new(config).unwrap();
    let runtime = Runtime::builder(state.clone()).agent(move || helper.clone()).start().await.unwrap();
    state.create_help_request("q1", "How do I restart ai_help?", Some(json!({"user": "ops"}))).await.unwrap();

    let request = server.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.headers.get("authorization").map(String::as_str), Some("Bearer sk-test"));
    assert!(request.headers.get("content-type").unwrap().starts_with("application/json"));
    assert_eq!(request.body["model"], "test-model");
    let messages = request.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages.iter().any(|m| m["content"].as_str().unwrap().contains("Agent ai_help")),
        "grounded with platform facts: {messages:?}"
    );
    let user = messages.last().unwrap();
    assert_eq!(user["role"], "user");
    assert!(user["content"].as_str().unwrap().starts_with("How do I restart ai_help?"));
    assert!(user["content"].as_str().unwrap().contains("\"user\":\"ops\""));

    let (status, text) = answer_of(&state, "q1").await;
    assert_eq!((status.as_str(), text.as_str()), ("complete", "Restart it with `vigil restart`."));
    let logged = state.llm_conversation("q1").await.unwrap();
    let meta = &logged[0].metadata.as_ref().unwrap().0;
    assert_eq!(meta["responder"], "openai");
    assert_eq!(meta["model"], "test-model-1");
    assert_eq!(meta["usage"]["total_tokens"], 19);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_failing_or_hanging_endpoint_fails_the_request_with_a_clear_error() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let mut failing =
        FakeServer::start(|_| Reply::Json(500, json!({"error": {"message": "overloaded"}}))).await;
    let hanging = FakeServer::start(|_| Reply::Hang).await;
    let retry = HttpRetryPolicy::new(2, Duration::from_millis(10));
    for (id, url) in [("down", &failing.url), ("hung", &hanging.url)] {
        let config = AiHelpConfig::default().openai(
            OpenAiConfig::new(url, "sk-test").timeout(Duration::from_millis(300)).retry(retry.clone()),
        );
        let helper = AIHelpAgent::new(config).unwrap();
        let runtime = Runtime::builder(state.clone()).agent(move || helper.clone()).start().await.unwrap();
        state.create_help_request(id, "anything", None).await.unwrap();
        let (status, text) = answer_of(&state, id).await;
        assert_eq!(status, "failed", "{text}");
        assert!(text.contains("after 2 attempt(s)"), "{text}");
        runtime.shutdown().await;
    }
    let (_, down) = answer_of(&state, "down").await;
    assert!(down.contains("HTTP 500") && down.contains("overloaded"), "{down}");
    let (_, hung) = answer_of(&state, "hung").await;
    assert!(hung.contains("no answer") && hung.contains("300ms"), "{hung}");
    assert_eq!(failing.count(), 2, "one retry after the first 500");
    assert_eq!(failing.next().await.path, "/v1/chat/completions");
    assert_eq!(hanging.count(), 2);
    let logged = state.llm_conversation("down").await.unwrap();
    assert!(logged[0].metadata.as_ref().unwrap().0["error"].as_str().unwrap().contains("HTTP 500"));
}

/// Panics on its first call (process-wide), answers afterwards.
struct PanicsOnce {
    armed: Arc<AtomicBool>,
}

impl Responder for PanicsOnce {
    fn name(&self) -> &str {
        "panics-once"
    }
    async fn respond(
        &self,
        request: &HelpRequestRecord,
        _ctx: &AgentContext,
    ) -> Result<Answer, ResponderError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected responder failure on {}", request.request_id);
        }
        Ok(Answer::new("fine now", json!({})))
    }
}

#[actix_rt::test]
async fn the_agent_survives_a_panic_restart_and_reclaims_the_request_it_held() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let armed = Arc::new(AtomicBool::new(true));
    let config = AiHelpConfig::default().claim_timeout(Duration::from_millis(300));
    let factory = {
        let armed = armed.clone();
        move || AIHelpAgent::with_responder(config.clone(), PanicsOnce { armed: armed.clone() })
    };
    let runtime = Runtime::builder(state.clone())
        .intensity(RestartIntensity::new(5, Duration::from_secs(60)))
        .agent_with_id("ai_help", factory)
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    state.create_help_request("held", "status of ai_help?", None).await.unwrap();
    events
        .wait_for(LIMIT, |e| e.agent_id == "ai_help" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .expect("the panic restarted the agent");
    // The restarted instance reclaims the request its predecessor died holding.
    let (status, text) = answer_of(&state, "held").await;
    assert_eq!((status.as_str(), text.as_str()), ("complete", "fine now"));
    state.create_help_request("after", "and now?", None).await.unwrap();
    assert_eq!(answer_of(&state, "after").await.1, "fine now", "keeps working after the restart");
    assert!(runtime.statuses().await[0].restarts >= 1);
    runtime.shutdown().await;
}
