//! Cluster mode: the top supervisor of a node holds every top-level child of the tree,
//! but starts only those the node owns ([`crate::cluster`]). A child placed on another
//! node is *held*: it is in the supervisor's list, in its place in the start order, and
//! not started. [`Acquire`] starts it when the node has claimed its lease;
//! [`Relinquish`] stops it and holds it again when the node lost or handed over the
//! lease.

use actix::prelude::*;

use super::Supervisor;
use crate::protocol::SupervisorError;

/// Starts a held (or stopped) child: this node now owns its lease. Resolves once it is
/// `active`, or with why it did not start.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub(crate) struct Acquire(pub(crate) String);

impl Handler<Acquire> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, Acquire(id): Acquire, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(index) = self.children.iter().position(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        let child = &mut self.children[index];
        child.held = false;
        if child.control.is_some() {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        // Only this child: `start_children` skips the ones running or held.
        let startup = self.start_children(index);
        AtomicResponse::new(Box::pin(startup.map(|failures, _, _| match failures.into_iter().next() {
            None => Ok(()),
            Some((id, reason)) => Err(SupervisorError::Child { id, reason }),
        })))
    }
}

/// Stops a child and holds it: another node owns its lease now (or will, once this
/// one hands it over). Resolves once it has stopped; it leaves the control plane's
/// registry, so operator commands for it go to its new owner.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub(crate) struct Relinquish(pub(crate) String);

impl Handler<Relinquish> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, Relinquish(id): Relinquish, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(child) = self.children.iter_mut().find(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        child.held = true;
        let timeout = child.spec.shutdown_timeout;
        let stopped = child.control.take().map(|control| control.shutdown(&id, timeout));
        let registry = self.env.control.registry().clone();
        AtomicResponse::new(Box::pin(
            async move {
                let report = match stopped {
                    Some(stopped) => stopped.await,
                    None => Default::default(),
                };
                registry.lock().expect("registry lock").retain(|entry| entry.id != id);
                match report.failed.into_iter().next() {
                    None => Ok(()),
                    Some((id, reason)) => Err(SupervisorError::Child { id, reason: reason.to_string() }),
                }
            }
            .into_actor(self),
        ))
    }
}
