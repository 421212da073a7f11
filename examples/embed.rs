//! An application that embeds the Vigil runtime and shuts it down on Ctrl-C or after
//! a few seconds, printing every lifecycle event.
//!
//! Run: `cargo run --example embed [seconds]` (uses ./vigil-embed.db).

use std::time::Duration;

use vigil::prelude::*;

/// Reports the process's resident memory as a metric each cycle.
#[derive(Agent, Default)]
#[agent(name = "memory_probe", cycle = "500ms", heartbeat = "1s")]
struct MemoryProbe;

impl Agent for MemoryProbe {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        ctx.shared_state()
            .add_performance_metric(Metric::new("rss_kib", rss_kib).agent(ctx.agent_id()))
            .enqueue()
            .await?;
        Ok(())
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite("vigil-embed.db")).await?);

    let runtime = Runtime::builder(state.clone()).agent(MemoryProbe::default).start().await?;
    let mut events = runtime.subscribe();
    actix_rt::spawn(async move {
        while let Ok(event) = events.next().await {
            println!("event: {} {:?} ({})", event.agent_id, event.kind, event.cause);
        }
    });
    println!("running for {seconds}s (Ctrl-C to stop sooner)");

    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    let report = runtime.shutdown().await;
    println!("stopped: {:?}", report.stopped);
    let series = state
        .metric_series(
            "rss_kib",
            Some("memory_probe"),
            vigil::persistence::types::Ts::from(chrono::Utc::now() - chrono::Duration::minutes(5)),
        )
        .await?;
    println!("{} memory samples recorded", series.len());
    Ok(())
}
