//! What the monitors know of each agent, gathered once per pass: its row in the shared
//! state, its state in *this* runtime (from [`vigil_runtime::RuntimeControl`]), its
//! heartbeat history and interval, and its recent failures.
//!
//! Also how a monitor is paced (`monitor_child`: one cycle is one pass) and the
//! restart helper ([`request_restart`]):
//! every restart a monitor makes goes through the incident claim
//! ([`vigil_persistence::SharedState::claim_incident`]) and then through
//! [`vigil_runtime::RuntimeControl::restart`] — the owning supervisor's strategy and
//! intensity apply, so a monitor that keeps asking for restarts of a broken agent gets
//! it parked in `manual`, not restarted forever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::types::Ts;
use vigil_persistence::{Severity, StoreError, Write};
use vigil_runtime::{AgentContext, AgentStatus, ChildSpec, ControlError, State};

use crate::monitoring_config::IntervalEstimate;
use crate::scoring;

/// One agent as a monitor sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    /// The agent's id.
    pub agent_id: String,
    /// Its status in the database.
    pub db_status: Option<State>,
    /// Its runtime snapshot, when it runs in this runtime.
    pub runtime: Option<AgentStatus>,
    /// Its last heartbeat (or, with none, its registration time).
    pub last_seen: Option<DateTime<Utc>>,
    /// Whether it ever beat.
    pub has_heartbeat: bool,
    /// Age of `last_seen`.
    pub age: Option<Duration>,
    /// Its heartbeat interval (estimated, or assumed).
    pub interval: Duration,
    /// Whether `interval` was estimated from its heartbeats.
    pub interval_known: bool,
    /// Gaps between its recent heartbeats (seconds, oldest first) plus the open gap
    /// since the last one.
    pub gaps: Vec<f64>,
    /// Failures within the window ([`TransitionRecord::is_failure`](vigil_persistence::lifecycle::TransitionRecord::is_failure)): requested and
    /// sibling restarts are not counted.
    pub failures: u32,
}

impl Observation {
    /// The state that counts: the runtime's when the agent runs here, else the
    /// database's.
    pub fn state(&self) -> State {
        match &self.runtime {
            Some(status) => status.state,
            None => self.db_status.unwrap_or(State::Shutdown),
        }
    }

    /// Whether the agent runs in this runtime and is in a running state that a
    /// restart request may act on (not recovering, failed, parked or stopped: those
    /// are the supervisor's business).
    pub fn restartable(&self) -> bool {
        self.runtime.as_ref().is_some_and(|s| {
            matches!(
                s.state,
                State::Active | State::Monitoring | State::Optimizing | State::Standby | State::Maintenance
            )
        })
    }

    /// Heartbeat age in seconds (`f64::INFINITY` when never seen).
    pub fn age_secs(&self) -> f64 {
        self.age.map_or(f64::INFINITY, |a| a.as_secs_f64())
    }

    /// Age over interval: how many of its own intervals late the agent is.
    pub fn lateness(&self) -> f64 {
        self.age_secs() / self.interval.as_secs_f64().max(1e-3)
    }
}

/// How long a monitor waits for one answer of the control plane.
///
/// Why a bound: a restart waits for the agent's current hook to end, and holds the
/// agent's mailbox meanwhile. A monitor whose cycle awaits the status of an agent
/// being restarted — itself, or a sibling that is itself waiting on the supervisor —
/// would wait for ever, and so would the restart. With a bound, the monitor's cycle
/// ends, the restart goes on, and the agent is seen at the next pass.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Snapshots of the agents of this runtime that answer within [`CONTROL_TIMEOUT`]
/// (an agent in the middle of a restart is left out of this pass).
pub async fn statuses(ctx: &AgentContext) -> Vec<AgentStatus> {
    let mut out = Vec::new();
    for id in ctx.control().agent_ids() {
        if let Ok(Ok(status)) = tokio::time::timeout(CONTROL_TIMEOUT, ctx.control().status(&id)).await {
            out.push(status);
        }
    }
    out
}

/// Observes every registered agent except those in `shutdown` in the database and not
/// running here. Failures are counted over `window`.
pub async fn observe(
    ctx: &AgentContext,
    intervals: &IntervalEstimate,
    window: Duration,
) -> Result<Vec<Observation>, StoreError> {
    let shared = ctx.shared_state();
    let now = Utc::now();
    let statuses: HashMap<String, AgentStatus> =
        statuses(ctx).await.into_iter().map(|s| (s.agent_id.clone(), s)).collect();
    let failures = failures_since(ctx, now - chrono::Duration::from_std(window).unwrap_or_default()).await?;
    let mut out = Vec::new();
    for record in shared.get_registered_agents().await? {
        let runtime = statuses.get(&record.agent_id).cloned();
        if runtime.is_none() && record.status == Some(State::Shutdown) {
            continue;
        }
        let beats = shared.recent_heartbeats(&record.agent_id, intervals.sample).await?;
        let times: Vec<DateTime<Utc>> = beats.iter().filter_map(|b| b.timestamp.map(|t| t.get())).collect();
        let estimated = scoring::estimate_interval(&times);
        let last_beat = record.last_heartbeat.map(|t| t.get()).or_else(|| times.iter().max().copied());
        let last_seen = last_beat.or(record.created_at.map(|t| t.get()));
        let age = last_seen.map(|t| (now - t).to_std().unwrap_or_default());
        let mut gaps = scoring::gaps(&times);
        if let Some(age) = age.filter(|_| last_beat.is_some()) {
            gaps.push(age.as_secs_f64());
        }
        out.push(Observation {
            failures: failures.get(&record.agent_id).copied().unwrap_or(0),
            agent_id: record.agent_id,
            db_status: record.status,
            runtime,
            last_seen,
            has_heartbeat: last_beat.is_some(),
            age,
            interval: estimated.unwrap_or(intervals.assumed_heartbeat_interval),
            interval_known: estimated.is_some(),
            gaps,
        });
    }
    Ok(out)
}

/// Failures per agent since `since`: recorded transitions that
/// [`is_failure`](vigil_persistence::TransitionRecord::is_failure). A restart somebody
/// asked for, a sibling's restart or a park is not one, so it lowers no health score.
pub async fn failures_since(
    ctx: &AgentContext,
    since: DateTime<Utc>,
) -> Result<HashMap<String, u32>, StoreError> {
    let transitions = ctx
        .shared_state()
        .recent_transitions(EventFilter {
            // Failures are recorded at `error`: the filter keeps the scan short.
            min_severity: Some(Severity::Error),
            since: Some(since.into()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await?;
    let mut counts = HashMap::new();
    for transition in transitions.into_iter().filter(|t| t.is_failure()) {
        *counts.entry(transition.agent_id).or_insert(0) += 1;
    }
    Ok(counts)
}

/// A monitor as a supervisor's child, under its type's name: its cycle interval is
/// `pass_interval`, so the runtime's cycle timer *is* the pass schedule — no fast tick
/// checking a clock. A pass that overruns the interval delays the next one (the
/// runtime skips a tick rather than running two cycles at once). The cycle timeout
/// and heartbeat interval stay the type's (5 min, 30 s). The first pass does not wait
/// for the first tick: [`pass_hooks`] runs it just after the instance becomes active.
pub(crate) fn monitor_child<A: vigil_runtime::Agent>(
    pass_interval: Duration,
    factory: impl Fn() -> A + Send + Sync + 'static,
) -> ChildSpec {
    ChildSpec::agent(A::settings().name, factory).cycle_interval(pass_interval)
}

/// What came of a restart request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RestartOutcome {
    /// The claim was ours and the supervisor accepted the request.
    Requested,
    /// Another agent holds the incident; nothing was done.
    ClaimedBy {
        /// The claimant.
        claimant: String,
    },
    /// The claim or the request failed.
    Failed {
        /// Why.
        reason: String,
    },
}

impl RestartOutcome {
    /// Lowercase label for event payloads.
    pub fn label(&self) -> &'static str {
        match self {
            RestartOutcome::Requested => "requested",
            RestartOutcome::ClaimedBy { .. } => "claimed_elsewhere",
            RestartOutcome::Failed { .. } => "failed",
        }
    }
}

/// Restart attempts per agent, as the coordinator and the restart manager keep them.
pub(crate) type Attempts = std::collections::BTreeMap<String, Vec<DateTime<Utc>>>;

/// Forgets the attempts made before `window_start` (and agents left with none), and
/// keeps in `capped` only the agents still at `max` attempts or more: once the oldest
/// attempt leaves the window, an agent may be tried again.
pub(crate) fn prune_attempts(
    attempts: &mut Attempts,
    capped: &mut std::collections::BTreeSet<String>,
    window_start: DateTime<Utc>,
    max: u32,
) {
    for list in attempts.values_mut() {
        list.retain(|t| *t >= window_start);
    }
    attempts.retain(|_, list| !list.is_empty());
    capped.retain(|id| attempts.get(id).is_some_and(|list| list.len() as u32 >= max));
}

/// Claims `agent_id`'s incident for the calling agent and, if the claim is ours, asks
/// its supervisor to restart it. One incident, one restart: whoever claims first acts.
pub async fn request_restart(
    ctx: &AgentContext,
    agent_id: &str,
    reason: &str,
    claim_ttl: Duration,
) -> RestartOutcome {
    let shared = ctx.shared_state();
    match shared.claim_incident(agent_id, ctx.agent_id(), claim_ttl).await {
        Ok(true) => {}
        Ok(false) => {
            let claimant = match shared.incident_claim(agent_id).await {
                Ok(Some(claim)) => claim.claimant,
                _ => "unknown".into(),
            };
            return RestartOutcome::ClaimedBy { claimant };
        }
        Err(e) => return RestartOutcome::Failed { reason: format!("claim: {e}") },
    }
    let outcome = match tokio::time::timeout(CONTROL_TIMEOUT, ctx.control().restart(agent_id, reason)).await {
        Ok(Ok(())) => {
            tracing::info!(agent.id = %ctx.agent_id(), target = %agent_id, %reason, "restart requested");
            RestartOutcome::Requested
        }
        // Not in this runtime: in a cluster, another node runs it. The request goes
        // through the control plane the operator's `vigil agent restart` uses, which
        // the owning node carries out.
        Ok(Err(ControlError::UnknownAgent(_))) => {
            let requester = format!("{}@{}", ctx.agent_id(), ctx.control().node());
            match shared.submit_agent_command(agent_id, CommandAction::Restart, Some(&requester)).await {
                Ok(command) => {
                    tracing::info!(agent.id = %ctx.agent_id(), target = %agent_id, command, %reason, "restart forwarded to the node that runs the agent");
                    RestartOutcome::Requested
                }
                Err(e) => RestartOutcome::Failed { reason: format!("forwarding the restart: {e}") },
            }
        }
        Ok(Err(e)) => RestartOutcome::Failed { reason: e.to_string() },
        // The request is queued at the supervisor and may still be carried out.
        Err(_) => RestartOutcome::Failed { reason: "the supervisor did not answer in time".into() },
    };
    // The request is a message from this monitor about the agent: recorded in
    // `agent_communications`, with its outcome as the status.
    let message = Write::Communication {
        from_agent: ctx.agent_id().into(),
        to_agent: agent_id.into(),
        message_type: Some("restart_request".into()),
        content: Some(serde_json::json!({ "reason": reason, "outcome": &outcome }).to_string()),
        status: Some(outcome.label().into()),
        at: Ts::now(),
    };
    if let Err(e) = shared.write(message).await {
        tracing::debug!(error = %e, target = %agent_id, "restart request not recorded as a communication");
    }
    outcome
}

/// The hooks every monitor's `impl Agent` holds: `cycle` runs one pass (the cycle
/// interval is the pass interval, see [`monitor_child`]), and `on_transition` runs the
/// first pass as soon as a fresh instance is active ([`comes_up`]), the runtime's whole
/// tree has started ([`RuntimeControl::tree_started`]) and the writer has committed
/// what the siblings queued — rather than a whole interval later. A monitor that starts
/// before the agents it watches thus sees them all (a fixed delay did not, on a loaded
/// machine). Each pass logs its failure, if any (a pass that fails is not a failure of
/// the monitor, see the crate docs), and records how long it took.
///
/// [`RuntimeControl::tree_started`]: vigil_runtime::RuntimeControl::tree_started
macro_rules! pass_hooks {
    () => {
        async fn cycle(&mut self, ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
            let started = std::time::Instant::now();
            if let Err(e) = self.pass(ctx).await {
                $crate::observe::pass_failed(ctx, &e);
            }
            $crate::observe::record_pass(ctx, started).await;
            Ok(())
        }

        async fn on_transition(
            &mut self,
            transition: &vigil_runtime::lifecycle::Transition,
            ctx: &vigil_runtime::AgentContext,
        ) {
            if $crate::observe::comes_up(transition) {
                // Every sibling started, and what they queued (registrations, states)
                // committed: the first pass reads the whole platform.
                ctx.control().tree_started().await;
                let _ = ctx.shared_state().flush().await;
                let _ = vigil_runtime::Agent::cycle(self, ctx).await;
            }
        }
    };
}
pub(crate) use pass_hooks;

/// Whether `transition` puts a fresh instance into service — its start, the end of a
/// restart, a manual fix — so that its first pass is due now.
pub(crate) fn comes_up(transition: &vigil_runtime::lifecycle::Transition) -> bool {
    use vigil_runtime::lifecycle::Trigger;
    transition.to == State::Active
        && matches!(transition.trigger, Trigger::Start | Trigger::RecoveryComplete | Trigger::ManualFixed)
}

/// Logs a pass failure; monitors never fail because a pass did (see the crate docs).
pub(crate) fn pass_failed(ctx: &AgentContext, error: &StoreError) {
    tracing::warn!(agent.id = %ctx.agent_id(), %error, "monitoring pass failed; retrying next pass");
}

/// Records how long a pass took, as the metric `monitor_pass_ms` of the monitor.
pub(crate) async fn record_pass(ctx: &AgentContext, started: Instant) {
    let metric = vigil_persistence::shared_state::Metric::new(
        "monitor_pass_ms",
        started.elapsed().as_secs_f64() * 1e3,
    )
    .agent(ctx.agent_id())
    .source(ctx.agent_id());
    if let Err(e) = ctx.shared_state().add_performance_metric(metric).enqueue().await {
        pass_failed(ctx, &e);
    }
}

/// Logs a system event; a failure to log is a warning, not a failure of the monitor.
pub(crate) async fn log_event(
    ctx: &AgentContext,
    event_type: &str,
    data: serde_json::Value,
    severity: Severity,
) {
    if let Err(e) = ctx.shared_state().log_system_event(event_type, Some(data), severity).await {
        tracing::warn!(agent.id = %ctx.agent_id(), event_type, error = %e, "event not recorded");
    }
}
