//! Agents: registering them, their heartbeats and states, and reading them back
//! (registered, active, stale agents; recent heartbeats).

use std::time::Duration;

use crate::lifecycle::State;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

/// The default staleness window of the specification: five minutes.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// Optional parts of a heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct Heartbeat {
    status: Option<State>,
    message: Option<String>,
    metadata: Option<serde_json::Value>,
    uptime: Option<serde_json::Value>,
    at: Option<Ts>,
}

impl Heartbeat {
    /// An empty heartbeat, timestamped when written.
    pub fn new() -> Self {
        Self::default()
    }
    optional_setters! {
        /// The agent's state.
        status => status: State;
        /// A message.
        message => message: String;
        /// A payload; also kept as the agent's current `metrics`.
        metadata => metadata: serde_json::Value;
        /// Uptime figures, kept as the agent's `uptime_details`.
        uptime => uptime: serde_json::Value;
        /// An explicit time (default: now).
        at => at: Ts;
    }
}

impl SharedState {
    /// Registers an agent (or refreshes its name and resets its state to
    /// `initializing` if it exists) and returns its row.
    pub async fn register_agent(&self, agent_id: &str, agent_name: &str) -> Result<AgentRecord, StoreError> {
        self.write(Write::RegisterAgent {
            agent_id: agent_id.into(),
            agent_name: agent_name.into(),
            at: Ts::now(),
        })
        .await?;
        self.get_agent(agent_id).await?.ok_or_else(|| StoreError::UnknownAgent(agent_id.into()))
    }

    /// Records a heartbeat: a row in `agent_heartbeats` and the agent's
    /// `last_heartbeat`. An agent never registered is registered by it, under its id.
    pub fn update_agent_heartbeat(&self, agent_id: &str, heartbeat: Heartbeat) -> PendingWrite<'_> {
        self.pending(heartbeat_write(agent_id, heartbeat))
    }

    /// Sets the agent's `status` and `last_state_change`.
    pub fn update_agent_state(&self, agent_id: &str, status: State) -> PendingWrite<'_> {
        self.pending(Write::StateChange { agent_id: agent_id.into(), status, at: Ts::now() })
    }

    /// One agent's row.
    pub async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let agent_id = agent_id.to_owned();
        read!(self.store, [agent_id], |conn| agents::table
            .filter(agents::agent_id.eq(&agent_id))
            .select(AgentRecord::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// Every registered agent, by id.
    pub async fn get_registered_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        read!(self.store, [], |conn| agents::table
            .order(agents::agent_id.asc())
            .select(AgentRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Agents whose state is `active`.
    pub async fn get_active_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        read!(self.store, [], |conn| agents::table
            .filter(agents::status.eq(State::Active))
            .order(agents::agent_id.asc())
            .select(AgentRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Agents whose last heartbeat (or, with none, their registration) is more than
    /// `window` ago. Agents in `shutdown` are not expected to beat and are left out.
    pub async fn get_stale_agents(&self, window: Duration) -> Result<Vec<AgentRecord>, StoreError> {
        self.get_stale_agents_at(Ts::now(), window).await
    }

    /// [`get_stale_agents`](Self::get_stale_agents) as seen at `now`.
    pub async fn get_stale_agents_at(
        &self,
        now: Ts,
        window: Duration,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        let window =
            chrono::Duration::from_std(window).map_err(|_| StoreError::invalid("window", "too large"))?;
        let cutoff = Ts::from(now.get() - window);
        self.store
            .run(move |inner| async move {
                with_conn!(inner, |conn| {
                    let last_seen = diesel::dsl::sql::<
                        diesel::sql_types::Nullable<crate::types::sql_types::TsTz>,
                    >("COALESCE(last_heartbeat, created_at)");
                    Ok(agents::table
                        .filter(last_seen.lt(Some(cutoff)))
                        .filter(agents::status.is_null().or(agents::status.ne(State::Shutdown)))
                        .order(agents::agent_id.asc())
                        .select(AgentRecord::as_select())
                        .load(conn)
                        .await?)
                })
            })
            .await
    }

    /// The most recent heartbeats of one agent, newest first.
    pub async fn recent_heartbeats(
        &self,
        agent_id: &str,
        limit: i64,
    ) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let agent_id = agent_id.to_owned();
        read!(self.store, [agent_id], |conn| agent_heartbeats::table
            .inner_join(agents::table)
            .filter(agents::agent_id.eq(&agent_id))
            .order((agent_heartbeats::timestamp.desc(), agent_heartbeats::id.desc()))
            .limit(limit)
            .select(HeartbeatRecord::as_select())
            .load(conn)
            .await?)
    }
}

fn heartbeat_write(agent_id: &str, heartbeat: Heartbeat) -> Write {
    Write::Heartbeat {
        agent_id: agent_id.into(),
        at: heartbeat.at.unwrap_or_else(Ts::now),
        status: heartbeat.status,
        message: heartbeat.message,
        metadata: heartbeat.metadata,
        uptime: heartbeat.uptime,
    }
}
