//! [`SharedState`]: the high-level API agents use to read and write the shared state.
//!
//! It is the specification's `SharedState` class with typed arguments: every method
//! of the original is here under its Rust name.
//!
//! | specification               | here                                                   |
//! |-----------------------------|--------------------------------------------------------|
//! | `register_agent`            | [`SharedState::register_agent`]                        |
//! | `update_agent_heartbeat`    | [`SharedState::update_agent_heartbeat`]                |
//! | `update_agent_state`        | [`SharedState::update_agent_state`]                    |
//! | `add_performance_metric`    | [`SharedState::add_performance_metric`]                |
//! | `log_system_event`          | [`SharedState::log_system_event`]                      |
//! | system state get / set      | [`SharedState::get_system_state`], [`SharedState::set_system_state`] |
//! | help requests / responses   | [`SharedState::create_help_request`], [`SharedState::get_pending_help_requests`], [`SharedState::respond_to_help_request`] |
//! | agent communications        | [`SharedState::record_agent_communication`]            |
//! | LLM conversations           | [`SharedState::log_llm_conversation`]                  |
//! | `get_registered_agents`     | [`SharedState::get_registered_agents`]                 |
//! | `get_active_agents`         | [`SharedState::get_active_agents`]                     |
//! | `get_stale_agents`          | [`SharedState::get_stale_agents`]                      |
//! | `get_database_health`       | [`SharedState::get_database_health`]                   |
//! | `get_query_stats`           | [`SharedState::get_query_stats`]                       |
//! | pool monitoring             | [`SharedState::get_pool_stats`]                        |
//! | `cleanup_old_data`          | [`SharedState::cleanup_old_data`]                      |
//! | restart claims (monitors)   | [`SharedState::claim_incident`], [`SharedState::incident_claim`] |
//! | consistency checks          | [`SharedState::orphan_rows`], [`SharedState::help_requests_with_status`] |
//!
//! Reads go straight to the pool. Writes go through the [`Writer`]: in a running
//! platform the [`PersistenceActor`](crate::PersistenceActor)'s group commit
//! (`Runtime::builder` starts one when given a direct shared state); in tools that
//! write without a runtime — the importer, one-off scripts — straight to the store,
//! one transaction per call ([`SharedState::direct`]).
//!
//! **Waiting is chosen by the caller, not by the verb.** Every write method returns a
//! [`PendingWrite`]: `.await` it to wait until the write has committed, or call
//! [`PendingWrite::enqueue`] to hand it to the writer's queue and go on (heartbeats,
//! metrics). Writes that need an answer — claims, new ids — are [`Request`]s with a
//! typed reply (see [`crate::requests`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::{DatabaseConfig, SharedState, State, Store};
//! use vigil_persistence::shared_state::Heartbeat;
//!
//! let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite_memory()).await?);
//! state.register_agent("worker-1", "Worker").await?;
//! state.update_agent_heartbeat("worker-1", Heartbeat::new().status(State::Active)).await?; // committed
//! state.update_agent_heartbeat("worker-1", Heartbeat::new()).enqueue().await?; // queued
//! assert_eq!(state.get_registered_agents().await?.len(), 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use crate::error::StoreError;
use crate::lifecycle::{State, TransitionRecord};
use crate::models::*;
use crate::requests::{Reply, Request, expect_reply};
use crate::schema::*;
use crate::store::{DatabaseHealth, PoolStats, QueryStats, Store, with_conn};
use crate::types::Ts;
use crate::writes::{HelpStatus, Severity, Write};

/// Runs a read with retries on either backend: the listed captures are cloned into
/// each attempt, and `$body` runs with `$conn` bound to a pooled connection.
macro_rules! read {
    ($store:expr, [$($var:ident),*], |$conn:ident| $body:expr) => {
        $store
            .run(move |inner| {
                $(let $var = $var.clone();)*
                async move { with_conn!(inner, |$conn| Ok($body)) }
            })
            .await
    };
}

/// The longest history [`SharedState::cleanup_old_data`] keeps: a hundred years (a
/// cutoff further back would fall outside the timestamps the backends store).
pub const MAX_DAYS_TO_KEEP: u32 = 36_500;

/// The default staleness window of the specification: five minutes.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// Where writes go.
#[derive(Clone, Debug)]
pub enum Writer {
    /// Straight to the store, one transaction per write: for tools that write without
    /// a runtime (the importer, one-off scripts). A runtime built over a direct shared
    /// state replaces it with a persistence actor of its own.
    Direct,
    /// Through the persistence actor's group commit.
    Actor(crate::persistence_actor::PersistenceHandle),
}

/// The high-level shared-state API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedState {
    store: Store,
    writer: Writer,
}

/// Builder setters for optional fields: `setter => field: Type` gives
/// `fn setter(self, value: impl Into<Type>) -> Self`, setting `field` to `Some`.
macro_rules! optional_setters {
    ($($(#[$doc:meta])* $setter:ident => $field:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $setter(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    )*};
}

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

/// A performance sample to record.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Metric {
    name: String,
    value: f32,
    agent_id: Option<String>,
    source_agent: Option<String>,
    metadata: Option<serde_json::Value>,
    at: Option<Ts>,
}

impl Metric {
    /// A sample of `name`.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            value: value as f32,
            agent_id: None,
            source_agent: None,
            metadata: None,
            at: None,
        }
    }
    optional_setters! {
        /// The agent the sample is about (must be registered).
        agent => agent_id: String;
        /// The reporting agent's name.
        source => source_agent: String;
        /// Extra context.
        metadata => metadata: serde_json::Value;
        /// An explicit time (default: now).
        at => at: Ts;
    }

    /// The write this sample becomes.
    pub fn into_write(self) -> Write {
        Write::Metric {
            agent_id: self.agent_id,
            name: self.name,
            value: self.value,
            source_agent: self.source_agent,
            metadata: self.metadata,
            at: self.at.unwrap_or_else(Ts::now),
        }
    }
}

/// Rows removed by [`SharedState::cleanup_old_data`], per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// `agent_heartbeats` rows removed.
    pub heartbeats: usize,
    /// `performance_metrics` rows removed.
    pub metrics: usize,
    /// `system_events` rows removed (error and critical events are kept).
    pub events: usize,
    /// `agent_communications` rows removed.
    pub communications: usize,
    /// `llm_conversations` rows removed.
    pub conversations: usize,
}

impl CleanupReport {
    /// Rows removed in all.
    pub fn total(&self) -> usize {
        self.heartbeats + self.metrics + self.events + self.communications + self.conversations
    }
}

/// A filter for [`SharedState::recent_events`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EventFilter {
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this severity or worse.
    pub min_severity: Option<Severity>,
    /// Only events after this row id (for following a stream).
    pub after_id: Option<i32>,
    /// Only events at or after this time.
    pub since: Option<Ts>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

impl SharedState {
    /// The API over `store`, writing straight through it, one transaction per write:
    /// for tools without a runtime. `Runtime::builder` gives a direct shared state a
    /// persistence actor of its own.
    pub fn direct(store: Store) -> Self {
        Self { store, writer: Writer::Direct }
    }

    /// The API over `store`, writing through `writer`.
    pub fn with_writer(store: Store, writer: Writer) -> Self {
        Self { store, writer }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where writes go.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Applies a write and waits until it has committed.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        match &self.writer {
            // The actor validates on its own way in.
            Writer::Direct => {
                let write = write.validated(self.store.config().payload_limits())?;
                self.store.write(write).await.map(drop)
            }
            Writer::Actor(handle) => handle.persist(write).await,
        }
    }

    /// Hands a write to the writer's queue without waiting for its commit. With the
    /// direct writer there is no queue: the write is applied and awaited. A full
    /// queue is [`StoreError::QueueFull`]; to get the write back instead, enqueue it on
    /// the [`PersistenceHandle`](crate::PersistenceHandle) itself.
    pub async fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        match &self.writer {
            Writer::Direct => self.write(write).await,
            // A refused write is dismantled iteratively by the conversion.
            Writer::Actor(handle) => handle.enqueue(write).map_err(StoreError::from),
        }
    }

    /// Applies a [`Request`] and returns its [`Reply`] once it has committed.
    pub async fn request(&self, request: Request) -> Result<Reply, StoreError> {
        match &self.writer {
            Writer::Direct => {
                let write = Write::Request(request).validated(self.store.config().payload_limits())?;
                self.store.write(write).await
            }
            Writer::Actor(handle) => handle.request(request).await,
        }
    }

    /// Waits until every write queued so far has committed (or failed): read-your-
    /// writes after [`PendingWrite::enqueue`]. Immediate with the direct writer.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.writer {
            Writer::Direct => Ok(()),
            Writer::Actor(handle) => handle.flush().await,
        }
    }

    /// The persistence actor's figures, when writes go through one.
    pub fn writer_stats(&self) -> Option<crate::PersistenceStats> {
        match &self.writer {
            Writer::Direct => None,
            Writer::Actor(handle) => Some(handle.stats()),
        }
    }

    fn pending(&self, write: Write) -> PendingWrite<'_> {
        PendingWrite { state: self, write }
    }

    // ----------------------------------------------------------------- agents

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

    // ---------------------------------------------------------------- metrics

    /// Records a performance sample.
    pub fn add_performance_metric(&self, metric: Metric) -> PendingWrite<'_> {
        self.pending(metric.into_write())
    }

    /// Samples of `name` (optionally of one agent) since `since`, oldest first.
    pub async fn metric_series(
        &self,
        name: &str,
        agent_id: Option<&str>,
        since: Ts,
    ) -> Result<Vec<MetricRecord>, StoreError> {
        let (name, agent_id) = (name.to_owned(), agent_id.map(str::to_owned));
        self.store
            .run(move |inner| {
                let (name, agent_id) = (name.clone(), agent_id.clone());
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = performance_metrics::table
                            .filter(performance_metrics::metric_name.eq(name))
                            .filter(performance_metrics::timestamp.ge(since))
                            .into_boxed();
                        if let Some(agent_id) = agent_id {
                            let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                            query =
                                query.filter(performance_metrics::agent_id.nullable().eq_any(ids.nullable()));
                        }
                        Ok(query
                            .order((performance_metrics::timestamp.asc(), performance_metrics::id.asc()))
                            .select(MetricRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }

    // ----------------------------------------------------------------- events

    /// Logs a system event.
    pub fn log_system_event(
        &self,
        event_type: &str,
        data: Option<serde_json::Value>,
        severity: Severity,
    ) -> PendingWrite<'_> {
        self.pending(Write::Event { event_type: event_type.into(), severity, data, at: Ts::now() })
    }

    /// The transitions recorded by `state_transition` events matching `filter` (its
    /// `event_type` is set for you), newest first. An event whose data is not a
    /// [`TransitionRecord`] (written by an older version, or by hand) is skipped and
    /// logged with its typed error, so one bad row cannot blind a monitor.
    pub async fn recent_transitions(&self, filter: EventFilter) -> Result<Vec<TransitionRecord>, StoreError> {
        let filter = EventFilter { event_type: Some(TransitionRecord::EVENT_TYPE.into()), ..filter };
        let events = self.recent_events(filter).await?;
        Ok(events
            .iter()
            .filter_map(|event| {
                TransitionRecord::from_event(event)
                    .inspect_err(
                        |error| tracing::warn!(%error, "skipping an unreadable state_transition event"),
                    )
                    .ok()
            })
            .collect())
    }

    /// Events matching `filter`, newest first.
    pub async fn recent_events(&self, filter: EventFilter) -> Result<Vec<SystemEventRecord>, StoreError> {
        self.store
            .run(move |inner| {
                let filter = filter.clone();
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = system_events::table.into_boxed();
                        if let Some(event_type) = filter.event_type {
                            query = query.filter(system_events::event_type.eq(event_type));
                        }
                        if let Some(min) = filter.min_severity {
                            let allowed: Vec<&str> = [
                                Severity::Debug,
                                Severity::Info,
                                Severity::Warning,
                                Severity::Error,
                                Severity::Critical,
                            ]
                            .into_iter()
                            .filter(|s| *s >= min)
                            .map(Severity::as_str)
                            .collect();
                            query = query.filter(system_events::severity.eq_any(allowed));
                        }
                        if let Some(after) = filter.after_id {
                            query = query.filter(system_events::id.gt(after));
                        }
                        if let Some(since) = filter.since {
                            query = query.filter(system_events::timestamp.ge(since));
                        }
                        Ok(query
                            .order(system_events::id.desc())
                            .limit(filter.limit.unwrap_or(100))
                            .select(SystemEventRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }

    // ----------------------------------------------------------- system state

    /// Sets a system-state key to a JSON value.
    pub fn set_system_state(&self, key: &str, value: serde_json::Value) -> PendingWrite<'_> {
        self.pending(Write::SetState { key: key.into(), value, at: Ts::now() })
    }

    /// The value of a system-state key.
    pub async fn get_system_state(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_owned();
        read!(self.store, [key], |conn| system_state::table
            .find(&key)
            .select(SystemStateEntry::as_select())
            .first(conn)
            .await
            .optional()?
            .map(|entry| entry.value.0))
    }

    // ---------------------------------------------------------- help requests

    /// Files a help request under `request_id` (status `pending`).
    pub fn create_help_request(
        &self,
        request_id: &str,
        query: &str,
        context: Option<serde_json::Value>,
    ) -> PendingWrite<'_> {
        self.pending(Write::HelpRequest {
            request_id: request_id.into(),
            query: query.into(),
            context,
            at: Ts::now(),
        })
    }

    /// Pending help requests, oldest first.
    pub async fn get_pending_help_requests(&self) -> Result<Vec<HelpRequestRecord>, StoreError> {
        self.help_requests_with_status(HelpStatus::Pending).await
    }

    /// Answers a help request: writes the response and sets the request's status, in
    /// one transaction. Answering an unknown or already answered request is an error.
    pub async fn respond_to_help_request(
        &self,
        request_id: &str,
        response: &str,
        status: HelpStatus,
    ) -> Result<(), StoreError> {
        if self.get_help_request(request_id).await?.is_none() {
            return Err(StoreError::UnknownHelpRequest(request_id.into()));
        }
        self.write(Write::HelpResponse {
            request_id: request_id.into(),
            response: response.into(),
            status,
            at: Ts::now(),
        })
        .await
    }

    /// One help request.
    pub async fn get_help_request(&self, request_id: &str) -> Result<Option<HelpRequestRecord>, StoreError> {
        let request_id = request_id.to_owned();
        read!(self.store, [request_id], |conn| help_requests::table
            .find(&request_id)
            .select(HelpRequestRecord::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The answer to a help request, if there is one.
    pub async fn get_help_response(
        &self,
        request_id: &str,
    ) -> Result<Option<HelpResponseRecord>, StoreError> {
        let request_id = request_id.to_owned();
        read!(self.store, [request_id], |conn| help_responses::table
            .find(&request_id)
            .select(HelpResponseRecord::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    // ---------------------------------------------- communications, conversations

    /// Records a message from one agent to another (status `sent`).
    pub fn record_agent_communication(
        &self,
        from_agent: &str,
        to_agent: &str,
        message_type: &str,
        content: &str,
    ) -> PendingWrite<'_> {
        self.pending(Write::Communication {
            from_agent: from_agent.into(),
            to_agent: to_agent.into(),
            message_type: Some(message_type.into()),
            content: Some(content.into()),
            status: None,
            at: Ts::now(),
        })
    }

    /// Messages sent or received by an agent, oldest first.
    pub async fn agent_communications(&self, agent_id: &str) -> Result<Vec<CommunicationRecord>, StoreError> {
        let agent =
            self.get_agent(agent_id).await?.ok_or_else(|| StoreError::UnknownAgent(agent_id.into()))?;
        read!(self.store, [], |conn| agent_communications::table
            .filter(
                agent_communications::from_agent_id
                    .eq(agent.id)
                    .or(agent_communications::to_agent_id.eq(agent.id)),
            )
            .order(agent_communications::id.asc())
            .select(CommunicationRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Logs one exchange with a language model.
    pub fn log_llm_conversation(
        &self,
        agent_id: Option<&str>,
        conversation_id: &str,
        message: &str,
        response: &str,
        metadata: Option<serde_json::Value>,
    ) -> PendingWrite<'_> {
        self.pending(Write::Conversation {
            agent_id: agent_id.map(Into::into),
            conversation_id: Some(conversation_id.into()),
            message: Some(message.into()),
            response: Some(response.into()),
            metadata,
            at: Ts::now(),
        })
    }

    /// The exchanges of one conversation, oldest first.
    pub async fn llm_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let conversation_id = conversation_id.to_owned();
        read!(self.store, [conversation_id], |conn| llm_conversations::table
            .filter(llm_conversations::conversation_id.eq(&conversation_id))
            .order(llm_conversations::id.asc())
            .select(ConversationRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Exchanges with a language model whose row id is above `after_id`, oldest first,
    /// at most `limit`: for following the table (trace export).
    pub async fn llm_conversations_after(
        &self,
        after_id: i32,
        limit: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        read!(self.store, [], |conn| llm_conversations::table
            .filter(llm_conversations::id.gt(after_id))
            .order(llm_conversations::id.asc())
            .limit(limit)
            .select(ConversationRecord::as_select())
            .load(conn)
            .await?)
    }

    // -------------------------------------------------------- incident claims

    /// Claims the incident "agent `agent_id` needs a restart" for `claimant`, for `ttl`.
    ///
    /// Agents that restart other agents (the restart manager, self-healing, the health
    /// agents) call this before acting, so that one incident gets one restart however
    /// many of them notice it. The claim is the system-state key
    /// [`incident_claim_key`]`(agent_id)`, holding an [`IncidentClaim`]; it is taken with
    /// one atomic statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE expired OR
    /// mine`), so two claimants — in one process or several, on either backend — never
    /// both get `true` while a claim is live. The claimant that holds it may claim
    /// again (that extends it). The claim is a [`Request`] to the writer, answered
    /// once committed.
    pub async fn claim_incident(
        &self,
        agent_id: &str,
        claimant: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| StoreError::invalid("ttl", "too large"))?;
        let claim = IncidentClaim {
            agent_id: agent_id.to_owned(),
            claimant: claimant.to_owned(),
            claimed_at: now,
            expires_at_ms: (now + ttl).timestamp_millis(),
        };
        expect_reply!(self.request(Request::ClaimIncident { claim }).await?, Reply::Applied(won) => won)
    }

    /// The live or expired claim on `agent_id`'s incident, if one was ever taken.
    pub async fn incident_claim(&self, agent_id: &str) -> Result<Option<IncidentClaim>, StoreError> {
        Ok(self
            .get_system_state(&incident_claim_key(agent_id))
            .await?
            .and_then(|value| serde_json::from_value(value).ok()))
    }

    // ------------------------------------------------------------ consistency

    /// Heartbeat and metric rows that point at no agent (see [`OrphanRows`]).
    pub async fn orphan_rows(&self) -> Result<OrphanRows, StoreError> {
        self.store
            .run(|inner| async move {
                with_conn!(inner, |conn| {
                    let heartbeats_without_agent = agent_heartbeats::table
                        .filter(agent_heartbeats::agent_id.is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    let dangling_heartbeats = agent_heartbeats::table
                        .left_join(agents::table)
                        .filter(agent_heartbeats::agent_id.is_not_null())
                        .filter(agents::id.nullable().is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    let dangling_metrics = performance_metrics::table
                        .left_join(agents::table)
                        .filter(performance_metrics::agent_id.is_not_null())
                        .filter(agents::id.nullable().is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    Ok(OrphanRows { heartbeats_without_agent, dangling_heartbeats, dangling_metrics })
                })
            })
            .await
    }

    /// Help requests in `status`, oldest first.
    pub async fn help_requests_with_status(
        &self,
        status: HelpStatus,
    ) -> Result<Vec<HelpRequestRecord>, StoreError> {
        read!(self.store, [], |conn| help_requests::table
            .filter(help_requests::status.eq(status.as_str()))
            .order((help_requests::created_at.asc(), help_requests::request_id.asc()))
            .select(HelpRequestRecord::as_select())
            .load(conn)
            .await?)
    }

    // ------------------------------------------------------- health and upkeep

    /// The database health report.
    pub async fn get_database_health(&self) -> Result<DatabaseHealth, StoreError> {
        self.store.health().await
    }

    /// A liveness check: one `SELECT 1` round trip, not retried (see [`Store::ping`]).
    pub async fn ping(&self) -> Result<std::time::Duration, StoreError> {
        self.store.ping().await
    }

    /// Query statistics since the store was opened.
    pub fn get_query_stats(&self) -> QueryStats {
        self.store.query_stats()
    }

    /// Pool figures now.
    pub fn get_pool_stats(&self) -> PoolStats {
        self.store.pool_stats()
    }

    /// Row counts of the nine tables.
    pub async fn table_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self.store.health().await?.tables.into_iter().map(|t| (t.table, t.rows)).collect())
    }

    /// Deletes heartbeats, metrics, events (but not error or critical ones),
    /// communications and conversations older than `days_to_keep` days, in one
    /// transaction, and says how many rows went from each table.
    /// More than [`MAX_DAYS_TO_KEEP`] is [`StoreError::InvalidInput`].
    pub async fn cleanup_old_data(&self, days_to_keep: u32) -> Result<CleanupReport, StoreError> {
        if days_to_keep > MAX_DAYS_TO_KEEP {
            return Err(StoreError::invalid("days_to_keep", format!("at most {MAX_DAYS_TO_KEEP} days")));
        }
        self.cleanup_before(Ts::from(Utc::now() - chrono::Duration::days(i64::from(days_to_keep)))).await
    }

    /// [`cleanup_old_data`](Self::cleanup_old_data) with an explicit cutoff.
    pub async fn cleanup_before(&self, cutoff: Ts) -> Result<CleanupReport, StoreError> {
        self.store
            .run(move |inner| async move {
                with_conn!(inner, |conn| {
                    use diesel_async::AsyncConnection;
                    conn.transaction(async |conn| {
                        let heartbeats = diesel::delete(
                            agent_heartbeats::table.filter(agent_heartbeats::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let metrics = diesel::delete(
                            performance_metrics::table.filter(performance_metrics::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let events = diesel::delete(
                            system_events::table.filter(system_events::timestamp.lt(cutoff)).filter(
                                system_events::severity
                                    .is_null()
                                    .or(system_events::severity.ne_all(["error", "critical"])),
                            ),
                        )
                        .execute(conn)
                        .await?;
                        let communications = diesel::delete(
                            agent_communications::table.filter(agent_communications::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let conversations = diesel::delete(
                            llm_conversations::table.filter(llm_conversations::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        // Commit markers of writers that are gone (a live writer keeps
                        // only its latest); never one younger than a day, which a writer
                        // may still be resolving (see `crate::commit`).
                        let marker_cutoff = cutoff.min(Ts::from(Utc::now() - chrono::Duration::days(1)));
                        diesel::sql_query("DELETE FROM vigil_write_batches WHERE committed_at < $1")
                            .bind::<crate::types::sql_types::TsTz, _>(marker_cutoff)
                            .execute(conn)
                            .await?;
                        Ok::<_, StoreError>(CleanupReport {
                            heartbeats,
                            metrics,
                            events,
                            communications,
                            conversations,
                        })
                    })
                    .await
                })
            })
            .await
    }
}

/// The system-state key of the restart claim on `agent_id` (`restart_claim:<agent_id>`).
pub fn incident_claim_key(agent_id: &str) -> String {
    format!("restart_claim:{agent_id}")
}

/// Who is handling an agent's incident, until when ([`SharedState::claim_incident`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IncidentClaim {
    /// The agent the incident is about.
    pub agent_id: String,
    /// The agent handling it.
    pub claimant: String,
    /// When the claim was (last) taken.
    pub claimed_at: chrono::DateTime<Utc>,
    /// When it lapses, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

impl IncidentClaim {
    /// Whether the claim still holds at `now`.
    pub fn is_live_at(&self, now: chrono::DateTime<Utc>) -> bool {
        now.timestamp_millis() <= self.expires_at_ms
    }
}

/// Rows that reference no agent, counted by [`SharedState::orphan_rows`]. Metrics
/// with no agent at all are system-wide samples and are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrphanRows {
    /// Heartbeats with a NULL `agent_id` (a heartbeat always belongs to an agent).
    pub heartbeats_without_agent: i64,
    /// Heartbeats whose `agent_id` names no row of `agents`.
    pub dangling_heartbeats: i64,
    /// Metrics whose `agent_id` names no row of `agents`.
    pub dangling_metrics: i64,
}

impl OrphanRows {
    /// All orphan rows.
    pub fn total(&self) -> i64 {
        self.heartbeats_without_agent + self.dangling_heartbeats + self.dangling_metrics
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

impl SharedState {
    /// Recent performance samples, newest first: optionally of one metric name and/or
    /// one agent, at or after `since`, at most `limit`.
    pub async fn recent_metrics(
        &self,
        name: Option<&str>,
        agent_id: Option<&str>,
        since: Ts,
        limit: i64,
    ) -> Result<Vec<MetricRecord>, StoreError> {
        let (name, agent_id) = (name.map(str::to_owned), agent_id.map(str::to_owned));
        self.store
            .run(move |inner| {
                let (name, agent_id) = (name.clone(), agent_id.clone());
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = performance_metrics::table
                            .filter(performance_metrics::timestamp.ge(since))
                            .into_boxed();
                        if let Some(name) = name {
                            query = query.filter(performance_metrics::metric_name.eq(name));
                        }
                        if let Some(agent_id) = agent_id {
                            let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                            query =
                                query.filter(performance_metrics::agent_id.nullable().eq_any(ids.nullable()));
                        }
                        Ok(query
                            .order((performance_metrics::timestamp.desc(), performance_metrics::id.desc()))
                            .limit(limit)
                            .select(MetricRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }
}

/// A write the caller has not yet decided how to wait for. `.await` it to wait until
/// it has committed; [`enqueue`](Self::enqueue) it to hand it to the writer's queue and
/// go on. Doing neither writes nothing.
#[derive(Debug)]
#[must_use = "a write does nothing until it is awaited (committed) or enqueued"]
pub struct PendingWrite<'a> {
    state: &'a SharedState,
    write: Write,
}

impl PendingWrite<'_> {
    /// Hands the write to the writer's queue and returns without waiting for its
    /// commit (see [`SharedState::enqueue`]).
    pub async fn enqueue(self) -> Result<(), StoreError> {
        self.state.enqueue(self.write).await
    }

    /// The write itself, to batch or queue by other means.
    pub fn into_write(self) -> Write {
        self.write
    }
}

impl<'a> std::future::IntoFuture for PendingWrite<'a> {
    type Output = Result<(), StoreError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>;

    /// Waits until the write has committed.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.state.write(self.write))
    }
}
