//! The [`Write`] type: one change to the shared state, as a value, and its
//! [`WriteKind`] (the table it lands in, for statistics).
//!
//! Checking a write before it reaches the database is in `validate.rs`; applying a
//! batch of them is in `apply.rs`.

use serde::Serialize;

use super::status::{HelpStatus, Severity};
use crate::alert_deliveries::AlertDelivery;
use crate::lifecycle::State;
use crate::requests::Request;
use crate::types::Ts;

/// One change to the shared state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// A change whose caller needs an answer (a claim, a new id): applied after the
    /// batch's rows, answered after its commit. See [`crate::requests`].
    Request(Request),
    /// Register an agent, or refresh its name if it exists (its state is reset to
    /// `initializing`).
    RegisterAgent {
        /// The agent's id.
        agent_id: String,
        /// Its display name.
        agent_name: String,
        /// When.
        at: Ts,
    },
    /// A heartbeat row, and the agent's `last_heartbeat`; a payload also becomes the
    /// agent's current `metrics`, and `uptime` its `uptime_details`.
    Heartbeat {
        /// The agent.
        agent_id: String,
        /// When it was sent.
        at: Ts,
        /// The agent's state at the time.
        status: Option<State>,
        /// Optional message.
        message: Option<String>,
        /// Optional payload.
        metadata: Option<serde_json::Value>,
        /// Optional uptime figures, for `agents.uptime_details`.
        uptime: Option<serde_json::Value>,
    },
    /// The agent's `status` and `last_state_change`.
    StateChange {
        /// The agent.
        agent_id: String,
        /// The new state.
        status: State,
        /// When it changed.
        at: Ts,
    },
    /// A performance sample.
    Metric {
        /// The agent the sample is about, if any.
        agent_id: Option<String>,
        /// Metric name.
        name: String,
        /// Value.
        value: f32,
        /// Name of the reporting agent.
        source_agent: Option<String>,
        /// Extra context.
        metadata: Option<serde_json::Value>,
        /// When it was measured.
        at: Ts,
    },
    /// A system event.
    Event {
        /// Event type.
        event_type: String,
        /// Severity.
        severity: Severity,
        /// Payload.
        data: Option<serde_json::Value>,
        /// When it happened.
        at: Ts,
    },
    /// Set a system-state key.
    SetState {
        /// Key.
        key: String,
        /// Value.
        value: serde_json::Value,
        /// When.
        at: Ts,
    },
    /// File a help request.
    HelpRequest {
        /// Caller-chosen unique id.
        request_id: String,
        /// The question.
        query: String,
        /// Context.
        context: Option<serde_json::Value>,
        /// When.
        at: Ts,
    },
    /// Answer a help request: the response row and the request's status, together.
    HelpResponse {
        /// The request.
        request_id: String,
        /// The answer.
        response: String,
        /// `Complete` or `Failed`.
        status: HelpStatus,
        /// When.
        at: Ts,
    },
    /// A message between two agents.
    Communication {
        /// Sender.
        from_agent: String,
        /// Recipient.
        to_agent: String,
        /// Kind of message.
        message_type: Option<String>,
        /// Content.
        content: Option<String>,
        /// Delivery status (default `sent`).
        status: Option<String>,
        /// When.
        at: Ts,
    },
    /// One exchange with a language model.
    Conversation {
        /// The agent that talked, if any.
        agent_id: Option<String>,
        /// Groups the exchanges of one conversation.
        conversation_id: Option<String>,
        /// What was sent.
        message: Option<String>,
        /// What came back.
        response: Option<String>,
        /// Model, latency, ...
        metadata: Option<serde_json::Value>,
        /// When.
        at: Ts,
    },
    /// One attempt to deliver an alert to a webhook (see [`crate::alert_deliveries`]).
    AlertDelivery(AlertDelivery),
}

/// Which table a write lands in (for statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum WriteKind {
    RegisterAgent,
    Heartbeat,
    StateChange,
    Metric,
    Event,
    SetState,
    HelpRequest,
    HelpResponse,
    Communication,
    Conversation,
    Request,
    AlertDelivery,
}

impl Write {
    /// The kind of write.
    pub fn kind(&self) -> WriteKind {
        match self {
            Write::RegisterAgent { .. } => WriteKind::RegisterAgent,
            Write::Heartbeat { .. } => WriteKind::Heartbeat,
            Write::StateChange { .. } => WriteKind::StateChange,
            Write::Metric { .. } => WriteKind::Metric,
            Write::Event { .. } => WriteKind::Event,
            Write::SetState { .. } => WriteKind::SetState,
            Write::HelpRequest { .. } => WriteKind::HelpRequest,
            Write::HelpResponse { .. } => WriteKind::HelpResponse,
            Write::Communication { .. } => WriteKind::Communication,
            Write::Conversation { .. } => WriteKind::Conversation,
            Write::Request(_) => WriteKind::Request,
            Write::AlertDelivery(_) => WriteKind::AlertDelivery,
        }
    }

    /// The agent whose writes must stay in order, if the write belongs to one.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Write::RegisterAgent { agent_id, .. }
            | Write::Heartbeat { agent_id, .. }
            | Write::StateChange { agent_id, .. } => Some(agent_id),
            Write::Metric { agent_id, .. } | Write::Conversation { agent_id, .. } => agent_id.as_deref(),
            Write::Communication { from_agent, .. } => Some(from_agent),
            _ => None,
        }
    }

    pub(super) fn agent_refs(&self) -> Vec<&str> {
        match self {
            Write::Heartbeat { agent_id, .. } | Write::StateChange { agent_id, .. } => vec![agent_id],
            Write::Metric { agent_id: Some(a), .. } | Write::Conversation { agent_id: Some(a), .. } => {
                vec![a]
            }
            Write::Communication { from_agent, to_agent, .. } => vec![from_agent, to_agent],
            _ => Vec::new(),
        }
    }
}
