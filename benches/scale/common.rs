//! Shared by the parts of `benches/scale.rs`: the message, the Vigil agent, the
//! process counters (RSS, CPU) and the statistics.

use std::time::Duration;

use vigil_runtime::{Agent, AgentContext, AgentError, AgentMessage, AgentResult, Handles};

/// The one message every runtime answers: add one to a counter and reply with it.
#[derive(Debug)]
pub(crate) struct Ping;

impl AgentMessage for Ping {
    type Reply = u64;
}

/// The Vigil agent: answers `Ping`, panics on `Boom`, never cycles during the bench
/// (an hour-long cycle and heartbeat), so "idle" means idle.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "scale", cycle = "1h", heartbeat = "1h")]
pub(crate) struct Idle {
    pings: u64,
}

impl Agent for Idle {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

impl Handles<Ping> for Idle {
    async fn handle(&mut self, _: Ping, _ctx: &AgentContext) -> Result<u64, AgentError> {
        self.pings += 1;
        Ok(self.pings)
    }
}

/// Makes its agent panic: the one_for_all restart's trigger.
pub(crate) struct Boom;

impl AgentMessage for Boom {
    type Reply = ();
}

impl Handles<Boom> for Idle {
    async fn handle(&mut self, _: Boom, _ctx: &AgentContext) -> Result<(), AgentError> {
        panic!("boom requested")
    }
}

/// `BENCH_REPS` (default 3): interleaved repetitions of every timed figure.
pub(crate) fn reps() -> usize {
    std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1)
}

/// The large count: 100,000, or 10,000 with `BENCH_QUICK=1` (a smoke run).
pub(crate) fn big() -> usize {
    if std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0") { 10_000 } else { 100_000 }
}

/// Resident set size in bytes: `/proc/self/statm`'s second field (pages) times 4 KiB,
/// the page size of x86-64 and most aarch64 Linux kernels.
pub(crate) fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |pages| pages * 4096.0)
}

/// CPU time of the whole process (every thread: runtimes, the writer, the driver),
/// user + system, in seconds: `/proc/self/stat` fields 14 and 15, in clock ticks of
/// 1/100 s (`USER_HZ`, fixed at 100 on Linux for this interface).
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // The command name (field 2) may contain spaces: count from the closing paren.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / 100.0
}

pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// The values of the repetitions, for the per-repetition lines.
pub(crate) fn list(xs: &[f64]) -> String {
    xs.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(" ")
}
