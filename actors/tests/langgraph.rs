//! LangGraphExecutor: validation, conditional edges, checkpoints, resume after a crash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use vigil_actors::langgraph::{END, Graph, GraphError, LangGraphExecutor, NodeError, START};
use vigil_persistence::SharedState;
use vigil_persistence::testing::TestDb;
use vigil_persistence::workflow_runs::{WorkflowRunRecord, WorkflowStatus};
use vigil_runtime::{EventKind, RestartIntensity, Runtime};

use crate::common::{LIMIT, databases, eventually};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Trail {
    visited: Vec<String>,
    n: u32,
}

fn pass(
    name: &'static str,
) -> impl Fn(Trail, vigil_actors::NodeContext) -> std::future::Ready<Result<Trail, NodeError>> {
    move |mut t: Trail, _ctx| {
        t.visited.push(name.into());
        std::future::ready(Ok(t))
    }
}

async fn finished(state: &SharedState, run_id: &str) -> WorkflowRunRecord {
    eventually(&format!("run {run_id} finished"), || async {
        let run = state.get_workflow_run(run_id).await.unwrap()?;
        run.status().is_some_and(WorkflowStatus::is_finished).then_some(run)
    })
    .await
}

fn trail(run: &WorkflowRunRecord) -> Trail {
    serde_json::from_value(run.state.0.clone()).unwrap()
}

#[test]
fn invalid_graphs_are_refused_with_the_reason() {
    let base = || Graph::<Trail>::builder("g").node("a", pass("a"));
    assert_eq!(base().edge("a", END).build().unwrap_err(), GraphError::NoEntry);
    assert!(matches!(
        base().edge(START, "a").edge("a", "nowhere").build().unwrap_err(),
        GraphError::UnknownNode { unknown, .. } if unknown == "nowhere"
    ));
    assert_eq!(base().edge(START, "a").build().unwrap_err(), GraphError::NoOutgoingEdge("a".into()));
    assert_eq!(
        base()
            .node("island", pass("island"))
            .edge(START, "a")
            .edge("a", END)
            .edge("island", END)
            .build()
            .unwrap_err(),
        GraphError::Unreachable("island".into())
    );
    assert_eq!(
        base().node("a", pass("a")).edge(START, "a").edge("a", END).build().unwrap_err(),
        GraphError::DuplicateNode("a".into())
    );
    assert_eq!(
        base().edge(START, "a").edge("a", END).edge("a", END).build().unwrap_err(),
        GraphError::DuplicateEdge("a".into())
    );
    assert_eq!(
        base().node(END, pass("end")).edge(START, "a").edge("a", END).build().unwrap_err(),
        GraphError::ReservedName(END.into())
    );
    assert_eq!(
        base().edge(START, "a").edge("a", END).step_limit(0).build().unwrap_err(),
        GraphError::ZeroStepLimit
    );
    // A conditional edge may reach any node, so nothing it could lead to is unreachable.
    let ok = base()
        .node("b", pass("b"))
        .edge(START, "a")
        .conditional_edge("a", |t: &Trail| if t.n > 0 { "b" } else { END })
        .edge("b", END)
        .build();
    assert!(ok.is_ok(), "{ok:?}");
}

#[actix_rt::test]
async fn a_conditional_loop_runs_to_the_end_and_llm_nodes_are_logged() {
    for db in databases().await {
        let state = db.shared_state().await;
        let graph = Graph::<Trail>::builder("loop")
            .node("inc", |mut t: Trail, _ctx| async move {
                t.n += 1;
                t.visited.push(format!("inc{}", t.n));
                Ok(t)
            })
            .node("ask", |mut t: Trail, ctx| async move {
                ctx.log_llm(&format!("n is {}?", t.n), "looks right", Some(json!({"model": "offline"})))
                    .await?;
                t.visited.push("ask".into());
                Ok(t)
            })
            .edge(START, "inc")
            .conditional_edge("inc", |t: &Trail| if t.n < 3 { "inc" } else { "ask" })
            .edge("ask", END)
            .build()
            .unwrap();
        let executor = LangGraphExecutor::default().graph(graph);
        let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await.unwrap();
        let submitted =
            state.submit_workflow_run("loop", "run-1", json!({"visited": [], "n": 0})).await.unwrap();
        assert_eq!(submitted.status(), Some(WorkflowStatus::Pending));
        let duplicate = state.submit_workflow_run("loop", "run-1", json!({})).await.unwrap_err();
        assert!(duplicate.to_string().contains("already exists"), "{duplicate}");

        let run = finished(&state, "run-1").await;
        assert_eq!(run.status(), Some(WorkflowStatus::Completed), "{run:?}");
        assert_eq!(run.step, 4);
        assert_eq!(run.next_node, None);
        assert_eq!(trail(&run).visited, ["inc1", "inc2", "inc3", "ask"]);
        let logged = state.llm_conversation("run-1").await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].message_content.as_deref(), Some("n is 3?"));
        let meta = &logged[0].metadata.as_ref().unwrap().0;
        assert_eq!((meta["node"].clone(), meta["step"].clone()), (json!("ask"), json!(4)));
        assert_eq!(meta["idempotency_key"], "run-1:4");
        let listed = state.list_workflow_runs(Some(WorkflowStatus::Completed), 10).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["run-1"]);
        runtime.shutdown().await;
    }
}

#[actix_rt::test]
async fn node_errors_and_the_step_limit_fail_the_run_with_the_reason() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let forever = Graph::<Trail>::builder("forever")
        .node("spin", pass("spin"))
        .edge(START, "spin")
        .conditional_edge("spin", |_: &Trail| "spin")
        .step_limit(5)
        .build()
        .unwrap();
    let broken = Graph::<Trail>::builder("broken")
        .node("ok", pass("ok"))
        .node("bad", |_t: Trail, _ctx| async move { Err(NodeError::msg("upstream said no")) })
        .edge(START, "ok")
        .edge("ok", "bad")
        .edge("bad", END)
        .build()
        .unwrap();
    let lost = Graph::<Trail>::builder("lost")
        .node("a", pass("a"))
        .edge(START, "a")
        .conditional_edge("a", |_: &Trail| "nowhere")
        .build()
        .unwrap();
    let executor = LangGraphExecutor::default().graph(forever).graph(broken).graph(lost);
    let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await.unwrap();
    for (graph, id) in [("forever", "f"), ("broken", "b"), ("lost", "l")] {
        state.submit_workflow_run(graph, id, json!({"visited": [], "n": 0})).await.unwrap();
    }
    let f = finished(&state, "f").await;
    assert_eq!((f.status.as_str(), f.step), ("failed", 5));
    assert_eq!(f.error.as_deref(), Some("step limit of 5 reached"));
    let b = finished(&state, "b").await;
    assert_eq!((b.status.as_str(), b.step, b.next_node.as_deref()), ("failed", 1, Some("bad")));
    assert_eq!(b.error.as_deref(), Some("node `bad` failed: upstream said no"));
    assert_eq!(trail(&b).visited, ["ok"], "the state of the last good step is kept");
    let l = finished(&state, "l").await;
    assert!(l.error.unwrap().contains("chose `nowhere`"));
    runtime.shutdown().await;
}

/// Counts completed executions of each node.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counts {
    fn bump(&self, node: &str) {
        *self.0.lock().unwrap().entry(node.into()).or_default() += 1;
    }
    fn get(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// a -> b -> c -> d, counting each node's completed runs; `c` runs `c_hook` first.
fn chain<H, Fut>(counts: Counts, c_hook: H) -> Graph<Trail>
where
    H: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let node = |name: &'static str, counts: Counts| {
        move |mut t: Trail, _ctx: vigil_actors::NodeContext| {
            let counts = counts.clone();
            async move {
                counts.bump(name);
                t.visited.push(name.into());
                Ok(t)
            }
        }
    };
    let c_counts = counts.clone();
    let c_hook = Arc::new(c_hook);
    Graph::<Trail>::builder("chain")
        .node("a", node("a", counts.clone()))
        .node("b", node("b", counts.clone()))
        .node("c", move |mut t: Trail, _ctx| {
            let (counts, hook) = (c_counts.clone(), c_hook.clone());
            async move {
                hook().await;
                counts.bump("c");
                t.visited.push("c".into());
                Ok(t)
            }
        })
        .node("d", node("d", counts))
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", "c")
        .edge("c", "d")
        .edge("d", END)
        .build()
        .unwrap()
}

fn once_each() -> BTreeMap<String, usize> {
    ["a", "b", "c", "d"].into_iter().map(|n| (n.to_owned(), 1)).collect()
}

#[actix_rt::test]
async fn a_node_panic_restarts_the_executor_which_resumes_at_that_node() {
    let db = TestDb::sqlite();
    let state = db.shared_state().await;
    let counts = Counts::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(true));
    let graph = {
        let (attempts, armed) = (attempts.clone(), armed.clone());
        chain(counts.clone(), move || {
            attempts.fetch_add(1, Ordering::SeqCst);
            if armed.swap(false, Ordering::SeqCst) {
                panic!("injected crash in node c");
            }
            std::future::ready(())
        })
    };
    let executor = LangGraphExecutor::default().graph(graph);
    let runtime = Runtime::builder(state.clone())
        .intensity(RestartIntensity::new(5, Duration::from_secs(60)))
        .agent_with_id("langgraph", move || executor.clone())
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    state.submit_workflow_run("chain", "crashy", json!({"visited": [], "n": 0})).await.unwrap();
    events
        .wait_for(LIMIT, |e| e.agent_id == "langgraph" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .expect("the panic restarted the executor");
    let run = finished(&state, "crashy").await;
    assert_eq!(run.status(), Some(WorkflowStatus::Completed));
    assert_eq!(trail(&run).visited, ["a", "b", "c", "d"]);
    assert_eq!(counts.get(), once_each(), "each completed step ran exactly once");
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "c was attempted again after the crash");
    // The restarted executor keeps working.
    state.submit_workflow_run("chain", "after", json!({"visited": [], "n": 0})).await.unwrap();
    assert_eq!(finished(&state, "after").await.status(), Some(WorkflowStatus::Completed));
    runtime.shutdown().await;
}

async fn a_stopped_runtime_resumes_from_its_checkpoint(db: TestDb) {
    let counts = Counts::default();
    // First life: node c signals, then hangs until the runtime is torn down.
    let (entered, mut c_entered) = mpsc::unbounded_channel();
    let first = chain(counts.clone(), move || {
        let _ = entered.send(());
        std::future::pending::<()>()
    });
    {
        let state = db.shared_state().await;
        let executor = LangGraphExecutor::default().graph(first);
        let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await.unwrap();
        state.submit_workflow_run("chain", "resumable", json!({"visited": [], "n": 0})).await.unwrap();
        tokio::time::timeout(LIMIT, c_entered.recv()).await.expect("node c started").unwrap();
        // Stopping abandons the step in flight after the executor's shutdown timeout.
        runtime.shutdown().await;
        let run = state.get_workflow_run("resumable").await.unwrap().unwrap();
        assert_eq!((run.status.as_str(), run.step, run.next_node.as_deref()), ("running", 2, Some("c")));
        assert_eq!(trail(&run).visited, ["a", "b"]);
    }
    assert_eq!(counts.get().get("c"), None, "c never completed in the first life");

    // Second life: a new store, runtime and executor over the same database.
    let state = db.shared_state().await;
    let executor = LangGraphExecutor::default().graph(chain(counts.clone(), || std::future::ready(())));
    let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await.unwrap();
    let run = finished(&state, "resumable").await;
    assert_eq!((run.status(), run.step), (Some(WorkflowStatus::Completed), 4));
    assert_eq!(trail(&run).visited, ["a", "b", "c", "d"]);
    assert_eq!(counts.get(), once_each(), "a and b were not run again");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_stopped_runtime_resumes_from_its_checkpoint_on_sqlite() {
    a_stopped_runtime_resumes_from_its_checkpoint(TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn a_stopped_runtime_resumes_from_its_checkpoint_on_postgres() {
    let Some(db) = TestDb::postgres().await else { return };
    a_stopped_runtime_resumes_from_its_checkpoint(db).await;
}
