//! # Vigil
//!
//! An actor runtime for long-running background agents, on actix.
//!
//! Each agent is an actix actor under a supervisor; one persistence actor serializes
//! every write to the shared-state database (PostgreSQL in production, an embedded
//! SQLite file by default). This crate is the facade: it re-exports the layers
//!
//! | crate                | what it holds                                              |
//! |----------------------|------------------------------------------------------------|
//! | [`persistence`]      | configuration, schema, [`Store`], [`SharedState`]           |
//! | [`runtime`]          | the [`Agent`] trait and derive, lifecycle, supervision      |
//! | [`actors`]           | the built-in agents                                        |
//!
//! and hosts the `vigil` command (see [`cli`]).

pub use vigil_actors as actors;
pub use vigil_persistence as persistence;
pub use vigil_runtime as runtime;

pub use vigil_persistence::{DatabaseConfig, SharedState, Store, StoreError};
pub use vigil_runtime::{
    Agent, AgentContext, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart,
};

pub mod cli;

/// The names most programs need: `use vigil::prelude::*;`.
pub mod prelude {
    pub use vigil_persistence::shared_state::{Heartbeat, Metric};
    pub use vigil_persistence::{DatabaseConfig, Severity, SharedState, State, Store, StoreError};
    pub use vigil_runtime::{
        Agent, AgentContext, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart,
    };
}

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
