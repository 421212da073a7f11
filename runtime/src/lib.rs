//! Vigil's agent runtime.
pub mod agent;
pub mod context;
pub mod lifecycle;

pub use agent::{Agent, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart};
pub use context::AgentContext;
pub use lifecycle::{
    Cause, IllegalTransition, LifecycleError, LifecycleMessage, State, Transition, Trigger, next_state,
};
pub use vigil_macros::Agent;
