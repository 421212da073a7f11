//! Writing an agent: the [`Agent`] trait and the settings `#[derive(Agent)]` generates.
//!
//! An agent is a plain struct. `#[derive(Agent)]` turns its `#[agent(...)]` attributes
//! into an [`AgentDescriptor`] (name, intervals, restart policy, mailbox size); the one
//! trait you write by hand is [`Agent`], whose only required hook is
//! [`cycle`](Agent::cycle):
//!
//! ```ignore
//! use vigil::prelude::*;
//!
//! #[derive(Agent, Default)]
//! #[agent(name = "counter", cycle = "5s", heartbeat = "30s", restart = "permanent")]
//! struct Counter { ticks: u64 }
//!
//! impl Agent for Counter {
//!     async fn cycle(&mut self, _ctx: &AgentContext) -> Result<(), AgentError> {
//!         self.ticks += 1;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! | attribute            | meaning                                   | default            |
//! |----------------------|-------------------------------------------|--------------------|
//! | `name = "..."`       | the agent's id in the `agents` table      | snake_case type name |
//! | `cycle = "5s"`       | time between the starts of two cycles     | `5s`               |
//! | `heartbeat = "30s"`  | time between heartbeats                   | `30s`              |
//! | `restart = "..."`    | `permanent`, `transient` or `temporary`   | `permanent`        |
//! | `mailbox = 64`       | bounded mailbox capacity                  | `64`               |
//! | `shutdown_timeout = "5s"` | time the shutdown hook may take      | `5s`               |
//!
//! Durations are written `"250ms"`, `"5s"`, `"2m"` or `"1h"`.

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
