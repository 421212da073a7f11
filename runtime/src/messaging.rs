//! Messaging an agent: the user's API for typed request and reply.
//!
//! Declare a message with [`AgentMessage`] (its reply type), answer it with
//! [`Handles`] on the agent, and send it with
//! [`Runtime::ask`](crate::Runtime::ask) (by id) or wrapped in [`Ask`] to the agent's
//! address ([`Runtime::addr`](crate::Runtime::addr)). A message that cannot be
//! answered gets a typed [`AskError`], never silence.
//!
//! ```no_run
//! use vigil_runtime::{Agent, AgentContext, AgentError, AgentMessage, AgentResult, Handles};
//!
//! #[derive(vigil_runtime::Agent, Default)]
//! struct Counter { ticks: u64 }
//!
//! impl Agent for Counter {
//!     async fn cycle(&mut self, _: &AgentContext) -> AgentResult { self.ticks += 1; Ok(()) }
//! }
//!
//! /// How many ticks so far?
//! struct Ticks;
//! impl AgentMessage for Ticks { type Reply = u64; }
//!
//! impl Handles<Ticks> for Counter {
//!     async fn handle(&mut self, _: Ticks, _: &AgentContext) -> Result<u64, AgentError> {
//!         Ok(self.ticks)
//!     }
//! }
//! # async fn demo(runtime: vigil_runtime::Runtime) {
//! let ticks = runtime.ask::<Counter, _>("counter", Ticks).await.unwrap();
//! # }
//! ```
//!
//! How a message fares when the agent fails, restarts or stops is described with the
//! agent host (module `host`).

use actix::prelude::*;

use crate::agent::{Agent, AgentError};
use crate::context::AgentContext;
use crate::lifecycle::{Failure, State};

/// A message an agent answers with a typed reply: implement [`Handles`] for it.
pub trait AgentMessage: Send + 'static {
    /// The reply.
    type Reply: Send + 'static;
}

/// An agent that answers messages of type `M`.
pub trait Handles<M: AgentMessage>: Agent {
    /// Answers one message. An error is a failure of the agent, like a panic.
    #[allow(async_fn_in_trait)]
    async fn handle(&mut self, message: M, ctx: &AgentContext) -> Result<M::Reply, AgentError>;
}

/// Why a typed message got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The agent is not in a state that serves messages.
    #[error("agent is {0}, not serving messages")]
    Unavailable(State),
    /// The agent failed while the message waited; it was not delivered.
    #[error("agent failed and restarted before the message was handled")]
    Restarted,
    /// The handler failed (the agent is being recovered).
    #[error("handler failed: {0}")]
    Failed(Failure),
    /// The agent has shut down (or is shutting down): it will not answer again.
    #[error("agent has stopped")]
    Stopped,
    /// The message could not be delivered (a mailbox timeout; a closed mailbox is
    /// [`AskError::Stopped`]).
    #[error("agent mailbox: {0}")]
    Mailbox(MailboxError),
    /// No agent with that id and type.
    #[error("no agent `{0}` of that type")]
    NotFound(String),
}

impl From<MailboxError> for AskError {
    /// A closed mailbox means the agent's actor has stopped: [`AskError::Stopped`].
    fn from(error: MailboxError) -> Self {
        match error {
            MailboxError::Closed => AskError::Stopped,
            other => AskError::Mailbox(other),
        }
    }
}

/// Envelope of a typed message to an agent.
#[derive(Debug)]
pub struct Ask<M: AgentMessage>(pub M);

impl<M: AgentMessage> Message for Ask<M> {
    type Result = Result<M::Reply, AskError>;
}
