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
//! | file                  | holds                                                          |
//! |-----------------------|----------------------------------------------------------------|
//! | `ai_help/agent.rs`    | [`AIHelpAgent`] and its settings, [`AiHelpConfig`]: the claim-answer-record loop |
//! | `ai_help/responder.rs`| the [`Responder`] trait, [`Answer`] and [`ResponderError`]: what any source of answers implements |
//! | `ai_help/platform.rs` | [`PlatformResponder`]: answers from the platform's own state, offline |
//! | `ai_help/openai.rs`   | [`OpenAiResponder`] and [`OpenAiConfig`]: an OpenAI-compatible chat-completions client |
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

mod agent;
mod openai;
mod platform;
mod responder;

pub use agent::{AIHelpAgent, AiHelpConfig};
pub use openai::{OpenAiConfig, OpenAiResponder};
pub use platform::PlatformResponder;
pub use responder::{Answer, Responder, ResponderError};
