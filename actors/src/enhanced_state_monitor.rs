//! [`EnhancedSharedStateMonitorAgent`]: consistency checks of the shared state, an
//! overall health score, and the repairs that are safe.
//!
//! Each pass (default every 60 s) it checks:
//!
//! | check                                                    | repaired?                              |
//! |----------------------------------------------------------|----------------------------------------|
//! | DB status differs from the agent's state in this runtime, on two passes in a row | yes: DB set to the runtime's state (`state_sync_repair`) |
//! | marked `active` with no heartbeat for `active_without_heartbeat` (5 min) | no: reported (restarting is the restart managers' job; an agent of another process is not ours) |
//! | heartbeats or metrics referencing no agent (NULL or dangling `agent_id`) | no: reported (deleting data is not safe) |
//! | help requests `processing` for `stuck_help_after` (10 min) | no: reported (re-queueing could answer twice) |
//! | LangGraph runs `pending`/`running` with no checkpoint for `stalled_workflow_after` (10 min) | no: reported (no executor knows the graph, or it is stuck) |
//! | pool use ≥ `pool_saturation` (0.9)                         | no: reported                           |
//! | mean query time and error rate (`get_query_stats`)          | no: reported                           |
//!
//! A mismatch must be seen twice because a transition is persisted just before the
//! runtime applies it: one look may catch the two a moment apart.
//!
//! The overall score ([`crate::scoring::shared_state_health`]: 0.30 agents, 0.15
//! orphans, 0.15 help requests, 0.20 pool, 0.20 queries) is stored as the metric
//! `shared_state_health_score`, and each pass logs `shared_state_consistency_report`
//! (warning when anything was found) with findings, repairs and component scores.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::json;
use vigil_persistence::shared_state::Metric;
use vigil_persistence::workflow_runs::WorkflowStatus;
use vigil_persistence::{HelpStatus, Severity, StoreError};

use vigil_runtime::{Agent, AgentContext, State};

use crate::monitoring_config::{EnhancedMonitorConfig, IntervalEstimate};
use crate::observe;
use crate::scoring::{self, SharedStateFindings};

/// Unfinished runs of each status looked at per pass (newest first; far more than a
/// platform normally has in flight).
const STALLED_SCAN: i64 = 1_000;

/// Checks and repairs the shared state. See the module docs.
#[derive(vigil_runtime::Agent, Debug)]
// One cycle is one pass: the cycle is the default `pass_interval`, and
// [`Self::child_spec`] sets the configured one.
#[agent(name = "enhanced_shared_state_monitor", cycle = "60s")]
pub struct EnhancedSharedStateMonitorAgent {
    config: EnhancedMonitorConfig,
    /// Mismatches seen at the previous pass: agent -> (DB status, runtime state).
    mismatches: BTreeMap<String, (Option<State>, State)>,
}

impl EnhancedSharedStateMonitorAgent {
    /// A monitor with `config`.
    pub fn new(config: EnhancedMonitorConfig) -> Self {
        Self { config, mismatches: BTreeMap::new() }
    }

    /// The monitor as a child of a supervisor, under its default id, paced by
    /// `config.pass_interval`: every cycle is a pass (each restart gets a fresh
    /// instance with the same config).
    pub fn child_spec(config: EnhancedMonitorConfig) -> vigil_runtime::ChildSpec {
        observe::monitor_child(config.pass_interval, move || Self::new(config.clone()))
    }

    async fn pass(&mut self, ctx: &AgentContext) -> Result<(), StoreError> {
        let cfg = &self.config;
        let shared = ctx.shared_state();
        let now = Utc::now();
        let observations =
            observe::observe(ctx, &IntervalEstimate::default(), cfg.active_without_heartbeat).await?;

        let mut active_without_heartbeat = Vec::new();
        let mut repairs = Vec::new();
        let mut mismatches = BTreeMap::new();
        for o in &observations {
            if o.db_status == Some(State::Active) && o.age.is_none_or(|a| a >= cfg.active_without_heartbeat) {
                active_without_heartbeat.push(json!({
                    "agent_id": o.agent_id, "heartbeat_age_secs": o.age.map(|a| a.as_secs_f64()),
                    "in_this_runtime": o.runtime.is_some(),
                }));
            }
            let Some(status) = &o.runtime else { continue };
            if o.db_status == Some(status.state) {
                continue;
            }
            let seen = (o.db_status, status.state);
            if cfg.repair_state && self.mismatches.get(&o.agent_id) == Some(&seen) {
                shared.update_agent_state(&o.agent_id, status.state).await?;
                let repair = json!({ "agent_id": o.agent_id, "from": o.db_status, "to": status.state });
                observe::log_event(ctx, "state_sync_repair", repair.clone(), Severity::Warning).await;
                repairs.push(repair);
            } else {
                mismatches.insert(o.agent_id.clone(), seen);
            }
        }
        let pending_mismatches: Vec<_> = mismatches
            .iter()
            .map(|(id, (db, rt))| json!({ "agent_id": id, "db_status": db, "runtime_state": rt }))
            .collect();
        self.mismatches = mismatches;

        let orphans = shared.orphan_rows().await?;
        let stuck_cutoff = now - chrono::Duration::from_std(cfg.stuck_help_after).unwrap_or_default();
        let stuck: Vec<String> = shared
            .help_requests_with_status(HelpStatus::Processing)
            .await?
            .into_iter()
            // Stuck since its claim: time spent queued before it is not the helper's.
            .filter(|r| r.claimed_at.or(r.created_at).is_some_and(|t| t.get() <= stuck_cutoff))
            .map(|r| r.request_id)
            .collect();
        let stalled_cutoff = now - chrono::Duration::from_std(cfg.stalled_workflow_after).unwrap_or_default();
        let mut stalled = Vec::new();
        for status in [WorkflowStatus::Pending, WorkflowStatus::Running] {
            for run in shared.list_workflow_runs(Some(status), STALLED_SCAN).await? {
                let last = run.updated_at.or(run.created_at);
                if last.is_some_and(|t| t.get() <= stalled_cutoff) {
                    stalled.push(json!({
                        "run_id": run.run_id, "graph": run.graph, "status": run.status, "step": run.step,
                        "last_progress": last,
                    }));
                }
            }
        }
        let pool = shared.get_pool_stats();
        let utilization = f64::from(pool.in_use) / f64::from(pool.max_size.max(1));
        let queries = shared.get_query_stats();
        let error_rate = if queries.total_queries == 0 {
            0.0
        } else {
            queries.query_errors as f64 / queries.total_queries as f64
        };

        let findings = SharedStateFindings {
            agents: observations.len(),
            inconsistent_agents: active_without_heartbeat.len() + pending_mismatches.len(),
            orphan_rows: orphans.total(),
            stuck_help_requests: stuck.len(),
            pool_utilization: utilization,
            pool_saturation: cfg.pool_saturation,
            mean_query_secs: queries.average_query_time,
            query_target_secs: cfg.query_latency_target.as_secs_f64(),
            query_error_rate: error_rate,
        };
        let score = scoring::shared_state_health(&findings);
        shared
            .add_performance_metric(
                Metric::new("shared_state_health_score", score.overall)
                    .source(ctx.agent_id())
                    .metadata(json!(score)),
            )
            .await?;
        let anything = !active_without_heartbeat.is_empty()
            || !pending_mismatches.is_empty()
            || !repairs.is_empty()
            || orphans.total() > 0
            || !stuck.is_empty()
            || !stalled.is_empty()
            || utilization >= cfg.pool_saturation;
        let report = json!({
            "at": now, "score": score, "findings": findings,
            "active_without_heartbeat": active_without_heartbeat, "state_mismatches": pending_mismatches,
            "orphan_rows": orphans, "stuck_help_requests": stuck, "stalled_workflow_runs": stalled,
            "pool": pool, "queries": queries,
            "pool_saturated": utilization >= cfg.pool_saturation, "repairs": repairs,
        });
        let severity = if anything { Severity::Warning } else { Severity::Info };
        observe::log_event(ctx, "shared_state_consistency_report", report, severity).await;
        Ok(())
    }
}

impl Agent for EnhancedSharedStateMonitorAgent {
    // One cycle is one pass; the first runs just after the instance is active.
    crate::observe::pass_hooks!();
}
