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
//! and hosts the `vigil` command (the `cli` feature, on by default; an embedding
//! application turns it off with `default-features = false` and does not build clap or
//! install a global tracing subscriber).

pub use vigil_actors as actors;
pub use vigil_persistence as persistence;
pub use vigil_runtime as runtime;

pub use vigil_persistence::{DatabaseConfig, SharedState, Store, StoreError};
pub use vigil_runtime::{
    Agent, AgentContext, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart,
};

pub mod alerts;
#[cfg(feature = "cli")]
pub mod cli;
pub mod command;
#[cfg(feature = "http")]
pub mod http;
pub mod report;
pub mod values;

/// The names most programs need: `use vigil::prelude::*;` is the one import an
/// embedding application or an agent author writes.
pub mod prelude {
    pub use vigil_persistence::shared_state::{Heartbeat, Metric};
    pub use vigil_persistence::{
        DatabaseConfig, PersistenceConfig, Severity, SharedState, State, Store, StoreError,
    };
    pub use vigil_runtime::AgentDescriptor;
    pub use vigil_runtime::prelude::*;
}

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
