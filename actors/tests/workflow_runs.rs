//! File workflows under the executor: every node kind against local servers (an
//! endpoint and an OpenAI-compatible one), conditional edges, approval and rejection,
//! retries, timeouts, the step limit, cancel, and resume after a failing node is fixed.

use std::path::Path;

use serde_json::{Value, json};
use vigil_actors::OpenAiConfig;
use vigil_actors::langgraph::registry::{self, Registry};
use vigil_actors::langgraph::{LangGraphConfig, LangGraphExecutor, STEP_EVENT};
use vigil_persistence::SharedState;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::testing::TestDb;
use vigil_persistence::workflow_runs::{WorkflowRunRecord, WorkflowStatus};
use vigil_runtime::Runtime;

use crate::common::{FakeServer, Reply, databases, eventually};
use crate::workflow_checks::{temp_dir, triage, write};

/// An OpenAI-compatible answer whose content is `content`.
fn completion(content: &str) -> Reply {
    Reply::Json(
        200,
        json!({"model": "fake-model", "choices": [{"message": {"role": "assistant", "content": content}}], "usage": {"total_tokens": 7}}),
    )
}

async fn start(state: &SharedState, dir: &Path, llm: Option<OpenAiConfig>) -> Runtime {
    let mut config = LangGraphConfig::default();
    config.workflows_dir = Some(dir.to_path_buf());
    let executor = LangGraphExecutor::with_workflow_files(config, llm.as_ref()).expect("valid files");
    let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await.unwrap();
    eventually("the workflows registered", || async {
        (!Registry::read(state).await.unwrap().current.is_empty()).then_some(())
    })
    .await;
    runtime
}

async fn wait_status(state: &SharedState, run_id: &str, want: WorkflowStatus) -> WorkflowRunRecord {
    eventually(&format!("run {run_id} {want}"), || async {
        let run = state.get_workflow_run(run_id).await.unwrap()?;
        if run.status().is_some_and(WorkflowStatus::is_finished) && run.status() != Some(want) {
            panic!("run {run_id} ended {} ({:?}), not {want}", run.status, run.error);
        }
        (run.status() == Some(want)).then_some(run)
    })
    .await
}

async fn steps(state: &SharedState, run_id: &str) -> Vec<Value> {
    let filter = EventFilter { event_type: Some(STEP_EVENT.into()), limit: Some(1000), ..Default::default() };
    let mut found: Vec<Value> = state
        .recent_events(filter)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.event_data.map(|d| d.0))
        .filter(|d| d["run_id"] == run_id)
        .collect();
    found.reverse();
    found
}

#[actix_rt::test]
async fn every_node_kind_runs_with_conditional_edges_approval_and_rejection() {
    for db in databases().await {
        let state = db.shared_state().await;
        let mut tickets = FakeServer::start(|_| Reply::Json(200, json!({"text": "db01: disk full"}))).await;
        // Urgent, not urgent, urgent: three runs take the three ways out of `classify`.
        let mut openai = FakeServer::start(|n| {
            completion(if n == 1 { "{\"urgent\": false}" } else { "```json\n{\"urgent\": true}\n```" })
        })
        .await;
        let dir = temp_dir("wf-kinds");
        write(&dir, "triage.json", &triage(&tickets.url));
        let runtime = start(&state, &dir, Some(OpenAiConfig::new(&openai.url, "sk-test-secret"))).await;

        registry::submit(&state, "triage", json!({"ticket_id": "T 1"}), Some("urgent".into())).await.unwrap();
        let waiting = wait_status(&state, "urgent", WorkflowStatus::Waiting).await;
        assert!(waiting.graph.starts_with("triage@1+"), "runs are on a version: {}", waiting.graph);
        assert_eq!((waiting.step, waiting.next_node.as_deref()), (3, Some("page")));
        assert_eq!(waiting.state.0["ticket"], json!({"status": 200, "body": {"text": "db01: disk full"}}));
        assert_eq!(
            waiting.state.0["class"],
            json!({"urgent": true}),
            "JSON answers are parsed, fences dropped"
        );
        let fetched = tickets.next().await;
        assert_eq!(fetched.path, "/tickets/T%201", "URL values are percent-encoded");
        assert_eq!(fetched.headers["authorization"], "Bearer vigil-actors", "{{env.NAME}} in a header");
        assert!(!waiting.state.0.to_string().contains("vigil-actors"), "the secret stays out of the state");
        let asked = openai.next().await;
        assert_eq!(asked.headers["authorization"], "Bearer sk-test-secret");
        assert_eq!(asked.body["messages"][0]["content"], "Classify: db01: disk full");
        let logged = state.llm_conversation("urgent").await.unwrap();
        assert_eq!(logged.len(), 1, "the exchange is in llm_conversations (LangSmith traces it)");
        assert_eq!(logged[0].metadata.as_ref().unwrap().0["node"], "classify");

        // Approve (what `vigil workflow approve` does): the run goes on to `page`.
        assert!(
            state
                .set_workflow_status("urgent", &[WorkflowStatus::Waiting], WorkflowStatus::Running, None)
                .await
                .unwrap()
        );
        let done = wait_status(&state, "urgent", WorkflowStatus::Completed).await;
        assert_eq!(done.state.0["paged"], true, "the command's JSON output is merged");
        assert_eq!(done.step, 4);
        let history: Vec<(String, String)> = steps(&state, "urgent")
            .await
            .iter()
            .map(|s| (s["node"].as_str().unwrap().to_owned(), s["outcome"].as_str().unwrap().to_owned()))
            .collect();
        let expected = [("fetch", "ok"), ("classify", "ok"), ("approve", "waiting"), ("page", "ok")];
        assert_eq!(history, expected.map(|(n, o)| (n.to_owned(), o.to_owned())));

        // Not urgent: the default edge ends the run after `classify`.
        registry::submit(&state, "triage", json!({"ticket_id": "2"}), Some("calm".into())).await.unwrap();
        let calm = wait_status(&state, "calm", WorkflowStatus::Completed).await;
        assert_eq!((calm.step, calm.state.0.get("paged")), (2, None));

        // Rejected: the run ends there, `page` never runs.
        registry::submit(&state, "triage", json!({"ticket_id": "3"}), Some("no".into())).await.unwrap();
        wait_status(&state, "no", WorkflowStatus::Waiting).await;
        let rejected = state.set_workflow_status(
            "no",
            &[WorkflowStatus::Waiting],
            WorkflowStatus::Rejected,
            Some("rejected by ops".into()),
        );
        assert!(rejected.await.unwrap());
        assert!(
            !state
                .set_workflow_status("no", &[WorkflowStatus::Waiting], WorkflowStatus::Running, None)
                .await
                .unwrap(),
            "a rejected run cannot be approved"
        );
        let bad = registry::submit(&state, "triage", json!([1]), None).await.unwrap_err();
        assert!(bad.to_string().contains("must be a JSON object"), "{bad}");
        let unknown = registry::submit(&state, "triag", json!({}), None).await.unwrap_err();
        assert!(
            unknown.to_string().contains("no workflow `triag` is registered; known: triage"),
            "{unknown}"
        );
        runtime.shutdown().await;
        assert_eq!(state.get_workflow_run("no").await.unwrap().unwrap().step, 3);
    }
}

/// fetch (retried through two 500s) -> work (a script that fails until `fixed` exists) -> end.
fn flaky(base_url: &str) -> Value {
    json!({
        "name": "flaky", "version": 2, "start": "fetch",
        "nodes": [
            {"name": "fetch", "kind": "http", "method": "POST", "url": format!("{base_url}/hook"),
             "body": {"run": "flaky", "n": 1}, "output": "hook", "retries": 2, "backoff": "10ms"},
            {"name": "work", "kind": "command", "program": "sh",
             "args": ["-c", "cat >/dev/null; if [ -f fixed ]; then echo '{\"worked\": true}'; else echo broken >&2; exit 3; fi"],
             "outputs": ["worked"]}
        ],
        "edges": [{"from": "fetch", "to": "work"}, {"from": "work", "to": "end"}]
    })
}

/// start -> slow (a command past its timeout) / loop (a step limit) / nap (cancelled mid-node) -> after.
fn limits(base_url: &str) -> Value {
    json!({
        "name": "limits", "version": "1", "start": "pick", "max_steps": 4, "inputs": ["way"],
        "nodes": [
            {"name": "pick", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null"], "outputs": []},
            {"name": "slow", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null; sleep 5"], "timeout": "200ms", "outputs": []},
            {"name": "spin", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null; echo '{\"n\": 1}'"], "outputs": ["n"]},
            {"name": "nap", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null; touch napping; sleep 1"], "outputs": []},
            {"name": "after", "kind": "http", "url": format!("{base_url}/after"), "output": "after"}
        ],
        "edges": [
            {"from": "pick", "when": [{"key": "way", "equals": "slow", "to": "slow"}, {"key": "way", "equals": "spin", "to": "spin"}], "default": "nap"},
            {"from": "slow", "to": "end"},
            {"from": "spin", "when": [{"key": "n", "lt": 10, "to": "spin"}], "default": "end"},
            {"from": "nap", "to": "after"},
            {"from": "after", "to": "end"}
        ]
    })
}

#[actix_rt::test]
async fn retries_timeouts_step_limits_cancel_and_resume_after_a_fix() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let mut hooks = FakeServer::start(|n| {
        if n < 2 { Reply::Json(500, json!({"busy": true})) } else { Reply::Json(200, json!({"ok": true})) }
    })
    .await;
    let dir = temp_dir("wf-limits");
    write(&dir, "flaky.json", &flaky(&hooks.url));
    write(&dir, "limits.json", &limits(&hooks.url));
    let runtime = start(&state, &dir, None).await;

    registry::submit(&state, "flaky", json!({}), Some("f".into())).await.unwrap();
    let failed = wait_status(&state, "f", WorkflowStatus::Failed).await;
    assert_eq!((failed.step, failed.next_node.as_deref()), (1, Some("work")));
    let error = failed.error.unwrap();
    assert!(error.contains("node `work` failed: `sh` exited with exit status: 3: broken"), "{error}");
    assert_eq!(
        failed.state.0["hook"],
        json!({"status": 200, "body": {"ok": true}}),
        "the third attempt succeeded"
    );
    assert_eq!(hooks.count(), 3);
    assert_eq!(hooks.next().await.body, json!({"run": "flaky", "n": 1}));

    // Fix what failed, resume: `work` runs again, `fetch` does not.
    std::fs::write(dir.join("fixed"), "").unwrap();
    assert!(
        state
            .set_workflow_status("f", &[WorkflowStatus::Failed], WorkflowStatus::Running, None)
            .await
            .unwrap()
    );
    let resumed = wait_status(&state, "f", WorkflowStatus::Completed).await;
    assert_eq!((resumed.step, resumed.state.0["worked"].clone()), (2, json!(true)));
    assert_eq!(hooks.count(), 3, "the completed http node was not repeated");

    registry::submit(&state, "limits", json!({"way": "slow"}), Some("slow".into())).await.unwrap();
    let slow = wait_status(&state, "slow", WorkflowStatus::Failed).await;
    assert!(slow.error.as_deref().unwrap().contains("node `slow` failed: timed out after 200ms"), "{slow:?}");
    registry::submit(&state, "limits", json!({"way": "spin"}), Some("spin".into())).await.unwrap();
    let spin = wait_status(&state, "spin", WorkflowStatus::Failed).await;
    assert_eq!((spin.step, spin.error.as_deref()), (4, Some("step limit of 4 reached")));

    // Cancelled while `nap` runs: its checkpoint is refused and `after` never runs.
    registry::submit(&state, "limits", json!({"way": "nap"}), Some("nap".into())).await.unwrap();
    eventually("nap started", || async { dir.join("napping").exists().then_some(()) }).await;
    let from =
        [WorkflowStatus::Pending, WorkflowStatus::Running, WorkflowStatus::Waiting, WorkflowStatus::Failed];
    assert!(
        state
            .set_workflow_status("nap", &from, WorkflowStatus::Cancelled, Some("cancelled by ops".into()))
            .await
            .unwrap()
    );
    eventually("nap's node ended", || async {
        steps(&state, "nap").await.iter().any(|s| s["node"] == "nap").then_some(())
    })
    .await;
    runtime.shutdown().await;
    let nap = state.get_workflow_run("nap").await.unwrap().unwrap();
    assert_eq!((nap.status.as_str(), nap.step), ("cancelled", 1), "the node's checkpoint was refused");
    assert_eq!(hooks.count(), 3, "nothing after the cancelled node ran");
    assert!(
        !state
            .set_workflow_status("nap", &[WorkflowStatus::Failed], WorkflowStatus::Running, None)
            .await
            .unwrap(),
        "a cancelled run is not resumed"
    );
}

/// gate (approval) -> after: in version 1 `after` records `{"v": 1}`, in version 2 `{"v": 2}`.
fn versioned(v: u32) -> Value {
    json!({
        "name": "pinned", "version": "1", "start": "gate",
        "nodes": [
            {"name": "gate", "kind": "approval"},
            {"name": "after", "kind": "command", "program": "sh", "args": ["-c", format!("cat >/dev/null; echo '{{\"v\": {v}}}'")], "outputs": ["v"]}
        ],
        "edges": [{"from": "gate", "to": "after"}, {"from": "after", "to": "end"}]
    })
}

#[actix_rt::test]
async fn a_run_in_flight_finishes_on_the_version_it_started_with() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let dir = temp_dir("wf-versions");
    write(&dir, "pinned.json", &versioned(1));
    let runtime = start(&state, &dir, None).await;
    registry::submit(&state, "pinned", json!({}), Some("old".into())).await.unwrap();
    let old = wait_status(&state, "old", WorkflowStatus::Waiting).await;
    runtime.shutdown().await;

    // The file changes (same declared version) while the run waits; the platform restarts.
    write(&dir, "pinned.json", &versioned(2));
    let runtime = start(&state, &dir, None).await;
    let registry = Registry::read(&state).await.unwrap();
    assert_ne!(registry.current["pinned"], old.graph, "the changed file is a new version");
    assert!(registry.versions.contains_key(&old.graph), "the old version stays registered");
    registry::submit(&state, "pinned", json!({}), Some("new".into())).await.unwrap();
    wait_status(&state, "new", WorkflowStatus::Waiting).await;
    for run in ["old", "new"] {
        assert!(
            state
                .set_workflow_status(run, &[WorkflowStatus::Waiting], WorkflowStatus::Running, None)
                .await
                .unwrap()
        );
    }
    let old = wait_status(&state, "old", WorkflowStatus::Completed).await;
    let new = wait_status(&state, "new", WorkflowStatus::Completed).await;
    assert_eq!((old.state.0["v"].clone(), new.state.0["v"].clone()), (json!(1), json!(2)));
    assert_ne!(old.graph, new.graph);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn status_codes_outside_fail_on_are_data_for_the_edges() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let server = FakeServer::start(|n| {
        Reply::Json(if n == 0 { 404 } else { 503 }, json!({"error": "no such ticket"}))
    })
    .await;
    let dir = temp_dir("wf-fail-on");
    let lookup = json!({
        "name": "lookup", "version": "1", "start": "find", "inputs": ["id"],
        "nodes": [
            {"name": "find", "kind": "http", "url": format!("{}/t/{{{{id}}}}?key=secret-key", server.url), "output": "found", "fail_on": ["5xx"]},
            {"name": "missing", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null; echo '{\"missing\": true}'"], "outputs": ["missing"]}
        ],
        "edges": [
            {"from": "find", "when": [{"key": "found.status", "equals": 404, "to": "missing"}], "default": "end"},
            {"from": "missing", "to": "end"}
        ]
    });
    write(&dir, "lookup.json", &lookup);
    let runtime = start(&state, &dir, None).await;
    registry::submit(&state, "lookup", json!({"id": 7}), Some("a".into())).await.unwrap();
    let a = wait_status(&state, "a", WorkflowStatus::Completed).await;
    assert_eq!(
        (a.state.0["found"]["status"].clone(), a.state.0["missing"].clone()),
        (json!(404), json!(true))
    );
    registry::submit(&state, "lookup", json!({"id": 8}), Some("b".into())).await.unwrap();
    let b = wait_status(&state, "b", WorkflowStatus::Failed).await;
    let error = b.error.unwrap();
    assert!(error.contains("HTTP 503 from http://127.0.0.1:") && error.contains("/t/8:"), "{error}");
    assert!(!error.contains("secret-key"), "the query string stays out of errors: {error}");
    runtime.shutdown().await;
}
