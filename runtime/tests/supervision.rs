//! Supervision under simulated failures: strategies, restart types, intensity and
//! escalation, panics in every hook, hung shutdowns, restart storms, and a seeded
//! random run over a three-level tree. Every wait is on an event, with a timeout as a
//! safety net; nothing sleeps to wait.

use std::collections::HashMap;
use std::time::Duration;

use vigil_runtime::supervisor::{CountChildren, Strategy, SupervisorSpec, WhichChildren};
use vigil_runtime::testkit::{Fault, FaultPlan, faulty_child, memory_state, wait_until_active};
use vigil_runtime::{
    Agent, AgentContext, AgentError, AgentMessage, AgentResult, EventBus, EventKind, Handles, Restart,
    RestartIntensity, Runtime, State,
};

mod common;

use common::LIMIT;

fn generous() -> RestartIntensity {
    RestartIntensity::new(1_000, Duration::from_secs(60))
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// Starts a root supervisor with `strategy` over children a, b, c, injects one panic
/// into b, and returns how many restarts each child saw once all are active again.
async fn restarts_after_b_fails(strategy: Strategy) -> HashMap<String, u64> {
    let plan = FaultPlan::new().at_cycle("b", 3, Fault::Panic);
    let runtime = Runtime::builder(memory_state().await)
        .strategy(strategy)
        .intensity(generous())
        .child(faulty_child(&plan, "a"))
        .child(faulty_child(&plan, "b"))
        .child(faulty_child(&plan, "c"))
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    events
        .wait_for(LIMIT, |e| e.agent_id == "b" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .unwrap();
    wait_until_active(&runtime, LIMIT).await.unwrap();
    let restarts = runtime.statuses().await.into_iter().map(|s| (s.agent_id, s.restarts)).collect();
    runtime.shutdown().await;
    restarts
}

#[actix_rt::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let restarts = restarts_after_b_fails(Strategy::OneForOne).await;
    assert_eq!((restarts["a"], restarts["b"], restarts["c"]), (0, 1, 0));
}

#[actix_rt::test]
async fn one_for_all_restarts_every_child() {
    let restarts = restarts_after_b_fails(Strategy::OneForAll).await;
    assert_eq!((restarts["a"], restarts["b"], restarts["c"]), (1, 1, 1));
}

#[actix_rt::test]
async fn rest_for_one_restarts_the_failed_child_and_later_ones() {
    let restarts = restarts_after_b_fails(Strategy::RestForOne).await;
    assert_eq!((restarts["a"], restarts["b"], restarts["c"]), (0, 1, 1));
}

#[actix_rt::test]
async fn one_for_all_restarts_in_start_order() {
    let plan = FaultPlan::new().at_cycle("c", 2, Fault::Error);
    let events = EventBus::default();
    let mut stream = events.subscribe();
    let runtime = Runtime::builder(memory_state().await)
        .events(events)
        .strategy(Strategy::OneForAll)
        .intensity(generous())
        .child(faulty_child(&plan, "a"))
        .child(faulty_child(&plan, "b"))
        .child(faulty_child(&plan, "c"))
        .start()
        .await
        .unwrap();
    let mut order = Vec::new();
    while order.len() < 3 {
        let event = stream.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { .. })).await.unwrap();
        order.push(event.agent_id);
    }
    assert_eq!(order, ["a", "b", "c"]);
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn restart_types_permanent_transient_temporary() {
    let plan = FaultPlan::new()
        .at_cycle("perm", 2, Fault::Panic)
        .at_cycle("trans", 2, Fault::Panic)
        .at_cycle("temp", 2, Fault::Panic);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .child(faulty_child(&plan, "perm").restart(Restart::Permanent))
        .child(faulty_child(&plan, "trans").restart(Restart::Transient))
        .child(faulty_child(&plan, "temp").restart(Restart::Temporary))
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    events.wait_for_state("temp", State::Shutdown, LIMIT).await.expect("a temporary child is not restarted");
    let children = runtime.root().send(WhichChildren).await.unwrap();
    let temp = children.iter().find(|c| c.id == "temp").unwrap();
    assert!(!temp.running);
    assert_eq!(temp.restart, Restart::Temporary);
    for id in ["perm", "trans"] {
        if runtime.statuses().await.iter().any(|s| s.agent_id == id && s.restarts == 0) {
            events
                .wait_for(LIMIT, |e| e.agent_id == id && matches!(e.kind, EventKind::Restarted { .. }))
                .await
                .unwrap();
        }
    }
    let counts = runtime.root().send(CountChildren).await.unwrap();
    assert_eq!((counts.specs, counts.active, counts.workers, counts.supervisors), (3, 2, 2, 0));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn nested_intensity_exceeded_escalates_and_the_parent_restarts_the_subtree() {
    // `inner` allows one restart per minute; x fails twice, so inner escalates and the
    // root (one_for_one) restarts inner's whole subtree: y is restarted with it.
    let plan = FaultPlan::new().at_cycle("x", 2, Fault::Panic).at_cycle("x", 4, Fault::Panic);
    let inner = SupervisorSpec::new("inner", Strategy::OneForOne)
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(faulty_child(&plan, "x"))
        .child(faulty_child(&plan, "y"));
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .child(faulty_child(&plan, "top"))
        .supervisor(inner)
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let escalation = events
        .wait_for(LIMIT, |e| e.agent_id == "inner" && matches!(e.kind, EventKind::Failure { .. }))
        .await
        .expect("inner escalated");
    assert!(matches!(escalation.cause, vigil_runtime::Cause::Escalation { .. }));
    events
        .wait_for(LIMIT, |e| e.agent_id == "y" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .unwrap();
    wait_until_active(&runtime, LIMIT).await.unwrap();
    let restarts: HashMap<_, _> =
        runtime.statuses().await.into_iter().map(|s| (s.agent_id, s.restarts)).collect();
    assert_eq!(restarts["top"], 0, "the parent restarted only the escalating subtree");
    assert_eq!(restarts["y"], 1);
    assert_eq!(restarts["x"], 2, "once by inner, once with the subtree");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn top_level_escalation_parks_in_manual_and_fix_restarts() {
    let plan = FaultPlan::new().at_cycle("w", 1, Fault::Panic).at_cycle("w", 2, Fault::Panic);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(faulty_child(&plan, "w"))
        .child(faulty_child(&plan, "bystander"))
        .start()
        .await
        .unwrap();
    let state = runtime.shared_state().clone();
    let mut events = runtime.subscribe();
    let parked = events.wait_for_state("w", State::Manual, LIMIT).await.unwrap();
    let vigil_runtime::Cause::Escalation { reason } = &parked.cause else { panic!("{:?}", parked.cause) };
    assert!(reason.contains("restart intensity exceeded"), "{reason}");
    state.flush().await.unwrap(); // `state` is the runtime's: it has its writer
    assert_eq!(state.get_agent("w").await.unwrap().unwrap().status, Some(vigil_persistence::State::Manual));
    let bystander = runtime.statuses().await.into_iter().find(|s| s.agent_id == "bystander").unwrap();
    assert_eq!(
        bystander.state,
        State::Active,
        "one_for_one parks only the failing agent; the runtime keeps running"
    );
    runtime.control().fix("w").await.unwrap();
    wait_until_active(&runtime, LIMIT).await.unwrap();
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_panic_in_initialize_is_a_failure_and_is_retried() {
    let plan = FaultPlan::new().on_initialize("w", Fault::Panic, 1);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .child(faulty_child(&plan, "w"))
        .start()
        .await;
    // The first start failed in initialize: reported, not hidden.
    let error = runtime.unwrap_err();
    assert!(error.to_string().contains("injected panic in w.initialize"), "{error}");

    // Under a supervisor that is already running, a failing initialize is restarted.
    let plan = FaultPlan::new().on_initialize("late", Fault::Error, 2);
    let runtime = Runtime::builder(memory_state().await).intensity(generous()).start().await.unwrap();
    let mut events = runtime.subscribe();
    let started = runtime
        .root()
        .send(vigil_runtime::supervisor::StartChild(faulty_child(&plan, "late")))
        .await
        .unwrap();
    assert!(started.is_err(), "start_child reports the failed initialize");
    events.wait_for_state("late", State::Active, LIMIT).await.expect("restarted until initialize succeeded");
    assert_eq!(plan.injected(), 2);
    runtime.shutdown().await;
}

/// Panics when asked to.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "fragile", cycle = "1h")]
struct Fragile {
    handled: u32,
}

impl Agent for Fragile {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

struct Poke {
    panic: bool,
}

impl AgentMessage for Poke {
    type Reply = u32;
}

impl Handles<Poke> for Fragile {
    async fn handle(&mut self, poke: Poke, _ctx: &AgentContext) -> Result<u32, AgentError> {
        assert!(!poke.panic, "poked to death");
        self.handled += 1;
        Ok(self.handled)
    }
}

#[actix_rt::test]
async fn a_panic_in_a_message_handler_restarts_with_fresh_state() {
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .agent(Fragile::default)
        .start()
        .await
        .unwrap();
    assert_eq!(runtime.ask::<Fragile, _>("fragile", Poke { panic: false }).await.unwrap(), 1);
    assert_eq!(runtime.ask::<Fragile, _>("fragile", Poke { panic: false }).await.unwrap(), 2);
    let mut events = runtime.subscribe();
    let failed = runtime.ask::<Fragile, _>("fragile", Poke { panic: true }).await.unwrap_err();
    assert!(failed.to_string().contains("poked to death"), "{failed}");
    events.wait_for_state("fragile", State::Active, LIMIT).await.unwrap();
    assert_eq!(runtime.ask::<Fragile, _>("fragile", Poke { panic: false }).await.unwrap(), 1, "fresh state");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_hung_agent_is_stopped_at_its_shutdown_timeout() {
    let plan = FaultPlan::new().at_cycle("stuck", 1, Fault::Hang);
    let runtime =
        Runtime::builder(memory_state().await).child(faulty_child(&plan, "stuck")).start().await.unwrap();
    let mut events = runtime.subscribe();
    // Wait until the hanging cycle has begun (it holds the agent for good).
    while plan.cycles("stuck") == 0 {
        events.wait_for(LIMIT, |_| true).await.ok();
    }
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(LIMIT, runtime.shutdown()).await.expect("shutdown finished");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at its 200 ms timeout, not hung: {:?}",
        started.elapsed()
    );
    // Its hook never got the agent (the hung cycle holds it): not a clean stop.
    assert!(report.stopped.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "stuck");
    assert!(report.failed[0].1.to_string().contains("did not finish within 200ms"), "{report:?}");
}

#[actix_rt::test]
async fn the_control_plane_restarts_stops_and_fixes_by_id() {
    let plan = FaultPlan::new();
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .child(faulty_child(&plan, "a"))
        .child(faulty_child(&plan, "b"))
        .start()
        .await
        .unwrap();
    let control = runtime.control().clone();
    let mut events = runtime.subscribe();
    control.restart("a", "operator asked").await.unwrap();
    let restarted = events
        .wait_for(LIMIT, |e| e.agent_id == "a" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .unwrap();
    assert_eq!(restarted.cause, vigil_runtime::Cause::RestartRequested { reason: "operator asked".into() });
    events.wait_for_state("a", State::Active, LIMIT).await.unwrap();
    assert_eq!(control.status("a").await.unwrap().restarts, 1);

    control.stop("b").await.unwrap();
    assert!(matches!(control.status("b").await, Err(vigil_runtime::ControlError::NotRunning(_))));
    assert!(matches!(control.restart("ghost", "x").await, Err(vigil_runtime::ControlError::UnknownAgent(_))));
    // ManualFixed is refused unless the agent is parked.
    assert!(matches!(control.fix("a").await, Err(vigil_runtime::ControlError::Lifecycle(_))));
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_hung_cycle_does_not_block_a_requested_restart() {
    let plan = FaultPlan::new().at_cycle("stuck", 2, Fault::Hang);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .child(faulty_child(&plan, "stuck"))
        .start()
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    while plan.cycles("stuck") < 2 {
        events.wait_for(LIMIT, |_| true).await.ok();
    }
    // The hung cycle holds the old instance for good; the restart replaces it anyway.
    runtime.control().restart("stuck", "hung").await.unwrap();
    events
        .wait_for(LIMIT, |e| e.agent_id == "stuck" && matches!(e.kind, EventKind::Restarted { .. }))
        .await
        .unwrap();
    events.wait_for_state("stuck", State::Active, LIMIT).await.unwrap();
    let before = plan.cycles("stuck");
    while plan.cycles("stuck") < before + 3 {
        events.wait_for(LIMIT, |_| true).await.ok();
    }
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn messages_queued_behind_a_failing_one_are_refused_not_lost() {
    let runtime = Runtime::builder(memory_state().await)
        .intensity(generous())
        .agent(Fragile::default)
        .start()
        .await
        .unwrap();
    let addr = runtime.addr::<Fragile>("fragile").unwrap();
    // Queue a fatal message and three more behind it before any is handled.
    let fatal = addr.send(vigil_runtime::Ask(Poke { panic: true }));
    let queued: Vec<_> = (0..3).map(|_| addr.send(vigil_runtime::Ask(Poke { panic: false }))).collect();
    assert!(matches!(fatal.await.unwrap(), Err(vigil_runtime::AskError::Failed(_))));
    for reply in queued {
        // Each gets a typed answer: refused because the instance it was queued for failed.
        let reply = reply.await.unwrap();
        assert!(
            matches!(
                reply,
                Err(vigil_runtime::AskError::Restarted) | Err(vigil_runtime::AskError::Unavailable(_))
            ),
            "{reply:?}"
        );
    }
    let mut events = runtime.subscribe();
    if runtime.statuses().await[0].state != State::Active {
        events.wait_for_state("fragile", State::Active, LIMIT).await.unwrap();
    }
    assert_eq!(
        runtime.ask::<Fragile, _>("fragile", Poke { panic: false }).await.unwrap(),
        1,
        "served by the fresh instance"
    );
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn children_start_in_order_each_active_before_the_next_begins() {
    let plan = FaultPlan::new();
    let events = EventBus::default();
    let mut stream = events.subscribe();
    let runtime = Runtime::builder(memory_state().await)
        .events(events)
        .child(faulty_child(&plan, "first"))
        .child(faulty_child(&plan, "second"))
        .child(faulty_child(&plan, "third"))
        .start()
        .await
        .unwrap();
    let mut order = Vec::new();
    while order.len() < 6 {
        let event = stream
            .wait_for(LIMIT, |e| matches!(e.entered(), Some(State::Deploying | State::Active)))
            .await
            .unwrap();
        order.push(format!("{}:{}", event.agent_id, event.entered().unwrap()));
    }
    assert_eq!(
        order,
        [
            "first:deploying",
            "first:active",
            "second:deploying",
            "second:active",
            "third:deploying",
            "third:active"
        ]
    );
    runtime.shutdown().await;
}
