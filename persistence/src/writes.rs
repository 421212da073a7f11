//! The unit of writing: a [`Write`], and how a batch of them becomes one transaction.
//!
//! Every change to the shared state is described by a `Write` value. A batch of writes
//! is applied in one transaction with as few statements as the data allows:
//!
//! 1. agent registrations first (an upsert each), so later writes of the same batch can
//!    refer to a newly registered agent;
//! 2. one lookup of the internal ids of every agent the batch names;
//! 3. one multi-row `INSERT` per table (chunked under the bind-parameter limits);
//! 4. one `UPDATE agents` per agent, carrying its latest heartbeat and latest state;
//! 5. system-state upserts (last value per key wins) and help answers (response row +
//!    request status);
//! 6. [`Request`]s, in the order queued, each answered with its [`Reply`].
//!
//! A heartbeat from an agent that was never registered registers it (the
//! specification's `update_agent_heartbeat` does "INSERT/UPDATE agents"): the agent's
//! id stands in for its name until it registers itself.
//!
//! A write that is wrong in itself and can be seen to be so before the database is
//! asked (an unknown agent, an over-long value) is refused alone: its result is an
//! error, and the rest of the batch goes on. The database may still reject a batch as
//! a whole (a constraint it alone can check); the [`crate::PersistenceActor`] then
//! splits the batch to find the offending write.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::lifecycle::State;
use crate::limits::{JsonShape, PayloadLimits};
use crate::models::*;
use crate::requests::{ApplyRequest, Reply, Request};
use crate::schema::*;
use crate::store::SqliteConn;
use crate::types::{Json, Ts};

/// Severity of a system event, stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Diagnostic detail.
    Debug,
    /// Normal operation (the specification's default).
    #[default]
    Info,
    /// Something to look at.
    Warning,
    /// Something failed. Kept by cleanup.
    Error,
    /// Something failed badly. Kept by cleanup.
    Critical,
}

impl Severity {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "debug" => Severity::Debug,
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of a help request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelpStatus {
    /// Waiting for an answer.
    Pending,
    /// Claimed by a helper.
    Processing,
    /// Answered.
    Complete,
    /// Could not be answered; the response says why.
    Failed,
}

impl HelpStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            HelpStatus::Pending => "pending",
            HelpStatus::Processing => "processing",
            HelpStatus::Complete => "complete",
            HelpStatus::Failed => "failed",
        }
    }
}

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

    /// Checks what can be checked without the database: lengths of the specification's
    /// `VARCHAR(n)` columns (SQLite does not enforce them), empty ids, non-finite values,
    /// and the depth and size of documents and free text against `limits` (see
    /// [`crate::limits`]). The documents are walked without recursion: any depth is safe.
    pub fn validate(&self, limits: &PayloadLimits) -> Result<(), StoreError> {
        fn text(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
            if value.is_empty() {
                return Err(StoreError::invalid(field, "must not be empty"));
            }
            opt(field, Some(value), max)
        }
        fn opt(field: &'static str, value: Option<&str>, max: usize) -> Result<(), StoreError> {
            match value {
                Some(v) if v.chars().count() > max => Err(StoreError::invalid(
                    field,
                    format!("{} characters, at most {max} allowed", v.chars().count()),
                )),
                _ => Ok(()),
            }
        }
        match self {
            Write::RegisterAgent { agent_id, agent_name, .. } => {
                text("agent_id", agent_id, 255)?;
                text("agent_name", agent_name, 255)
            }
            // A state is typed: it cannot be unknown, empty or too long.
            Write::Heartbeat { agent_id, message, metadata, uptime, .. } => {
                text("agent_id", agent_id, 255)?;
                limits.check_opt_text("message", message.as_deref())?;
                limits.check_opt_json("metadata", metadata.as_ref())?;
                limits.check_opt_json("uptime_details", uptime.as_ref())
            }
            Write::StateChange { agent_id, .. } => text("agent_id", agent_id, 255),
            Write::Metric { name, value, source_agent, metadata, .. } => {
                text("metric_name", name, 255)?;
                opt("source_agent", source_agent.as_deref(), 255)?;
                if !value.is_finite() {
                    return Err(StoreError::invalid("metric_value", "must be a finite number"));
                }
                limits.check_opt_json("metadata", metadata.as_ref())
            }
            Write::Event { event_type, data, .. } => {
                text("event_type", event_type, 100)?;
                limits.check_opt_json("event_data", data.as_ref())
            }
            Write::SetState { key, value, .. } => {
                text("key", key, 255)?;
                limits.check_json("value", value)
            }
            Write::HelpRequest { request_id, query, context, .. } => {
                text("request_id", request_id, 255)?;
                text("query", query, usize::MAX)?;
                limits.check_text("query", query)?;
                limits.check_opt_json("context", context.as_ref())
            }
            Write::HelpResponse { request_id, response, .. } => {
                text("request_id", request_id, 255)?;
                limits.check_text("response", response)
            }
            Write::Communication { message_type, content, status, .. } => {
                opt("message_type", message_type.as_deref(), 100)?;
                opt("status", status.as_deref(), 50)?;
                limits.check_opt_text("message_content", content.as_deref())
            }
            Write::Conversation { conversation_id, message, response, metadata, .. } => {
                opt("conversation_id", conversation_id.as_deref(), 255)?;
                limits.check_opt_text("message_content", message.as_deref())?;
                limits.check_opt_text("response_content", response.as_deref())?;
                limits.check_opt_json("metadata", metadata.as_ref())
            }
            Write::Request(request) => request.validate(limits),
        }
    }

    /// The write itself if it passes [`Write::validate`]; otherwise the error, the
    /// write having been freed with [`Write::drop_deep`] (a refused document may be
    /// too deep for an ordinary drop).
    pub fn validated(self, limits: &PayloadLimits) -> Result<Self, StoreError> {
        match self.validate(limits) {
            Ok(()) => Ok(self),
            Err(error) => {
                self.drop_deep();
                Err(error)
            }
        }
    }

    /// Drops the write, freeing its documents with an explicit stack
    /// ([`limits::drop_deep`](crate::limits::drop_deep)): use it for a write refused
    /// for its depth (an [`EnqueueError::Invalid`](crate::EnqueueError) hands it back),
    /// whose ordinary drop could overflow the thread's stack.
    pub fn drop_deep(self) {
        let documents: Vec<serde_json::Value> = match self {
            Write::Heartbeat { metadata, uptime, .. } => metadata.into_iter().chain(uptime).collect(),
            Write::Metric { metadata: doc, .. }
            | Write::Event { data: doc, .. }
            | Write::HelpRequest { context: doc, .. }
            | Write::Conversation { metadata: doc, .. } => doc.into_iter().collect(),
            Write::SetState { value, .. } => vec![value],
            Write::Request(Request::SubmitWorkflowRun { state, .. }) => vec![state],
            Write::Request(Request::SaveCheckpoint { checkpoint, .. }) => vec![checkpoint.state],
            _ => Vec::new(),
        };
        documents.into_iter().for_each(crate::limits::drop_deep);
    }

    /// A cheap estimate of the bytes the write sends to the database: its texts, its
    /// documents as serialized (measured by walking them, not serializing), and a few
    /// bytes for each number and timestamp. For sizing batches.
    pub fn approx_bytes(&self) -> usize {
        /// Ids, timestamps, numbers, and the statement's share per row.
        const FIXED: usize = 32;
        fn json(value: Option<&serde_json::Value>) -> usize {
            value.map_or(0, |v| JsonShape::of(v).bytes)
        }
        fn text(value: Option<&str>) -> usize {
            value.map_or(0, str::len)
        }
        FIXED
            + match self {
                Write::RegisterAgent { agent_id, agent_name, .. } => agent_id.len() + agent_name.len(),
                Write::Heartbeat { agent_id, message, metadata, uptime, .. } => {
                    agent_id.len()
                        + text(message.as_deref())
                        + json(metadata.as_ref())
                        + json(uptime.as_ref())
                }
                Write::StateChange { agent_id, .. } => agent_id.len(),
                Write::Metric { agent_id, name, source_agent, metadata, .. } => {
                    text(agent_id.as_deref())
                        + name.len()
                        + text(source_agent.as_deref())
                        + json(metadata.as_ref())
                }
                Write::Event { event_type, data, .. } => event_type.len() + json(data.as_ref()),
                Write::SetState { key, value, .. } => key.len() + json(Some(value)),
                Write::HelpRequest { request_id, query, context, .. } => {
                    request_id.len() + query.len() + json(context.as_ref())
                }
                Write::HelpResponse { request_id, response, .. } => request_id.len() + response.len(),
                Write::Communication { from_agent, to_agent, message_type, content, status, .. } => {
                    from_agent.len()
                        + to_agent.len()
                        + text(message_type.as_deref())
                        + text(content.as_deref())
                        + text(status.as_deref())
                }
                Write::Conversation { agent_id, conversation_id, message, response, metadata, .. } => {
                    text(agent_id.as_deref())
                        + text(conversation_id.as_deref())
                        + text(message.as_deref())
                        + text(response.as_deref())
                        + json(metadata.as_ref())
                }
                Write::Request(request) => match request {
                    Request::ClaimIncident { claim } => claim.agent_id.len() + claim.claimant.len(),
                    Request::ClaimHelpRequests { claimer, .. } => claimer.len(),
                    Request::ReclaimHelpRequests { .. } => 0,
                    Request::SubmitCommand { agent_id, requested_by, .. } => {
                        agent_id.len() + text(requested_by.as_deref())
                    }
                    Request::ClaimCommands { agent_ids, .. } => agent_ids.iter().map(String::len).sum(),
                    Request::CompleteCommand { outcome, .. } => outcome.len(),
                    Request::SubmitWorkflowRun { graph, run_id, state, .. } => {
                        graph.len() + run_id.len() + json(Some(state))
                    }
                    Request::SaveCheckpoint { run_id, checkpoint, .. } => {
                        run_id.len()
                            + text(checkpoint.next_node.as_deref())
                            + json(Some(&checkpoint.state))
                            + text(checkpoint.error.as_deref())
                    }
                },
            }
    }

    fn agent_refs(&self) -> Vec<&str> {
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

/// Rows per multi-row INSERT: at most 7 columns × 4,000 rows stays under both
/// PostgreSQL's 65,535 and SQLite's 32,766 bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 4_000;

/// Inserts rows with as few statements as the backend allows.
pub(crate) trait InsertRows<T> {
    async fn insert_rows(&mut self, rows: Vec<T>) -> QueryResult<usize>;
}

macro_rules! insert_rows_impl {
    ($($model:ty => $table:path),* $(,)?) => {$(
        impl InsertRows<$model> for AsyncPgConnection {
            async fn insert_rows(&mut self, rows: Vec<$model>) -> QueryResult<usize> {
                let mut written = 0;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    written += diesel::insert_into($table).values(chunk).execute(self).await?;
                }
                Ok(written)
            }
        }

        impl InsertRows<$model> for SqliteConn {
            // diesel-async cannot batch-insert through its SQLite wrapper
            // (diesel_async#277): run synchronous diesel on the inner connection.
            async fn insert_rows(&mut self, rows: Vec<$model>) -> QueryResult<usize> {
                if rows.is_empty() {
                    return Ok(0);
                }
                self.spawn_blocking(move |conn| {
                    let mut written = 0;
                    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                        written += diesel::RunQueryDsl::execute(diesel::insert_into($table).values(chunk), conn)?;
                    }
                    Ok(written)
                })
                .await
            }
        }
    )*};
}

insert_rows_impl! {
    NewMetric => performance_metrics::table,
    NewSystemEvent => system_events::table,
    NewHelpRequest => help_requests::table,
    NewCommunication => agent_communications::table,
    NewConversation => llm_conversations::table,
}

impl InsertRows<NewHeartbeat> for AsyncPgConnection {
    // The hottest table: one array per column and `INSERT ... SELECT * FROM UNNEST`,
    // so a batch of any size is one statement with five parameters and one prepared
    // statement, reused (diesel's insert DSL binds every value and re-prepares).
    async fn insert_rows(&mut self, rows: Vec<NewHeartbeat>) -> QueryResult<usize> {
        use diesel::sql_types::{Array, Integer, Nullable, Text};

        use crate::types::sql_types::{JsonDoc, TsTz};
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut stamps = Vec::with_capacity(rows.len());
        let mut statuses = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        let mut metadata = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.agent_id);
            // The column default (NOW()) for a row without a timestamp, as the DSL would.
            stamps.push(row.timestamp.unwrap_or_else(Ts::now));
            statuses.push(row.status);
            messages.push(row.message);
            metadata.push(row.metadata);
        }
        diesel::sql_query(
            "INSERT INTO agent_heartbeats (agent_id, timestamp, status, message, metadata) \
             SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::jsonb[])",
        )
        .bind::<Array<Nullable<Integer>>, _>(ids)
        .bind::<Array<TsTz>, _>(stamps)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<Nullable<Text>>, _>(messages)
        .bind::<Array<Nullable<JsonDoc>>, _>(metadata)
        .execute(self)
        .await
    }
}

impl InsertRows<NewHeartbeat> for SqliteConn {
    async fn insert_rows(&mut self, rows: Vec<NewHeartbeat>) -> QueryResult<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.spawn_blocking(move |conn| {
            let mut written = 0;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                written += diesel::RunQueryDsl::execute(
                    diesel::insert_into(agent_heartbeats::table).values(chunk),
                    conn,
                )?;
            }
            Ok(written)
        })
        .await
    }
}

/// The outcome of each write of a batch, in order. The batch committed; a write that
/// was refused before reaching the database carries its error.
pub(crate) type BatchOutcome = Vec<Result<Reply, StoreError>>;

/// The latest agents-row change of one agent within a batch.
#[derive(Default)]
pub(crate) struct AgentUpdate {
    last_heartbeat: Option<Ts>,
    status: Option<(State, Ts)>,
    /// The latest heartbeat's payload and uptime figures.
    metrics: Option<serde_json::Value>,
    uptime: Option<serde_json::Value>,
}

/// `INSERT INTO system_state ... ON CONFLICT (key) DO UPDATE SET value, updated_at`:
/// the upsert of a system-state key, for a batch's `SetState` and for incident claims
/// (which add a `WHERE` to the update).
macro_rules! upsert_system_state {
    ($key:expr, $value:expr, $at:expr) => {
        diesel::insert_into(system_state::table)
            .values((
                system_state::key.eq($key),
                system_state::value.eq($value),
                system_state::created_at.eq(Some($at)),
                system_state::updated_at.eq(Some($at)),
            ))
            .on_conflict(system_state::key)
            .do_update()
            .set((
                system_state::value.eq(diesel::upsert::excluded(system_state::value)),
                system_state::updated_at.eq(diesel::upsert::excluded(system_state::updated_at)),
            ))
    };
}
pub(crate) use upsert_system_state;

/// The body of a batch — every write of it, in order, as few statements as the backend
/// allows — on either backend. Compiled once per connection type.
macro_rules! define_apply {
    ($in_tx:ident, $conn_ty:ty) => {
        /// The body of the batch, to run inside a transaction the caller opened.
        pub(crate) async fn $in_tx(conn: &mut $conn_ty, writes: &[Write]) -> Result<BatchOutcome, StoreError> {
            {
                let mut outcome: BatchOutcome =
                    writes.iter().map(|write| write.validate(&PayloadLimits::CEILING).map(|()| Reply::Done)).collect();

                // 1. Registrations.
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if let (Write::RegisterAgent { agent_id, agent_name, at }, Ok(_)) = (write, &*result) {
                        let row = NewAgent {
                            agent_id: agent_id.clone(),
                            agent_name: agent_name.clone(),
                            status: Some(State::Initializing),
                            last_state_change: Some(*at),
                            created_at: Some(*at),
                            updated_at: Some(*at),
                        };
                        diesel::insert_into(agents::table)
                            .values(&row)
                            .on_conflict(agents::agent_id)
                            .do_update()
                            .set((
                                agents::agent_name.eq(excluded(agents::agent_name)),
                                agents::status.eq(excluded(agents::status)),
                                agents::last_state_change.eq(excluded(agents::last_state_change)),
                                agents::updated_at.eq(excluded(agents::updated_at)),
                            ))
                            .execute(conn)
                            .await?;
                    }
                }

                // 2. Internal ids of every agent named.
                let names: HashSet<&str> = writes.iter().flat_map(Write::agent_refs).collect();
                let mut ids: HashMap<String, i32> = if names.is_empty() {
                    HashMap::new()
                } else {
                    agents::table
                        .filter(agents::agent_id.eq_any(names.iter().copied()))
                        .select((agents::agent_id, agents::id))
                        .load::<(String, i32)>(conn)
                        .await?
                        .into_iter()
                        .collect()
                };
                // Heartbeats of agents never registered register them (rare: the lookup
                // above found every other agent, so the common batch pays nothing).
                let mut unregistered: Vec<NewAgent> = Vec::new();
                for (write, result) in writes.iter().zip(&outcome) {
                    if let (Write::Heartbeat { agent_id, at, status, .. }, Ok(_)) = (write, result)
                        && !ids.contains_key(agent_id.as_str())
                        && !unregistered.iter().any(|a| &a.agent_id == agent_id)
                    {
                        unregistered.push(NewAgent {
                            agent_id: agent_id.clone(),
                            agent_name: agent_id.clone(),
                            status: status.clone(),
                            last_state_change: Some(*at),
                            created_at: Some(*at),
                            updated_at: Some(*at),
                        });
                    }
                }
                for agent in unregistered {
                    let id: i32 = diesel::insert_into(agents::table)
                        .values(&agent)
                        .on_conflict(agents::agent_id)
                        .do_update()
                        .set(agents::updated_at.eq(excluded(agents::updated_at)))
                        .returning(agents::id)
                        .get_result(conn)
                        .await?;
                    ids.insert(agent.agent_id, id);
                }
                let resolve =
                    |name: &str| ids.get(name).copied().ok_or_else(|| StoreError::UnknownAgent(name.into()));

                // 3. Rows, in the order sent.
                let mut heartbeats = Vec::new();
                let mut metrics = Vec::new();
                let mut events = Vec::new();
                let mut requests = Vec::new();
                let mut communications = Vec::new();
                let mut conversations = Vec::new();
                let mut updates: HashMap<i32, AgentUpdate> = HashMap::new();
                let mut state: HashMap<&str, (&serde_json::Value, Ts)> = HashMap::new();
                let mut answers = Vec::new();
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if result.is_err() {
                        continue;
                    }
                    let step: Result<(), StoreError> = (|| {
                        match write {
                            Write::RegisterAgent { .. } | Write::Request(_) => {}
                            Write::Heartbeat { agent_id, at, status, message, metadata, uptime } => {
                                let id = resolve(agent_id)?;
                                heartbeats.push(NewHeartbeat {
                                    agent_id: Some(id),
                                    timestamp: Some(*at),
                                    status: status.clone(),
                                    message: message.clone(),
                                    metadata: metadata.clone().map(Json),
                                });
                                let update = updates.entry(id).or_default();
                                // The newest heartbeat of the batch sets the snapshot.
                                if update.last_heartbeat.is_none_or(|last| *at >= last) {
                                    update.metrics = metadata.clone().or(update.metrics.take());
                                    update.uptime = uptime.clone().or(update.uptime.take());
                                }
                                update.last_heartbeat = update.last_heartbeat.max(Some(*at));
                            }
                            Write::StateChange { agent_id, status, at } => {
                                let id = resolve(agent_id)?;
                                updates.entry(id).or_default().status = Some((*status, *at));
                            }
                            Write::Metric { agent_id, name, value, source_agent, metadata, at } => {
                                let id = agent_id.as_deref().map(resolve).transpose()?;
                                metrics.push(NewMetric {
                                    agent_id: id,
                                    metric_name: name.clone(),
                                    metric_value: *value,
                                    timestamp: Some(*at),
                                    metadata: metadata.clone().map(Json),
                                    source_agent: source_agent.clone(),
                                });
                            }
                            Write::Event { event_type, severity, data, at } => events.push(NewSystemEvent {
                                event_type: event_type.clone(),
                                event_data: data.clone().map(Json),
                                timestamp: Some(*at),
                                severity: Some(severity.as_str().into()),
                            }),
                            Write::SetState { key, value, at } => {
                                state.insert(key, (value, *at));
                            }
                            Write::HelpRequest { request_id, query, context, at } => {
                                requests.push(NewHelpRequest {
                                    request_id: request_id.clone(),
                                    query: query.clone(),
                                    context: context.clone().map(Json),
                                    status: Some(HelpStatus::Pending.as_str().into()),
                                    created_at: Some(*at),
                                })
                            }
                            Write::HelpResponse { request_id, response, status, at } => {
                                answers.push(NewHelpResponse {
                                    request_id: request_id.clone(),
                                    timestamp: Some(*at),
                                    response: response.clone(),
                                    status: Some(status.as_str().into()),
                                })
                            }
                            Write::Communication {
                                from_agent,
                                to_agent,
                                message_type,
                                content,
                                status,
                                at,
                            } => communications.push(NewCommunication {
                                from_agent_id: Some(resolve(from_agent)?),
                                to_agent_id: Some(resolve(to_agent)?),
                                message_type: message_type.clone(),
                                message_content: content.clone(),
                                timestamp: Some(*at),
                                status: Some(status.clone().unwrap_or_else(|| "sent".into())),
                            }),
                            Write::Conversation {
                                agent_id,
                                conversation_id,
                                message,
                                response,
                                metadata,
                                at,
                            } => conversations.push(NewConversation {
                                agent_id: agent_id.as_deref().map(resolve).transpose()?,
                                conversation_id: conversation_id.clone(),
                                message_content: message.clone(),
                                response_content: response.clone(),
                                timestamp: Some(*at),
                                metadata: metadata.clone().map(Json),
                            }),
                        }
                        Ok(())
                    })();
                    if let Err(error) = step {
                        *result = Err(error);
                    }
                }

                conn.insert_rows(heartbeats).await?;
                conn.insert_rows(metrics).await?;
                conn.insert_rows(events).await?;
                conn.insert_rows(requests).await?;
                conn.insert_rows(communications).await?;
                conn.insert_rows(conversations).await?;

                // 4. The agents rows: one statement (PostgreSQL) or one per agent (SQLite).
                let mut updates: Vec<(i32, AgentUpdate)> = updates.into_iter().collect();
                // A stable order, so two writers never lock the same rows in opposite orders.
                updates.sort_unstable_by_key(|(id, _)| *id);
                conn.update_agents(updates, Ts::now()).await?;

                // 5. System state (last value per key) and help answers.
                for (key, (value, at)) in state {
                    upsert_system_state!(key, Json(value.clone()), at).execute(conn).await?;
                }
                for answer in answers {
                    let status = answer.status.clone();
                    diesel::insert_into(help_responses::table).values(&answer).execute(conn).await?;
                    diesel::update(
                        help_requests::table.filter(help_requests::request_id.eq(&answer.request_id)),
                    )
                    .set(help_requests::status.eq(status))
                    .execute(conn)
                    .await?;
                }

                // 6. Requests, in the order queued: they see every row of the batch.
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if let (Write::Request(request), Ok(_)) = (write, &*result) {
                        *result = Ok(conn.apply_request(request).await?);
                    }
                }
                Ok::<_, StoreError>(outcome)
            }
        }
    };
}

define_apply!(apply_batch_pg_in_tx, AsyncPgConnection);
define_apply!(apply_batch_sqlite_in_tx, SqliteConn);

/// Applies a batch in one SQLite transaction. (PostgreSQL transactions are marked, so
/// that a lost COMMIT answer can be resolved: see [`crate::commit`].)
///
/// The transaction is `BEGIN IMMEDIATE`: it takes the write lock at once, waiting for
/// it up to the busy timeout. A deferred transaction would start as a reader (the batch
/// looks agents up first) and, in WAL mode, fail at once with "database is locked" when
/// another connection committed before its first write.
pub(crate) async fn apply_batch_sqlite(
    conn: &mut SqliteConn,
    writes: &[Write],
) -> Result<BatchOutcome, StoreError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::sqlite::SqliteConnection;
    // Through diesel's transaction manager, so that diesel's own nested transactions
    // (its SQLite batch inserts) become savepoints.
    conn.spawn_blocking(|c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")).await?;
    let applied = apply_batch_sqlite_in_tx(conn, writes).await;
    let ended = if applied.is_ok() {
        conn.spawn_blocking(|c| {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(c)
        })
        .await
    } else {
        conn.spawn_blocking(|c| {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(c)
        })
        .await
    };
    let outcome = applied?;
    ended?;
    Ok(outcome)
}

/// Writes the per-agent changes of a batch to `agents`.
pub(crate) trait UpdateAgents {
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()>;
}

impl UpdateAgents for AsyncPgConnection {
    // One statement for the whole batch: one array per column, joined with UNNEST. A
    // column an agent did not change keeps its value (COALESCE with the current one).
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()> {
        use diesel::sql_types::{Array, Integer, Nullable, Text};

        use crate::types::sql_types::TsTz;
        if updates.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(updates.len());
        let mut beats = Vec::with_capacity(updates.len());
        let mut statuses = Vec::with_capacity(updates.len());
        let mut changes = Vec::with_capacity(updates.len());
        let mut metrics = Vec::with_capacity(updates.len());
        let mut uptimes = Vec::with_capacity(updates.len());
        for (id, update) in updates {
            ids.push(id);
            beats.push(update.last_heartbeat);
            let (status, changed) = update.status.unzip();
            statuses.push(status);
            changes.push(changed);
            // JSON travels as text and is cast: one array type for any document.
            metrics.push(update.metrics.map(|v| v.to_string()));
            uptimes.push(update.uptime.map(|v| v.to_string()));
        }
        diesel::sql_query(
            "UPDATE agents AS a SET \
               last_heartbeat = COALESCE(u.beat, a.last_heartbeat), \
               status = COALESCE(u.status, a.status), \
               last_state_change = COALESCE(u.changed, a.last_state_change), \
               metrics = COALESCE(u.metrics::jsonb, a.metrics), \
               uptime_details = COALESCE(u.uptime::jsonb, a.uptime_details), \
               updated_at = $5 \
             FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[], $4::timestamptz[], $6::text[], $7::text[]) \
               AS u(id, beat, status, changed, metrics, uptime) \
             WHERE a.id = u.id",
        )
        .bind::<Array<Integer>, _>(ids)
        .bind::<Array<Nullable<TsTz>>, _>(beats)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<Nullable<TsTz>>, _>(changes)
        .bind::<TsTz, _>(now)
        .bind::<Array<Nullable<Text>>, _>(metrics)
        .bind::<Array<Nullable<Text>>, _>(uptimes)
        .execute(self)
        .await?;
        Ok(())
    }
}

/// The columns of one agent's row a batch changes; a `None` is left as it is.
#[derive(AsChangeset)]
#[diesel(table_name = agents)]
struct AgentChanges {
    last_heartbeat: Option<Ts>,
    status: Option<State>,
    last_state_change: Option<Ts>,
    metrics: Option<Json>,
    uptime_details: Option<Json>,
    updated_at: Ts,
}

impl UpdateAgents for SqliteConn {
    // SQLite runs in-process: a statement per agent costs no round trip.
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.spawn_blocking(move |conn| {
            for (id, update) in updates {
                let (status, last_state_change) = update.status.unzip();
                let changes = AgentChanges {
                    last_heartbeat: update.last_heartbeat,
                    status,
                    last_state_change,
                    metrics: update.metrics.map(Json),
                    uptime_details: update.uptime.map(Json),
                    updated_at: now,
                };
                diesel::RunQueryDsl::execute(
                    diesel::update(agents::table.filter(agents::id.eq(id))).set(changes),
                    conn,
                )?;
            }
            Ok(())
        })
        .await
    }
}
