//! What the database says about a platform, read now: the reports that `vigil status
//! --json`, `vigil health --json`, `vigil nodes --json`, `vigil events --json` and
//! `vigil metrics --json` print and that the HTTP API serves under `/api/v1/`
//! ([`crate::http`]). One builder per report, so the command and the API never drift
//! apart.
//!
//! | report              | read by            | JSON                                    |
//! |---------------------|--------------------|-----------------------------------------|
//! | [`StatusReport`]    | [`StatusReport::read`] | `platform_running`, `healthy`, `platforms`, `agents`, `counts`, `last_coordinator_summary` |
//! | [`HealthReport`]    | [`HealthReport::read`] | the database health report + `platform_running`, `platforms`, `persistence`, `platform` |
//! | [`NodesReport`]     | [`NodesReport::read`]  | `nodes` (PostgreSQL; [`StoreError::Unsupported`] on SQLite) |
//! | events              | [`recent_events`]      | system event rows, newest first         |
//! | metrics             | [`recent_metrics`]     | performance samples, newest first       |
//! | [`AgentsReport`]    | [`AgentsReport::read`] | the status's agents + `restarts`, `failures` over a window |
//! | [`Timeline`]        | [`Timeline::read`]     | one agent's state transitions, oldest first |
//! | [`Series`]          | [`Series::read`]       | a metric (or the heartbeat rate) in buckets over a window |
//! | help exchanges      | [`help_exchange_json`] | a help request and its answer, texts cut |
//!
//! Nothing here replays a state column as the present: whether a platform and its
//! agents run is decided at read time ([`vigil_persistence::presence`]), and the
//! writer's and pool's figures a platform publishes are shown with `platform_running`
//! so a reader can tell the present from the last word of a dead platform.
//!
//! ```no_run
//! # async fn demo(state: vigil::SharedState) -> Result<(), vigil::StoreError> {
//! let status = vigil::report::StatusReport::read(&state).await?;
//! println!("{}", status.to_json()["healthy"]);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use vigil_persistence::models::{MetricRecord, SystemEventRecord};
use vigil_persistence::nodes::{AgentLease, NodeView};
use vigil_persistence::presence::{Liveness, LivenessReport};
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::store::DatabaseHealth;
use vigil_persistence::types::Ts;
use vigil_persistence::{Severity, SharedState, StoreError};

mod history;
mod series;

pub use history::{Activity, AgentsReport, MAX_HELP_TEXT_CHARS, Timeline, help_exchange_json};
pub use series::{Bucket, HEARTBEATS, MAX_BUCKETS, MAX_POINTS, Series, SeriesQuery};

/// The system-state key under which `vigil run` publishes the writer's statistics
/// (after the first second, then every 5 s), so `vigil health` in another process
/// can show them.
pub const PERSISTENCE_STATS_KEY: &str = "persistence_stats";

/// The system-state key under which `vigil run` publishes its store's pool and query
/// statistics with the writer's, so `vigil health` elsewhere shows the platform's
/// figures next to its own connection's.
pub const PLATFORM_STATS_KEY: &str = "platform_stats";

/// `vigil status`: every agent with its liveness, decided now.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// Runtimes and agents, judged at read time.
    pub liveness: LivenessReport,
    /// The coordinator's last health score of each agent that runs now.
    pub health: HashMap<String, f64>,
    /// Which node holds each agent's lease (PostgreSQL; empty on SQLite).
    pub owners: HashMap<String, AgentLease>,
    /// What the coordinator last published, with its own `at`: a record, not the present.
    pub summary: Option<serde_json::Value>,
}

impl StatusReport {
    /// Reads the report now.
    pub async fn read(state: &SharedState) -> Result<Self, StoreError> {
        let liveness = state.liveness().await?;
        let summary = state.get_system_state(vigil_actors::coordinator::SUMMARY_KEY).await?;
        let health = running_health(&liveness, summary.as_ref());
        let owners = owners(state).await?;
        Ok(Self { liveness, health, owners, summary })
    }

    /// What `vigil status --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let report = &self.liveness;
        let agents: Vec<serde_json::Value> = report
            .agents
            .iter()
            .map(|agent| {
                let mut value = serde_json::to_value(agent).unwrap_or_default();
                value["health"] = self.health.get(&agent.agent_id).copied().into();
                let lease = self.owners.get(&agent.agent_id);
                value["owner"] = lease.and_then(|l| l.node_id.clone()).into();
                value["epoch"] = lease.map(|l| l.epoch).into();
                value
            })
            .collect();
        let count = |liveness: Liveness| report.agents.iter().filter(|a| a.liveness == liveness).count();
        serde_json::json!({
            "platform_running": report.platform_running(),
            "healthy": report.healthy(),
            "platforms": report.platforms,
            "agents": agents,
            "counts": {
                "running": count(Liveness::Running),
                "silent": count(Liveness::Silent),
                "not_running": count(Liveness::NotRunning),
            },
            "last_coordinator_summary": self.summary,
        })
    }
}

/// The coordinator's last health score of each agent that runs now. A score it wrote
/// about an agent that no longer runs (or before its own runtime died) is not shown.
fn running_health(report: &LivenessReport, summary: Option<&serde_json::Value>) -> HashMap<String, f64> {
    let scores = summary.and_then(|s| s.get("agents")).and_then(|a| a.as_object());
    report
        .agents
        .iter()
        .filter(|agent| agent.liveness == Liveness::Running)
        .filter_map(|agent| {
            let score = scores?.get(&agent.agent_id)?.get("health")?.as_f64()?;
            Some((agent.agent_id.clone(), score))
        })
        .collect()
}

/// Which node holds each agent's lease (cluster mode, PostgreSQL); empty on SQLite,
/// where one node runs everything.
async fn owners(state: &SharedState) -> Result<HashMap<String, AgentLease>, StoreError> {
    match state.store().agent_leases().await {
        Ok(leases) => Ok(leases.into_iter().map(|lease| (lease.agent_id.clone(), lease)).collect()),
        Err(StoreError::Unsupported { .. }) => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

/// `vigil health`: the database's report, and the figures the running platform
/// published (see [`PERSISTENCE_STATS_KEY`], [`PLATFORM_STATS_KEY`]).
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The database health report of this process's connection (its `database` names
    /// the database without a password).
    pub database: DatabaseHealth,
    /// The writer's figures, as the platform last published them.
    pub persistence: Option<serde_json::Value>,
    /// The platform's pool and query figures, as it last published them.
    pub platform: Option<serde_json::Value>,
    /// Whether those figures are the present: only while a platform runs.
    pub liveness: LivenessReport,
}

impl HealthReport {
    /// Reads the report now.
    pub async fn read(state: &SharedState) -> Result<Self, StoreError> {
        Ok(Self {
            database: state.get_database_health().await?,
            persistence: state.get_system_state(PERSISTENCE_STATS_KEY).await?,
            platform: state.get_system_state(PLATFORM_STATS_KEY).await?,
            liveness: state.liveness().await?,
        })
    }

    /// What `vigil health --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(&self.database).unwrap_or_default();
        value["platform_running"] = self.liveness.platform_running().into();
        value["platforms"] = serde_json::to_value(&self.liveness.platforms).unwrap_or_default();
        value["persistence"] = self.persistence.clone().unwrap_or(serde_json::Value::Null);
        value["platform"] = self.platform.clone().unwrap_or(serde_json::Value::Null);
        value
    }
}

/// `vigil nodes`: the nodes of the cluster (PostgreSQL), alive or not as the server's
/// clock decides now, with the agents each holds.
#[derive(Debug, Clone)]
pub struct NodesReport {
    /// Every node that joined.
    pub nodes: Vec<NodeView>,
    /// The agents whose lease each node holds, by node id.
    pub agents: HashMap<String, Vec<String>>,
}

impl NodesReport {
    /// Reads the report now; [`StoreError::Unsupported`] on SQLite (one node).
    pub async fn read(state: &SharedState) -> Result<Self, StoreError> {
        let store = state.store();
        let nodes = store.nodes().await?;
        let mut agents: HashMap<String, Vec<String>> = HashMap::new();
        for lease in store.agent_leases().await? {
            if let Some(node) = lease.node_id {
                agents.entry(node).or_default().push(lease.agent_id);
            }
        }
        Ok(Self { nodes, agents })
    }

    /// What `vigil nodes --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|node| {
                let mut value = serde_json::to_value(node).unwrap_or_default();
                value["lease_age_secs"] = node.lease_age.as_secs_f64().into();
                value["agents"] = self.agents.get(&node.record.node_id).cloned().unwrap_or_default().into();
                value
            })
            .collect();
        serde_json::json!({ "nodes": nodes })
    }
}

/// Which system events [`recent_events`] reads.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EventQuery {
    /// Only events about this agent (`event_data.agent_id`).
    pub agent: Option<String>,
    /// Only this severity or worse.
    pub severity: Option<Severity>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Ts>,
    /// At most this many.
    pub limit: i64,
}

impl EventQuery {
    /// The `limit` most recent events of every kind.
    pub fn new(limit: i64) -> Self {
        Self { limit, ..Self::default() }
    }

    /// The store's filter for events after `after_id`, reading `limit` (more when
    /// the agent is filtered here).
    pub fn filter(&self, after_id: Option<i32>, limit: i64) -> EventFilter {
        EventFilter {
            event_type: self.event_type.clone(),
            min_severity: self.severity,
            after_id,
            since: self.since,
            // Agent filtering happens here, so read more than asked when it applies.
            limit: Some(if self.agent.is_some() { limit.saturating_mul(20) } else { limit }),
        }
    }

    /// Whether `event` is about the agent asked for (always, when none is).
    pub fn keeps(&self, event: &SystemEventRecord) -> bool {
        self.agent.as_deref().is_none_or(|agent| {
            event
                .event_data
                .as_ref()
                .is_some_and(|d| d.0.get("agent_id").and_then(|a| a.as_str()) == Some(agent))
        })
    }
}

/// The most recent events matching `query`, newest first (what `vigil events --json`
/// prints, oldest of them first).
pub async fn recent_events(
    state: &SharedState,
    query: &EventQuery,
) -> Result<Vec<SystemEventRecord>, StoreError> {
    let mut events: Vec<_> = state
        .recent_events(query.filter(None, query.limit))
        .await?
        .into_iter()
        .filter(|e| query.keeps(e))
        .collect();
    events.truncate(usize::try_from(query.limit).unwrap_or(0));
    Ok(events)
}

/// Performance samples of the last `since`, newest first: optionally of one agent and
/// one metric name, at most `limit` (what `vigil metrics --json` prints).
pub async fn recent_metrics(
    state: &SharedState,
    agent: Option<&str>,
    name: Option<&str>,
    since: Duration,
    limit: i64,
) -> Result<Vec<MetricRecord>, StoreError> {
    state.recent_metrics(name, agent, ts_ago(since), limit).await
}

/// The instant `ago` before now. (`parse_duration` caps a duration at a hundred years,
/// which chrono takes whole.)
pub(crate) fn ts_ago(ago: Duration) -> Ts {
    Ts::from(Utc::now() - chrono::Duration::from_std(ago).unwrap_or(chrono::TimeDelta::MAX))
}
