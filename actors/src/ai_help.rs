//! [`AIHelpAgent`]: answers the help requests filed in `help_requests`.
//!
//! Each cycle the agent
//!
//! 1. puts back to `pending` the requests that have been `processing` longer than
//!    [`AiHelpConfig::claim_timeout`] (their helper died),
//! 2. claims pending requests, oldest first, [`AiHelpConfig::batch_size`] at a time, with
//!    [`SharedState::claim_help_requests`](vigil_persistence::SharedState::claim_help_requests)
//!    — `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several agents (in one runtime or
//!    several) never answer the same request,
//! 3. asks its [`Responder`] for each answer,
//! 4. writes the answer and the request's final status in one transaction
//!    (`complete`, or `failed` with the error as the answer), and
//! 5. logs the exchange in `llm_conversations` (conversation id = request id).
//!
//! | responder            | used when                               | answers from                     |
//! |----------------------|-----------------------------------------|----------------------------------|
//! | [`PlatformResponder`] | default (offline)                      | the platform's own tables        |
//! | [`OpenAiResponder`]  | [`AiHelpConfig::openai`] is set         | an OpenAI-compatible chat API    |
//! | your own             | [`AIHelpAgent::with_responder`]         | anything: implement [`Responder`] |
//!
//! What is persisted where: `help_requests.status` / `claimed_at` / `claimed_by` (the
//! claim), `help_responses` (the answer, or the error of a failed request),
//! `llm_conversations` (question, answer, responder, model, latency, tokens).
//!
//! **Supervision.** A responder error fails the *request*, not the agent. A database
//! error fails the cycle, so the runtime restarts the agent; a request it had claimed
//! stays `processing` until the claim timeout puts it back.
//!
//! ```no_run
//! use vigil_actors::ai_help::{AIHelpAgent, AiHelpConfig};
//! use vigil_persistence::{DatabaseConfig, SharedState, Store};
//! use vigil_runtime::Runtime;
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite_memory()).await?);
//!     let helper = AIHelpAgent::new(AiHelpConfig::default())?; // offline: platform responder
//!     let runtime = Runtime::builder(state.clone()).agent(move || helper.clone()).start().await?;
//!     state.create_help_request("q1", "what is the status of ai_help?", None).await?;
//!     // ... a cycle later: state.get_help_response("q1")
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_persistence::lifecycle::{Cause, State, TransitionRecord};
use vigil_persistence::models::{AgentRecord, HelpRequestRecord};
use vigil_persistence::presence::Liveness;
use vigil_persistence::shared_state::{DEFAULT_STALE_AFTER, EventFilter};
use vigil_persistence::types::Ts;
use vigil_persistence::{HelpStatus, StoreError};
use vigil_runtime::{Agent, AgentContext, AgentResult};

use crate::config::{RetryPolicy, duration, setters};
use crate::http::{self, HttpFailure};

/// Settings of the [`AIHelpAgent`]. Every field has a default (`#[serde(default)]`).
///
/// | field              | default   | meaning                                                |
/// |--------------------|-----------|--------------------------------------------------------|
/// | `batch_size`       | `10`      | requests claimed at a time                              |
/// | `max_requests_per_cycle` | `100` | requests answered per cycle at most                 |
/// | `claim_timeout`    | `"5m"`    | a request `processing` longer than this is reclaimed    |
/// | `stale_after`      | `"5m"`    | heartbeat age after which the platform calls an agent stale |
/// | `event_scan_limit` | `500`     | recent `state_transition` events read for errors/restarts |
/// | `openai`           | none      | when set, answers come from that chat-completions API   |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AiHelpConfig {
    /// Requests claimed at a time (one claim statement).
    pub batch_size: i64,
    /// Requests answered per cycle at most; the rest wait for the next cycle.
    pub max_requests_per_cycle: i64,
    /// A request `processing` for longer than this is put back to `pending`.
    #[serde(with = "duration")]
    pub claim_timeout: Duration,
    /// Heartbeat age after which the platform responder reports an agent as stale.
    #[serde(with = "duration")]
    pub stale_after: Duration,
    /// How many recent `state_transition` events the platform responder reads.
    pub event_scan_limit: i64,
    /// An OpenAI-compatible endpoint; `None` keeps the agent offline.
    pub openai: Option<OpenAiConfig>,
}

impl Default for AiHelpConfig {
    fn default() -> Self {
        Self {
            batch_size: 10,
            max_requests_per_cycle: 100,
            claim_timeout: Duration::from_secs(300),
            stale_after: DEFAULT_STALE_AFTER,
            event_scan_limit: 500,
            openai: None,
        }
    }
}

impl AiHelpConfig {
    setters! {
        /// Sets the requests claimed at a time.
        batch_size => batch_size: i64;
        /// Sets the claim timeout.
        claim_timeout => claim_timeout: Duration;
        /// Sets the staleness window.
        stale_after => stale_after: Duration;
    }
    /// Answers through an OpenAI-compatible API.
    #[must_use]
    pub fn openai(mut self, config: OpenAiConfig) -> Self {
        self.openai = Some(config);
        self
    }
}

/// Settings of the [`OpenAiResponder`].
///
/// | field           | default                   |
/// |-----------------|---------------------------|
/// | `base_url`      | (required) — the server (`https://api.openai.com`) or, as the SDKs write it, its `/v1` (`https://api.openai.com/v1`); requests go to `.../v1/chat/completions` |
/// | `api_key`       | (required) — sent as `Authorization: Bearer ...` |
/// | `model`         | `"gpt-4o-mini"`           |
/// | `timeout`       | `"30s"` per attempt       |
/// | `retry`         | 3 attempts, 500 ms doubling to 10 s |
/// | `system_prompt` | a short description of Vigil |
/// | `ground_with_platform_facts` | `true`: the platform responder's answer goes along as context |
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The API's base URL, without `/v1`.
    pub base_url: String,
    /// The bearer key.
    pub api_key: String,
    /// The model name.
    pub model: String,
    /// Per-attempt timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Retries on timeouts, connection errors, 408, 429 and 5xx.
    pub retry: RetryPolicy,
    /// The system message.
    pub system_prompt: String,
    /// Whether to send the platform responder's facts along with the question.
    pub ground_with_platform_facts: bool,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: String::new(),
            model: "gpt-4o-mini".into(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            system_prompt: "You are the help desk of Vigil, a runtime of long-running background agents. \
                            Answer operators' questions briefly, using the platform facts given."
                .into(),
            ground_with_platform_facts: true,
        }
    }
}

impl OpenAiConfig {
    /// An endpoint and key with the other settings at their defaults.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), api_key: api_key.into(), ..Self::default() }
    }
    setters! {
        /// Sets the model.
        model => model: String;
        /// Sets the per-attempt timeout.
        timeout => timeout: Duration;
        /// Sets the retry policy.
        retry => retry: RetryPolicy;
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// An answer to a help request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Answer {
    /// The text stored in `help_responses.response`.
    pub text: String,
    /// Extra facts logged with the exchange in `llm_conversations.metadata`
    /// (responder, model, tokens, matched intent, ...).
    pub metadata: serde_json::Value,
}

impl Answer {
    /// An answer with metadata.
    pub fn new(text: impl Into<String>, metadata: serde_json::Value) -> Self {
        Self { text: text.into(), metadata }
    }
}

/// Why a responder gave no answer. The request is then stored as `failed`, with this
/// error as its response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponderError {
    /// The language-model API failed after its retries.
    #[error("the language model could not be reached: {0}")]
    Http(#[from] HttpFailure),
    /// The API answered, but without a usable message.
    #[error("the language model's answer was unusable: {0}")]
    BadAnswer(String),
    /// The shared state could not be read.
    #[error("the platform state could not be read: {0}")]
    Store(#[from] StoreError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Answers help requests. Implement it to plug another source of answers into
/// [`AIHelpAgent::with_responder`].
///
/// `respond` runs on the agent's cycle; a slow responder only delays that agent.
/// Return an error to fail the *request* (it is stored as `failed` with your error);
/// panic only on bugs — a panic fails the agent, which is restarted.
pub trait Responder: Send + Sync + 'static {
    /// A short name, logged with each exchange (`"platform"`, `"openai"`).
    fn name(&self) -> &str;

    /// The answer to `request`.
    #[allow(async_fn_in_trait)]
    async fn respond(
        &self,
        request: &HelpRequestRecord,
        ctx: &AgentContext,
    ) -> Result<Answer, ResponderError>;
}

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// [`Responder`] in a form that can live behind `dyn` (async trait methods cannot).
trait ErasedResponder: Send + Sync {
    fn name(&self) -> &str;
    fn respond<'a>(
        &'a self,
        request: &'a HelpRequestRecord,
        ctx: &'a AgentContext,
    ) -> LocalFuture<'a, Result<Answer, ResponderError>>;
}

impl<R: Responder> ErasedResponder for R {
    fn name(&self) -> &str {
        Responder::name(self)
    }
    fn respond<'a>(
        &'a self,
        request: &'a HelpRequestRecord,
        ctx: &'a AgentContext,
    ) -> LocalFuture<'a, Result<Answer, ResponderError>> {
        Box::pin(Responder::respond(self, request, ctx))
    }
}

/// Processes help requests; see the [module docs](self).
#[derive(vigil_runtime::Agent, Clone)]
// A cycle answers up to a batch of requests, each up to a few HTTP attempts: a long
// cycle is normal, so the hang watchdog is set well past it.
#[agent(name = "ai_help", cycle = "2s", heartbeat = "30s", cycle_timeout = "30m")]
pub struct AIHelpAgent {
    /// Thresholds.
    config: AiHelpConfig,
    /// Where answers come from; shared by the instances a factory clones.
    responder: Arc<dyn ErasedResponder>,
    /// Requests answered by this instance (heartbeat payload).
    answered: u64,
    /// Requests this instance stored as failed (heartbeat payload).
    failed: u64,
}

impl fmt::Debug for AIHelpAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AIHelpAgent")
            .field("config", &self.config)
            .field("responder", &self.responder.name())
            .field("answered", &self.answered)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for AIHelpAgent {
    /// Offline, with the default thresholds.
    fn default() -> Self {
        Self::with_responder(AiHelpConfig::default(), PlatformResponder::default())
    }
}

impl AIHelpAgent {
    /// The agent with the responder `config` asks for: [`OpenAiResponder`] when
    /// `config.openai` is set, else [`PlatformResponder`]. Fails if the HTTP client
    /// cannot be built or the endpoint is incomplete.
    pub fn new(config: AiHelpConfig) -> Result<Self, ResponderError> {
        match config.openai.clone() {
            Some(openai) => {
                let platform = PlatformResponder::from_config(&config);
                let responder = OpenAiResponder::new(openai)?.grounded_by(platform);
                Ok(Self::with_responder(config, responder))
            }
            None => {
                let platform = PlatformResponder::from_config(&config);
                Ok(Self::with_responder(config, platform))
            }
        }
    }

    /// The agent with your own responder.
    pub fn with_responder(config: AiHelpConfig, responder: impl Responder) -> Self {
        Self { config, responder: Arc::new(responder), answered: 0, failed: 0 }
    }

    /// The settings.
    pub fn config(&self) -> &AiHelpConfig {
        &self.config
    }

    /// Answers one claimed request and records the outcome.
    async fn answer(&mut self, request: HelpRequestRecord, ctx: &AgentContext) -> AgentResult {
        let shared = ctx.shared_state();
        let started = Instant::now();
        let outcome = self.responder.respond(&request, ctx).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (text, status, mut metadata) = match outcome {
            Ok(answer) => (answer.text, HelpStatus::Complete, answer.metadata),
            Err(error) => {
                tracing::warn!(agent.id = %ctx.agent_id(), request = %request.request_id, %error, "help request failed");
                (
                    format!("could not answer: {error}"),
                    HelpStatus::Failed,
                    json!({ "error": error.to_string() }),
                )
            }
        };
        match shared.respond_to_help_request(&request.request_id, &text, status).await {
            Ok(()) => {}
            // Reclaimed after a timeout and answered by another helper meanwhile:
            // the first answer stands (help_responses' primary key), ours is dropped.
            Err(_) if shared.get_help_response(&request.request_id).await?.is_some() => {
                tracing::info!(request = %request.request_id, "request was already answered; answer dropped");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        match status {
            HelpStatus::Complete => self.answered += 1,
            _ => self.failed += 1,
        }
        if let serde_json::Value::Object(map) = &mut metadata {
            map.insert("responder".into(), self.responder.name().into());
            map.insert("request_id".into(), request.request_id.clone().into());
            map.insert("status".into(), status.as_str().into());
            map.insert("latency_ms".into(), latency_ms.into());
        }
        shared
            .log_llm_conversation(
                Some(ctx.agent_id()),
                &request.request_id,
                &request.query,
                &text,
                Some(metadata),
            )
            .await?;
        Ok(())
    }
}

impl Agent for AIHelpAgent {
    #[tracing::instrument(name = "ai_help.cycle", skip_all, fields(agent.id = %ctx.agent_id()))]
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let shared = ctx.shared_state();
        let reclaimed = shared.reclaim_stuck_help_requests(self.config.claim_timeout).await?;
        if reclaimed > 0 {
            tracing::warn!(reclaimed, "help requests reclaimed after the claim timeout");
        }
        // Claim in small batches until the queue is empty or the cycle's budget is
        // spent: a small batch keeps few requests tied to this agent if it dies.
        let mut handled = 0;
        while handled < self.config.max_requests_per_cycle {
            let room = (self.config.max_requests_per_cycle - handled).min(self.config.batch_size);
            let claimed = shared.claim_help_requests(ctx.agent_id(), room).await?;
            if claimed.is_empty() {
                break;
            }
            handled += claimed.len() as i64;
            for request in claimed {
                self.answer(request, ctx).await?;
            }
        }
        Ok(())
    }

    fn heartbeat_payload(&self) -> Option<serde_json::Value> {
        Some(json!({
            "responder": self.responder.name(),
            "answered": self.answered,
            "failed": self.failed,
        }))
    }
}

// ------------------------------------------------------------------ platform

/// Answers from the platform's own state, offline.
///
/// | the question mentions                         | the answer gives                                   |
/// |-----------------------------------------------|----------------------------------------------------|
/// | a registered agent id (`heartbeat_health`, or in words: "heartbeat health") | its state, last heartbeat, last state change, recent errors and restarts |
/// | stale / unresponsive / silent / not responding | the stale agents and when each was last seen       |
/// | error / fail / crash / restart / problem      | recent failures and restarts across agents          |
/// | health / overview / summary / system          | agents by state, stale agents, recent failures, database |
/// | list / which agents / all agents              | every registered agent and its state                |
/// | anything else                                 | what it can answer, with examples                   |
///
/// Matching is case-insensitive on words, so punctuation and `_`/`-`/space in agent
/// ids do not matter; when one id contains another ("worker" and "worker_2"), the
/// longer match wins.
#[derive(Debug, Clone)]
pub struct PlatformResponder {
    /// Heartbeat age after which an agent is stale.
    stale_after: Duration,
    /// Recent `state_transition` events read for errors and restarts.
    event_scan_limit: i64,
}

impl Default for PlatformResponder {
    fn default() -> Self {
        Self::from_config(&AiHelpConfig::default())
    }
}

/// What a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Intent {
    AgentStatus,
    Stale,
    Errors,
    Health,
    ListAgents,
    Help,
}

const ERROR_WORDS: &[&str] = &[
    "error",
    "errors",
    "fail",
    "fails",
    "failed",
    "failing",
    "failure",
    "failures",
    "crash",
    "crashed",
    "crashes",
    "crashing",
    "panic",
    "panics",
    "panicked",
    "restart",
    "restarts",
    "restarted",
    "restarting",
    "wrong",
    "problem",
    "problems",
    "issue",
    "issues",
    "broken",
];
const STALE_WORDS: &[&str] =
    &["stale", "unresponsive", "silent", "dead", "stuck", "hung", "hanging", "missing", "late"];
const STALE_PHRASES: &[&str] = &["not responding", "no heartbeat", "stopped responding", "not beating"];
const HEALTH_WORDS: &[&str] =
    &["health", "healthy", "overview", "summary", "overall", "system", "everything"];
const LIST_PHRASES: &[&str] =
    &["which agents", "what agents", "all agents", "list agents", "list the agents"];

/// Lowercase words of `text`, joined by single spaces and padded with one on each side,
/// so `" word "` finds whole words and phrases.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

fn has_word(haystack: &str, list: &[&str]) -> bool {
    list.iter().any(|w| haystack.contains(&format!(" {w} ")))
}

impl Intent {
    fn classify(text: &str, mentions_agent: bool) -> Intent {
        let has_phrase = |list: &[&str]| list.iter().any(|p| text.contains(&format!(" {p} ")));
        if mentions_agent {
            Intent::AgentStatus
        } else if has_word(text, STALE_WORDS) || has_phrase(STALE_PHRASES) {
            Intent::Stale
        } else if has_word(text, ERROR_WORDS) {
            Intent::Errors
        } else if has_word(text, HEALTH_WORDS) {
            Intent::Health
        } else if has_phrase(LIST_PHRASES)
            || (has_word(text, &["list", "registered"]) && text.contains(" agent"))
        {
            Intent::ListAgents
        } else {
            Intent::Help
        }
    }
}

/// The registered agents named in `text` (already passed through [`words`]).
fn mentioned_agents<'a>(text: &str, agents: &'a [AgentRecord]) -> Vec<&'a AgentRecord> {
    let found: Vec<(&AgentRecord, String)> = agents
        .iter()
        .map(|a| (a, words(&a.agent_id)))
        .filter(|(_, id)| id.trim().len() > 1 && text.contains(id.as_str()))
        .collect();
    // Drop a match that is part of a longer one ("worker" inside "worker 2").
    found
        .iter()
        .filter(|(_, id)| {
            !found.iter().any(|(_, other)| other.len() > id.len() && other.contains(id.as_str()))
        })
        .map(|(agent, _)| *agent)
        .collect()
}

/// What a recorded transition means for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncidentKind {
    /// The agent failed ([`TransitionRecord::is_failure`]).
    Failed,
    /// Its supervisor restarted it after a failure.
    Restarted,
    /// It was restarted because somebody asked, or with a sibling: not a failure.
    RestartedOnRequest,
    /// It was parked for manual intervention.
    Parked,
}

/// One failure, restart or park, read from a `state_transition` event.
struct Incident {
    kind: IncidentKind,
    record: TransitionRecord,
}

impl Incident {
    fn of(record: TransitionRecord) -> Option<Self> {
        let kind = match (record.to, &record.cause) {
            _ if record.is_failure() => IncidentKind::Failed,
            (State::Recovery, _) if record.is_failure_restart() => IncidentKind::Restarted,
            (State::Recovery, Cause::RestartRequested { .. } | Cause::SiblingRestart { .. }) => {
                IncidentKind::RestartedOnRequest
            }
            (State::Manual, _) => IncidentKind::Parked,
            _ => return None,
        };
        Some(Self { kind, record })
    }

    fn is(&self, kind: IncidentKind) -> bool {
        self.kind == kind
    }

    /// A restart of any kind.
    fn is_restart(&self) -> bool {
        matches!(self.kind, IncidentKind::Restarted | IncidentKind::RestartedOnRequest)
    }
}

/// The stored state's name, or `unknown` for a row without one.
fn state_name(state: Option<State>) -> &'static str {
    state.map_or("unknown", State::as_str)
}

fn ago(ts: Option<vigil_persistence::types::Ts>) -> String {
    match ts {
        None => "never".into(),
        Some(ts) => {
            let secs = (chrono::Utc::now() - ts.get()).num_seconds().max(0);
            let human = match secs {
                0..=119 => format!("{secs}s"),
                120..=7199 => format!("{}m", secs / 60),
                _ => format!("{}h", secs / 3600),
            };
            format!("{ts} ({human} ago)")
        }
    }
}

impl PlatformResponder {
    /// A responder with `config`'s thresholds.
    pub fn from_config(config: &AiHelpConfig) -> Self {
        Self { stale_after: config.stale_after, event_scan_limit: config.event_scan_limit }
    }

    async fn incidents(&self, ctx: &AgentContext) -> Result<Vec<Incident>, StoreError> {
        let transitions = ctx
            .shared_state()
            .recent_transitions(EventFilter { limit: Some(self.event_scan_limit), ..Default::default() })
            .await?;
        Ok(transitions.into_iter().filter_map(Incident::of).collect())
    }

    fn incident_lines(incidents: &[&Incident], max: usize) -> String {
        incidents
            .iter()
            .take(max)
            .map(|i| {
                let what = match i.kind {
                    IncidentKind::Failed => "failed",
                    IncidentKind::Restarted => "restarted",
                    IncidentKind::RestartedOnRequest => "restarted on request",
                    IncidentKind::Parked => "parked for manual intervention",
                };
                let cause = match (&i.record.cause, i.record.cause.failure()) {
                    (_, Some(failure)) => failure.to_string(),
                    (cause, None) => cause.to_string(),
                };
                format!("\n  - {} {} {what}: {cause}", Ts::from(i.record.at), i.record.agent_id)
            })
            .collect()
    }

    async fn agent_report(&self, agent: &AgentRecord, seen: &LiveStates, incidents: &[Incident]) -> String {
        let mine: Vec<&Incident> = incidents.iter().filter(|i| i.record.agent_id == agent.agent_id).collect();
        let errors: Vec<&Incident> = mine.iter().copied().filter(|i| i.is(IncidentKind::Failed)).collect();
        let restarts = mine.iter().filter(|i| i.is_restart()).count();
        let stale = agent
            .last_heartbeat
            .or(agent.created_at)
            .is_some_and(|t| (chrono::Utc::now() - t.get()).to_std().unwrap_or_default() > self.stale_after);
        let mut text = format!(
            "Agent {} ({}) is {}.\n  last heartbeat: {}{}\n  last state change: {}\n  recent errors: {}, restarts: {}",
            agent.agent_id,
            agent.agent_name,
            seen.describe(agent),
            ago(agent.last_heartbeat),
            if stale { " — STALE" } else { "" },
            ago(agent.last_state_change),
            errors.len(),
            restarts,
        );
        if !errors.is_empty() {
            text.push_str("\n  latest errors:");
            text.push_str(&Self::incident_lines(&errors, 3));
        }
        text
    }

    async fn answer(
        &self,
        query: &str,
        ctx: &AgentContext,
    ) -> Result<(Intent, String, Vec<String>), StoreError> {
        let shared = ctx.shared_state();
        let agents = shared.get_registered_agents().await?;
        // Whether each agent runs, decided now: a row's state is only its last record.
        let seen = LiveStates::read(shared).await?;
        let text = words(query);
        let mentioned = mentioned_agents(&text, &agents);
        let intent = Intent::classify(&text, !mentioned.is_empty());
        let ids: Vec<String> = mentioned.iter().map(|a| a.agent_id.clone()).collect();
        let answer = match intent {
            Intent::AgentStatus => {
                let incidents = self.incidents(ctx).await?;
                let mut parts = Vec::new();
                for agent in &mentioned {
                    parts.push(self.agent_report(agent, &seen, &incidents).await);
                }
                parts.join("\n\n")
            }
            Intent::Stale => {
                let stale = shared.get_stale_agents(self.stale_after).await?;
                if stale.is_empty() {
                    format!(
                        "No stale agents: all {} registered agents sent a heartbeat within the last {}.",
                        agents.len(),
                        duration::format(self.stale_after)
                    )
                } else {
                    let lines: String = stale
                        .iter()
                        .map(|a| {
                            format!(
                                "\n  - {} (state {}), last heartbeat {}",
                                a.agent_id,
                                state_name(a.status),
                                ago(a.last_heartbeat)
                            )
                        })
                        .collect();
                    format!(
                        "{} stale agent(s) (no heartbeat within {}):{lines}",
                        stale.len(),
                        duration::format(self.stale_after)
                    )
                }
            }
            Intent::Errors => {
                let incidents = self.incidents(ctx).await?;
                let all: Vec<&Incident> = incidents.iter().collect();
                let errors = all.iter().filter(|i| i.is(IncidentKind::Failed)).count();
                let restarts = all.iter().filter(|i| i.is_restart()).count();
                if all.is_empty() {
                    "No agent failed or restarted recently.".into()
                } else {
                    format!(
                        "Recently: {errors} failure(s) and {restarts} restart(s). Latest:{}",
                        Self::incident_lines(&all, 10)
                    )
                }
            }
            Intent::Health => {
                let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
                for agent in &agents {
                    *by_state.entry(seen.label(agent)).or_default() += 1;
                }
                let states: Vec<String> = by_state.iter().map(|(s, n)| format!("{s}: {n}")).collect();
                let stale = shared.get_stale_agents(self.stale_after).await?;
                let stale_ids: Vec<&str> = stale.iter().map(|a| a.agent_id.as_str()).collect();
                let incidents = self.incidents(ctx).await?;
                // Restarts somebody asked for are not failures.
                let failures = incidents.iter().filter(|i| i.is(IncidentKind::Failed)).count();
                let db = shared.get_database_health().await?;
                let verdict = if stale.is_empty()
                    && failures == 0
                    && by_state.keys().all(|s| {
                        ![State::Error.as_str(), State::Manual.as_str(), SILENT, NOT_RUNNING].contains(s)
                    }) {
                    "healthy"
                } else {
                    "needs attention"
                };
                format!(
                    "System health: {verdict}.\n  agents: {} ({})\n  stale agents: {}\n  recent failures: {failures}\n  database: {:?}, {:.1} ms round trip",
                    agents.len(),
                    if states.is_empty() { "none".into() } else { states.join(", ") },
                    if stale_ids.is_empty() { "none".into() } else { stale_ids.join(", ") },
                    db.status,
                    db.response_time_ms,
                )
            }
            Intent::ListAgents => {
                let lines: String =
                    agents.iter().map(|a| format!("\n  - {}: {}", a.agent_id, seen.describe(a))).collect();
                format!("{} registered agent(s):{lines}", agents.len())
            }
            Intent::Help => {
                // Every built-in agent fits; a large platform is cut short, and says so.
                const SHOWN: usize = 20;
                let mut known: Vec<String> = agents.iter().take(SHOWN).map(|a| a.agent_id.clone()).collect();
                if agents.len() > SHOWN {
                    known.push(format!("and {} more (\"list all agents\")", agents.len() - SHOWN));
                }
                format!(
                    "I answer from the platform's own state. Ask, for example:\n  \
                     - \"what is the status of <agent>?\" (also its recent errors and restarts)\n  \
                     - \"which agents are stale?\"\n  \
                     - \"any errors or restarts lately?\"\n  \
                     - \"how is the system health?\"\n  \
                     - \"list all agents\"\n\
                     Registered agents: {}",
                    if known.is_empty() { "none yet".into() } else { known.join(", ") }
                )
            }
        };
        Ok((intent, answer, ids))
    }
}

const SILENT: &str = "silent";
const NOT_RUNNING: &str = "not running";

/// Each agent's liveness, read once per answer ([`vigil_persistence::presence`]).
struct LiveStates(std::collections::HashMap<String, Liveness>);

impl LiveStates {
    async fn read(shared: &vigil_persistence::SharedState) -> Result<Self, StoreError> {
        let report = shared.liveness().await?;
        Ok(Self(report.agents.into_iter().map(|a| (a.agent_id, a.liveness)).collect()))
    }

    fn liveness(&self, agent: &AgentRecord) -> Liveness {
        self.0.get(&agent.agent_id).copied().unwrap_or(Liveness::NotRunning)
    }

    /// The state to count it under: its recorded state while it runs.
    fn label(&self, agent: &AgentRecord) -> &'static str {
        match self.liveness(agent) {
            Liveness::Running => state_name(agent.status),
            Liveness::Silent => SILENT,
            Liveness::NotRunning => NOT_RUNNING,
        }
    }

    /// `active`, or `not running (last recorded active)`.
    fn describe(&self, agent: &AgentRecord) -> String {
        match self.liveness(agent) {
            Liveness::Running => state_name(agent.status).to_owned(),
            other => format!("{} (last recorded {})", other.as_str(), state_name(agent.status)),
        }
    }
}

impl Responder for PlatformResponder {
    fn name(&self) -> &str {
        "platform"
    }

    async fn respond(
        &self,
        request: &HelpRequestRecord,
        ctx: &AgentContext,
    ) -> Result<Answer, ResponderError> {
        let (intent, text, agents) = self.answer(&request.query, ctx).await?;
        Ok(Answer::new(text, json!({ "intent": intent, "agents": agents })))
    }
}

// -------------------------------------------------------------------- openai

/// Answers through an OpenAI-compatible chat-completions API:
/// `POST {base_url}/v1/chat/completions` with `Authorization: Bearer {api_key}` and
/// `{"model", "messages": [system, user]}`; the answer is `choices[0].message.content`.
/// Timeouts, connection errors, 408, 429 and 5xx are retried with backoff; when all
/// attempts fail the request is stored as `failed` with the error.
#[derive(Clone)]
pub struct OpenAiResponder {
    /// Endpoint, key, model, timeouts.
    config: OpenAiConfig,
    /// Reused across requests (connection pool).
    client: reqwest::Client,
    /// Facts sent along with the question, when grounding is on.
    platform: Option<PlatformResponder>,
}

impl fmt::Debug for OpenAiResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiResponder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OpenAiResponder {
    /// A client for `config`'s endpoint. Fails if the base URL or key is empty or the
    /// HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, ResponderError> {
        if config.base_url.trim().is_empty() || config.api_key.is_empty() {
            return Err(ResponderError::Other("openai: base_url and api_key are both required".into()));
        }
        let client = http::client(config.timeout).map_err(|e| ResponderError::Other(e.to_string()))?;
        Ok(Self { config, client, platform: None })
    }

    /// Sends `platform`'s answer to the same question along as context (when
    /// [`OpenAiConfig::ground_with_platform_facts`] is on).
    #[must_use]
    pub fn grounded_by(mut self, platform: PlatformResponder) -> Self {
        self.platform = self.config.ground_with_platform_facts.then_some(platform);
        self
    }

    /// The endpoint requests go to: `{base_url}/v1/chat/completions`. A `base_url` that
    /// already ends in `/v1` (the OpenAI SDKs' convention, `https://api.openai.com/v1`)
    /// is taken as meant, not doubled.
    pub fn url(&self) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/chat/completions")
    }
}

impl Responder for OpenAiResponder {
    fn name(&self) -> &str {
        "openai"
    }

    async fn respond(
        &self,
        request: &HelpRequestRecord,
        ctx: &AgentContext,
    ) -> Result<Answer, ResponderError> {
        let mut user = request.query.clone();
        if let Some(context) = &request.context {
            user.push_str(&format!("\n\nContext supplied with the question: {}", context.0));
        }
        let mut messages = vec![json!({ "role": "system", "content": self.config.system_prompt })];
        if let Some(platform) = &self.platform
            && let Ok((_, facts, _)) = platform.answer(&request.query, ctx).await
        {
            messages.push(json!({ "role": "system", "content": format!("Platform facts:\n{facts}") }));
        }
        messages.push(json!({ "role": "user", "content": user }));
        let body = json!({ "model": self.config.model, "messages": messages });
        let bearer = format!("Bearer {}", self.config.api_key);
        let answer = http::post_json(
            &self.client,
            &self.url(),
            &[("authorization", bearer.as_str())],
            &body,
            self.config.timeout,
            &self.config.retry,
        )
        .await?;
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                ResponderError::BadAnswer(format!(
                    "no choices[0].message.content in {}",
                    http::truncate(&answer.to_string(), 200)
                ))
            })?;
        Ok(Answer::new(
            text,
            json!({
                "model": answer["model"].as_str().unwrap_or(&self.config.model),
                "usage": answer["usage"],
                "endpoint": self.url(),
            }),
        ))
    }
}

#[cfg(test)]
mod url_tests {
    use super::{OpenAiConfig, OpenAiResponder};

    #[test]
    fn a_base_url_with_or_without_v1_reaches_the_same_endpoint() {
        for base in [
            "https://api.example.com",
            "https://api.example.com/",
            "https://api.example.com/v1",
            "https://api.example.com/v1/",
        ] {
            let responder = OpenAiResponder::new(OpenAiConfig::new(base, "sk-test")).unwrap();
            assert_eq!(responder.url(), "https://api.example.com/v1/chat/completions", "{base}");
        }
    }
}
