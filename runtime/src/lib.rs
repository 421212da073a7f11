//! Vigil's agent runtime.
pub mod agent;
pub mod context;
pub mod lifecycle;

pub use agent::{Agent, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart};
pub use context::AgentContext;
pub use vigil_macros::Agent;
