//! Writing an agent: the [`Agent`] trait and the settings `#[derive(Agent)]` generates.
//!
//! An agent is a plain struct. `#[derive(Agent)]` turns its `#[agent(...)]` attributes
//! into an [`AgentDescriptor`] (name, intervals, restart policy, mailbox size); the one
//! trait you write by hand is [`Agent`], whose only required hook is
//! [`cycle`](Agent::cycle):
//!
//! ```
//! use vigil_runtime::{Agent, AgentContext, AgentDescriptor, AgentError};
//!
//! #[derive(vigil_runtime::Agent, Default)]
//! #[agent(name = "counter", cycle = "5s", heartbeat = "30s", restart = "permanent")]
//! struct Counter { ticks: u64 }
//!
//! impl Agent for Counter {
//!     async fn cycle(&mut self, _ctx: &AgentContext) -> Result<(), AgentError> {
//!         self.ticks += 1;
//!         Ok(())
//!     }
//! }
//!
//! assert_eq!(Counter::settings().name, "counter");
//! assert_eq!(Counter::settings().cycle_interval, std::time::Duration::from_secs(5));
//! ```
//!
//! | attribute            | meaning                                   | default            |
//! |----------------------|-------------------------------------------|--------------------|
//! | `name = "..."`       | the agent's id in the `agents` table      | snake_case type name |
//! | `cycle = "5s"`       | time between the starts of two cycles     | `5s`               |
//! | `cycle_timeout = "5m"` | longest a cycle may run; past it the cycle is cancelled and the agent fails (and is restarted) | `5m` |
//! | `heartbeat = "30s"`  | time between heartbeats                   | `30s`              |
//! | `restart = "..."`    | `permanent`, `transient` or `temporary`   | `permanent`        |
//! | `mailbox = 64`       | bounded mailbox capacity                  | `64`               |
//! | `shutdown_timeout = "5s"` | time the shutdown hook may take      | `5s`               |
//!
//! Durations are written `"250ms"`, `"5s"`, `"2m"`, `"1h"` or `"1d"`, as everywhere in
//! Vigil ([`vigil_persistence::duration`]).

use std::time::Duration;

/// When a supervisor restarts a child that stopped (OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Always restarted, whether it failed or stopped normally.
    #[default]
    Permanent,
    /// Restarted only when it failed (panic or error), not when it stopped normally.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Static settings of an agent type, produced by `#[derive(Agent)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentSettings {
    /// The agent's id (`agents.agent_id`) unless overridden when it is spawned.
    pub name: &'static str,
    /// Time between the starts of two cycles.
    pub cycle_interval: Duration,
    /// Longest a cycle may run: past it, the cycle is dropped (cancelled at its
    /// current `.await`) and the agent fails, so its supervisor restarts it. Heartbeats
    /// have their own timer and go on during a hung cycle; this is what catches one.
    pub cycle_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Restart type under a supervisor.
    pub restart: Restart,
    /// Capacity of the agent's bounded mailbox.
    pub mailbox_capacity: usize,
    /// Longest the shutdown hook may run before the agent is stopped regardless.
    pub shutdown_timeout: Duration,
}

impl AgentSettings {
    /// Settings with the documented defaults and the given name.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            cycle_interval: Duration::from_secs(5),
            cycle_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(30),
            restart: Restart::Permanent,
            mailbox_capacity: 64,
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the cycle interval.
    #[must_use]
    pub const fn with_cycle_interval(mut self, interval: Duration) -> Self {
        self.cycle_interval = interval;
        self
    }

    /// Sets the cycle timeout.
    #[must_use]
    pub const fn with_cycle_timeout(mut self, timeout: Duration) -> Self {
        self.cycle_timeout = timeout;
        self
    }

    /// Sets the heartbeat interval.
    #[must_use]
    pub const fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the restart type.
    #[must_use]
    pub const fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the mailbox capacity.
    #[must_use]
    pub const fn with_mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Sets the shutdown timeout.
    #[must_use]
    pub const fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

/// Static description of an agent type. Implemented by `#[derive(Agent)]`; implement
/// it by hand only when settings must be computed.
pub trait AgentDescriptor {
    /// The agent type's settings.
    fn settings() -> AgentSettings;
}

/// What a hook may fail with. Returning an error from any hook is a *failure* of the
/// agent: the supervisor sees it exactly like a panic (ErrorOccurred, then recovery
/// and restart per the child's restart type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A failure described in words.
    #[error("{0}")]
    Failed(String),
    /// The shared state refused or failed a request.
    #[error(transparent)]
    Store(#[from] vigil_persistence::StoreError),
    /// Any other error, kept with its source chain.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl AgentError {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        AgentError::Failed(message.into())
    }

    /// Whether this error says the database is unavailable for now rather than that the
    /// agent is broken: a [`StoreError`](vigil_persistence::StoreError) that
    /// [`is_transient`](vigil_persistence::StoreError::is_transient) (connection lost,
    /// pool timeout, ...) or a full write queue (the writer is still retrying what it
    /// holds), directly or anywhere in an [`AgentError::Other`]'s source chain.
    ///
    /// A write refused by fencing ([`StoreError::Fenced`](vigil_persistence::StoreError::Fenced):
    /// in a cluster, another node took the agent over) counts here too.
    ///
    /// **For supervision:** a cycle that fails with such an error is *deferred*, not
    /// failed — the host publishes [`EventKind::CycleDeferred`](crate::EventKind::CycleDeferred)
    /// and tries again at the next tick, so a database outage does not restart agents
    /// until their supervisor's intensity parks them. Return `AgentError::Store(e)` (the
    /// `?` operator does it) to get this; wrapping the store error in a message loses it.
    pub fn is_transient(&self) -> bool {
        // A fenced write (cluster mode: another node owns the agent now) is not the
        // agent's failure either: its node stops it at its next renewal; restarting it
        // here would only fail again.
        fn unavailable(error: &vigil_persistence::StoreError) -> bool {
            use vigil_persistence::StoreError;
            error.is_transient() || matches!(error, StoreError::QueueFull { .. } | StoreError::Fenced { .. })
        }
        match self {
            AgentError::Failed(_) => false,
            AgentError::Store(error) => unavailable(error),
            AgentError::Other(error) => {
                let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
                while let Some(error) = next {
                    if let Some(store) = error.downcast_ref::<vigil_persistence::StoreError>() {
                        return unavailable(store);
                    }
                    next = error.source();
                }
                false
            }
        }
    }
}

/// The result of a hook.
pub type AgentResult<T = ()> = Result<T, AgentError>;

/// The hooks of an agent. Only [`cycle`](Agent::cycle) is required.
///
/// Hooks run one at a time on the agent's actor: while one runs, no other hook or
/// message handler of the same agent does. Heartbeats are sent by the runtime on their
/// own timer and keep going while a long cycle runs.
#[diagnostic::on_unimplemented(
    message = "`{Self}` derives `Agent` but does not implement the `Agent` trait",
    label = "the `Agent` trait is not implemented for `{Self}`",
    note = "add `impl vigil::Agent for {Self} {{ async fn cycle(&mut self, ctx: &vigil::AgentContext) -> vigil::AgentResult {{ Ok(()) }} }}`"
)]
pub trait Agent: AgentDescriptor + Sized + 'static {
    /// Runs once when the agent starts (and after every restart), before the first
    /// cycle. Override to open resources or validate configuration; an error here is
    /// a failure of the agent.
    #[allow(async_fn_in_trait)]
    async fn initialize(&mut self, ctx: &crate::AgentContext) -> AgentResult {
        let _ = ctx;
        Ok(())
    }

    /// One unit of the agent's work, run every `cycle` interval. A cycle that overruns
    /// its interval is not run twice: the next one starts at the next tick after it ends.
    #[allow(async_fn_in_trait)]
    async fn cycle(&mut self, ctx: &crate::AgentContext) -> AgentResult;

    /// Called after each lifecycle transition of this agent has been applied.
    /// Override to react to, e.g., entering `standby` or `maintenance`.
    #[allow(async_fn_in_trait)]
    async fn on_transition(&mut self, transition: &crate::lifecycle::Transition, ctx: &crate::AgentContext) {
        let _ = (transition, ctx);
    }

    /// Extra data sent with each heartbeat (stored in `agent_heartbeats.metadata`).
    fn heartbeat_payload(&self) -> Option<serde_json::Value> {
        None
    }

    /// Runs once when the agent is asked to shut down, within its shutdown timeout.
    /// Override to flush or release resources.
    #[allow(async_fn_in_trait)]
    async fn shutdown(&mut self, ctx: &crate::AgentContext) -> AgentResult {
        let _ = ctx;
        Ok(())
    }
}
