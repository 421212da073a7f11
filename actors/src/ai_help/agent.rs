//! The help desk's loop: [`AIHelpAgent`] claims pending help requests, asks its
//! [`Responder`] for each answer and records the outcome; [`AiHelpConfig`] holds its
//! settings.
//!
//! The agent knows nothing of where answers come from: it holds one responder behind
//! `dyn` (the `ErasedResponder` of `responder.rs`) and only decides *which* one when it is built
//! ([`AIHelpAgent::new`] picks the OpenAI client when an endpoint is configured, the
//! platform responder otherwise). Everything else here is bookkeeping that keeps a
//! request answered exactly once: the claim, the reclaim after a timeout, and the one
//! transaction that stores the answer with the request's final status.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_persistence::HelpStatus;
use vigil_persistence::models::HelpRequestRecord;
use vigil_persistence::shared_state::DEFAULT_STALE_AFTER;
use vigil_runtime::{Agent, AgentContext, AgentResult};

use super::responder::ErasedResponder;
use super::{OpenAiConfig, OpenAiResponder, PlatformResponder, Responder, ResponderError};
use crate::config::{duration, setters};

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

/// Processes help requests; see the [module docs](super).
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
