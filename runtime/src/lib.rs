//! Vigil's agent runtime.
pub mod agent;
pub mod lifecycle;

pub use agent::{AgentDescriptor, AgentSettings, Restart};
