//! The messages the runtime's actors send each other, below all of them: agent hosts,
//! supervisors and the control plane import their messages from here, never from
//! one another.
//!
//! | from → to                     | messages                                                       |
//! |-------------------------------|----------------------------------------------------------------|
//! | agent host → supervisor       | [`ChildExited`] (with its [`Exit`])                            |
//! | supervisor → agent host       | [`RestartAgent`], [`ParkAgent`], [`StopAgent`], [`Kill`]       |
//! | supervisor → nested supervisor| [`RestartSubtree`], [`ParkSubtree`], [`FixParked`], [`ShutdownSubtree`], [`SubtreeStatuses`] |
//! | control plane → supervisor    | [`RestartRequested`], [`TerminateChild`], [`ForgetRestarts`]   |
//! | control plane → agent host    | [`GetStatus`], [`Operate`] (and the lifecycle messages)       |
//!
//! Everything here is internal (`pub(crate)`) except what a user meets in a signature:
//! the replies [`AgentStatus`], [`ShutdownReport`] and [`SupervisorError`], and
//! [`TerminateChild`], OTP's `terminate_child`, which a user may send to
//! [`Runtime::root`](crate::Runtime::root). In particular [`ShutdownSubtree`] is not
//! public: [`Runtime::shutdown`](crate::Runtime::shutdown) is the way to stop the tree,
//! because it also flushes the persistence writer.

use std::time::Duration;

use actix::prelude::*;

use crate::lifecycle::{Cause, Failure, LifecycleError, State, StopFailure, Transition, Trigger};

// ---- agent host -> supervisor ------------------------------------------------------

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A hook or handler failed, panicked or timed out, or a nested supervisor gave up.
    Failed(Failure),
}

/// Child to supervisor: I failed (already recorded as `ErrorOccurred`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ChildExited {
    /// The child's id.
    pub(crate) child_id: String,
    /// The child's generation when it failed; a report about an instance the
    /// supervisor has already replaced is ignored.
    pub(crate) generation: u64,
    /// How it ended.
    pub(crate) exit: Exit,
}

// ---- supervisor -> agent host ------------------------------------------------------

/// Supervisor to child: come back to `active` with fresh state.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, Failure>")]
pub(crate) struct RestartAgent {
    /// Restart number within the intensity period; 0 for a restart that does not count.
    pub(crate) attempt: u32,
    /// Recorded with RecoveryStart: [`Cause::Restart`] after a failure of this agent,
    /// [`Cause::RestartRequested`] or [`Cause::SiblingRestart`] otherwise.
    pub(crate) cause: Cause,
}

/// Supervisor to child: go to `manual` and stay there until ManualFixed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ParkAgent {
    pub(crate) reason: String,
}

/// Supervisor to child: shut down — `ShutdownRequest`, then the shutdown hook within
/// `timeout`, then stop. Answered once the actor has stopped: `Ok` if the hook
/// finished cleanly, else why not.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StopFailure>")]
pub(crate) struct StopAgent {
    pub(crate) timeout: Duration,
}

/// Stops an agent's actor at once (the shutdown timeout has passed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Kill;

// ---- control plane -> agent host ---------------------------------------------------

/// A snapshot of one agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentStatus {
    /// The agent's id.
    pub agent_id: String,
    /// Its state.
    pub state: State,
    /// Cycles completed since it was spawned.
    pub cycles: u64,
    /// Restarts since it was spawned.
    pub restarts: u64,
    /// Cycle ticks skipped because a cycle still ran.
    pub overruns: u64,
    /// How long the last completed cycle took, in microseconds (`None` before the first).
    pub last_cycle_micros: Option<u64>,
    /// Time spent in completed cycles since the agent was spawned, in microseconds
    /// (with `cycles`, the mean cycle time over any interval).
    pub busy_micros: u64,
}

/// Asks for an [`AgentStatus`].
#[derive(Debug, Message)]
#[rtype(result = "AgentStatus")]
pub(crate) struct GetStatus;

/// An operational transition asked for by id, without the agent's type (see
/// [`Trigger::is_operational`]); the caller checked the trigger.
#[derive(Debug, Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub(crate) struct Operate(pub(crate) Trigger);

// ---- supervisor -> nested supervisor ----------------------------------------------

/// Parent to nested supervisor: restart every child, in order, with fresh state.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, Failure>")]
pub(crate) struct RestartSubtree {
    pub(crate) attempt: u32,
    pub(crate) cause: Cause,
}

/// Parent to nested supervisor: park every agent of the subtree in `manual`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ParkSubtree {
    pub(crate) reason: String,
}

/// Restarts every parked agent of the subtree (ManualFixed on each).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct FixParked;

/// What a shutdown did: the agents that stopped, in the order they stopped, and the
/// ones that did not stop cleanly.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Agents whose shutdown hook finished within its timeout and whose actor then
    /// stopped, in the order they stopped (observed, one after the other).
    pub stopped: Vec<String>,
    /// Agents that did not stop cleanly — the hook failed, panicked or timed out, or
    /// the agent was killed — with the reason. They are stopped all the same.
    pub failed: Vec<(String, StopFailure)>,
}

impl ShutdownReport {
    pub(crate) fn extend(&mut self, other: ShutdownReport) {
        self.stopped.extend(other.stopped);
        self.failed.extend(other.failed);
    }
}

/// Stops every child in reverse start order, one at a time: each child's shutdown hook
/// has finished (or the child was stopped at its shutdown timeout) and its actor has
/// stopped before the next child is asked. A nested supervisor stops its own subtree
/// the same way. Replies with what stopped, in that order.
#[derive(Debug, Message)]
#[rtype(result = "ShutdownReport")]
pub(crate) struct ShutdownSubtree;

/// Statuses of every agent in the subtree, in start order.
#[derive(Debug, Message)]
#[rtype(result = "Vec<AgentStatus>")]
pub(crate) struct SubtreeStatuses;

// ---- control plane -> supervisor ----------------------------------------------------

/// Why a supervisor operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No child with that id.
    #[error("no child `{0}`")]
    NoSuchChild(String),
    /// A child with that id exists already.
    #[error("a child `{0}` exists already")]
    AlreadyExists(String),
    /// The child is already running.
    #[error("child `{0}` is already running")]
    AlreadyRunning(String),
    /// The child did not start or stop cleanly.
    #[error("child `{id}`: {reason}")]
    Child {
        /// The child.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Stops a child and keeps its spec, so it can be restarted (OTP `terminate_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct TerminateChild(pub String);

/// A restart asked for by an agent or operator ([`crate::RuntimeControl::restart`]):
/// the strategy applies (siblings are restarted with the child), restart intensity
/// does not — it is not a failure. See `Supervisor::on_request`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub(crate) struct RestartRequested {
    pub(crate) child_id: String,
    pub(crate) reason: String,
}

/// An operator fixed an agent of this subtree (`ManualFixed`): forget the restarts
/// that led to its parking, here and in every supervisor above, as
/// [`FixParked`] does — otherwise the history that parked it would park it again at
/// its next fault.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetRestarts;
