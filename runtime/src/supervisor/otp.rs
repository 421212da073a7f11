//! The OTP calls a user may send to a supervisor — in practice to
//! [`Runtime::root`](crate::Runtime::root): [`WhichChildren`], [`CountChildren`],
//! [`StartChild`], [`TerminateChild`] and [`RestartChild`].
//!
//! ```no_run
//! # async fn demo(runtime: vigil_runtime::Runtime) {
//! use vigil_runtime::supervisor::{CountChildren, TerminateChild, WhichChildren};
//!
//! let children = runtime.root().send(WhichChildren).await.unwrap();
//! let counts = runtime.root().send(CountChildren).await.unwrap();
//! runtime.root().send(TerminateChild("worker".into())).await.unwrap().unwrap();
//! # }
//! ```

use actix::prelude::*;

use super::{Child, ChildSpec, Supervisor};
use crate::agent::Restart;
use crate::protocol::{SupervisorError, TerminateChild};

/// What [`WhichChildren`] reports of one child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Whether it is a supervisor.
    pub supervisor: bool,
    /// Its restart type.
    pub restart: Restart,
    /// Whether it is running (not terminated).
    pub running: bool,
}

/// Lists the children in start order (OTP `which_children`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<ChildInfo>")]
pub struct WhichChildren;

impl Handler<WhichChildren> for Supervisor {
    type Result = MessageResult<WhichChildren>;

    fn handle(&mut self, _: WhichChildren, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.children
                .iter()
                .map(|c| ChildInfo {
                    id: c.spec.id.clone(),
                    supervisor: c.control.as_ref().is_some_and(|control| control.is_supervisor()),
                    restart: c.spec.restart,
                    running: c.control.is_some(),
                })
                .collect(),
        )
    }
}

/// Child counts (OTP `count_children`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChildCounts {
    /// Child specs held.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Running children that are supervisors.
    pub supervisors: usize,
    /// Running children that are agents.
    pub workers: usize,
}

/// Counts the children (OTP `count_children`).
#[derive(Debug, Message)]
#[rtype(result = "ChildCounts")]
pub struct CountChildren;

impl Handler<CountChildren> for Supervisor {
    type Result = MessageResult<CountChildren>;

    fn handle(&mut self, _: CountChildren, _ctx: &mut Context<Self>) -> Self::Result {
        let running: Vec<_> = self.children.iter().filter_map(|c| c.control.as_ref()).collect();
        let supervisors = running.iter().filter(|c| c.is_supervisor()).count();
        MessageResult(ChildCounts {
            specs: self.children.len(),
            active: running.len(),
            supervisors,
            workers: running.len() - supervisors,
        })
    }
}

/// Adds and starts a child at the end of the start order (OTP `start_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct StartChild(pub ChildSpec);

impl Handler<StartChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, StartChild(spec): StartChild, _ctx: &mut Context<Self>) -> Self::Result {
        if self.children.iter().any(|c| c.spec.id == spec.id) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::AlreadyExists(spec.id)))));
        }
        let index = self.children.len();
        self.children.push(Child { spec, control: None, generation: 0, held: false });
        let startup = self.start_children(index);
        AtomicResponse::new(Box::pin(startup.map(|failures, _, _| match failures.into_iter().next() {
            None => Ok(()),
            Some((id, reason)) => Err(SupervisorError::Child { id, reason }),
        })))
    }
}

impl Handler<TerminateChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, TerminateChild(id): TerminateChild, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(child) = self.children.iter_mut().find(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        let Some(control) = child.control.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        };
        let stopped = control.shutdown(&id, child.spec.shutdown_timeout);
        AtomicResponse::new(Box::pin(
            async move {
                match stopped.await.failed.into_iter().next() {
                    None => Ok(()),
                    Some((id, reason)) => Err(SupervisorError::Child { id, reason: reason.to_string() }),
                }
            }
            .into_actor(self),
        ))
    }
}

/// Starts a terminated child again from its spec (OTP `restart_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct RestartChild(pub String);

impl Handler<RestartChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, RestartChild(id): RestartChild, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(index) = self.children.iter().position(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        if self.children[index].control.is_some() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::AlreadyRunning(id)))));
        }
        if self.children[index].spec.nested_ids.is_some() {
            let reason = "a terminated supervisor child cannot be started again; add a new one".to_owned();
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::Child { id, reason }))));
        }
        // Only this child: `start_children` skips the ones already running.
        let startup = self.start_children(index);
        AtomicResponse::new(Box::pin(startup.map(|failures, _, _| match failures.into_iter().next() {
            None => Ok(()),
            Some((id, reason)) => Err(SupervisorError::Child { id, reason }),
        })))
    }
}
