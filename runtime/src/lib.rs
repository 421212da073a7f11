//! Vigil's agent runtime.

// The derive emits `::vigil_runtime::...` paths; this makes them resolve in here too.
extern crate self as vigil_runtime;

pub mod agent;
pub mod commands;
pub mod context;
pub mod control;
pub mod events;
pub mod host;
pub mod lifecycle;
pub mod runtime;
pub mod supervisor;
pub mod testkit;

pub use agent::{Agent, AgentDescriptor, AgentError, AgentResult, AgentSettings, Restart};
pub use context::AgentContext;
pub use control::{ControlError, RuntimeControl};
pub use events::{EventBus, EventKind, EventStream, LifecycleEvent};
pub use host::{AgentHost, AgentMessage, AgentStatus, Ask, AskError, Handles};
pub use lifecycle::{
    Cause, Failure, FailureKind, LifecycleError, Stage, State, StopFailure, Transition, Trigger, next_state,
};
pub use runtime::{Runtime, RuntimeBuilder, RuntimeError, ShutdownReport};
pub use supervisor::{ChildSpec, RestartIntensity, Strategy, SupervisorSpec};
pub use vigil_macros::Agent;
