//! [`OpenAiResponder`]: answers through an OpenAI-compatible chat-completions API,
//! configured by [`OpenAiConfig`].
//!
//! One request is one `POST {base_url}/v1/chat/completions`: a system message (the
//! configured prompt), optionally a second one with the platform's facts about the
//! question (from [`PlatformResponder`], so the model answers about *this* platform),
//! and the question as the user message. The HTTP work — timeouts, retries with
//! backoff on 408, 429, 5xx and connection errors — is [`crate::http`]'s; this file
//! only builds the body and reads `choices[0].message.content` back. The API key
//! never appears in `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_persistence::models::HelpRequestRecord;
use vigil_runtime::AgentContext;

use super::{Answer, PlatformResponder, Responder, ResponderError};
use crate::config::{HttpRetryPolicy, duration, setters};
use crate::http;

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
    pub retry: HttpRetryPolicy,
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
            retry: HttpRetryPolicy::default(),
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
        retry => retry: HttpRetryPolicy;
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

impl OpenAiResponder {
    /// One chat completion: `messages` (`{"role", "content"}` objects) to the endpoint,
    /// retried per the configured policy; the answer's text and the whole answer
    /// (model, usage). Workflow `llm` nodes call it directly.
    pub async fn chat(
        &self,
        messages: Vec<serde_json::Value>,
    ) -> Result<(String, serde_json::Value), ResponderError> {
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
            })?
            .to_owned();
        Ok((text, answer))
    }

    /// The model every request asks for.
    pub fn model(&self) -> &str {
        &self.config.model
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
        let (text, answer) = self.chat(messages).await?;
        Ok(Answer::new(
            &text,
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
