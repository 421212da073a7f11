//! The thresholds of the seven monitoring agents: one config struct per agent, every
//! field with a documented default, and [`MonitoringConfig`], the config-file section
//! that holds them all.
//!
//! Every struct is `#[serde(default)]`: a file names only what it changes. Durations
//! are written `"250ms"`, `"30s"`, `"5m"`, `"1h"`, or as a number of seconds.
//!
//! ```
//! use vigil_actors::monitoring_config::MonitoringConfig;
//!
//! let config = MonitoringConfig::from_json(r#"{
//!     "restart_manager": { "stale_after": "2m", "max_attempts": 5 },
//!     "performance": { "pass_interval": 10 }
//! }"#).unwrap();
//! assert_eq!(config.restart_manager.max_attempts, 5);
//! assert_eq!(config.restart_manager.cooldown, std::time::Duration::from_secs(300)); // default kept
//! assert_eq!(config.performance.pass_interval, std::time::Duration::from_secs(10));
//! ```
//!
//! **Pass scheduling.** A monitor's cycle *is* its pass: `child_spec(config)` (and
//! [`crate::monitoring_agents`]) set the child's cycle interval to the config's
//! `pass_interval`, so the runtime's own timer runs one pass per interval and nothing
//! ticks in between. The first pass does not wait an interval: it runs 100 ms after the
//! monitor is active (after a restart too), once the agents started with it have
//! registered. Tests set short intervals.
//!
//! **Heartbeat intervals.** Agents are judged against their *own* heartbeat interval,
//! estimated as the median gap between their recent heartbeats
//! ([`crate::scoring::estimate_interval`]); with fewer than three heartbeats on record
//! the `assumed_heartbeat_interval` (the runtime's default, 30 s) stands in. Reading
//! the interval from history needs no change to how agents register and also covers
//! agents of other processes; the median ignores the odd long gap (a restart, a lost
//! beat).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::duration;

/// Why a config could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitoringConfigError {
    /// The JSON is malformed or a field has the wrong type or an unknown name.
    #[error("invalid monitoring config: {0}")]
    Json(#[from] serde_json::Error),
}

/// How agents' heartbeat intervals are estimated (shared by the monitors that score
/// against an agent's own interval).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IntervalEstimate {
    /// Heartbeats read per agent to estimate its interval. Default 10.
    pub sample: i64,
    /// Interval assumed with fewer than three heartbeats on record. Default 30 s.
    #[serde(with = "duration")]
    pub assumed_heartbeat_interval: Duration,
}

impl Default for IntervalEstimate {
    fn default() -> Self {
        Self { sample: 10, assumed_heartbeat_interval: Duration::from_secs(30) }
    }
}

/// [`crate::AgentCoordinator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CoordinatorConfig {
    /// Time between health passes. Default 30 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// Health below this asks for a recovery. Default 50.
    pub recovery_threshold: f64,
    /// Recoveries asked per agent within `window`. Default 3; past it the coordinator
    /// stops asking and logs `manual_intervention_required`.
    pub max_recovery_attempts: u32,
    /// The window for attempts and for counting failures. Default 1 h.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Points lost per failure (transition to `error`) within the window. Default 15.
    pub failure_penalty: f64,
    /// At most this many points lost to failures. Default 45.
    pub max_failure_penalty: f64,
    /// Share of agents that must be active for the system to be healthy. Default 0.8.
    pub healthy_active_ratio: f64,
    /// How long a restart claim holds. Default 5 min.
    #[serde(with = "duration")]
    pub claim_ttl: Duration,
    /// Interval estimation.
    pub intervals: IntervalEstimate,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(30),
            recovery_threshold: 50.0,
            max_recovery_attempts: 3,
            window: Duration::from_secs(3600),
            failure_penalty: 15.0,
            max_failure_penalty: 45.0,
            healthy_active_ratio: 0.8,
            claim_ttl: Duration::from_secs(300),
            intervals: IntervalEstimate::default(),
        }
    }
}

/// [`crate::HeartbeatHealthAgent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HeartbeatHealthConfig {
    /// Time between passes. Default 30 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// An agent is unresponsive when its last heartbeat is this many of its own
    /// intervals old. Default 4.
    pub unresponsive_after_intervals: f64,
    /// ... and at least this old (an absolute floor). Default 60 s.
    #[serde(with = "duration")]
    pub unresponsive_min_age: Duration,
    /// Failures in the window that take the error score to 0. Default 4.
    pub max_failures: u32,
    /// Window for counting failures. Default 1 h.
    #[serde(with = "duration")]
    pub window: Duration,
    /// A recovery not confirmed by a heartbeat within this is reported. Default 5 min.
    #[serde(with = "duration")]
    pub recovery_timeout: Duration,
    /// How long a restart claim holds. Default 5 min.
    #[serde(with = "duration")]
    pub claim_ttl: Duration,
    /// Interval estimation.
    pub intervals: IntervalEstimate,
}

impl Default for HeartbeatHealthConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(30),
            unresponsive_after_intervals: 4.0,
            unresponsive_min_age: Duration::from_secs(60),
            max_failures: 4,
            window: Duration::from_secs(3600),
            recovery_timeout: Duration::from_secs(300),
            claim_ttl: Duration::from_secs(300),
            intervals: IntervalEstimate::default(),
        }
    }
}

/// [`crate::PerformanceMonitor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PerformanceConfig {
    /// Time between collections. Default 30 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// How far back the rolling window reaches. Default 1 h.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Samples of the window used (the newest ones before the value tested). Default 60.
    pub window_samples: usize,
    /// Fewest samples before the newest for a z-score to mean anything. Default 10.
    pub min_samples: usize,
    /// |z| at or above this is a `high` anomaly. Default 3.
    pub high_z: f64,
    /// |z| at or above this is a `critical` anomaly. Default 5.
    pub critical_z: f64,
    /// Floor of the standard deviation, as a share of the window's mean, so a
    /// near-constant series does not turn noise into anomalies. Default 0.01.
    pub min_relative_std: f64,
    /// Absolute floor of the standard deviation. Default 1e-6.
    pub min_std: f64,
    /// Metric names checked for anomalies (any metric in the table, not only those
    /// the monitor collects). Default: `cycle_duration_ms`, `persistence_flush_p99_ms`,
    /// `query_mean_ms`, `process_cpu_percent`, `process_rss_bytes` — the figures whose
    /// jumps mean something; small integer counts (pool connections in use, queue
    /// depth) flip between neighbours and are recorded, not judged.
    pub anomaly_metrics: Vec<String>,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(30),
            window: Duration::from_secs(3600),
            window_samples: 60,
            min_samples: 10,
            high_z: 3.0,
            critical_z: 5.0,
            min_relative_std: 0.01,
            min_std: 1e-6,
            anomaly_metrics: [
                "cycle_duration_ms",
                "persistence_flush_p99_ms",
                "query_mean_ms",
                "process_cpu_percent",
                "process_rss_bytes",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// [`crate::SharedStateMonitorAgent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SharedStateMonitorConfig {
    /// Time between passes. Default 60 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// Heartbeat at most this old: `active`. Default 60 s.
    #[serde(with = "duration")]
    pub active_within: Duration,
    /// Heartbeat at most this old: `stale`; older: `inactive`. Default 300 s.
    #[serde(with = "duration")]
    pub stale_within: Duration,
    /// Database size that raises a `database_size_warning`. Default 1 GiB.
    pub size_warning_bytes: i64,
}

impl Default for SharedStateMonitorConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(60),
            active_within: Duration::from_secs(60),
            stale_within: Duration::from_secs(300),
            size_warning_bytes: 1 << 30,
        }
    }
}

/// [`crate::EnhancedSharedStateMonitorAgent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EnhancedMonitorConfig {
    /// Time between passes. Default 60 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// An agent marked `active` with no heartbeat for this long is inconsistent.
    /// Default 5 min.
    #[serde(with = "duration")]
    pub active_without_heartbeat: Duration,
    /// A help request `processing` for this long is stuck. Default 10 min.
    #[serde(with = "duration")]
    pub stuck_help_after: Duration,
    /// A LangGraph run `pending` or `running` with no checkpoint for this long is
    /// stalled (no executor knows its graph, or the executor is stuck). Default 10 min.
    #[serde(with = "duration")]
    pub stalled_workflow_after: Duration,
    /// Pool use (in use / max) at or above this is saturation. Default 0.9.
    pub pool_saturation: f64,
    /// Mean query time above this lowers the query score. Default 50 ms.
    #[serde(with = "duration")]
    pub query_latency_target: Duration,
    /// Repair DB status to the runtime's state when they disagree on two passes in a
    /// row. Default true.
    pub repair_state: bool,
}

impl Default for EnhancedMonitorConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(60),
            active_without_heartbeat: Duration::from_secs(300),
            stuck_help_after: Duration::from_secs(600),
            stalled_workflow_after: Duration::from_secs(600),
            pool_saturation: 0.9,
            query_latency_target: Duration::from_millis(50),
            repair_state: true,
        }
    }
}

/// [`crate::SelfHealingAgent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SelfHealingConfig {
    /// Time between passes. Default 30 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// Actions taken per pass at most. Default 3.
    pub max_actions_per_pass: usize,
    /// Heartbeats this many own intervals late are missing. Default 3.
    pub missing_after_intervals: f64,
    /// An agent with no heartbeat for this long (and that many intervals) has failed
    /// and is restarted. Default 120 s.
    #[serde(with = "duration")]
    pub failed_after: Duration,
    /// Restart an agent with this many `critical` performance anomalies within
    /// `anomaly_window`; 0 never restarts for anomalies. Default 3 (one slow cycle is
    /// noise; three in ten minutes is degradation).
    pub critical_anomalies_before_restart: u32,
    /// Default 10 min.
    #[serde(with = "duration")]
    pub anomaly_window: Duration,
    /// How long a restart claim holds. Default 5 min.
    #[serde(with = "duration")]
    pub claim_ttl: Duration,
    /// Interval estimation.
    pub intervals: IntervalEstimate,
}

impl Default for SelfHealingConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(30),
            max_actions_per_pass: 3,
            missing_after_intervals: 3.0,
            failed_after: Duration::from_secs(120),
            critical_anomalies_before_restart: 3,
            anomaly_window: Duration::from_secs(600),
            claim_ttl: Duration::from_secs(300),
            intervals: IntervalEstimate::default(),
        }
    }
}

/// [`crate::AgentRestartManager`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartManagerConfig {
    /// Time between passes. Default 30 s.
    #[serde(with = "duration")]
    pub pass_interval: Duration,
    /// Stale after this without a heartbeat (and `missed_intervals` of the agent's own
    /// interval, whichever is longer). Default 300 s.
    #[serde(with = "duration")]
    pub stale_after: Duration,
    /// Critical after this (same rule). Default 600 s.
    #[serde(with = "duration")]
    pub critical_after: Duration,
    /// Own intervals an agent may miss before the thresholds apply. Default 3.
    pub missed_intervals: f64,
    /// Time between two restarts of one agent. Default 300 s.
    #[serde(with = "duration")]
    pub cooldown: Duration,
    /// Restarts per agent within `window`; then `agent_restart_abandoned`. Default 3.
    pub max_attempts: u32,
    /// Default 1 h.
    #[serde(with = "duration")]
    pub window: Duration,
    /// How long a restart claim holds. Default 5 min.
    #[serde(with = "duration")]
    pub claim_ttl: Duration,
    /// Interval estimation.
    pub intervals: IntervalEstimate,
}

impl Default for RestartManagerConfig {
    fn default() -> Self {
        Self {
            pass_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
            critical_after: Duration::from_secs(600),
            missed_intervals: 3.0,
            cooldown: Duration::from_secs(300),
            max_attempts: 3,
            window: Duration::from_secs(3600),
            claim_ttl: Duration::from_secs(300),
            intervals: IntervalEstimate::default(),
        }
    }
}

/// The `monitoring` section of a config file: one field per agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// [`crate::AgentCoordinator`].
    pub coordinator: CoordinatorConfig,
    /// [`crate::HeartbeatHealthAgent`].
    pub heartbeat_health: HeartbeatHealthConfig,
    /// [`crate::PerformanceMonitor`].
    pub performance: PerformanceConfig,
    /// [`crate::SharedStateMonitorAgent`].
    pub shared_state: SharedStateMonitorConfig,
    /// [`crate::EnhancedSharedStateMonitorAgent`].
    pub enhanced_shared_state: EnhancedMonitorConfig,
    /// [`crate::SelfHealingAgent`].
    pub self_healing: SelfHealingConfig,
    /// [`crate::AgentRestartManager`].
    pub restart_manager: RestartManagerConfig,
}

impl MonitoringConfig {
    /// Reads the section from JSON; absent fields keep their defaults.
    pub fn from_json(text: &str) -> Result<Self, MonitoringConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads the section from a parsed JSON value (e.g. the `monitoring` member of a
    /// larger file).
    pub fn from_value(value: serde_json::Value) -> Result<Self, MonitoringConfigError> {
        Ok(serde_json::from_value(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_and_unknown_fields_are_refused() {
        let config = MonitoringConfig::default();
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(MonitoringConfig::from_json(&text).unwrap(), config);
        let wrong = MonitoringConfig::from_json(r#"{"restart_manager": {"stale_afterr": "1s"}}"#);
        assert!(wrong.unwrap_err().to_string().contains("stale_afterr"));
    }
}
