//! [`LangSmithBridge`]: exports what the platform does as LangSmith *runs*.
//!
//! | source                                   | becomes a run of type | name                              |
//! |------------------------------------------|-----------------------|-----------------------------------|
//! | a lifecycle transition (event stream)    | `chain`               | `"{agent}: {from} -> {to}"`       |
//! | a failure, restart, missed heartbeat, cycle overrun | `chain` (failures carry `error`) | `"{agent}: failure"`, ... |
//! | a row of `llm_conversations`             | `llm`                 | `"llm: {conversation_id}"`        |
//!
//! Individual agent *cycles* are not exported: the lifecycle stream carries no event
//! per cycle (only overruns), and the bridge does not see other agents' hooks.
//!
//! Each cycle the bridge drains the lifecycle stream it subscribed to in `initialize`,
//! reads the conversations logged since its cursor, appends the runs to a bounded
//! buffer (oldest dropped first, counted), and then
//!
//! - **with an endpoint and key** ([`LangSmithConfig::endpoint`], `api_key`): POSTs
//!   batches of up to `batch_size` runs to `{endpoint}/runs/batch` as `{"post": [...]}`
//!   with header `x-api-key`, retrying with backoff; a batch that still fails stays at
//!   the head of the buffer and the bridge waits `failure_cooldown` before trying again;
//! - **without one**: records each batch locally as one `langsmith_trace` system event
//!   (`{"project", "count", "runs": [...]}`).
//!
//! The export status — mode, runs exported, batches sent and failed, runs dropped,
//! runs buffered, last error, conversation cursor — is kept in `system_state` under
//! `langsmith_export` and read back after a restart (so counters and the cursor
//! survive; runs still buffered in memory at a crash are lost).
//!
//! **Nothing blocks the agents.** Publishing on the lifecycle stream never waits; the
//! HTTP call is awaited on this agent's own cycle, each attempt bounded by `timeout`.
//! While it waits, the stream holds up to its capacity for the bridge, and a lag is
//! counted as dropped runs.
//!
//! ```no_run
//! use vigil_actors::langsmith::{LangSmithBridge, LangSmithConfig};
//! # fn demo(builder: vigil_runtime::RuntimeBuilder) -> vigil_runtime::RuntimeBuilder {
//! let config = LangSmithConfig::default().endpoint("https://langsmith.example", "lsv2-key");
//! builder.agent(move || LangSmithBridge::new(config.clone()))
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_persistence::Severity;
use vigil_persistence::models::ConversationRecord;
use vigil_runtime::events::EventStreamError;
use vigil_runtime::{Agent, AgentContext, AgentError, AgentResult, EventKind, EventStream, LifecycleEvent};

use crate::config::{HttpRetryPolicy, duration, setters};
use crate::http;

/// The `system_state` key holding the export status.
pub const STATUS_KEY: &str = "langsmith_export";
/// The `system_events` type of locally recorded batches.
pub const TRACE_EVENT: &str = "langsmith_trace";

/// Settings of the [`LangSmithBridge`]. Every field has a default (`#[serde(default)]`).
///
/// | field                 | default    | meaning                                          |
/// |-----------------------|------------|--------------------------------------------------|
/// | `endpoint`            | none       | LangSmith-compatible API base; runs go to `{endpoint}/runs/batch` |
/// | `api_key`             | none       | sent as `x-api-key`; both are needed to export remotely |
/// | `project`             | `"vigil"`  | the runs' `session_name`                          |
/// | `batch_size`          | `100`      | runs per request (or per local event)             |
/// | `buffer_capacity`     | `10000`    | runs held while the endpoint is down; oldest dropped beyond |
/// | `timeout`             | `"10s"`    | per HTTP attempt                                  |
/// | `retry`               | 3 attempts, 500 ms doubling to 10 s |                        |
/// | `failure_cooldown`    | `"30s"`    | wait after a batch failed all its attempts        |
/// | `max_batches_per_cycle` | `10`     | bounds the time one cycle spends exporting        |
/// | `export_lifecycle`    | `true`     | export lifecycle events                           |
/// | `export_conversations`| `true`     | export `llm_conversations` rows                   |
/// | `conversations_per_cycle` | `500`  | rows read per cycle                               |
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LangSmithConfig {
    /// API base URL; with `api_key`, runs are exported over HTTP.
    pub endpoint: Option<String>,
    /// API key (`x-api-key`).
    pub api_key: Option<String>,
    /// The project (`session_name`) of the runs.
    pub project: String,
    /// Runs per batch.
    pub batch_size: usize,
    /// Runs held in memory at most; the oldest are dropped (and counted) beyond.
    pub buffer_capacity: usize,
    /// Per-attempt HTTP timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Retries of one batch.
    pub retry: HttpRetryPolicy,
    /// After a batch failed every attempt, no export before this much time has passed.
    #[serde(with = "duration")]
    pub failure_cooldown: Duration,
    /// Batches sent per cycle at most.
    pub max_batches_per_cycle: usize,
    /// Whether lifecycle events become runs.
    pub export_lifecycle: bool,
    /// Whether `llm_conversations` rows become runs.
    pub export_conversations: bool,
    /// Conversation rows read per cycle at most.
    pub conversations_per_cycle: i64,
}

impl Default for LangSmithConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            api_key: None,
            project: "vigil".into(),
            batch_size: 100,
            buffer_capacity: 10_000,
            timeout: Duration::from_secs(10),
            retry: HttpRetryPolicy::default(),
            failure_cooldown: Duration::from_secs(30),
            max_batches_per_cycle: 10,
            export_lifecycle: true,
            export_conversations: true,
            conversations_per_cycle: 500,
        }
    }
}

impl fmt::Debug for LangSmithConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LangSmithConfig")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("project", &self.project)
            .field("batch_size", &self.batch_size)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl LangSmithConfig {
    /// Exports to `endpoint` with `api_key`.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>, api_key: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.api_key = Some(api_key.into());
        self
    }
    /// Sets the runs per batch.
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the buffer capacity.
    #[must_use]
    pub fn buffer_capacity(mut self, n: usize) -> Self {
        self.buffer_capacity = n.max(1);
        self
    }
    setters! {
        /// Sets the per-attempt timeout.
        timeout => timeout: Duration;
        /// Sets the retry policy.
        retry => retry: HttpRetryPolicy;
        /// Sets the cooldown after a failed batch.
        failure_cooldown => failure_cooldown: Duration;
    }
    /// Chooses what is exported.
    #[must_use]
    pub fn export(mut self, lifecycle: bool, conversations: bool) -> Self {
        self.export_lifecycle = lifecycle;
        self.export_conversations = conversations;
        self
    }

    /// The endpoint and key, when both are set and non-empty.
    fn remote(&self) -> Option<(String, String)> {
        let endpoint = self.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty())?;
        let key = self.api_key.as_deref().filter(|k| !k.is_empty())?;
        Some((format!("{}/runs/batch", endpoint.trim_end_matches('/')), key.to_owned()))
    }
}

/// The export status kept under [`STATUS_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ExportStatus {
    /// `remote` or `local`.
    pub mode: String,
    /// Runs delivered (remote) or recorded (local).
    pub exported: u64,
    /// Successful requests (remote) or events written (local).
    pub batches: u64,
    /// Batches that failed all their attempts.
    pub failed_batches: u64,
    /// Runs dropped because the buffer was full or the bridge lagged the stream.
    pub dropped: u64,
    /// Runs waiting in memory.
    pub buffered: usize,
    /// The last export error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When a batch last went through.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last `llm_conversations.id` turned into a run.
    pub conversation_cursor: i32,
}

/// Exports traces; see the [module docs](self).
#[derive(vigil_runtime::Agent)]
// A batch export may wait out retries and backoff: a long cycle is not a hung one.
#[agent(name = "langsmith", cycle = "1s", heartbeat = "30s", cycle_timeout = "10m")]
pub struct LangSmithBridge {
    /// Settings.
    config: LangSmithConfig,
    /// The HTTP client, built in `initialize` when exporting remotely.
    client: Option<reqwest::Client>,
    /// The lifecycle subscription, taken in `initialize`.
    events: Option<EventStream>,
    /// Runs not yet exported, oldest first, at most `buffer_capacity`.
    buffer: VecDeque<Value>,
    /// Counters and cursor, persisted under [`STATUS_KEY`].
    status: ExportStatus,
    /// No remote export before this instant (after a failed batch).
    cooldown_until: Option<Instant>,
    /// Cycles run by this instance.
    cycles: u64,
}

impl fmt::Debug for LangSmithBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LangSmithBridge")
            .field("config", &self.config)
            .field("buffered", &self.buffer.len())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Default for LangSmithBridge {
    /// Local recording, default thresholds.
    fn default() -> Self {
        Self::new(LangSmithConfig::default())
    }
}

impl LangSmithBridge {
    /// A bridge with `config`.
    pub fn new(config: LangSmithConfig) -> Self {
        Self {
            config,
            client: None,
            events: None,
            buffer: VecDeque::new(),
            status: ExportStatus::default(),
            cooldown_until: None,
            cycles: 0,
        }
    }

    fn push(&mut self, run: Value) {
        if self.buffer.len() >= self.config.buffer_capacity.max(1) {
            self.buffer.pop_front();
            self.status.dropped += 1;
        }
        self.buffer.push_back(run);
    }

    fn drain_events(&mut self) {
        let Some(mut events) = self.events.take() else { return };
        // `now_or_never` takes what the stream already holds and never waits.
        while let Some(next) = events.next().now_or_never() {
            match next {
                Ok(event) => {
                    if self.config.export_lifecycle {
                        let run = lifecycle_run(&event, &self.config.project);
                        self.push(run);
                    }
                }
                Err(EventStreamError::Lagged(missed)) => self.status.dropped += missed,
                Err(_) => break,
            }
        }
        self.events = Some(events);
    }

    async fn read_conversations(&mut self, ctx: &AgentContext) -> AgentResult {
        if !self.config.export_conversations {
            return Ok(());
        }
        let shared = ctx.shared_state();
        let rows = shared
            .llm_conversations_after(self.status.conversation_cursor, self.config.conversations_per_cycle)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let names: HashMap<i32, String> =
            shared.get_registered_agents().await?.into_iter().map(|a| (a.id, a.agent_id)).collect();
        for row in rows {
            self.status.conversation_cursor = self.status.conversation_cursor.max(row.id);
            let run = conversation_run(&row, &names, &self.config.project);
            self.push(run);
        }
        Ok(())
    }

    async fn export_remote(&mut self, url: &str, key: &str) {
        if self.cooldown_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        let Some(client) = self.client.clone() else { return };
        for _ in 0..self.config.max_batches_per_cycle.max(1) {
            if self.buffer.is_empty() {
                break;
            }
            let n = self.buffer.len().min(self.config.batch_size.max(1));
            let batch: Vec<Value> = self.buffer.iter().take(n).cloned().collect();
            let body = json!({ "post": batch });
            let sent = http::post_json(
                &client,
                url,
                &[("x-api-key", key)],
                &body,
                self.config.timeout,
                &self.config.retry,
            )
            .await;
            match sent {
                Ok(_) => {
                    self.buffer.drain(..n);
                    self.status.exported += n as u64;
                    self.status.batches += 1;
                    self.status.last_error = None;
                    self.status.last_success_at = Some(Utc::now());
                    self.cooldown_until = None;
                }
                Err(failure) => {
                    tracing::warn!(%url, error = %failure, buffered = self.buffer.len(), "trace export failed");
                    self.status.failed_batches += 1;
                    self.status.last_error = Some(failure.to_string());
                    self.status.last_error_at = Some(Utc::now());
                    self.cooldown_until = Some(Instant::now() + self.config.failure_cooldown);
                    break;
                }
            }
        }
    }

    async fn record_local(&mut self, ctx: &AgentContext) -> AgentResult {
        for _ in 0..self.config.max_batches_per_cycle.max(1) {
            if self.buffer.is_empty() {
                break;
            }
            let n = self.buffer.len().min(self.config.batch_size.max(1));
            let runs: Vec<Value> = self.buffer.iter().take(n).cloned().collect();
            let data = json!({ "project": self.config.project, "count": n, "runs": runs });
            ctx.shared_state().log_system_event(TRACE_EVENT, Some(data), Severity::Debug).await?;
            self.buffer.drain(..n);
            self.status.exported += n as u64;
            self.status.batches += 1;
            self.status.last_success_at = Some(Utc::now());
        }
        Ok(())
    }
}

impl Agent for LangSmithBridge {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        // Subscribe first: nothing published from here on is missed.
        self.events = Some(ctx.events().subscribe());
        if let Some(saved) = ctx.shared_state().get_system_state(STATUS_KEY).await? {
            // Counters and the cursor carry over a restart; a corrupt value starts afresh.
            self.status = serde_json::from_value(saved).unwrap_or_default();
        }
        let remote = self.config.remote().is_some();
        self.status.mode = if remote { "remote" } else { "local" }.into();
        if remote {
            let client = http::client(self.config.timeout).map_err(|e| AgentError::Other(Box::new(e)))?;
            self.client = Some(client);
        }
        Ok(())
    }

    #[tracing::instrument(name = "langsmith.cycle", skip_all, fields(agent.id = %ctx.agent_id()))]
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        self.cycles += 1;
        let before = self.status.clone();
        self.drain_events();
        self.read_conversations(ctx).await?;
        match self.config.remote() {
            Some((url, key)) => self.export_remote(&url, &key).await,
            None => self.record_local(ctx).await?,
        }
        self.status.buffered = self.buffer.len();
        if self.status != before || self.cycles == 1 {
            let value = serde_json::to_value(&self.status).map_err(|e| AgentError::Other(Box::new(e)))?;
            ctx.shared_state().set_system_state(STATUS_KEY, value).await?;
        }
        Ok(())
    }

    fn heartbeat_payload(&self) -> Option<Value> {
        serde_json::to_value(&self.status).ok()
    }

    async fn shutdown(&mut self, ctx: &AgentContext) -> AgentResult {
        // A last local flush; a remote one could wait on a dead endpoint past the
        // shutdown timeout, so what is buffered for it is dropped (and counted).
        self.drain_events();
        if self.config.remote().is_none() {
            self.record_local(ctx).await?;
        }
        self.status.buffered = self.buffer.len();
        let value = serde_json::to_value(&self.status).map_err(|e| AgentError::Other(Box::new(e)))?;
        ctx.shared_state().set_system_state(STATUS_KEY, value).await?;
        Ok(())
    }
}

/// LangSmith's `dotted_order` for a root run: start time then id.
fn dotted_order(at: DateTime<Utc>, id: &uuid::Uuid) -> String {
    format!("{}Z{id}", at.format("%Y%m%dT%H%M%S%6f"))
}

/// The run of a lifecycle event.
pub fn lifecycle_run(event: &LifecycleEvent, project: &str) -> Value {
    let id = uuid::Uuid::new_v4();
    let at = event.at;
    let time = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (name, inputs, outputs, error) = match &event.kind {
        EventKind::Transition { from, to, trigger } => (
            format!("{}: {from} -> {to}", event.agent_id),
            json!({ "agent_id": event.agent_id, "from": from, "trigger": trigger }),
            json!({ "to": to, "cause": event.cause }),
            None,
        ),
        EventKind::Failure { failure } => (
            format!("{}: failure", event.agent_id),
            json!({ "agent_id": event.agent_id }),
            json!({ "cause": event.cause }),
            Some(failure.to_string()),
        ),
        other => {
            let kind = serde_json::to_value(other).unwrap_or(Value::Null);
            let label = kind["kind"].as_str().unwrap_or("event").to_owned();
            (
                format!("{}: {label}", event.agent_id),
                json!({ "agent_id": event.agent_id }),
                json!({ "event": kind, "cause": event.cause }),
                None,
            )
        }
    };
    let mut run = json!({
        "id": id,
        "trace_id": id,
        "dotted_order": dotted_order(at, &id),
        "name": name,
        "run_type": "chain",
        "start_time": time,
        "end_time": time,
        "inputs": inputs,
        "outputs": outputs,
        "session_name": project,
        "tags": ["vigil", "lifecycle"],
        "extra": { "metadata": { "source": "vigil", "agent_id": event.agent_id, "kind": "lifecycle" } },
    });
    if let Some(error) = error {
        run["error"] = error.into();
    }
    run
}

/// The run of an `llm_conversations` row. Its id is derived from the row id, so a
/// batch that is sent again after a failure carries the same ids.
pub fn conversation_run(row: &ConversationRecord, agents: &HashMap<i32, String>, project: &str) -> Value {
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("vigil.llm_conversations.{}", row.id).as_bytes(),
    );
    let end = row.timestamp.map(|t| t.get()).unwrap_or_else(Utc::now);
    let metadata = row.metadata.as_ref().map(|m| m.0.clone()).unwrap_or(Value::Null);
    let latency = metadata["latency_ms"].as_u64().unwrap_or(0);
    let start = end - chrono::Duration::milliseconds(latency as i64);
    let agent = row.agent_id.and_then(|id| agents.get(&id).cloned());
    json!({
        "id": id,
        "trace_id": id,
        "dotted_order": dotted_order(start, &id),
        "name": format!("llm: {}", row.conversation_id.as_deref().unwrap_or("conversation")),
        "run_type": "llm",
        "start_time": start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "end_time": end.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "inputs": { "messages": [{ "role": "user", "content": row.message_content }] },
        "outputs": { "content": row.response_content },
        "session_name": project,
        "tags": ["vigil", "llm"],
        "extra": { "metadata": {
            "source": "vigil",
            "agent_id": agent,
            "conversation_id": row.conversation_id,
            "row_id": row.id,
            "details": metadata,
        } },
    })
}
