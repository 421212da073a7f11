//! Seeded and random fault plans: a restart storm, a thousand random faults over a
//! three-level tree, a seeded plan that replays per agent whatever the scheduling, and
//! random hangs caught at a short cycle timeout. Every wait is on an event, with a
//! timeout as a safety net.

use std::collections::HashMap;
use std::time::Duration;

use vigil_persistence::shared_state::EventFilter;
use vigil_runtime::supervisor::{ChildSpec, Strategy, SupervisorSpec};
use vigil_runtime::testkit::{Fault, FaultPlan, faulty_child, memory_state, wait_until_active};
use vigil_runtime::{EventBus, EventKind, RestartIntensity, Runtime, State};

mod common;

use common::LIMIT;

fn generous() -> RestartIntensity {
    RestartIntensity::new(1_000, Duration::from_secs(60))
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

#[actix_rt::test]
async fn a_restart_storm_stays_consistent() {
    // Fails every cycle; 200 restarts in a row.
    let plan = FaultPlan::seeded(7, 1.0);
    let runtime = Runtime::builder(memory_state().await)
        .intensity(
            RestartIntensity::new(100_000, Duration::from_secs(60))
                .with_backoff(Duration::ZERO, Duration::ZERO),
        )
        .child(faulty_child(&plan, "storm"))
        .start()
        .await;
    // The very first cycle may already have failed; the runtime started regardless.
    let runtime = runtime.unwrap();
    let mut events = runtime.subscribe();
    let mut restarts = 0;
    while restarts < 200 {
        events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { .. })).await.unwrap();
        restarts += 1;
    }
    plan.disable();
    wait_until_active(&runtime, LIMIT).await.unwrap();
    let status = runtime.statuses().await.pop().unwrap();
    assert!(status.restarts >= 200, "{status:?}");
    runtime.shutdown().await;
}

#[actix_rt::test]
async fn a_seeded_random_run_of_a_thousand_faults_over_three_levels() {
    const SEED: u64 = 0x5eed;
    let plan = FaultPlan::seeded(SEED, 0.2);
    let leaf = |name: &str, strategy, ids: [&str; 2]| {
        SupervisorSpec::new(name, strategy)
            .intensity(
                RestartIntensity::new(3, Duration::from_millis(200))
                    .with_backoff(Duration::ZERO, Duration::from_millis(2)),
            )
            .child(faulty_child(&plan, ids[0]))
            .child(faulty_child(&plan, ids[1]))
    };
    let middle = SupervisorSpec::new("middle", Strategy::OneForAll)
        .intensity(
            RestartIntensity::new(50, Duration::from_secs(1))
                .with_backoff(Duration::ZERO, Duration::from_millis(2)),
        )
        .child(ChildSpec::supervisor(leaf("leaf-a", Strategy::RestForOne, ["a1", "a2"])))
        .child(ChildSpec::supervisor(leaf("leaf-b", Strategy::OneForOne, ["b1", "b2"])))
        .child(faulty_child(&plan, "m1"));
    let events = EventBus::new(1 << 18);
    let mut stream = events.subscribe();
    let state = memory_state().await;
    let runtime = Runtime::builder(state.clone())
        .events(events)
        .intensity(
            RestartIntensity::new(1_000_000, Duration::from_secs(1))
                .with_backoff(Duration::ZERO, Duration::ZERO),
        )
        .child(faulty_child(&plan, "r1"))
        .supervisor(middle)
        .start()
        .await
        .unwrap();
    // Count every transition published while the faults run.
    let mut transitions = 0u64;
    while plan.injected() < 1_000 {
        match stream.wait_for(LIMIT, |_| true).await {
            Ok(event) if event.entered().is_some() => transitions += 1,
            Ok(_) => {}
            Err(e) => panic!("seed {SEED:#x}: {e} after {} faults", plan.injected()),
        }
    }
    plan.disable();
    wait_until_active(&runtime, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("seed {SEED:#x}: not all active: {e}"));
    let statuses = runtime.statuses().await;
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    assert!(statuses.iter().all(|s| s.state == State::Active), "{statuses:?}");
    // Drain what is left on the stream, then compare with what was persisted.
    while let Ok(event) = stream.wait_for(Duration::from_millis(200), |_| true).await {
        if event.entered().is_some() {
            transitions += 1;
        }
    }
    let persisted = state
        .recent_events(EventFilter {
            event_type: Some("state_transition".into()),
            limit: Some(1_000_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(persisted, transitions, "every published transition was persisted, and only those");
    runtime.shutdown().await;
}

/// One run of a seeded plan over agents a, b, c cycling at `paces` (ms): the faults
/// each agent got (cycle number and kind) and the failures its restarts followed, in
/// order, once every agent has had `per_agent` faults.
async fn seeded_run(
    seed: u64,
    paces: [u64; 3],
    per_agent: usize,
) -> HashMap<String, (Vec<(u64, Fault)>, Vec<String>)> {
    let plan = FaultPlan::seeded(seed, 0.2);
    let ids = ["a", "b", "c"];
    // Subscribed before the start: a fault may come in an agent's first cycle.
    let bus = EventBus::default();
    let mut events = bus.subscribe();
    let mut builder = Runtime::builder(memory_state().await).events(bus).intensity(generous());
    for (id, pace) in ids.iter().zip(paces) {
        builder = builder.child(faulty_child(&plan, id).cycle_interval(Duration::from_millis(pace)));
    }
    let runtime = builder.start().await.unwrap();
    let mut failures: HashMap<String, Vec<String>> = HashMap::new();
    // A failure is published after its fault is injected: once each agent has failed
    // `per_agent` times, both lists are complete that far.
    while ids.iter().any(|id| failures.get(*id).map_or(0, Vec::len) < per_agent) {
        let event = events
            .wait_for(LIMIT, |e| matches!(e.kind, EventKind::Failure { .. }))
            .await
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        if let EventKind::Failure { failure } = event.kind {
            failures.entry(event.agent_id).or_default().push(failure.to_string());
        }
    }
    plan.disable();
    wait_until_active(&runtime, LIMIT).await.unwrap();
    runtime.shutdown().await;
    ids.iter()
        .map(|id| {
            let mut faults = plan.cycle_faults(id);
            faults.truncate(per_agent);
            let mut failed = failures.remove(*id).unwrap_or_default();
            failed.truncate(per_agent);
            (id.to_string(), (faults, failed))
        })
        .collect()
}

#[actix_rt::test]
async fn a_seeded_plan_replays_per_agent_whatever_the_scheduling() {
    const SEED: u64 = 0x0dd_5eed;
    // The agents run at different paces in the two runs, so their cycles interleave
    // differently; each agent's own faults and restarts must not change.
    let first = seeded_run(SEED, [3, 7, 13], 6).await;
    let second = seeded_run(SEED, [13, 7, 3], 6).await;
    assert_eq!(first, second, "seed {SEED:#x}");
    for (id, (faults, failures)) in &first {
        assert_eq!(faults.len(), 6, "{id}: {faults:?}");
        // Each injected fault is the failure the agent's next restart followed.
        let kinds: Vec<&str> = failures
            .iter()
            .map(|reason| if reason.contains("injected panic") { "panic" } else { "error" })
            .collect();
        let expected: Vec<&str> =
            faults.iter().map(|(_, f)| if *f == Fault::Panic { "panic" } else { "error" }).collect();
        assert_eq!(kinds, expected, "{id}");
    }
    // A different seed is a different run.
    assert_ne!(first, seeded_run(SEED + 1, [3, 7, 13], 6).await);
}

#[actix_rt::test]
async fn random_hangs_are_caught_at_a_short_cycle_timeout_and_recovered_within_seconds() {
    let plan = FaultPlan::seeded(42, 0.1).random_kinds(&[Fault::Panic, Fault::Error, Fault::Hang]);
    let started = std::time::Instant::now();
    let mut builder = Runtime::builder(memory_state().await).intensity(generous());
    for id in ["x", "y", "z"] {
        builder = builder.child(
            faulty_child(&plan, id)
                .cycle_interval(Duration::from_millis(5))
                .cycle_timeout(Duration::from_millis(100))
                .heartbeat_interval(Duration::from_millis(50)),
        );
    }
    let runtime = builder.start().await.unwrap();
    let mut events = runtime.subscribe();
    let hangs = |plan: &FaultPlan| {
        ["x", "y", "z"].iter().flat_map(|id| plan.cycle_faults(id)).filter(|(_, f)| *f == Fault::Hang).count()
    };
    while hangs(&plan) < 5 {
        events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { .. })).await.unwrap();
    }
    plan.disable();
    // Every fault, the last hangs included, ends in a restart (one_for_one).
    let injected = plan.injected();
    loop {
        let restarts: u64 = runtime.statuses().await.iter().map(|s| s.restarts).sum();
        if restarts >= injected {
            assert_eq!(restarts, injected);
            break;
        }
        events.wait_for(LIMIT, |e| matches!(e.kind, EventKind::Restarted { .. })).await.unwrap();
    }
    wait_until_active(&runtime, LIMIT).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    runtime.shutdown().await;
}
