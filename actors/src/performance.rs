//! [`PerformanceMonitor`]: the runtime's own figures as `performance_metrics`, and
//! anomaly detection on them.
//!
//! Each pass (default every 30 s) it records, with `source_agent =
//! "performance_monitor"`:
//!
//! | metric                              | from                                              | agent |
//! |-------------------------------------|---------------------------------------------------|-------|
//! | `persistence_queue_depth`           | `PersistenceHandle::stats()` (persistence actor only) | —  |
//! | `persistence_flush_p50_ms`, `_p99_ms` | same                                            | —     |
//! | `pool_in_use`, `pool_utilization`   | `SharedState::get_pool_stats` (in use / max)       | —     |
//! | `query_mean_ms`                     | `SharedState::get_query_stats`                     | —     |
//! | `process_cpu_percent`               | `/proc/self/stat` utime+stime between passes (100 ticks/s, Linux's USER_HZ) | — |
//! | `process_rss_bytes`                 | `/proc/self/status` VmRSS                          | —     |
//! | `cycle_duration_ms`                 | mean cycle time between passes (`AgentStatus::busy_micros` / cycles) | each |
//! | `cycles_per_second`                 | cycles between passes                             | each  |
//!
//! Then, for each name of `anomaly_metrics`, it reads the series of the
//! window (`SharedState::metric_series`, **oldest first**), splits it per agent, and
//! scores the *newest* value against the `window_samples` (60) values before it:
//! `|z| ≥ 3` is a `high`, `|z| ≥ 5` a `critical` anomaly, logged as
//! `performance_anomaly_alert` (warning / error) once per sample. The standard
//! deviation is floored at 1 % of the mean so a near-constant series does not turn
//! rounding noise into alerts, and at least 10 samples are needed.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use vigil_persistence::shared_state::{Metric, Writer};
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext};

use crate::monitoring_config::PerformanceConfig;
use crate::observe;
use crate::scoring::{self, AnomalyLevel};

/// Linux's USER_HZ: the unit of utime and stime in `/proc/self/stat`.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// Process CPU time (seconds) and resident memory (bytes), when `/proc` has them.
pub fn process_figures() -> (Option<f64>, Option<f64>) {
    let cpu = std::fs::read_to_string("/proc/self/stat").ok().and_then(|stat| parse_cpu_ticks(&stat));
    let rss = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| parse_rss_bytes(&status));
    (cpu.map(|ticks| ticks / CLOCK_TICKS_PER_SEC), rss)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks. The
/// command name (field 2) may hold spaces and parentheses: fields are counted after
/// the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is at index n − 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a `/proc/<pid>/status` text, in bytes.
pub fn parse_rss_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Collects runtime figures and flags anomalies. See the module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "performance_monitor", cycle = "30s")]
pub struct PerformanceMonitor {
    config: PerformanceConfig,
    /// CPU seconds and wall time at the previous pass.
    last_cpu: Option<(f64, Instant)>,
    /// Cycle counts and busy time per agent at the previous pass.
    last_cycles: HashMap<String, (u64, u64, Instant)>,
    /// The newest sample already judged per (metric, agent row id): one alert per sample.
    judged: HashMap<(String, Option<i32>), i32>,
}

impl PerformanceMonitor {
    /// A monitor with `config`.
    pub fn new(config: PerformanceConfig) -> Self {
        Self { config, last_cpu: None, last_cycles: HashMap::new(), judged: HashMap::new() }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: PerformanceConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    /// The samples of this pass: (metric, agent, value).
    async fn collect(&mut self, ctx: &AgentContext) -> Vec<(&'static str, Option<String>, f64)> {
        let shared = ctx.shared_state();
        let mut out = Vec::new();
        if let Writer::Actor(handle) = shared.writer() {
            let stats = handle.stats();
            out.push(("persistence_queue_depth", None, stats.queue_depth as f64));
            out.push(("persistence_flush_p50_ms", None, stats.flush_latency_p50_ms));
            out.push(("persistence_flush_p99_ms", None, stats.flush_latency_p99_ms));
        }
        let pool = shared.get_pool_stats();
        out.push(("pool_in_use", None, f64::from(pool.in_use)));
        out.push(("pool_utilization", None, f64::from(pool.in_use) / f64::from(pool.max_size.max(1))));
        out.push(("query_mean_ms", None, shared.get_query_stats().average_query_time * 1e3));
        let (cpu, rss) = process_figures();
        let now = Instant::now();
        if let Some(cpu) = cpu {
            if let Some((before, at)) = self.last_cpu {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    out.push(("process_cpu_percent", None, 100.0 * (cpu - before).max(0.0) / wall));
                }
            }
            self.last_cpu = Some((cpu, now));
        }
        if let Some(rss) = rss {
            out.push(("process_rss_bytes", None, rss));
        }
        for status in observe::statuses(ctx).await {
            if let Some((cycles, busy, at)) = self.last_cycles.get(&status.agent_id) {
                let wall = now.duration_since(*at).as_secs_f64();
                // Counters restart from zero with a new host only; a restart keeps them.
                if wall > 0.0 && status.cycles >= *cycles && status.busy_micros >= *busy {
                    let ran = status.cycles - cycles;
                    out.push(("cycles_per_second", Some(status.agent_id.clone()), ran as f64 / wall));
                    if ran > 0 {
                        let mean_ms = (status.busy_micros - busy) as f64 / ran as f64 / 1e3;
                        out.push(("cycle_duration_ms", Some(status.agent_id.clone()), mean_ms));
                    }
                }
            }
            self.last_cycles.insert(status.agent_id.clone(), (status.cycles, status.busy_micros, now));
        }
        out
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let shared = ctx.shared_state().clone();
        let samples = self.collect(ctx).await;
        for (name, agent, value) in samples {
            let mut metric = Metric::new(name, value).source(ctx.agent_id());
            if let Some(agent) = agent {
                metric = metric.agent(agent);
            }
            shared.add_performance_metric(metric).await?;
        }
        let mut names = self.config.anomaly_metrics.clone();
        names.sort();
        names.dedup();

        let ids: HashMap<i32, String> =
            shared.get_registered_agents().await?.into_iter().map(|a| (a.id, a.agent_id)).collect();
        let since = Utc::now() - chrono::Duration::from_std(self.config.window).unwrap_or_default();
        let cfg = &self.config;
        for name in names {
            // Oldest first; split per agent keeping that order.
            let mut per_agent: BTreeMap<Option<i32>, Vec<(i32, f64)>> = BTreeMap::new();
            for record in shared.metric_series(&name, None, since.into()).await? {
                per_agent
                    .entry(record.agent_id)
                    .or_default()
                    .push((record.id, f64::from(record.metric_value)));
            }
            for (agent, series) in per_agent {
                let Some(&(newest_id, newest)) = series.last() else { continue };
                let key = (name.clone(), agent);
                if self.judged.get(&key) == Some(&newest_id) {
                    continue;
                }
                self.judged.insert(key, newest_id);
                let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
                let Some((level, z)) = scoring::detect_anomaly(
                    &values,
                    cfg.window_samples,
                    cfg.min_samples,
                    cfg.min_relative_std,
                    cfg.min_std,
                    cfg.high_z,
                    cfg.critical_z,
                ) else {
                    continue;
                };
                let agent_id = agent.and_then(|id| ids.get(&id).cloned());
                let severity = match level {
                    AnomalyLevel::High => Severity::Warning,
                    AnomalyLevel::Critical => Severity::Error,
                };
                let data = json!({
                    "metric": name, "agent_id": agent_id, "value": newest, "mean": z.mean, "std": z.std,
                    "z": z.z, "level": level, "window_samples": values.len().saturating_sub(1).min(cfg.window_samples),
                    "metric_row": newest_id,
                });
                observe::log_event(ctx, "performance_anomaly_alert", data, severity).await;
            }
        }
        Ok(())
    }
}

impl Agent for PerformanceMonitor {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 100 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300.0));
        let status = "Name:\tvigil\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_bytes(status), Some(2048.0 * 1024.0));
        let (cpu, rss) = process_figures();
        assert!(cpu.is_some() && rss.is_some_and(|r| r > 0.0), "this process has /proc figures");
    }
}
