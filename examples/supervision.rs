//! A small supervision tree whose agents fail on a seeded plan; prints restarts and
//! escalations as they happen, then exits by itself.
//!
//! Run: `cargo run --example supervision [seed]`
//!
//! ```text
//! root (one_for_one, 100 restarts / 10 s)
//! ├── ingest                      fails at its 3rd cycle
//! └── pipeline (rest_for_one, 2 restarts / 10 s)
//!     ├── fetch                   fails at cycles 5 and 9: the 2nd time pipeline gives up
//!     └── parse                   restarted with fetch (rest_for_one); random faults too
//! ```

use std::time::Duration;

use vigil::prelude::*;
use vigil::runtime::testkit::{Fault, FaultPlan, faulty_child, memory_state, wait_until_active};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(42);
    let plan = FaultPlan::seeded(seed, 0.01)
        .at_cycle("ingest", 3, Fault::Panic)
        .at_cycle("fetch", 5, Fault::Error)
        .at_cycle("fetch", 9, Fault::Panic);
    let pipeline = SupervisorSpec::new("pipeline", Strategy::RestForOne)
        .intensity(RestartIntensity::new(2, Duration::from_secs(10)))
        .child(faulty_child(&plan, "fetch"))
        .child(faulty_child(&plan, "parse"));
    let state = memory_state().await;
    let runtime = Runtime::builder(state.clone())
        .intensity(RestartIntensity::new(100, Duration::from_secs(10)))
        .child(faulty_child(&plan, "ingest"))
        .supervisor(pipeline)
        .start()
        .await?;
    println!("started {:?} (seed {seed})", runtime.agent_ids());

    let mut events = runtime.subscribe();
    let printer = actix_rt::spawn(async move {
        while let Ok(event) = events.next().await {
            match &event.kind {
                EventKind::Failure { failure } => println!("  FAIL     {:<9} {failure}", event.agent_id),
                EventKind::Restarted { attempt } => {
                    println!("  RESTART  {:<9} attempt {attempt}", event.agent_id)
                }
                EventKind::Transition { from, to, .. } => {
                    println!("  {:<8} {:<9} {from} -> {to} ({})", "STATE", event.agent_id, event.cause)
                }
                _ => {}
            }
        }
    });

    // Let the plan play out: about 1.5 s of 10 ms cycles, watched through events.
    let mut watch = runtime.subscribe();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let _ = watch.wait_for(until - tokio::time::Instant::now(), |_| false).await;
    }
    plan.disable();
    wait_until_active(&runtime, Duration::from_secs(10)).await?;
    println!("faults injected: {}", plan.injected());
    for status in runtime.statuses().await {
        println!("  {:<9} {:<8} restarts {}", status.agent_id, status.state, status.restarts);
    }
    let report = runtime.shutdown().await;
    printer.abort();
    println!("shut down in reverse order: {:?}", report.stopped);
    Ok(())
}
