//! [`SelfHealingAgent`]: detects trouble and acts on it, a bounded number of actions
//! per pass, each logged as `recovery_action_executed` with its outcome.
//!
//! | issue (in priority order)   | detected when                                                     | action |
//! |-----------------------------|-------------------------------------------------------------------|--------|
//! | `database_connection`       | the liveness ping (`SELECT 1`) fails, or `connection_errors` rose since the last pass | `probe_connections` (below) |
//! | `agent_failure`             | an agent of this runtime never beat, registered ≥ the threshold ago | restart through the supervisor |
//! | `missing_heartbeats`        | last heartbeat ≥ max(`failed_after` 120 s, 3 × own interval) ago | restart through the supervisor |
//! | `performance_degradation`   | `critical_anomalies_before_restart` (3) `critical` `performance_anomaly_alert`s about one agent of this runtime within `anomaly_window` (10 min) | restart |
//! | `state_inconsistency`       | DB status ≠ runtime state on two passes in a row                   | state sync: DB set to the runtime's state |
//!
//! At most `max_actions_per_pass` (3) actions per pass; the rest wait for the next.
//! Restarts go through the incident claim: when another monitor holds it, nothing is
//! done (and nothing logged as executed); one restart per agent per `claim_ttl`.
//!
//! **"Reset the pool".** bb8 0.9 exposes no way to drop a pool's connections, and the
//! store does not expose its pool. What *is* true of bb8: every checkout tests the
//! connection and replaces a broken one. So the action is `probe_connections`: ping
//! again, which cycles connections through that test; the outcome says whether the
//! database answers now. (A ping, not the full health report, which counts every
//! table's rows: too much for a check every few seconds on a large database.) Rebuilding the pool would need a `Store` API
//! that does not exist yet.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext, State};

use crate::monitoring_config::SelfHealingConfig;
use crate::observe::{self, RestartOutcome};
use crate::scoring::scaled_threshold;

/// What self-healing found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "issue", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Issue {
    /// The database does not answer, or connections fail.
    DatabaseConnection {
        /// Details.
        detail: String,
    },
    /// An agent never sent a heartbeat.
    AgentFailure {
        /// The agent.
        agent_id: String,
        /// Seconds since it registered.
        age_secs: f64,
    },
    /// An agent's heartbeats stopped.
    MissingHeartbeats {
        /// The agent.
        agent_id: String,
        /// Seconds since its last heartbeat.
        age_secs: f64,
        /// Its interval.
        interval_secs: f64,
    },
    /// A critical performance anomaly about an agent.
    PerformanceDegradation {
        /// The agent.
        agent_id: String,
        /// The metric.
        metric: String,
        /// The last z-score.
        z: f64,
        /// Critical anomalies within the window.
        anomalies: u32,
    },
    /// The database and the runtime disagree on an agent's state.
    StateInconsistency {
        /// The agent.
        agent_id: String,
        /// The database's status.
        db_status: Option<State>,
        /// The runtime's state.
        runtime_state: State,
    },
}

/// Detects failures and acts. See the module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "self_healing", cycle = "30s")]
pub struct SelfHealingAgent {
    config: SelfHealingConfig,
    /// `connection_errors` at the previous pass.
    connection_errors: Option<u64>,
    /// Events after this id are new to us.
    last_event_id: Option<i32>,
    /// Mismatches seen at the previous pass.
    mismatches: BTreeMap<String, (Option<State>, State)>,
    /// Our last restart of each agent.
    restarted: BTreeMap<String, DateTime<Utc>>,
    /// When this instance started (anomalies before it are not ours to act on).
    started_at: DateTime<Utc>,
    /// Critical anomalies per agent within the window (time, alert payload).
    anomalies: BTreeMap<String, Vec<(DateTime<Utc>, serde_json::Value)>>,
}

impl SelfHealingAgent {
    /// An agent with `config`.
    pub fn new(config: SelfHealingConfig) -> Self {
        Self {
            config,
            connection_errors: None,
            last_event_id: None,
            mismatches: BTreeMap::new(),
            restarted: BTreeMap::new(),
            started_at: Utc::now(),
            anomalies: BTreeMap::new(),
        }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: SelfHealingConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    async fn detect(&mut self, ctx: &AgentContext) -> Result<Vec<Issue>, StoreError> {
        let cfg = &self.config;
        let shared = ctx.shared_state();
        let mut issues = Vec::new();

        let ping = shared.ping().await;
        let errors = shared.get_query_stats().connection_errors;
        let rose = self.connection_errors.is_some_and(|before| errors > before);
        self.connection_errors = Some(errors);
        if ping.is_err() || rose {
            let detail = match &ping {
                Err(e) => format!("database ping failed: {e}"),
                Ok(_) => format!("connection errors rose to {errors}"),
            };
            issues.push(Issue::DatabaseConnection { detail });
            if ping.is_err() {
                return Ok(issues); // nothing else can be read
            }
        }

        let observations = observe::observe(ctx, &cfg.intervals, cfg.failed_after).await?;
        let mut mismatches = BTreeMap::new();
        for o in &observations {
            if o.agent_id == ctx.agent_id() {
                continue;
            }
            if let Some(status) = &o.runtime
                && o.db_status != Some(status.state)
            {
                let seen = (o.db_status, status.state);
                // Remembered either way: an issue deferred by the action budget is
                // still a repeat at the next pass.
                if self.mismatches.get(&o.agent_id) == Some(&seen) {
                    issues.push(Issue::StateInconsistency {
                        agent_id: o.agent_id.clone(),
                        db_status: seen.0,
                        runtime_state: seen.1,
                    });
                }
                mismatches.insert(o.agent_id.clone(), seen);
            }
            if !o.restartable() {
                continue;
            }
            let Some(age) = o.age else { continue };
            let threshold = scaled_threshold(cfg.failed_after, cfg.missing_after_intervals, o.interval);
            if age < threshold {
                continue;
            }
            issues.push(if o.has_heartbeat {
                Issue::MissingHeartbeats {
                    agent_id: o.agent_id.clone(),
                    age_secs: age.as_secs_f64(),
                    interval_secs: o.interval.as_secs_f64(),
                }
            } else {
                Issue::AgentFailure { agent_id: o.agent_id.clone(), age_secs: age.as_secs_f64() }
            });
        }
        self.mismatches = mismatches;

        let anomalies = shared
            .recent_events(EventFilter {
                event_type: Some("performance_anomaly_alert".into()),
                min_severity: Some(Severity::Error),
                after_id: self.last_event_id,
                since: Some(self.started_at.into()),
                limit: Some(1000),
            })
            .await?;
        if let Some(newest) = anomalies.first() {
            self.last_event_id = Some(newest.id);
        }
        let window_start = Utc::now() - chrono::Duration::from_std(cfg.anomaly_window).unwrap_or_default();
        for event in anomalies.iter().rev() {
            let Some(data) = &event.event_data else { continue };
            let Some(agent_id) = data.0["agent_id"].as_str() else { continue };
            let at = event.timestamp.map_or_else(Utc::now, |t| t.get());
            self.anomalies.entry(agent_id.to_owned()).or_default().push((at, data.0.clone()));
        }
        for list in self.anomalies.values_mut() {
            list.retain(|(at, _)| *at >= window_start);
        }
        self.anomalies.retain(|_, list| !list.is_empty());
        if cfg.critical_anomalies_before_restart > 0 {
            for (agent_id, list) in &self.anomalies {
                let running = observations.iter().any(|o| &o.agent_id == agent_id && o.restartable());
                if running
                    && agent_id != ctx.agent_id()
                    && list.len() as u32 >= cfg.critical_anomalies_before_restart
                {
                    let (_, last) = list.last().expect("not empty");
                    issues.push(Issue::PerformanceDegradation {
                        agent_id: agent_id.clone(),
                        metric: last["metric"].as_str().unwrap_or_default().to_owned(),
                        z: last["z"].as_f64().unwrap_or_default(),
                        anomalies: list.len() as u32,
                    });
                }
            }
        }
        Ok(issues)
    }

    /// Acts on one issue; `None` when there was nothing to do (claimed elsewhere, or
    /// restarted by us recently).
    async fn act(
        &mut self,
        ctx: &AgentContext,
        issue: &Issue,
    ) -> Option<(&'static str, bool, serde_json::Value)> {
        let shared = ctx.shared_state();
        match issue {
            Issue::DatabaseConnection { .. } => {
                let (ok, detail) = match shared.ping().await {
                    Ok(round_trip) => (
                        true,
                        json!({ "status": "healthy", "response_time_ms": round_trip.as_secs_f64() * 1e3 }),
                    ),
                    Err(e) => (false, json!({ "status": "unhealthy", "error": e.to_string() })),
                };
                Some(("probe_connections", ok, detail))
            }
            Issue::AgentFailure { agent_id, .. }
            | Issue::MissingHeartbeats { agent_id, .. }
            | Issue::PerformanceDegradation { agent_id, .. } => {
                let now = Utc::now();
                let ttl = chrono::Duration::from_std(self.config.claim_ttl).unwrap_or_default();
                if self.restarted.get(agent_id).is_some_and(|at| now - *at < ttl) {
                    return None;
                }
                let reason = serde_json::to_string(issue).unwrap_or_default();
                match observe::request_restart(ctx, agent_id, &reason, self.config.claim_ttl).await {
                    RestartOutcome::ClaimedBy { claimant } => {
                        tracing::debug!(target_agent = %agent_id, %claimant, "incident handled elsewhere");
                        None
                    }
                    outcome => {
                        self.restarted.insert(agent_id.clone(), now);
                        self.anomalies.remove(agent_id);
                        let ok = outcome == RestartOutcome::Requested;
                        Some(("restart", ok, json!(outcome)))
                    }
                }
            }
            Issue::StateInconsistency { agent_id, runtime_state, .. } => {
                let result = shared.update_agent_state(agent_id, *runtime_state).await;
                self.mismatches.remove(agent_id);
                let detail =
                    json!({ "set_to": runtime_state, "error": result.as_ref().err().map(|e| e.to_string()) });
                Some(("state_sync", result.is_ok(), detail))
            }
        }
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let issues = self.detect(ctx).await?;
        let mut left = self.config.max_actions_per_pass;
        for issue in &issues {
            if left == 0 {
                tracing::info!(agent.id = %ctx.agent_id(), deferred = ?issue, "action budget spent; next pass");
                continue;
            }
            let Some((action, ok, detail)) = self.act(ctx, issue).await else { continue };
            left -= 1;
            let data = json!({
                "issue": issue, "action": action, "outcome": if ok { "success" } else { "failed" }, "detail": detail,
                "agent_id": issue_agent(issue),
            });
            let severity = if ok { Severity::Warning } else { Severity::Error };
            observe::log_event(ctx, "recovery_action_executed", data, severity).await;
        }
        Ok(())
    }
}

fn issue_agent(issue: &Issue) -> Option<&str> {
    match issue {
        Issue::DatabaseConnection { .. } => None,
        Issue::AgentFailure { agent_id, .. }
        | Issue::MissingHeartbeats { agent_id, .. }
        | Issue::PerformanceDegradation { agent_id, .. }
        | Issue::StateInconsistency { agent_id, .. } => Some(agent_id),
    }
}

impl Agent for SelfHealingAgent {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
