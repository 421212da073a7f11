//! # vigil-runtime
//!
//! Vigil's agent runtime: long-running background agents as actix actors, with a
//! persisted lifecycle, OTP-style supervision, a lifecycle event stream and a control
//! plane. Most programs need only [`prelude`]: `use vigil_runtime::prelude::*;`.
//!
//! | concept                                  | where                        |
//! |------------------------------------------|------------------------------|
//! | an agent: [`Agent`] and `#[derive(Agent)]`, [`AgentSettings`], [`AgentError`] | [`agent`] |
//! | what a hook can reach: [`AgentContext`]  | [`context`]                  |
//! | typed messages: [`AgentMessage`], [`Handles`], [`AskError`] | [`messaging`] |
//! | the actor that runs one agent: [`AgentHost`] (timers, failures, shutdown) | [`host`] |
//! | the lifecycle: [`State`], [`Trigger`], [`Transition`], [`Cause`], [`Failure`] | [`lifecycle`] |
//! | the supervision tree: [`SupervisorSpec`], [`ChildSpec`], [`Strategy`], [`RestartIntensity`] | [`supervisor`] |
//! | embedding: [`Runtime`], [`RuntimeBuilder`], [`ShutdownReport`] | [`runtime`] |
//! | watching: [`EventBus`], [`EventStream`], [`LifecycleEvent`], [`EventKind`] | [`events`] |
//! | control by agent id: [`RuntimeControl`] (status, restart, stop, fix, transitions) | [`control`] |
//! | several nodes on one PostgreSQL: [`ClusterConfig`], placement, leases, fencing | [`cluster`] |
//! | testing (feature `testkit`): fault plans, faulty agents, waiting helpers | `testkit` |
//!
//! **An agent** is a plain struct with `#[derive(Agent)]` (its name, cycle and
//! heartbeat intervals, restart type, mailbox and timeouts) and an `impl Agent` whose
//! one required hook is `cycle`. **A host** ([`AgentHost`]) runs it: it walks the
//! lifecycle to `active`, runs cycles and heartbeats on their own timers, persists and
//! publishes every transition, and turns any error, panic or timeout into a typed
//! [`Failure`] reported to its supervisor. **Supervisors** restart per their strategy
//! within their restart intensity, escalate past it, and park agents in `manual` at the
//! top. **The runtime** starts the tree in order, stops it in reverse order, and owns
//! the one persistence writer, which it flushes at shutdown.
//!
//! ```no_run
//! use std::time::Duration;
//! use vigil_runtime::prelude::*;
//! use vigil_persistence::{DatabaseConfig, SharedState, Store};
//!
//! #[derive(Agent, Default)]
//! #[agent(name = "ticker", cycle = "1s")]
//! struct Ticker { ticks: u64 }
//!
//! impl Agent for Ticker {
//!     async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
//!         self.ticks += 1;
//!         tracing::info!(agent = ctx.agent_id(), ticks = self.ticks, "tick");
//!         Ok(())
//!     }
//! }
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite("vigil.db")).await?);
//!     let runtime = Runtime::builder(state)
//!         .supervisor(
//!             SupervisorSpec::new("pipeline", Strategy::RestForOne)
//!                 .intensity(RestartIntensity::new(3, Duration::from_secs(10)))
//!                 .child(ChildSpec::agent("ticker", Ticker::default)),
//!         )
//!         .start()
//!         .await?;
//!     let mut events = runtime.subscribe();
//!     let _ = events.wait_for_state("ticker", State::Active, Duration::from_secs(5)).await;
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! **Events.** Every transition, failure, restart, missed heartbeat, overrun and
//! deferred cycle is published as a [`LifecycleEvent`] on a bounded broadcast
//! ([`Runtime::subscribe`], [`AgentContext::events`]); publishing never waits. Tests
//! await events instead of sleeping.
//!
//! **Control.** [`RuntimeControl`] ([`Runtime::control`], [`AgentContext::control`])
//! reaches any agent by id without its type: statuses, a requested restart (not a
//! failure), stop, fix of a parked agent, operational transitions. The same operations
//! are filed by operators from a shell (`vigil agent restart ID`) and carried out when
//! [`RuntimeBuilder::operator_commands`] is on.
//!
//! **Testing.** With the `testkit` feature (in `[dev-dependencies]`), `testkit` offers
//! scripted and seeded fault plans, a ready-made faulty agent, an in-memory shared
//! state, and helpers that wait for events rather than sleep.

// The derive emits `::vigil_runtime::...` paths; this makes them resolve in here too
// (only the testkit derives an agent inside this crate).
#[cfg(feature = "testkit")]
extern crate self as vigil_runtime;

pub mod agent;
pub mod cluster;
pub mod context;
pub mod control;
pub mod events;
pub mod host;
pub mod lifecycle;
pub mod messaging;
mod operator_commands;
mod protocol;
pub mod runtime;
pub mod supervisor;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use agent::{Agent, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart};
pub use cluster::ClusterConfig;
pub use context::AgentContext;
pub use control::{ControlError, RuntimeControl};
pub use events::{EventBus, EventKind, EventStream, LifecycleEvent};
pub use host::AgentHost;
pub use lifecycle::{
    Cause, Failure, FailureKind, LifecycleError, Stage, State, StopFailure, Transition, Trigger, next_state,
};
pub use messaging::{AgentMessage, Ask, AskError, Handles};
pub use protocol::AgentStatus;
pub use runtime::{Runtime, RuntimeBuilder, RuntimeError, ShutdownReport};
pub use supervisor::{ChildSpec, RestartIntensity, Strategy, SupervisorSpec};
pub use vigil_macros::Agent;

/// What every embedding program and agent author imports: `use vigil_runtime::prelude::*;`.
///
/// The runtime and its tree ([`Runtime`], [`RuntimeBuilder`], [`SupervisorSpec`],
/// [`ChildSpec`], [`Strategy`], [`RestartIntensity`]), writing an agent ([`Agent`],
/// trait and derive, [`AgentContext`], [`AgentError`], [`AgentResult`],
/// [`AgentSettings`], [`Restart`]), messaging it ([`AgentMessage`], [`Handles`],
/// [`AskError`]) and watching it ([`State`], [`EventKind`], [`LifecycleEvent`],
/// [`AgentStatus`]).
pub mod prelude {
    pub use crate::agent::{Agent, AgentError, AgentResult, AgentSettings, Restart};
    pub use crate::context::AgentContext;
    pub use crate::events::{EventKind, LifecycleEvent};
    pub use crate::lifecycle::State;
    pub use crate::messaging::{AgentMessage, AskError, Handles};
    pub use crate::protocol::AgentStatus;
    pub use crate::runtime::{Runtime, RuntimeBuilder};
    pub use crate::supervisor::{ChildSpec, RestartIntensity, Strategy, SupervisorSpec};
    pub use vigil_macros::Agent;
}
