//! A graph workflow with a conditional edge, interrupted after step 2 and resumed from
//! its checkpoint at step 3 by a second runtime — on the embedded SQLite database.
//!
//! Run: `cargo run --example workflow` (a temporary database file; exits by itself).
//!
//! ```text
//!  START -> count -> classify --(long)--> summarize -> approve -> END
//!                             \--(short)-------------> approve
//! ```
//!
//! The first runtime completes `count` (step 1) and `classify` (step 2); `summarize`
//! (step 3) never finishes there — it waits until the runtime is stopped, like a
//! process killed mid-step. The second runtime opens the same database, finds the
//! run at its checkpoint (step 2, next node `summarize`) and finishes it; `count` and
//! `classify` do not run again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vigil::actors::langgraph::{END, Graph, LangGraphExecutor, NodeContext, START};
use vigil::persistence::workflow_runs::{WorkflowRunRecord, WorkflowStatus};
use vigil::prelude::*;

/// The workflow's state, checkpointed as JSON after every step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Review {
    text: String,
    words: usize,
    long: bool,
    summary: Option<String>,
    approved: bool,
    /// Which node ran at which step, in which runtime.
    trail: Vec<String>,
}

fn note(review: &mut Review, ctx: &NodeContext, life: u32) {
    let line = format!("step {} `{}` (runtime {life})", ctx.step(), ctx.node());
    println!("  ran {line}");
    review.trail.push(line);
}

/// The graph; in `life` 1, `summarize` signals `interrupted` and then never returns.
fn review_graph(life: u32, interrupted: mpsc::UnboundedSender<()>, hang: Arc<AtomicBool>) -> Graph<Review> {
    Graph::<Review>::builder("review")
        .node("count", move |mut r: Review, ctx| async move {
            r.words = r.text.split_whitespace().count();
            note(&mut r, &ctx, life);
            Ok(r)
        })
        .node("classify", move |mut r: Review, ctx| async move {
            r.long = r.words > 8;
            note(&mut r, &ctx, life);
            Ok(r)
        })
        .node("summarize", move |mut r: Review, ctx| {
            let (interrupted, hang) = (interrupted.clone(), hang.clone());
            async move {
                if hang.load(Ordering::SeqCst) {
                    let _ = interrupted.send(());
                    std::future::pending::<()>().await;
                }
                r.summary = Some(r.text.split_whitespace().take(5).collect::<Vec<_>>().join(" ") + " ...");
                // A node that called a language model would log the exchange here.
                ctx.log_llm("summarize the review", r.summary.as_deref().unwrap_or_default(), None).await?;
                note(&mut r, &ctx, life);
                Ok(r)
            }
        })
        .node("approve", move |mut r: Review, ctx| async move {
            r.approved = true;
            note(&mut r, &ctx, life);
            Ok(r)
        })
        .edge(START, "count")
        .edge("count", "classify")
        .conditional_edge("classify", |r: &Review| if r.long { "summarize" } else { "approve" })
        .edge("summarize", "approve")
        .edge("approve", END)
        .step_limit(10)
        .build()
        .expect("the graph is valid")
}

async fn run_of(state: &SharedState) -> Result<WorkflowRunRecord, StoreError> {
    Ok(state.get_workflow_run("review-1").await?.expect("submitted"))
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("vigil-workflow-example-{}.db", std::process::id()));
    let hang = Arc::new(AtomicBool::new(true));
    let (interrupted, mut on_interrupt) = mpsc::unbounded_channel();

    println!("runtime 1: submit run `review-1` and start the executor");
    {
        let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await?);
        let executor = LangGraphExecutor::default().graph(review_graph(1, interrupted.clone(), hang.clone()));
        let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await?;
        let text = "the new scheduler keeps every agent's heartbeat on its own timer so long cycles never look stale";
        state
            .submit_workflow_run(
                "review",
                "review-1",
                serde_json::json!(Review { text: text.into(), ..Default::default() }),
            )
            .await?;

        tokio::time::timeout(Duration::from_secs(30), on_interrupt.recv()).await?;
        println!("runtime 1: step 3 started; stopping the runtime mid-step");
        runtime.shutdown().await;
        let run = run_of(&state).await?;
        println!(
            "checkpoint: status {}, step {}, next node {:?}",
            run.status,
            run.step,
            run.next_node.as_deref().unwrap_or("-")
        );
    }

    println!("runtime 2: a new store and executor over the same database");
    hang.store(false, Ordering::SeqCst);
    let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await?);
    let executor = LangGraphExecutor::default().graph(review_graph(2, interrupted, hang));
    let runtime = Runtime::builder(state.clone()).agent(move || executor.clone()).start().await?;
    let run = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let run = run_of(&state).await?;
            if run.status().is_some_and(WorkflowStatus::is_finished) {
                return Ok::<_, StoreError>(run);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    runtime.shutdown().await;

    let review: Review = serde_json::from_value(run.state.0.clone())?;
    println!("run `review-1` {} after {} steps:", run.status, run.step);
    for line in &review.trail {
        println!("  {line}");
    }
    println!("summary: {}", review.summary.as_deref().unwrap_or("-"));
    for listed in state.list_workflow_runs(None, 10).await? {
        println!("listed: {} ({}) {} at step {}", listed.run_id, listed.graph, listed.status, listed.step);
    }
    drop(state);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
