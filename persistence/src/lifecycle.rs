//! The agent lifecycle's vocabulary, shared by every layer: eleven [`State`]s, sixteen
//! [`Trigger`]s, the one transition table [`next_state`], why a transition happened
//! ([`Cause`], with a typed [`Failure`]) and the record of one ([`TransitionRecord`]).
//!
//! It lives here, below the runtime, so that the database column (`agents.status`),
//! the writes ([`Write::StateChange`](crate::Write::StateChange)), the runtime that
//! applies transitions and the monitors that read them back all speak one type: an
//! unknown state string is a [`ParseStateError`] wherever it enters (a row, a CLI
//! argument, a config file), never a value. The runtime re-exports all of it as
//! `vigil_runtime::lifecycle`, next to the actix messages that carry the triggers.
//!
//! Every agent is in exactly one state, stored lowercase (`agents.status`). It moves
//! only when a trigger arrives. The agent's host applies the trigger with
//! [`next_state`]; a trigger that is not legal in the current state is an
//! [`IllegalTransition`] and changes nothing. A legal one becomes a
//! [`TransitionRecord`] (who, from, to, trigger, typed [`Cause`], when) that is
//! persisted as the data of a `state_transition` event and published.
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
//! The specification draws the failure, restart and shutdown arrows from one state
//! each. An agent can fail, be restarted or be stopped in any phase, so Vigil widens
//! three of them:
//!
//! 1. **`ErrorOccurred` is legal from every running state** ([`State::is_running`]):
//!    `initializing`, `deploying`, `monitoring`, `active`, `optimizing`, `standby`,
//!    `maintenance` and `recovery`. It always leads to `error`. It is *not* legal in
//!    `error` (already failed), `manual` (parked, nothing runs) or `shutdown`.
//!    From `recovery` it means the same as `RecoveryFailed`.
//! 2. **`ShutdownRequest` is legal from every state but `shutdown`**, so an agent
//!    that is failing, recovering or parked in `manual` can still be stopped.
//! 3. **`RecoveryStart` is legal from every running state but `recovery`**, for a
//!    restart nobody's failure caused: an operator's `vigil agent restart`, a
//!    monitor's restart request, or a sibling restarted with a failed child under
//!    one_for_all / rest_for_one. Such a restart walks `active -> recovery -> active`
//!    with its own cause ([`Cause::RestartRequested`], [`Cause::SiblingRestart`]);
//!    it never passes through `error`, so it is not a failure
//!    ([`TransitionRecord::is_failure`]), is recorded at severity `info`, and does not
//!    count against a supervisor's restart intensity.
//!
//! | extension | trigger           | legal from                           | to         |
//! |-----------|-------------------|--------------------------------------|------------|
//! | 1         | `ErrorOccurred`   | every running state                  | `error`    |
//! | 2         | `ShutdownRequest` | every state but `shutdown`           | `shutdown` |
//! | 3         | `RecoveryStart`   | every running state but `recovery`   | `recovery` |
//!
//! Everything else is exactly as drawn; in particular `ManualIntervention` is legal
//! from `error` only, and `shutdown` is final: no trigger leaves it.
//!
//! # Example
//!
//! ```
//! use vigil_persistence::lifecycle::{next_state, State, Trigger};
//!
//! assert_eq!(next_state(State::Active, Trigger::StandbyRequest), Ok(State::Standby));
//! // Extension 1: a failure while deploying.
//! assert_eq!(next_state(State::Deploying, Trigger::ErrorOccurred), Ok(State::Error));
//! // Extension 3: a restart an operator asked for.
//! assert_eq!(next_state(State::Standby, Trigger::RecoveryStart), Ok(State::Recovery));
//! // Unknown names are typed errors, not states.
//! assert!("actve".parse::<State>().is_err());
//!
//! let err = next_state(State::Standby, Trigger::OptimizationRequest).unwrap_err();
//! assert_eq!(err.from, State::Standby);
//! assert_eq!(
//!     err.to_string(),
//!     "illegal transition: OptimizationRequest is not allowed in state `standby`",
//! );
//! ```

mod cause;
mod record;

use std::fmt;
use std::str::FromStr;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;
use serde::{Deserialize, Serialize};

pub use cause::{Cause, Failure, FailureKind, Stage};
pub use record::{TransitionRecord, TransitionRecordError};

/// A lifecycle state of an agent, stored lowercase (`"active"`, `"error"`, ...).
///
/// Stored as text on both backends: reading a row whose status is not one of these
/// names fails with a deserialization error carrying a [`ParseStateError`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[diesel(sql_type = Text)]
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

impl ToSql<Text, Pg> for State {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl ToSql<Text, Sqlite> for State {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.as_str());
        Ok(IsNull::No)
    }
}

/// Reads the stored name back; an unknown name is a deserialization error (with the
/// [`ParseStateError`] as its source), so a corrupted row is reported, not guessed at.
impl<DB: Backend> FromSql<Text, DB> for State
where
    String: FromSql<Text, DB>,
{
    fn from_sql(value: DB::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(String::from_sql(value)?.parse::<State>()?)
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
    /// `error` -> `recovery` (extension 3: also any running state but `recovery` ->
    /// `recovery`, for a restart that was asked for).
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
    /// (`RuntimeControl::transition` in the runtime): the
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
/// [module documentation](self) for the diagram and the three extensions.
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
        // Extension 3: a requested restart (operator, monitor, or a sibling's failure)
        // starts from wherever the agent runs, without passing through `error`.
        (from, T::RecoveryStart) if from.is_running() && !matches!(from, S::Recovery) => Ok(S::Recovery),
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
