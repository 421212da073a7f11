//! [`AgentCoordinator`]: the registry of agent health and the system health summary.
//!
//! Like every agent it registers itself in `agents` when it starts. Each pass (default
//! every 30 s) it scores every agent with [`crate::scoring::coordinator_health`]:
//! heartbeat recency against the agent's *own* interval, scaled by its state, less 15
//! points per transition to `error` within the window (at most 45).
//!
//! * Below `recovery_threshold` (50) — for an active agent with no failures, a
//!   heartbeat more than four of its intervals old — it requests a recovery: it claims
//!   the incident and asks the agent's supervisor for a restart (logged as
//!   `agent_recovery_requested`). At most `max_recovery_attempts` (3) per agent per
//!   `window` (1 h), one per `claim_ttl`; past the cap it stops asking and logs
//!   `manual_intervention_required` (critical). It does not park agents itself:
//!   restart requests count against the supervisor's intensity, and the supervisor
//!   parks an agent in `manual` when they keep failing.
//! * It publishes the summary `{total, active, average_health, healthy, agents}` as
//!   the system-state key `system_health_summary` and as a `system_health_summary`
//!   event; `healthy` when at least 80 % of the agents are active.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde_json::json;
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext, State};

use crate::monitoring_config::CoordinatorConfig;
use crate::observe::{self, RestartOutcome};
use crate::scoring;

/// The system-state key of the summary.
pub const SUMMARY_KEY: &str = "system_health_summary";

/// Scores agents, asks for recoveries and publishes the system health. See the
/// module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "agent_coordinator", cycle = "30s")]
pub struct AgentCoordinator {
    config: CoordinatorConfig,
    /// The last health of every agent (the registry the coordinator holds).
    registry: BTreeMap<String, f64>,
    /// Recovery requests per agent within the window.
    attempts: observe::Attempts,
    /// Agents past the cap, reported once.
    exhausted: BTreeSet<String>,
}

impl AgentCoordinator {
    /// A coordinator with `config`.
    pub fn new(config: CoordinatorConfig) -> Self {
        Self { config, registry: BTreeMap::new(), attempts: BTreeMap::new(), exhausted: BTreeSet::new() }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: CoordinatorConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    /// The last health score of every agent.
    pub fn registry(&self) -> &BTreeMap<String, f64> {
        &self.registry
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let cfg = &self.config;
        let now = Utc::now();
        let window_start = now - chrono::Duration::from_std(cfg.window).unwrap_or_default();
        let claim_ttl = chrono::Duration::from_std(cfg.claim_ttl).unwrap_or_default();
        observe::prune_attempts(
            &mut self.attempts,
            &mut self.exhausted,
            window_start,
            cfg.max_recovery_attempts,
        );

        let observations = observe::observe(ctx, &cfg.intervals, cfg.window).await?;
        let mut agents = serde_json::Map::new();
        self.registry.clear();
        for o in &observations {
            let recency = scoring::recency_score(o.age_secs(), o.interval.as_secs_f64());
            let health = scoring::coordinator_health(
                recency,
                o.state(),
                o.failures,
                cfg.failure_penalty,
                cfg.max_failure_penalty,
            );
            self.registry.insert(o.agent_id.clone(), health);
            agents.insert(
                o.agent_id.clone(),
                json!({
                    "health": health, "state": o.state(), "heartbeat_age_secs": o.age.map(|a| a.as_secs_f64()),
                    "interval_secs": o.interval.as_secs_f64(), "failures": o.failures,
                }),
            );
            if o.agent_id == ctx.agent_id() || health >= cfg.recovery_threshold || !o.restartable() {
                continue;
            }
            let history = self.attempts.entry(o.agent_id.clone()).or_default();
            if history.len() as u32 >= cfg.max_recovery_attempts {
                if self.exhausted.insert(o.agent_id.clone()) {
                    let data = json!({
                        "agent_id": o.agent_id, "health": health, "attempts": history.len(),
                        "reason": format!(
                            "health {health:.0} after {} recovery requests within {:?}; the coordinator stops asking",
                            history.len(), cfg.window
                        ),
                    });
                    observe::log_event(ctx, "manual_intervention_required", data, Severity::Critical).await;
                }
                continue;
            }
            if history.last().is_some_and(|last| now - *last < claim_ttl) {
                continue; // this incident is in hand
            }
            let reason = format!("health {health:.0} below {:.0}", cfg.recovery_threshold);
            let outcome = observe::request_restart(ctx, &o.agent_id, &reason, cfg.claim_ttl).await;
            if matches!(outcome, RestartOutcome::ClaimedBy { .. }) {
                continue;
            }
            history.push(now);
            let data = json!({
                "agent_id": o.agent_id, "health": health, "attempt": history.len(),
                "outcome": outcome.label(), "detail": outcome, "reason": reason,
            });
            observe::log_event(ctx, "agent_recovery_requested", data, Severity::Warning).await;
        }

        let total = observations.len();
        let active = observations.iter().filter(|o| o.state() == State::Active).count();
        let average = if total == 0 { 100.0 } else { self.registry.values().sum::<f64>() / total as f64 };
        let healthy = total == 0 || active as f64 >= cfg.healthy_active_ratio * total as f64;
        let summary = json!({
            "total": total, "active": active, "average_health": average, "healthy": healthy,
            "at": now, "agents": agents,
        });
        ctx.shared_state().set_system_state(SUMMARY_KEY, summary.clone()).await?;
        let severity = if healthy { Severity::Info } else { Severity::Warning };
        observe::log_event(ctx, "system_health_summary", summary, severity).await;
        Ok(())
    }
}

impl Agent for AgentCoordinator {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
