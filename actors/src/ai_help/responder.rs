//! The seam between the help desk and its sources of answers: the [`Responder`]
//! trait, the [`Answer`] it gives and the [`ResponderError`] it may fail with.
//!
//! A responder turns one [`HelpRequestRecord`] into an [`Answer`]; the agent does the
//! rest (claiming, storing, logging). Its error fails the *request*, which is stored
//! as `failed` with the error as its answer, never the agent. Two responders ship
//! with Vigil ([`super::PlatformResponder`], [`super::OpenAiResponder`]); implement
//! the trait to plug in your own:
//!
//! ```
//! use vigil_actors::ai_help::{AIHelpAgent, AiHelpConfig, Answer, Responder, ResponderError};
//! use vigil_persistence::models::HelpRequestRecord;
//! use vigil_runtime::AgentContext;
//!
//! struct Echo;
//!
//! impl Responder for Echo {
//!     fn name(&self) -> &str {
//!         "echo"
//!     }
//!     async fn respond(&self, request: &HelpRequestRecord, _ctx: &AgentContext) -> Result<Answer, ResponderError> {
//!         Ok(Answer::new(request.query.clone(), serde_json::json!({})))
//!     }
//! }
//!
//! let agent = AIHelpAgent::with_responder(AiHelpConfig::default(), Echo);
//! ```
//!
//! `Responder` uses `async fn` in a trait, which cannot be called through `dyn`; the
//! agent stores its responder as the private `ErasedResponder`, which every
//! `Responder` implements by boxing the future.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use vigil_persistence::StoreError;
use vigil_persistence::models::HelpRequestRecord;
use vigil_runtime::AgentContext;

use crate::http::HttpFailure;

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
/// [`AIHelpAgent::with_responder`](super::AIHelpAgent::with_responder).
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
pub(super) trait ErasedResponder: Send + Sync {
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
