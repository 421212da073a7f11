//! [`RuntimeControl`]: what an agent (or an operator tool) may ask of the running
//! tree by agent id — statuses, restarts, parking, fixes — without knowing agent types.
//!
//! Requests go to the supervisor that owns the agent, so a requested restart follows
//! that supervisor's strategy (siblings under one_for_all / rest_for_one are restarted
//! with it). A requested restart is **not a failure**: the agent walks
//! `active -> recovery -> active` with [`Cause::RestartRequested`] (its siblings with
//! [`Cause::SiblingRestart`]), recorded at severity `info`, and it does not count
//! against the supervisor's restart intensity. A broken agent still escalates through
//! its own failures; the monitors that request restarts bound their attempts
//! themselves.
//!
//! A fix ([`RuntimeControl::fix`]) clears the restart history of the agent's
//! supervisor and of every supervisor above it, so the history that parked the agent
//! does not park it again at its next fault.
//!
//! [`Cause::RestartRequested`]: crate::Cause::RestartRequested
//! [`Cause::SiblingRestart`]: crate::Cause::SiblingRestart

use std::sync::{Arc, Mutex};

use actix::prelude::*;

use crate::lifecycle::{LifecycleError, ManualFixed, Transition, Trigger};
use crate::protocol::{
    AgentStatus, ForgetRestarts, GetStatus, Operate, RestartRequested, SupervisorError, TerminateChild,
};

/// One agent as the control plane sees it.
pub(crate) struct ControlEntry {
    pub(crate) id: String,
    /// The typed `Addr<AgentHost<A>>`, for `Runtime::addr`.
    pub(crate) addr: Box<dyn std::any::Any + Send>,
    pub(crate) status: Recipient<GetStatus>,
    pub(crate) fix: Recipient<ManualFixed>,
    pub(crate) operate: Recipient<Operate>,
    pub(crate) owner: Owner,
}

/// The supervisor that owns an agent, as the control plane reaches it: by the messages
/// it sends, not by the supervisor's type (which would make this module import the
/// supervisor's, and the supervisor's this one).
pub(crate) struct Owner {
    pub(crate) restart: Recipient<RestartRequested>,
    pub(crate) terminate: Recipient<TerminateChild>,
    pub(crate) forget: Recipient<ForgetRestarts>,
}

/// Every agent of the tree, in start order.
pub(crate) type Registry = Arc<Mutex<Vec<ControlEntry>>>;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No agent with that id.
    #[error("no agent `{0}`")]
    UnknownAgent(String),
    /// The agent or its supervisor has stopped.
    #[error("agent `{0}` is not running")]
    NotRunning(String),
    /// The supervisor refused or failed.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// The lifecycle refused (e.g. ManualFixed on an agent that is not parked).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The trigger is not one an operator may send by id (see [`Trigger::is_operational`]).
    #[error(
        "`{0}` is not an operational transition: use standby, activate, maintenance, optimization and their completions"
    )]
    NotOperational(Trigger),
    /// The runtime is shutting down: its supervisors take no new requests (they are
    /// busy stopping their children, one at a time).
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// Type-erased control of the running tree. Cheap to clone.
#[derive(Clone)]
pub struct RuntimeControl {
    registry: Registry,
    /// Set when the runtime starts shutting down. A request for a restart, stop, fix or
    /// transition then fails at once: waiting on a supervisor that is itself waiting
    /// for the asking agent's shutdown would hold that agent's shutdown hook until its
    /// timeout.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// This runtime's node id (see [`vigil_persistence::presence`]), which every
    /// heartbeat records so a reader can tell whether the agent's runtime still runs.
    node: Arc<str>,
    /// `true` once the whole tree has started (or the runtime began shutting down).
    started: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for RuntimeControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeControl").field("agents", &self.agent_ids()).finish()
    }
}

impl RuntimeControl {
    pub(crate) fn new(registry: Registry, node: String) -> Self {
        let (started, _) = tokio::sync::watch::channel(false);
        Self { registry, stopping: Arc::default(), node: node.into(), started: Arc::new(started) }
    }

    /// Waits until the runtime's whole tree has started: every agent of
    /// [`RuntimeBuilder::start`](crate::RuntimeBuilder::start) registered and `active`. Returns at once
    /// afterwards, and when the runtime is shutting down. A monitor's first pass waits
    /// for it, so that it sees the platform rather than the part of it that started
    /// before the monitor.
    pub async fn tree_started(&self) {
        let mut started = self.started.subscribe();
        // The sender lives as long as `self`: the wait ends only when it is marked.
        let _ = started.wait_for(|started| *started).await;
    }

    /// Marks the tree as started (see [`tree_started`](Self::tree_started)).
    pub(crate) fn mark_started(&self) {
        self.started.send_replace(true);
    }

    /// This runtime's node id: `host/pid/n`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Marks the runtime as shutting down (see [`ControlError::ShuttingDown`]).
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        // Nobody waits on a start that will not complete.
        self.mark_started();
    }

    fn refuse_while_stopping(&self) -> Result<(), ControlError> {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ControlError::ShuttingDown);
        }
        Ok(())
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The ids of every agent, in start order.
    pub fn agent_ids(&self) -> Vec<String> {
        self.registry.lock().expect("registry lock").iter().map(|e| e.id.clone()).collect()
    }

    fn with_entry<T>(&self, id: &str, f: impl FnOnce(&ControlEntry) -> T) -> Result<T, ControlError> {
        let registry = self.registry.lock().expect("registry lock");
        registry.iter().find(|e| e.id == id).map(f).ok_or_else(|| ControlError::UnknownAgent(id.into()))
    }

    /// A snapshot of one agent.
    pub async fn status(&self, id: &str) -> Result<AgentStatus, ControlError> {
        let request = self.with_entry(id, |e| e.status.send(GetStatus))?;
        request.await.map_err(|_| ControlError::NotRunning(id.into()))
    }

    /// Snapshots of every running agent, in start order.
    pub async fn statuses(&self) -> Vec<AgentStatus> {
        let requests: Vec<_> =
            self.registry.lock().expect("registry lock").iter().map(|e| e.status.send(GetStatus)).collect();
        let mut statuses = Vec::with_capacity(requests.len());
        for request in requests {
            if let Ok(status) = request.await {
                statuses.push(status);
            }
        }
        statuses
    }

    /// Restarts an agent with fresh state through its supervisor, recording `reason`.
    /// The supervisor's strategy applies; its restart intensity does not (see the
    /// [module documentation](self)). Returns once the supervisor has accepted the
    /// request; the restart itself follows.
    pub async fn restart(&self, id: &str, reason: impl Into<String>) -> Result<(), ControlError> {
        self.refuse_while_stopping()?;
        let request = self.with_entry(id, |e| {
            e.owner.restart.send(RestartRequested { child_id: id.into(), reason: reason.into() })
        })?;
        request.await.map_err(|_| ControlError::NotRunning(id.into()))?.map_err(ControlError::from)
    }

    /// Stops an agent through its supervisor (it is not restarted; its spec is kept).
    pub async fn stop(&self, id: &str) -> Result<(), ControlError> {
        self.refuse_while_stopping()?;
        let request = self.with_entry(id, |e| e.owner.terminate.send(TerminateChild(id.into())))?;
        request.await.map_err(|_| ControlError::NotRunning(id.into()))?.map_err(ControlError::from)
    }

    /// Moves an agent through an operational transition — into `standby`,
    /// `maintenance` or `optimizing` and back to `active` — persisted and published
    /// like any other. Cycles run only in `active`, so this pauses and resumes its
    /// work; heartbeats and typed messages go on. Illegal from the agent's current
    /// state: [`ControlError::Lifecycle`], and nothing changes.
    pub async fn transition(&self, id: &str, trigger: Trigger) -> Result<Transition, ControlError> {
        if !trigger.is_operational() {
            return Err(ControlError::NotOperational(trigger));
        }
        self.refuse_while_stopping()?;
        let request = self.with_entry(id, |e| e.operate.send(Operate(trigger)))?;
        Ok(request.await.map_err(|_| ControlError::NotRunning(id.into()))??)
    }

    /// Restarts an agent parked in `manual` (ManualFixed) with a fresh instance, and
    /// clears the restart history of its supervisors, so that its next fault is an
    /// ordinary restart. If the fresh instance's `initialize` fails, the agent stays in
    /// `manual` and the error is [`LifecycleError::InitializeFailed`].
    pub async fn fix(&self, id: &str) -> Result<Transition, ControlError> {
        self.refuse_while_stopping()?;
        let (forget, request) =
            self.with_entry(id, |e| (e.owner.forget.send(ForgetRestarts), e.fix.send(ManualFixed)))?;
        // Before the fix lands: a fault of the fixed agent must find the history gone.
        forget.await.map_err(|_| ControlError::NotRunning(id.into()))?;
        Ok(request.await.map_err(|_| ControlError::NotRunning(id.into()))??)
    }
}
