//! The agent lifecycle in the runtime: one actix message per [`Trigger`]
//! ([`Initialize`], [`Start`], [`ErrorOccurred`], ...) and what can go wrong applying
//! one ([`LifecycleError`]).
//!
//! The vocabulary itself — [`State`], [`Trigger`], the transition table
//! [`next_state`] with its diagram and the three documented extensions, [`Cause`],
//! the typed [`Failure`] and the [`Transition`] record — lives in
//! [`vigil_persistence::lifecycle`], so the database, the runtime and the monitors
//! share one type; it is re-exported here, and `vigil_runtime::State` and friends
//! keep working.
//!
//! An agent's host handles every lifecycle message the same way: it applies the
//! message's trigger with [`next_state`]; an illegal one changes nothing
//! ([`LifecycleError::Illegal`]), a legal one becomes a [`Transition`] that is
//! persisted (as the data of a `state_transition` event) and published.
//!
//! # Example
//!
//! ```
//! use vigil_runtime::lifecycle::{next_state, State, Trigger};
//!
//! assert_eq!(next_state(State::Active, Trigger::StandbyRequest), Ok(State::Standby));
//! // Extension 1: a failure while deploying.
//! assert_eq!(next_state(State::Deploying, Trigger::ErrorOccurred), Ok(State::Error));
//! // Extension 3: a requested restart goes straight to recovery.
//! assert_eq!(next_state(State::Active, Trigger::RecoveryStart), Ok(State::Recovery));
//!
//! let err = next_state(State::Standby, Trigger::OptimizationRequest).unwrap_err();
//! assert_eq!(err.from, State::Standby);
//! assert_eq!(
//!     err.to_string(),
//!     "illegal transition: OptimizationRequest is not allowed in state `standby`",
//! );
//! ```

pub use vigil_persistence::lifecycle::{
    Cause, Failure, FailureKind, IllegalTransition, ParseStateError, Stage, State, TransitionRecord,
    TransitionRecordError, Trigger, next_state,
};

/// A transition that has been applied to an agent: the [`TransitionRecord`] the
/// runtime persists and publishes.
pub type Transition = TransitionRecord;

/// Why a lifecycle message did not produce a [`Transition`].
///
/// For supervision, none of these is a failure of the agent: the sender gets the
/// error and the agent keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LifecycleError {
    /// The trigger is not legal in the agent's current state; nothing changed.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The transition could not be persisted, so it was not applied.
    #[error("the transition could not be persisted: {0}")]
    Persistence(String),
    /// The fresh instance's `initialize` failed on `ManualFixed` (a fix): the agent did
    /// not come back and stays in `manual`.
    #[error("the agent did not come back: {0}")]
    InitializeFailed(Failure),
    /// The agent has stopped and no longer takes lifecycle messages.
    #[error("the agent has stopped")]
    AgentStopped,
}

/// Why an agent, or a nested supervisor's subtree, did not stop cleanly: the reason of
/// a [`ShutdownReport::failed`](crate::ShutdownReport::failed) entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopFailure {
    /// `ShutdownRequest` was refused or could not be persisted; the actor was stopped
    /// all the same.
    #[error("ShutdownRequest failed: {0}")]
    Refused(LifecycleError),
    /// The shutdown hook failed, panicked or ran past the child's shutdown timeout;
    /// the actor was stopped all the same.
    #[error("{0}; stopped anyway")]
    Hook(Failure),
    /// The shutdown hook did not finish within the child's shutdown timeout; the actor
    /// was killed.
    #[error("did not stop within {timeout:?}; killed")]
    Killed {
        /// The shutdown timeout it exceeded.
        timeout: std::time::Duration,
    },
    /// Children of a nested supervisor did not stop cleanly.
    #[error("{} child(ren) of the subtree did not stop cleanly: {}", .0.len(), list(.0))]
    Subtree(Vec<(String, StopFailure)>),
    /// The child could not be asked (its mailbox is closed).
    #[error("could not be asked to stop: {0}")]
    Unreachable(String),
    /// The persistence writer's final flush failed: writes may be lost.
    #[error("the final flush of the persistence writer failed: {0}")]
    Persistence(String),
}

/// `id: reason; id: reason`, for [`StopFailure::Subtree`].
fn list(failed: &[(String, StopFailure)]) -> String {
    failed.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("; ")
}

/// A lifecycle message: one actix message type per [`Trigger`].
///
/// An agent's host handles every lifecycle message the same way, generically:
/// `impl<M: LifecycleMessage> Handler<M> for AgentHost<A>` applies [`Self::TRIGGER`]
/// with [`next_state`] and records [`cause`](Self::cause) in the [`Transition`].
pub trait LifecycleMessage:
    actix::Message<Result = Result<Transition, LifecycleError>> + Send + 'static
{
    /// The trigger this message stands for.
    const TRIGGER: Trigger;

    /// Why the transition happens, recorded in the [`Transition`].
    fn cause(&self) -> Cause;
}

/// Asks an agent to start initializing (`initializing` -> `deploying`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct Initialize;

/// Reports that deployment finished (`deploying` -> `monitoring`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct DeployComplete;

/// Starts the agent's work (`monitoring` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct Start;

/// Asks the agent to optimize itself (`active` -> `optimizing`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct OptimizationRequest;

/// Reports that optimization finished (`optimizing` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct OptimizationComplete;

/// Puts the agent on standby (`active` -> `standby`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct StandbyRequest;

/// Wakes the agent from standby (`standby` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct Activate;

/// Takes the agent into maintenance (`active` -> `maintenance`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct MaintenanceRequest;

/// Reports that maintenance finished (`maintenance` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct MaintenanceComplete;

/// Reports a failure of the agent (any running state -> `error`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct ErrorOccurred {
    /// What failed.
    pub failure: Failure,
}

/// The supervisor begins restarting the agent after its failure (`error` ->
/// `recovery`). A restart that was asked for starts from a running state instead
/// (extension 3), with [`Cause::RestartRequested`] or [`Cause::SiblingRestart`].
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct RecoveryStart {
    /// Which restart within the current intensity period this is, from 1.
    pub attempt: u32,
}

/// The restarted agent is running again (`recovery` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct RecoveryComplete;

/// The restart failed (`recovery` -> `error`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct RecoveryFailed {
    /// Why the restart failed.
    pub failure: Failure,
}

/// Parks the failed agent for a human (`error` -> `manual`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct ManualIntervention {
    /// Why automatic recovery gave up.
    pub reason: String,
}

/// An operator fixed the parked agent (`manual` -> `active`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct ManualFixed;

/// Stops the agent for good (any state but `shutdown` -> `shutdown`).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub struct ShutdownRequest;

/// Implements [`LifecycleMessage`] for message types: `Type => Trigger, |msg| cause`.
macro_rules! lifecycle_messages {
    ($($message:ident => $trigger:ident, |$this:pat_param| $cause:expr;)*) => {
        $(
            impl LifecycleMessage for $message {
                const TRIGGER: Trigger = Trigger::$trigger;

                fn cause(&self) -> Cause {
                    let $this = self;
                    $cause
                }
            }
        )*
    };
}

lifecycle_messages! {
    Initialize => Initialize, |_| Cause::Startup;
    DeployComplete => DeployComplete, |_| Cause::Startup;
    Start => Start, |_| Cause::Startup;
    OptimizationRequest => OptimizationRequest, |_| Cause::Requested;
    OptimizationComplete => OptimizationComplete, |_| Cause::Requested;
    StandbyRequest => StandbyRequest, |_| Cause::Requested;
    Activate => Activate, |_| Cause::Requested;
    MaintenanceRequest => MaintenanceRequest, |_| Cause::Requested;
    MaintenanceComplete => MaintenanceComplete, |_| Cause::Requested;
    ErrorOccurred => ErrorOccurred, |m| Cause::Failure { failure: m.failure.clone() };
    RecoveryStart => RecoveryStart, |m| Cause::Restart { attempt: m.attempt };
    RecoveryComplete => RecoveryComplete, |_| Cause::Startup;
    RecoveryFailed => RecoveryFailed, |m| Cause::Failure { failure: m.failure.clone() };
    ManualIntervention => ManualIntervention, |m| Cause::Escalation { reason: m.reason.clone() };
    ManualFixed => ManualFixed, |_| Cause::Requested;
    ShutdownRequest => ShutdownRequest, |_| Cause::Shutdown;
}
