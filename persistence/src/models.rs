//! Rows of the nine tables, as read ([`AgentRecord`], [`HeartbeatRecord`], ...) and as
//! written (`New*`, crate-internal: callers describe writes with the typed requests of
//! [`crate::shared_state`]).
//!
//! Every model is checked against both backends at compile time
//! (`check_for_backend(Pg, Sqlite)`), so a column whose Rust type drifts from the
//! schema is a build error, not a runtime surprise.
//!
//! A document column ([`Json`]) never fails a read: a stored document that cannot be
//! parsed reads as the [`Json::unreadable`] marker (see [`crate::types`]), so one bad
//! row does not fail a listing.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::lifecycle::State;
use crate::schema::*;
use crate::types::{Json, Ts};

/// A registered agent (`agents`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = agents)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AgentRecord {
    /// Internal row id, referenced by the other tables.
    pub id: i32,
    /// The agent's stable, unique name-like id (`"heartbeat_health"`).
    pub agent_id: String,
    /// Human-readable name (`"HeartbeatHealthAgent"`).
    pub agent_name: String,
    /// Lifecycle state (stored lowercase, `"active"`); an unknown name in the row is
    /// a read error, not a value.
    pub status: Option<State>,
    /// The last heartbeat; authoritative for staleness.
    pub last_heartbeat: Option<Ts>,
    /// When `status` last changed.
    pub last_state_change: Option<Ts>,
    /// Free-form uptime details reported by the agent.
    pub uptime_details: Option<Json>,
    /// Free-form metrics reported by the agent.
    pub metrics: Option<Json>,
    /// Registration time.
    pub created_at: Option<Ts>,
    /// Last time the row changed.
    pub updated_at: Option<Ts>,
}

/// One performance sample (`performance_metrics`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = performance_metrics)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MetricRecord {
    /// Row id.
    pub id: i32,
    /// The agent the sample is about (`agents.id`), if any.
    pub agent_id: Option<i32>,
    /// Metric name (`"cycle_duration_ms"`).
    pub metric_name: String,
    /// The value.
    pub metric_value: f32,
    /// When it was measured.
    pub timestamp: Option<Ts>,
    /// Extra context.
    pub metadata: Option<Json>,
    /// Name of the agent that reported it.
    pub source_agent: Option<String>,
}

/// One key of the system-wide key-value store (`system_state`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = system_state)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct SystemStateEntry {
    /// The key.
    pub key: String,
    /// The JSON value.
    pub value: Json,
    /// When the key was first set.
    pub created_at: Option<Ts>,
    /// When it was last set.
    pub updated_at: Option<Ts>,
}

/// One heartbeat (`agent_heartbeats`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = agent_heartbeats)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct HeartbeatRecord {
    /// Row id.
    pub id: i32,
    /// The agent (`agents.id`).
    pub agent_id: Option<i32>,
    /// When the heartbeat was sent.
    pub timestamp: Option<Ts>,
    /// The agent's state at the time.
    pub status: Option<State>,
    /// Optional message.
    pub message: Option<String>,
    /// Optional payload.
    pub metadata: Option<Json>,
}

/// One system event (`system_events`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = system_events)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct SystemEventRecord {
    /// Row id.
    pub id: i32,
    /// Event type (`"state_transition"`, `"critical_health_alert"`, ...).
    pub event_type: String,
    /// Event payload.
    pub event_data: Option<Json>,
    /// When it happened.
    pub timestamp: Option<Ts>,
    /// Severity, lowercase (see [`crate::Severity`]).
    pub severity: Option<String>,
}

/// A help request (`help_requests`). Also what the claim's hand-written SQL returns
/// (diesel's update DSL cannot express a subselect with `LIMIT` and a locking clause).
#[derive(Queryable, QueryableByName, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = help_requests)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct HelpRequestRecord {
    /// Caller-chosen unique id.
    pub request_id: String,
    /// The question.
    pub query: String,
    /// Context supplied with the question.
    pub context: Option<Json>,
    /// `pending`, `processing`, `complete` or `failed`.
    pub status: Option<String>,
    /// When it was asked.
    pub created_at: Option<Ts>,
    /// When a helper claimed it (set while `processing`).
    pub claimed_at: Option<Ts>,
    /// Who claimed it.
    pub claimed_by: Option<String>,
}

/// The answer to a help request (`help_responses`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = help_responses)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct HelpResponseRecord {
    /// The request answered.
    pub request_id: String,
    /// When it was answered.
    pub timestamp: Option<Ts>,
    /// The answer.
    pub response: String,
    /// `complete` or `failed`.
    pub status: Option<String>,
}

/// A message between two agents (`agent_communications`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = agent_communications)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct CommunicationRecord {
    /// Row id.
    pub id: i32,
    /// Sender (`agents.id`).
    pub from_agent_id: Option<i32>,
    /// Recipient (`agents.id`).
    pub to_agent_id: Option<i32>,
    /// Kind of message.
    pub message_type: Option<String>,
    /// Content.
    pub message_content: Option<String>,
    /// When it was sent.
    pub timestamp: Option<Ts>,
    /// Delivery status (`sent` by default).
    pub status: Option<String>,
}

/// One exchange with a language model (`llm_conversations`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = llm_conversations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ConversationRecord {
    /// Row id.
    pub id: i32,
    /// The agent that talked (`agents.id`).
    pub agent_id: Option<i32>,
    /// Groups the exchanges of one conversation.
    pub conversation_id: Option<String>,
    /// What was sent to the model.
    pub message_content: Option<String>,
    /// What it answered.
    pub response_content: Option<String>,
    /// When.
    pub timestamp: Option<Ts>,
    /// Model, latency, token counts, ...
    pub metadata: Option<Json>,
}

#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = agents)]
pub(crate) struct NewAgent {
    pub(crate) agent_id: String,
    pub(crate) agent_name: String,
    pub(crate) status: Option<State>,
    pub(crate) last_state_change: Option<Ts>,
    pub(crate) created_at: Option<Ts>,
    pub(crate) updated_at: Option<Ts>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = performance_metrics)]
pub(crate) struct NewMetric {
    pub(crate) agent_id: Option<i32>,
    pub(crate) metric_name: String,
    pub(crate) metric_value: f32,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) metadata: Option<Json>,
    pub(crate) source_agent: Option<String>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = agent_heartbeats)]
pub(crate) struct NewHeartbeat {
    pub(crate) agent_id: Option<i32>,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) status: Option<State>,
    pub(crate) message: Option<String>,
    pub(crate) metadata: Option<Json>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = system_events)]
pub(crate) struct NewSystemEvent {
    pub(crate) event_type: String,
    pub(crate) event_data: Option<Json>,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) severity: Option<String>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = help_requests)]
pub(crate) struct NewHelpRequest {
    pub(crate) request_id: String,
    pub(crate) query: String,
    pub(crate) context: Option<Json>,
    pub(crate) status: Option<String>,
    pub(crate) created_at: Option<Ts>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = help_responses)]
pub(crate) struct NewHelpResponse {
    pub(crate) request_id: String,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) response: String,
    pub(crate) status: Option<String>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = agent_communications)]
pub(crate) struct NewCommunication {
    pub(crate) from_agent_id: Option<i32>,
    pub(crate) to_agent_id: Option<i32>,
    pub(crate) message_type: Option<String>,
    pub(crate) message_content: Option<String>,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) status: Option<String>,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = llm_conversations)]
pub(crate) struct NewConversation {
    pub(crate) agent_id: Option<i32>,
    pub(crate) conversation_id: Option<String>,
    pub(crate) message_content: Option<String>,
    pub(crate) response_content: Option<String>,
    pub(crate) timestamp: Option<Ts>,
    pub(crate) metadata: Option<Json>,
}

/// The system-state key of the restart claim on `agent_id` (`restart_claim:<agent_id>`).
pub fn incident_claim_key(agent_id: &str) -> String {
    format!("restart_claim:{agent_id}")
}

/// Who is handling an agent's incident, until when ([`SharedState::claim_incident`](crate::SharedState::claim_incident)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentClaim {
    /// The agent the incident is about.
    pub agent_id: String,
    /// The agent handling it.
    pub claimant: String,
    /// When the claim was (last) taken.
    pub claimed_at: chrono::DateTime<chrono::Utc>,
    /// When it lapses, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

impl IncidentClaim {
    /// Whether the claim still holds at `now`.
    pub fn is_live_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        now.timestamp_millis() <= self.expires_at_ms
    }
}
