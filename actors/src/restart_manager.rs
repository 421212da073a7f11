//! [`AgentRestartManager`]: restarts agents that stopped heartbeating, with a cooldown
//! and a cap.
//!
//! Each pass (default every 30 s) it looks at every agent running in this runtime:
//!
//! | heartbeat age ≥                                   | level      | event severity |
//! |---------------------------------------------------|------------|----------------|
//! | max(`stale_after` 300 s, 3 × own interval)        | `stale`    | warning        |
//! | max(`critical_after` 600 s, 3 × own interval)     | `critical` | error          |
//!
//! and, for a stale agent:
//!
//! 1. within `cooldown` (300 s) of its last restart: waits;
//! 2. `max_attempts` (3) restarts within `window` (1 h) already: stops asking and
//!    logs `agent_restart_abandoned` (critical) with the reason, once. Parking the agent
//!    in `manual` is its supervisor's job: restart requests count against the
//!    supervisor's intensity, so an agent that keeps failing is parked there;
//! 3. otherwise claims the incident ([`crate::observe::request_restart`]) — if
//!    self-healing or a health agent already holds it, does nothing — and asks the
//!    supervisor for a restart, logging `agent_restart_attempt` with the outcome.
//!
//! The attempt history is kept in the system-state key
//! `agent_restart_manager:attempts`, so the cap survives a restart of the manager.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde_json::json;
use vigil_persistence::{Severity, StoreError};
use vigil_runtime::{Agent, AgentContext, AgentResult};

use crate::monitoring_config::RestartManagerConfig;
use crate::observe::{self, RestartOutcome};
use crate::scoring::scaled_threshold;

const HISTORY_KEY: &str = "agent_restart_manager:attempts";

/// Restarts stale agents with a cooldown and an attempt cap. See the module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "agent_restart_manager", cycle = "30s")]
pub struct AgentRestartManager {
    config: RestartManagerConfig,
    /// Restart attempts per agent, oldest first, within the window.
    attempts: observe::Attempts,
    /// Agents given up on (until their attempts leave the window).
    abandoned: BTreeSet<String>,
}

impl AgentRestartManager {
    /// A manager with `config`.
    pub fn new(config: RestartManagerConfig) -> Self {
        Self { config, attempts: BTreeMap::new(), abandoned: BTreeSet::new() }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: RestartManagerConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let cfg = &self.config;
        let now = Utc::now();
        let window_start = now - chrono::Duration::from_std(cfg.window).unwrap_or_default();
        let cooldown = chrono::Duration::from_std(cfg.cooldown).unwrap_or_default();
        observe::prune_attempts(&mut self.attempts, &mut self.abandoned, window_start, cfg.max_attempts);

        let mut changed = false;
        for o in observe::observe(ctx, &cfg.intervals, cfg.window).await? {
            if o.agent_id == ctx.agent_id() || !o.restartable() {
                continue;
            }
            let Some(age) = o.age else { continue };
            let stale = scaled_threshold(cfg.stale_after, cfg.missed_intervals, o.interval);
            let critical = scaled_threshold(cfg.critical_after, cfg.missed_intervals, o.interval);
            if age < stale {
                continue;
            }
            let (level, severity) =
                if age >= critical { ("critical", Severity::Error) } else { ("stale", Severity::Warning) };
            let history = self.attempts.entry(o.agent_id.clone()).or_default();
            if history.len() as u32 >= cfg.max_attempts {
                if self.abandoned.insert(o.agent_id.clone()) {
                    let reason = format!(
                        "{} restarts within {:?} did not bring `{}` back (no heartbeat for {:.0} s); \
                         restart requests stop until the oldest attempt leaves the window",
                        history.len(),
                        cfg.window,
                        o.agent_id,
                        age.as_secs_f64()
                    );
                    let data = json!({
                        "agent_id": o.agent_id, "attempts": history.len(), "window_secs": cfg.window.as_secs_f64(),
                        "heartbeat_age_secs": age.as_secs_f64(), "reason": reason,
                    });
                    observe::log_event(ctx, "agent_restart_abandoned", data, Severity::Critical).await;
                }
                continue;
            }
            if history.last().is_some_and(|last| now - *last < cooldown) {
                continue;
            }
            let reason = format!(
                "{level}: no heartbeat for {:.1} s (threshold {:.1} s, interval {:.1} s)",
                age.as_secs_f64(),
                stale.as_secs_f64(),
                o.interval.as_secs_f64()
            );
            let outcome = observe::request_restart(ctx, &o.agent_id, &reason, cfg.claim_ttl).await;
            if let RestartOutcome::ClaimedBy { claimant } = &outcome {
                tracing::debug!(target_agent = %o.agent_id, %claimant, "incident handled elsewhere");
                continue;
            }
            history.push(now);
            changed = true;
            let data = json!({
                "agent_id": o.agent_id, "level": level, "heartbeat_age_secs": age.as_secs_f64(),
                "threshold_secs": stale.as_secs_f64(), "interval_secs": o.interval.as_secs_f64(),
                "attempt": history.len(), "max_attempts": cfg.max_attempts,
                "outcome": outcome.label(), "detail": outcome, "reason": reason,
                // The decision time the cooldown counts from; the row's own timestamp is
                // when the writer committed it, a flush later.
                "requested_at": now,
            });
            observe::log_event(ctx, "agent_restart_attempt", data, severity).await;
        }
        if changed {
            ctx.shared_state().set_system_state(HISTORY_KEY, json!(self.attempts)).await?;
        }
        Ok(())
    }
}

impl Agent for AgentRestartManager {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        // A lost history only loosens the cap; never fail the start over it.
        match ctx.shared_state().get_system_state(HISTORY_KEY).await {
            Ok(Some(value)) => self.attempts = serde_json::from_value(value).unwrap_or_default(),
            Ok(None) => {}
            Err(e) => observe::pass_failed(ctx, &e),
        }
        Ok(())
    }

    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
