//! [`SharedStateMonitorAgent`]: who is alive by heartbeat age, and how big the
//! database is and how fast it grows.
//!
//! Each pass (default every 60 s):
//!
//! | class          | last heartbeat                 |
//! |----------------|--------------------------------|
//! | `active`       | ≤ `active_within` (60 s) ago   |
//! | `stale`        | ≤ `stale_within` (300 s) ago   |
//! | `inactive`     | longer ago                     |
//! | `no_heartbeat` | never                          |
//!
//! Agents in `shutdown` are listed apart (they are not expected to beat). It reads the
//! database health report (size, rows per table), computes each table's growth since
//! the previous pass (rows, rows per second), logs `database_size_warning` (warning)
//! when the size first reaches `size_warning_bytes` (1 GiB), and logs the whole as a
//! `shared_state_summary` event (warning when any agent is stale or inactive), also
//! kept in the system-state key `shared_state_summary`.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use vigil_persistence::store::HealthStatus;
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext, State};

use crate::monitoring_config::SharedStateMonitorConfig;
use crate::observe;
use crate::scoring::{self, HeartbeatClass};

/// The system-state key of the last summary.
pub const SUMMARY_KEY: &str = "shared_state_summary";

/// Classifies agents by heartbeat age and watches the database. See the module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "shared_state_monitor", cycle = "60s")]
pub struct SharedStateMonitorAgent {
    config: SharedStateMonitorConfig,
    /// Rows per table at the previous pass, and when.
    last_counts: Option<(BTreeMap<String, i64>, Instant)>,
    /// Whether the size warning was given (reset when the size drops below).
    size_warned: bool,
}

impl SharedStateMonitorAgent {
    /// A monitor with `config`.
    pub fn new(config: SharedStateMonitorConfig) -> Self {
        Self { config, last_counts: None, size_warned: false }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: SharedStateMonitorConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let cfg = &self.config;
        let shared = ctx.shared_state();
        let now = Utc::now();
        let mut classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut counts: BTreeMap<&str, usize> =
            [("active", 0), ("stale", 0), ("inactive", 0), ("no_heartbeat", 0), ("shutdown", 0)].into();
        for agent in shared.get_registered_agents().await? {
            let label = if agent.status == Some(State::Shutdown) {
                "shutdown"
            } else {
                let age = agent.last_heartbeat.map(|t| (now - t.get()).to_std().unwrap_or_default());
                match scoring::classify_heartbeat(age, cfg.active_within, cfg.stale_within) {
                    HeartbeatClass::Active => "active",
                    HeartbeatClass::Stale => "stale",
                    HeartbeatClass::Inactive => "inactive",
                    HeartbeatClass::NoHeartbeat => "no_heartbeat",
                }
            };
            *counts.entry(label).or_default() += 1;
            classes.entry(label.to_owned()).or_default().push(agent.agent_id);
        }

        let health = shared.get_database_health().await?;
        let tables: BTreeMap<String, i64> = health.tables.iter().map(|t| (t.table.clone(), t.rows)).collect();
        let started = Instant::now();
        let growth: BTreeMap<String, serde_json::Value> = match &self.last_counts {
            Some((before, at)) => {
                let secs = started.duration_since(*at).as_secs_f64().max(1e-3);
                tables
                    .iter()
                    .map(|(table, rows)| {
                        let delta = rows - before.get(table).copied().unwrap_or(0);
                        (table.clone(), json!({ "rows": delta, "rows_per_sec": delta as f64 / secs }))
                    })
                    .collect()
            }
            None => BTreeMap::new(),
        };
        if health.status == HealthStatus::Healthy {
            self.last_counts = Some((tables.clone(), started));
        }
        let size = health.database_size_bytes.unwrap_or(0);
        if size >= cfg.size_warning_bytes {
            if !self.size_warned {
                self.size_warned = true;
                let data =
                    json!({ "size_bytes": size, "warning_bytes": cfg.size_warning_bytes, "tables": tables });
                observe::log_event(ctx, "database_size_warning", data, Severity::Warning).await;
            }
        } else {
            self.size_warned = false;
        }

        let troubled = counts["stale"] + counts["inactive"] > 0 || health.status != HealthStatus::Healthy;
        let summary = json!({
            "at": now, "counts": counts, "agents": classes,
            "database": {
                "status": health.status, "backend": health.backend, "size_bytes": health.database_size_bytes,
                "response_time_ms": health.response_time_ms, "tables": tables, "growth": growth,
                "error": health.error,
            },
        });
        shared.set_system_state(SUMMARY_KEY, summary.clone()).await?;
        let severity = if troubled { Severity::Warning } else { Severity::Info };
        observe::log_event(ctx, "shared_state_summary", summary, severity).await;
        Ok(())
    }
}

impl Agent for SharedStateMonitorAgent {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
