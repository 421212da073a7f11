//! The agent lifecycle: eleven [`State`]s, sixteen [`Trigger`]s and the one transition
//! table, [`next_state`], that decides which trigger is legal in which state.
//!
//! Every agent is in exactly one state, stored lowercase (`agents.status`). It moves
//! only when a trigger arrives, one actix message type per trigger ([`Initialize`],
//! [`Start`], [`ErrorOccurred`], ...). The agent's host applies the trigger with
//! [`next_state`]; a trigger that is not legal in the current state is an
//! [`IllegalTransition`] and changes nothing. A legal one becomes a [`Transition`]
//! (who, from, to, trigger, typed [`Cause`], when) that is persisted and published.
//!
//! # The state diagram
//!
//! ```text
//!  initializing --Initialize--> deploying --DeployComplete--> monitoring --Start--> active
//!
//!  active --OptimizationRequest--> optimizing --OptimizationComplete--> active
//!  active --StandbyRequest-------> standby    --Activate-------------> active
//!  active --MaintenanceRequest---> maintenance --MaintenanceComplete--> active
//!  active --ErrorOccurred--------> error
//!  active --ShutdownRequest------> shutdown
//!
//!  error    --RecoveryStart------> recovery --RecoveryComplete--> active
//!                                  recovery --RecoveryFailed----> error
//!  error    --ManualIntervention-> manual   --ManualFixed-------> active
//! ```
//!
//! The same arrows as a table (rows: state; cells: the state a trigger leads to):
//!
//! | from           | trigger                | to            |
//! |----------------|------------------------|---------------|
//! | `initializing` | `Initialize`           | `deploying`   |
//! | `deploying`    | `DeployComplete`       | `monitoring`  |
//! | `monitoring`   | `Start`                | `active`      |
//! | `active`       | `OptimizationRequest`  | `optimizing`  |
//! | `optimizing`   | `OptimizationComplete` | `active`      |
//! | `active`       | `StandbyRequest`       | `standby`     |
//! | `standby`      | `Activate`             | `active`      |
//! | `active`       | `MaintenanceRequest`   | `maintenance` |
//! | `maintenance`  | `MaintenanceComplete`  | `active`      |
//! | `active`       | `ErrorOccurred`        | `error`       |
//! | `error`        | `RecoveryStart`        | `recovery`    |
//! | `recovery`     | `RecoveryComplete`     | `active`      |
//! | `recovery`     | `RecoveryFailed`       | `error`       |
//! | `error`        | `ManualIntervention`   | `manual`      |
//! | `manual`       | `ManualFixed`          | `active`      |
//! | `active`       | `ShutdownRequest`      | `shutdown`    |
//!
//! # Extensions to the diagram
//!
//! The specification draws the failure and shutdown arrows from `active` only. An
//! agent can fail or be stopped in any phase, so Vigil widens two of them:
//!
//! 1. **`ErrorOccurred` is legal from every running state** ([`State::is_running`]):
//!    `initializing`, `deploying`, `monitoring`, `active`, `optimizing`, `standby`,
//!    `maintenance` and `recovery`. It always leads to `error`. It is *not* legal in
//!    `error` (already failed), `manual` (parked, nothing runs) or `shutdown`.
//!    From `recovery` it means the same as `RecoveryFailed`.
//! 2. **`ShutdownRequest` is legal from every state but `shutdown`**, so an agent
//!    that is failing, recovering or parked in `manual` can still be stopped.
//!
//! Everything else is exactly as drawn; in particular `ManualIntervention` is legal
//! from `error` only, and `shutdown` is final: no trigger leaves it.
//!
//! # Example
//!
//! ```
//! use vigil_runtime::lifecycle::{next_state, State, Trigger};
//!
//! assert_eq!(next_state(State::Active, Trigger::StandbyRequest), Ok(State::Standby));
//! // Extension: a failure while deploying.
//! assert_eq!(next_state(State::Deploying, Trigger::ErrorOccurred), Ok(State::Error));
//!
//! let err = next_state(State::Standby, Trigger::OptimizationRequest).unwrap_err();
//! assert_eq!(err.from, State::Standby);
//! assert_eq!(
//!     err.to_string(),
//!     "illegal transition: OptimizationRequest is not allowed in state `standby`",
//! );
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A lifecycle state of an agent, stored lowercase (`"active"`, `"error"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created; resources are being set up.
    Initializing,
    /// Being deployed.
    Deploying,
    /// Deployed and being checked before it starts work.
    Monitoring,
    /// Doing its work: running cycles and sending heartbeats.
    Active,
    /// Temporarily tuning itself; returns to `active`.
    Optimizing,
    /// Idle on request; returns to `active` on `Activate`.
    Standby,
    /// Under maintenance; returns to `active`.
    Maintenance,
    /// Failed; waiting for recovery or manual intervention.
    Error,
    /// Being restarted by its supervisor.
    Recovery,
    /// Parked until an operator fixes it (`ManualFixed`).
    Manual,
    /// Stopped for good. No trigger leaves this state.
    Shutdown,
}

impl State {
    /// All eleven states, in the order of the specification.
    pub const ALL: [State; 11] = [
        State::Initializing,
        State::Deploying,
        State::Monitoring,
        State::Active,
        State::Optimizing,
        State::Standby,
        State::Maintenance,
        State::Error,
        State::Recovery,
        State::Manual,
        State::Shutdown,
    ];

    /// The stored, lowercase name of the state.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Initializing => "initializing",
            State::Deploying => "deploying",
            State::Monitoring => "monitoring",
            State::Active => "active",
            State::Optimizing => "optimizing",
            State::Standby => "standby",
            State::Maintenance => "maintenance",
            State::Error => "error",
            State::Recovery => "recovery",
            State::Manual => "manual",
            State::Shutdown => "shutdown",
        }
    }

    /// Whether the agent is running in this state: every state but `error`, `manual`
    /// and `shutdown`. `ErrorOccurred` is legal exactly in the running states.
    pub const fn is_running(self) -> bool {
        !matches!(self, State::Error | State::Manual | State::Shutdown)
    }

    /// Whether this state is final (`shutdown`).
    pub const fn is_terminal(self) -> bool {
        matches!(self, State::Shutdown)
    }

    /// The state `trigger` leads to from this one; same as [`next_state`].
    pub const fn apply(self, trigger: Trigger) -> Result<State, IllegalTransition> {
        next_state(self, trigger)
    }

    /// The triggers that are legal in this state, in [`Trigger::ALL`] order.
    pub fn legal_triggers(self) -> impl Iterator<Item = Trigger> {
        Trigger::ALL.into_iter().filter(move |&trigger| next_state(self, trigger).is_ok())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not the stored name of a [`State`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown lifecycle state `{input}` (expected one of: initializing, deploying, monitoring, active, \
     optimizing, standby, maintenance, error, recovery, manual, shutdown)"
)]
pub struct ParseStateError {
    /// The text that was rejected.
    pub input: String,
}

impl FromStr for State {
    type Err = ParseStateError;

    /// Parses the stored lowercase name; anything else (including other casings) is an
    /// error, so a corrupted `agents.status` is noticed rather than guessed at.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseStateError { input: s.to_owned() })
    }
}

/// An arrow of the state diagram: what makes an agent change state.
///
/// Displayed and serialized in PascalCase (`OptimizationRequest`), as in the
/// specification. Each trigger has a message type of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Trigger {
    /// `initializing` -> `deploying`.
    Initialize,
    /// `deploying` -> `monitoring`.
    DeployComplete,
    /// `monitoring` -> `active`.
    Start,
    /// `active` -> `optimizing`.
    OptimizationRequest,
    /// `optimizing` -> `active`.
    OptimizationComplete,
    /// `active` -> `standby`.
    StandbyRequest,
    /// `standby` -> `active`.
    Activate,
    /// `active` -> `maintenance`.
    MaintenanceRequest,
    /// `maintenance` -> `active`.
    MaintenanceComplete,
    /// Any running state -> `error` (extension: the diagram draws it from `active`).
    ErrorOccurred,
    /// `error` -> `recovery`.
    RecoveryStart,
    /// `recovery` -> `active`.
    RecoveryComplete,
    /// `recovery` -> `error`.
    RecoveryFailed,
    /// `error` -> `manual`.
    ManualIntervention,
    /// `manual` -> `active`.
    ManualFixed,
    /// Any state but `shutdown` -> `shutdown` (extension: the diagram draws it from
    /// `active`).
    ShutdownRequest,
}

impl Trigger {
    /// All sixteen triggers, in the order of the specification.
    pub const ALL: [Trigger; 16] = [
        Trigger::Initialize,
        Trigger::DeployComplete,
        Trigger::Start,
        Trigger::OptimizationRequest,
        Trigger::OptimizationComplete,
        Trigger::StandbyRequest,
        Trigger::Activate,
        Trigger::MaintenanceRequest,
        Trigger::MaintenanceComplete,
        Trigger::ErrorOccurred,
        Trigger::RecoveryStart,
        Trigger::RecoveryComplete,
        Trigger::RecoveryFailed,
        Trigger::ManualIntervention,
        Trigger::ManualFixed,
        Trigger::ShutdownRequest,
    ];

    /// The PascalCase name of the trigger, as in the specification.
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Initialize => "Initialize",
            Trigger::DeployComplete => "DeployComplete",
            Trigger::Start => "Start",
            Trigger::OptimizationRequest => "OptimizationRequest",
            Trigger::OptimizationComplete => "OptimizationComplete",
            Trigger::StandbyRequest => "StandbyRequest",
            Trigger::Activate => "Activate",
            Trigger::MaintenanceRequest => "MaintenanceRequest",
            Trigger::MaintenanceComplete => "MaintenanceComplete",
            Trigger::ErrorOccurred => "ErrorOccurred",
            Trigger::RecoveryStart => "RecoveryStart",
            Trigger::RecoveryComplete => "RecoveryComplete",
            Trigger::RecoveryFailed => "RecoveryFailed",
            Trigger::ManualIntervention => "ManualIntervention",
            Trigger::ManualFixed => "ManualFixed",
            Trigger::ShutdownRequest => "ShutdownRequest",
        }
    }

    /// Whether an operator may send this trigger to a running agent by id
    /// ([`RuntimeControl::transition`](crate::RuntimeControl::transition)): the
    /// operational side trips of `active` and their way back. The others belong to the
    /// agent's startup, its failures and recovery, or have their own calls (restart,
    /// stop, fix).
    pub const fn is_operational(self) -> bool {
        matches!(
            self,
            Trigger::OptimizationRequest
                | Trigger::OptimizationComplete
                | Trigger::StandbyRequest
                | Trigger::Activate
                | Trigger::MaintenanceRequest
                | Trigger::MaintenanceComplete
        )
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transition table: the state `trigger` leads to from `from`, or an
/// [`IllegalTransition`] if the trigger is not allowed there.
///
/// This `match` is the single source of truth for the lifecycle; see the
/// [module documentation](self) for the diagram and the two extensions.
pub const fn next_state(from: State, trigger: Trigger) -> Result<State, IllegalTransition> {
    use State as S;
    use Trigger as T;

    match (from, trigger) {
        // The arrows of the specification's diagram.
        (S::Initializing, T::Initialize) => Ok(S::Deploying),
        (S::Deploying, T::DeployComplete) => Ok(S::Monitoring),
        (S::Monitoring, T::Start) => Ok(S::Active),
        (S::Active, T::OptimizationRequest) => Ok(S::Optimizing),
        (S::Optimizing, T::OptimizationComplete) => Ok(S::Active),
        (S::Active, T::StandbyRequest) => Ok(S::Standby),
        (S::Standby, T::Activate) => Ok(S::Active),
        (S::Active, T::MaintenanceRequest) => Ok(S::Maintenance),
        (S::Maintenance, T::MaintenanceComplete) => Ok(S::Active),
        (S::Error, T::RecoveryStart) => Ok(S::Recovery),
        (S::Recovery, T::RecoveryComplete) => Ok(S::Active),
        (S::Recovery, T::RecoveryFailed) => Ok(S::Error),
        (S::Error, T::ManualIntervention) => Ok(S::Manual),
        (S::Manual, T::ManualFixed) => Ok(S::Active),
        // Extension 1: a failure can happen in any running state (the diagram's
        // `active -> error` is one case of this arm).
        (from, T::ErrorOccurred) if from.is_running() => Ok(S::Error),
        // Extension 2: anything but a stopped agent can be stopped (the diagram's
        // `active -> shutdown` is one case of this arm).
        (from, T::ShutdownRequest) if !from.is_terminal() => Ok(S::Shutdown),
        (from, trigger) => Err(IllegalTransition { from, trigger }),
    }
}

/// A trigger that is not allowed in the agent's current state. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("illegal transition: {trigger} is not allowed in state `{from}`")]
pub struct IllegalTransition {
    /// The state the agent was (and still is) in.
    pub from: State,
    /// The trigger that was refused.
    pub trigger: Trigger,
}

/// Why a transition happened, recorded with it.
///
/// Serialized with a `kind` tag: `{"kind":"failure","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// An operator or an API call asked for it.
    Requested,
    /// The normal startup sequence of the agent (`Initialize`, `DeployComplete`,
    /// `Start`), or a restarted agent finishing its startup (`RecoveryComplete`).
    Startup,
    /// The agent failed: a hook returned an error or panicked.
    Failure {
        /// The error's message or the panic payload.
        reason: String,
    },
    /// The supervisor is restarting the agent.
    Restart {
        /// Which restart within the current intensity period this is, from 1.
        attempt: u32,
    },
    /// The failure was handed to a human: restart intensity exceeded, or an operator
    /// took over.
    Escalation {
        /// Why automatic recovery gave up.
        reason: String,
    },
    /// The agent, its supervisor or the runtime is shutting down.
    Shutdown,
    /// Anything else, described in words.
    Other {
        /// The description.
        reason: String,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Requested => f.write_str("requested"),
            Cause::Startup => f.write_str("startup"),
            Cause::Failure { reason } => write!(f, "failure: {reason}"),
            Cause::Restart { attempt } => write!(f, "restart (attempt {attempt})"),
            Cause::Escalation { reason } => write!(f, "escalation: {reason}"),
            Cause::Shutdown => f.write_str("shutdown"),
            Cause::Other { reason } => f.write_str(reason),
        }
    }
}

/// A transition that has been applied to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The agent that changed state (`agents.agent_id`).
    pub agent_id: String,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// The trigger that caused the change.
    pub trigger: Trigger,
    /// Why the trigger was sent.
    pub cause: Cause,
    /// When the transition was applied.
    pub at: DateTime<Utc>,
}

impl Transition {
    /// Applies `trigger` to `from` with [`next_state`] and, if it is legal, describes
    /// the transition, stamped now.
    pub fn new(
        agent_id: impl Into<String>,
        from: State,
        trigger: Trigger,
        cause: Cause,
    ) -> Result<Self, IllegalTransition> {
        let to = next_state(from, trigger)?;
        Ok(Transition { agent_id: agent_id.into(), from, to, trigger, cause, at: Utc::now() })
    }
}

/// Why a lifecycle message did not produce a [`Transition`].
///
/// For supervision, none of these is a failure of the agent: the sender gets the
/// error and the agent keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The trigger is not legal in the agent's current state; nothing changed.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The transition could not be persisted, so it was not applied.
    #[error("the transition could not be persisted: {0}")]
    Persistence(String),
    /// The agent has stopped and no longer takes lifecycle messages.
    #[error("the agent has stopped")]
    AgentStopped,
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
    /// The error's message or the panic payload.
    pub reason: String,
}

/// The supervisor begins restarting the agent (`error` -> `recovery`).
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
    pub reason: String,
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
    ErrorOccurred => ErrorOccurred, |m| Cause::Failure { reason: m.reason.clone() };
    RecoveryStart => RecoveryStart, |m| Cause::Restart { attempt: m.attempt };
    RecoveryComplete => RecoveryComplete, |_| Cause::Startup;
    RecoveryFailed => RecoveryFailed, |m| Cause::Failure { reason: m.reason.clone() };
    ManualIntervention => ManualIntervention, |m| Cause::Escalation { reason: m.reason.clone() };
    ManualFixed => ManualFixed, |_| Cause::Requested;
    ShutdownRequest => ShutdownRequest, |_| Cause::Shutdown;
}
