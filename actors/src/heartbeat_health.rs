//! [`HeartbeatHealthAgent`]: heartbeat-based health bands, critical alerts, restarts
//! of unresponsive agents and confirmation of their recovery.
//!
//! Each pass (default every 30 s) it scores every agent with
//! [`crate::scoring::heartbeat_health`] — recency against the agent's own interval
//! gates the weighted sum of regularity (0.40, coefficient of variation of the gaps,
//! the open gap included), errors (0.35, transitions to `error` in the window, 0 at
//! `max_failures` = 4) and state (0.25) — and records it as the metric
//! `heartbeat_health_score` of that agent.
//!
//! * A score in the `critical` band (below 25) logs `critical_health_alert` (critical)
//!   once when the agent enters the band.
//! * An agent whose last heartbeat is `unresponsive_after_intervals` (4) of its own
//!   intervals old, and at least `unresponsive_min_age` (60 s), is unresponsive: it
//!   asks for a restart through the incident claim (`agent_restart_requested`; if
//!   another monitor holds the claim, that one restarts it).
//! * Every incident claimed (by any monitor, through `restart_claim:<agent>`) is
//!   watched, and its recovery confirmed by the agent's next heartbeat:
//!   `recovery_confirmed` with who restarted it and how long it took; none within
//!   `recovery_timeout` (5 min) logs `recovery_unconfirmed` (error).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use vigil_persistence::shared_state::Metric;
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext};

use crate::monitoring_config::HeartbeatHealthConfig;
use crate::observe::{self, RestartOutcome};
use crate::scoring::{self, HealthBand};

/// A claimed incident waiting for the agent's next heartbeat.
#[derive(Debug, Clone)]
struct Watch {
    /// When the incident was claimed.
    since: DateTime<Utc>,
    /// Who claimed it (and restarts the agent).
    restarted_by: String,
}

/// Scores heartbeat health into bands; restarts unresponsive agents. See the module
/// docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "heartbeat_health", cycle = "30s")]
pub struct HeartbeatHealthAgent {
    config: HeartbeatHealthConfig,
    /// Agents in the critical band (alerted once per entry).
    critical: BTreeSet<String>,
    /// Claimed incidents awaiting a heartbeat.
    watching: BTreeMap<String, Watch>,
    /// The last incident (claim time) confirmed or given up per agent.
    confirmed: BTreeMap<String, DateTime<Utc>>,
    /// When this instance started: older incidents are not watched.
    started_at: DateTime<Utc>,
}

impl HeartbeatHealthAgent {
    /// An agent with `config`.
    pub fn new(config: HeartbeatHealthConfig) -> Self {
        Self {
            config,
            critical: BTreeSet::new(),
            watching: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            started_at: Utc::now(),
        }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: HeartbeatHealthConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let cfg = &self.config;
        let now = Utc::now();
        let observations = observe::observe(ctx, &cfg.intervals, cfg.window).await?;
        for o in &observations {
            let recency = scoring::recency_score(o.age_secs(), o.interval.as_secs_f64());
            let regularity = scoring::regularity_score(&o.gaps);
            let errors = scoring::error_score(o.failures, cfg.max_failures);
            let state = scoring::state_score(o.state());
            let score = scoring::heartbeat_health(recency, regularity, errors, state);
            let band = scoring::band(score);
            let metric = Metric::new("heartbeat_health_score", score)
                .agent(&o.agent_id)
                .source(ctx.agent_id())
                .metadata(json!({ "band": band }));
            ctx.shared_state().add_performance_metric(metric).await?;

            if band == HealthBand::Critical {
                if self.critical.insert(o.agent_id.clone()) {
                    let data = json!({
                        "agent_id": o.agent_id, "score": score, "band": band,
                        "heartbeat_age_secs": o.age.map(|a| a.as_secs_f64()), "interval_secs": o.interval.as_secs_f64(),
                        "recency": recency, "regularity": regularity, "errors": errors, "state": o.state(),
                    });
                    observe::log_event(ctx, "critical_health_alert", data, Severity::Critical).await;
                }
            } else {
                self.critical.remove(&o.agent_id);
            }

            // Any incident claimed since this agent started — by it or by another
            // monitor — is watched until the agent's next heartbeat.
            if !self.watching.contains_key(&o.agent_id)
                && let Some(claim) = ctx.shared_state().incident_claim(&o.agent_id).await?
                && claim.claimed_at >= self.started_at
                && self.confirmed.get(&o.agent_id).is_none_or(|done| claim.claimed_at > *done)
            {
                let watch = Watch { since: claim.claimed_at, restarted_by: claim.claimant };
                self.watching.insert(o.agent_id.clone(), watch);
            }
            if let Some(watch) = self.watching.get(&o.agent_id) {
                if o.has_heartbeat && o.last_seen.is_some_and(|seen| seen > watch.since) {
                    let data = json!({
                        "agent_id": o.agent_id, "restarted_by": watch.restarted_by,
                        "recovery_secs": (o.last_seen.unwrap_or(now) - watch.since).num_milliseconds() as f64 / 1e3,
                        "heartbeat_at": o.last_seen,
                    });
                    observe::log_event(ctx, "recovery_confirmed", data, Severity::Info).await;
                    self.confirmed.insert(o.agent_id.clone(), watch.since);
                    self.watching.remove(&o.agent_id);
                } else if (now - watch.since).to_std().unwrap_or_default() > cfg.recovery_timeout {
                    let data = json!({
                        "agent_id": o.agent_id, "restarted_by": watch.restarted_by,
                        "waited_secs": (now - watch.since).num_milliseconds() as f64 / 1e3,
                    });
                    observe::log_event(ctx, "recovery_unconfirmed", data, Severity::Error).await;
                    self.confirmed.insert(o.agent_id.clone(), watch.since);
                    self.watching.remove(&o.agent_id);
                }
                continue;
            }

            let unresponsive = o.lateness() >= cfg.unresponsive_after_intervals
                && o.age.is_some_and(|a| a >= cfg.unresponsive_min_age);
            if !unresponsive || o.agent_id == ctx.agent_id() || !o.restartable() {
                continue;
            }
            let reason = format!(
                "unresponsive: last heartbeat {:.1} s ago, {:.1} of its {:.1} s intervals",
                o.age_secs(),
                o.lateness(),
                o.interval.as_secs_f64()
            );
            let outcome = observe::request_restart(ctx, &o.agent_id, &reason, cfg.claim_ttl).await;
            let restarted_by = match &outcome {
                RestartOutcome::ClaimedBy { claimant } => claimant.clone(),
                _ => ctx.agent_id().to_owned(),
            };
            let data = json!({
                "agent_id": o.agent_id, "outcome": outcome.label(), "detail": outcome,
                "restarted_by": restarted_by, "reason": reason,
            });
            observe::log_event(ctx, "agent_restart_requested", data, Severity::Warning).await;
        }
        Ok(())
    }
}

impl Agent for HeartbeatHealthAgent {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
