//! What happened to the agents, read from their `state_transition` events: one agent's
//! state timeline, and restarts and failures per agent over a window (the dashboard's
//! agents table, `/api/v1/agents`).

use std::collections::HashMap;
use std::time::Duration;

use vigil_persistence::lifecycle::{State, TransitionRecord};
use vigil_persistence::models::SystemEventRecord;
use vigil_persistence::shared_state::{EventFilter, HelpExchange};
use vigil_persistence::types::Ts;
use vigil_persistence::{SharedState, StoreError};

use super::{EventQuery, StatusReport, recent_events, ts_ago};

/// The most transitions read for the per-agent counts of a window: beyond it the
/// counts cover the most recent ones only (and say so, `transitions_truncated`).
const MAX_TRANSITIONS_COUNTED: i64 = 20_000;

/// The longest help-request or answer text served in a listing; longer ones are cut
/// and marked, so one 16 MiB question cannot swell a page.
pub const MAX_HELP_TEXT_CHARS: usize = 2_000;

/// One agent's transitions, oldest first, each with the id of the event that records it.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The agent.
    pub agent_id: String,
    /// How far back it reaches.
    pub since: Duration,
    /// `(event id, transition)`, oldest first.
    pub transitions: Vec<(i32, TransitionRecord)>,
}

impl Timeline {
    /// The last `limit` transitions of `agent_id` in the last `since`; `None` when no
    /// agent has that id.
    pub async fn read(
        state: &SharedState,
        agent_id: &str,
        since: Duration,
        limit: i64,
    ) -> Result<Option<Self>, StoreError> {
        if state.get_agent(agent_id).await?.is_none() {
            return Ok(None);
        }
        let mut query = EventQuery::new(limit);
        query.agent = Some(agent_id.to_owned());
        query.event_type = Some(TransitionRecord::EVENT_TYPE.to_owned());
        query.since = Some(ts_ago(since));
        let mut transitions: Vec<_> =
            recent_events(state, &query).await?.iter().filter_map(readable).collect();
        transitions.reverse();
        Ok(Some(Self { agent_id: agent_id.to_owned(), since, transitions }))
    }

    /// `{"agent_id", "since_secs", "transitions": [{"event_id", "at", "from", "to",
    /// "trigger", "cause", "failure"}]}`, oldest first.
    pub fn to_json(&self) -> serde_json::Value {
        let transitions: Vec<_> = self
            .transitions
            .iter()
            .map(|(id, record)| {
                let mut value = serde_json::to_value(record).unwrap_or_default();
                value["event_id"] = (*id).into();
                value["failure"] = record.is_failure().into();
                value
            })
            .collect();
        serde_json::json!({
            "agent_id": self.agent_id,
            "since_secs": self.since.as_secs_f64(),
            "transitions": transitions,
        })
    }
}

/// A transition event read back; an unreadable one is skipped (and logged by nobody:
/// [`SharedState::recent_transitions`] logs them for the monitors).
fn readable(event: &SystemEventRecord) -> Option<(i32, TransitionRecord)> {
    TransitionRecord::from_event(event).ok().map(|record| (event.id, record))
}

/// Restarts and failures of one agent in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Restarts begun (transitions into `recovery`), whatever their cause.
    pub restarts: u64,
    /// Failures (transitions into `error` caused by a failure).
    pub failures: u64,
}

/// The agents of `vigil status`, each with its restarts and failures over the last
/// `since` (the dashboard's agents table).
#[derive(Debug, Clone)]
pub struct AgentsReport {
    /// The status, read now.
    pub status: StatusReport,
    /// The window counted.
    pub since: Duration,
    /// Per agent id.
    pub activity: HashMap<String, Activity>,
    /// Whether the window held more transitions than were counted.
    pub truncated: bool,
}

impl AgentsReport {
    /// Reads the report now.
    pub async fn read(state: &SharedState, since: Duration) -> Result<Self, StoreError> {
        let status = StatusReport::read(state).await?;
        let filter = EventFilter {
            since: Some(ts_ago(since)),
            limit: Some(MAX_TRANSITIONS_COUNTED),
            ..Default::default()
        };
        let transitions = state.recent_transitions(filter).await?;
        let truncated = transitions.len() as i64 >= MAX_TRANSITIONS_COUNTED;
        let mut activity: HashMap<String, Activity> = HashMap::new();
        for record in &transitions {
            let counts = activity.entry(record.agent_id.clone()).or_default();
            counts.restarts += u64::from(record.to == State::Recovery);
            counts.failures += u64::from(record.is_failure());
        }
        Ok(Self { status, since, activity, truncated })
    }

    /// What `vigil status --json` prints, each agent with `restarts` and `failures`
    /// over the window, and `since_secs`, `transitions_truncated`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = self.status.to_json();
        if let Some(agents) = value["agents"].as_array_mut() {
            for agent in agents {
                let id = agent["agent_id"].as_str().unwrap_or_default();
                let counts = self.activity.get(id).copied().unwrap_or_default();
                agent["restarts"] = counts.restarts.into();
                agent["failures"] = counts.failures.into();
            }
        }
        value["since_secs"] = self.since.as_secs_f64().into();
        value["transitions_truncated"] = self.truncated.into();
        value
    }
}

/// A help exchange as the API lists it: the request (without its context, which may be
/// large) and its answer, texts cut at [`MAX_HELP_TEXT_CHARS`], with how long the
/// answer took.
pub fn help_exchange_json(exchange: &HelpExchange) -> serde_json::Value {
    let request = &exchange.request;
    let (query, query_truncated) = cut(&request.query);
    let response = exchange.response.as_ref().map(|response| {
        let (text, truncated) = cut(&response.response);
        let took = response
            .timestamp
            .zip(request.created_at)
            .map(|(answered, asked)| seconds_between(asked, answered));
        serde_json::json!({
            "response": text,
            "truncated": truncated,
            "status": response.status,
            "at": response.timestamp,
            "took_secs": took,
        })
    });
    serde_json::json!({
        "request_id": request.request_id,
        "query": query,
        "query_truncated": query_truncated,
        "status": request.status,
        "created_at": request.created_at,
        "claimed_at": request.claimed_at,
        "claimed_by": request.claimed_by,
        "response": response,
    })
}

/// `text`, cut at [`MAX_HELP_TEXT_CHARS`] characters, and whether it was.
fn cut(text: &str) -> (&str, bool) {
    match text.char_indices().nth(MAX_HELP_TEXT_CHARS) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

/// Seconds from `from` to `to` (negative if `to` is earlier).
fn seconds_between(from: Ts, to: Ts) -> f64 {
    (to.get() - from.get()).num_microseconds().map_or(0.0, |us| us as f64 / 1e6)
}
