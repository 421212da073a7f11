//! Shutdown finishes before it returns: children stop one at a time in reverse start
//! order, each one's shutdown hook ended before the next is asked; what a hook writes
//! is committed when `Runtime::shutdown` returns; and a stopped agent says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use vigil_persistence::shared_state::{Metric, Writer};
use vigil_persistence::types::Ts;
use vigil_runtime::supervisor::{ChildSpec, Strategy, SupervisorSpec};
use vigil_runtime::testkit::memory_state;
use vigil_runtime::{Agent, AgentContext, AgentError, AgentMessage, AgentResult, AskError, Handles, Runtime};

/// What the hooks saw, in order: `("start" | "end", agent id)`.
type Log = Arc<Mutex<Vec<(&'static str, String)>>>;

/// Takes a while to shut down and records when its hook starts and ends.
#[derive(vigil_runtime::Agent)]
#[agent(name = "slow_stop", cycle = "20ms", shutdown_timeout = "5s")]
struct SlowStop {
    log: Log,
}

impl Agent for SlowStop {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }

    async fn shutdown(&mut self, ctx: &AgentContext) -> AgentResult {
        self.log.lock().unwrap().push(("start", ctx.agent_id().to_owned()));
        tokio::time::sleep(Duration::from_millis(40)).await;
        self.log.lock().unwrap().push(("end", ctx.agent_id().to_owned()));
        Ok(())
    }
}

fn slow(log: &Log, id: &str) -> ChildSpec {
    let log = log.clone();
    ChildSpec::agent(id, move || SlowStop { log: log.clone() })
}

#[actix_rt::test]
async fn children_stop_one_at_a_time_in_reverse_start_order_hooks_finished() {
    let log = Log::default();
    let nested =
        SupervisorSpec::new("nested", Strategy::OneForOne).child(slow(&log, "b")).child(slow(&log, "c"));
    let runtime = Runtime::builder(memory_state().await)
        .child(slow(&log, "a"))
        .supervisor(nested)
        .child(slow(&log, "d"))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let report = runtime.shutdown().await;
    let elapsed = started.elapsed();

    let order = ["d", "c", "b", "a"];
    let expected: Vec<(&str, String)> =
        order.iter().flat_map(|id| [("start", id.to_string()), ("end", id.to_string())]).collect();
    assert_eq!(*log.lock().unwrap(), expected, "each hook ended before the next began");
    assert_eq!(report.stopped, order, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        elapsed >= Duration::from_millis(4 * 40),
        "shutdown returned before the hooks ended: {elapsed:?}"
    );
}

/// Writes a metric in its shutdown hook, after a pause (as a real flush would take).
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "farewell", cycle = "20ms")]
struct Farewell;

impl Agent for Farewell {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }

    async fn shutdown(&mut self, ctx: &AgentContext) -> AgentResult {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.shared_state().add_performance_metric(Metric::new("farewell", 1.0)).enqueue().await?;
        Ok(())
    }
}

#[actix_rt::test]
async fn a_write_in_a_shutdown_hook_is_committed_when_shutdown_returns() {
    let store = vigil_persistence::testing::in_memory_store().await;
    let shared = common::with_own_writer(store);
    let since = Ts::now();
    let runtime = Runtime::builder(shared.clone()).agent(Farewell::default).start().await.unwrap();
    let report = runtime.shutdown().await;
    assert_eq!(report.stopped, ["farewell"], "{report:?}");
    // Read straight from the store, at once: no waiting for a later commit.
    let rows = shared.metric_series("farewell", None, since).await.unwrap();
    assert_eq!(rows.len(), 1, "the hook's write is in the database when shutdown() returns");
}

/// Answers pings.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "echo", cycle = "1s")]
struct Echo;

impl Agent for Echo {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

struct Ping;

impl AgentMessage for Ping {
    type Reply = &'static str;
}

impl Handles<Ping> for Echo {
    async fn handle(&mut self, _: Ping, _ctx: &AgentContext) -> Result<&'static str, AgentError> {
        Ok("pong")
    }
}

#[actix_rt::test]
async fn ask_after_shutdown_is_a_typed_stopped_error() {
    let runtime = Runtime::builder(memory_state().await).agent(Echo::default).start().await.unwrap();
    assert_eq!(runtime.ask::<Echo, _>("echo", Ping).await.unwrap(), "pong");
    runtime.shutdown().await;
    let refused = runtime.ask::<Echo, _>("echo", Ping).await.unwrap_err();
    assert!(matches!(refused, AskError::Stopped), "{refused:?}");
}

/// A platform stopping while its writer's queue is full and nothing commits still
/// records every agent's `shutdown`: transitions have a lane of their own in the writer
/// and never wait for room, so no agent is killed for want of it. The writes the writer
/// could not commit are reported, not lost silently.
#[actix_rt::test]
async fn a_full_write_queue_does_not_hold_up_shutdown() {
    use vigil_persistence::{EnqueueError, PersistenceConfig};
    use vigil_runtime::testkit::{FaultPlan, fail_next_flushes, faulty_child};
    const CAPACITY: usize = 16;

    let plan = FaultPlan::new();
    let config = PersistenceConfig::default()
        .with_queue_capacity(CAPACITY)
        .with_shutdown_timeout(Duration::from_millis(300));
    let mut builder = Runtime::builder(memory_state().await).persistence(config);
    let ids: Vec<String> = (0..4).map(|i| format!("w{i}")).collect();
    for id in &ids {
        builder = builder.child(faulty_child(&plan, id));
    }
    let runtime = builder.start().await.unwrap();
    let shared = runtime.shared_state().clone();
    shared.flush().await.unwrap();
    // From now on nothing commits, and the queue fills to its capacity.
    fail_next_flushes(&shared, u32::MAX);
    let writer = match shared.writer() {
        Writer::Actor(writer) => writer.clone(),
        Writer::Direct => unreachable!("the runtime's own writer"),
    };
    loop {
        match writer.enqueue(Metric::new("filler", 1.0).into_write()) {
            Ok(()) => {}
            Err(EnqueueError::Full { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }

    let report = runtime.shutdown().await;
    let mut stopped = report.stopped.clone();
    stopped.sort();
    assert_eq!(stopped, ids, "every agent stopped cleanly, none killed: {report:?}");
    let (what, why) = report.failed.last().expect("the writes that could not commit are reported");
    assert_eq!(what, "persistence", "{report:?}");
    assert!(why.to_string().contains("writes not written"), "{why}");
}

/// Asks its supervisor to restart another agent when told to, and reports the answer.
#[derive(vigil_runtime::Agent)]
#[agent(name = "asker", cycle = "10ms", shutdown_timeout = "2s")]
struct Asker {
    go: Arc<tokio::sync::Notify>,
    answers: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
}

impl Agent for Asker {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let _ = self.answers.send(Ok(())); // in a cycle, waiting to be told
        self.go.notified().await;
        let answer = ctx.control().restart("other", "asked during shutdown").await.map_err(|e| e.to_string());
        let _ = self.answers.send(answer);
        Ok(())
    }
}

/// An agent that asks for a restart while the runtime shuts down gets a typed refusal at
/// once, instead of waiting on a supervisor that is busy stopping children (and holding
/// its own shutdown hook until the timeout).
#[actix_rt::test]
async fn a_restart_asked_for_during_shutdown_is_refused_at_once() {
    use vigil_runtime::testkit::{FaultPlan, faulty_child};
    let go = Arc::new(tokio::sync::Notify::new());
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let asker = {
        let (go, answers) = (go.clone(), answers.clone());
        ChildSpec::agent("asker", move || Asker { go: go.clone(), answers: answers.clone() })
    };
    let runtime = Runtime::builder(memory_state().await)
        .child(faulty_child(&FaultPlan::new(), "other"))
        .child(asker)
        .start()
        .await
        .unwrap();
    let in_a_cycle = tokio::time::timeout(Duration::from_secs(30), answered.recv()).await.unwrap().unwrap();
    assert_eq!(in_a_cycle, Ok(()));
    let stopping = {
        let runtime = runtime.clone();
        actix_rt::spawn(async move { runtime.shutdown().await })
    };
    tokio::task::yield_now().await; // the shutdown has begun
    go.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(30), answered.recv()).await.unwrap().unwrap();
    assert_eq!(answer, Err("the runtime is shutting down".to_owned()));
    let report = stopping.await.unwrap();
    assert!(report.failed.is_empty(), "the asker stopped cleanly: {report:?}");
}
