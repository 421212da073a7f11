//! Child control: one type-erased interface, [`ChildControl`], over the two kinds of
//! child a supervisor holds — an agent ([`AgentChild`], an `AgentHost` address) and a
//! nested supervisor ([`SupervisorChild`]) — so the supervisor restarts, parks, fixes,
//! stops and queries either the same way.

use std::time::Duration;

use actix::prelude::*;

use super::{LocalFuture, Supervisor};
use crate::agent::Agent;
use crate::host::AgentHost;
use crate::lifecycle::{Cause, Failure, ManualFixed, StopFailure};
use crate::protocol::{
    AgentStatus, FixParked, GetStatus, Kill, ParkAgent, ParkSubtree, RestartAgent, RestartSubtree,
    ShutdownReport, ShutdownSubtree, StopAgent, SubtreeStatuses,
};

/// Type-erased operations on one child (agent or supervisor).
pub(super) trait ChildControl {
    fn restart(&self, attempt: u32, cause: Cause) -> LocalFuture<Result<u64, Failure>>;
    fn park(&self, reason: String) -> LocalFuture<()>;
    fn fix(&self) -> LocalFuture<Result<(), String>>;
    /// Stops the child (a supervisor: its subtree) and reports each agent as it stops.
    fn shutdown(&self, id: &str, timeout: Duration) -> LocalFuture<ShutdownReport>;
    fn statuses(&self) -> LocalFuture<Vec<AgentStatus>>;
    fn is_supervisor(&self) -> bool;
}

pub(super) struct AgentChild<A: Agent> {
    pub(super) addr: Addr<AgentHost<A>>,
}

impl<A: Agent> ChildControl for AgentChild<A> {
    fn restart(&self, attempt: u32, cause: Cause) -> LocalFuture<Result<u64, Failure>> {
        let request = self.addr.send(RestartAgent { attempt, cause });
        Box::pin(async move { request.await.map_err(|e| Failure::unreachable(e.to_string()))? })
    }
    fn park(&self, reason: String) -> LocalFuture<()> {
        let request = self.addr.send(ParkAgent { reason });
        Box::pin(async move {
            let _ = request.await;
        })
    }
    fn fix(&self) -> LocalFuture<Result<(), String>> {
        let request = self.addr.send(ManualFixed);
        Box::pin(
            async move { request.await.map_err(|e| e.to_string())?.map(drop).map_err(|e| e.to_string()) },
        )
    }
    fn shutdown(&self, id: &str, timeout: Duration) -> LocalFuture<ShutdownReport> {
        // The agent enforces `timeout` on its hook itself and answers once its actor
        // has stopped. The backstop is for an agent that cannot even take the request
        // (still inside a long `initialize`, say).
        let request = self.addr.send(StopAgent { timeout });
        let addr = self.addr.clone();
        let id = id.to_owned();
        Box::pin(async move {
            let backstop = timeout + KILL_GRACE;
            let outcome = match tokio::time::timeout(backstop, request).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Ok(()), // already stopped
                Err(_) => {
                    // The actor stops at its next poll, whatever its hook does; the
                    // reply to `Kill` comes from that same poll.
                    let _ = tokio::time::timeout(KILL_GRACE, addr.send(Kill)).await;
                    Err(StopFailure::Killed { timeout: backstop })
                }
            };
            match outcome {
                Ok(()) => ShutdownReport { stopped: vec![id], failed: Vec::new() },
                Err(reason) => ShutdownReport { stopped: Vec::new(), failed: vec![(id, reason)] },
            }
        })
    }
    fn statuses(&self) -> LocalFuture<Vec<AgentStatus>> {
        let request = self.addr.send(GetStatus);
        Box::pin(async move { request.await.into_iter().collect() })
    }
    fn is_supervisor(&self) -> bool {
        false
    }
}

/// How long past its shutdown timeout an agent that has not answered is given before
/// it is killed, and then for the kill to land.
const KILL_GRACE: Duration = Duration::from_secs(1);

pub(super) struct SupervisorChild {
    pub(super) addr: Addr<Supervisor>,
}

impl ChildControl for SupervisorChild {
    fn restart(&self, attempt: u32, cause: Cause) -> LocalFuture<Result<u64, Failure>> {
        let request = self.addr.send(RestartSubtree { attempt, cause });
        Box::pin(async move { request.await.map_err(|e| Failure::unreachable(e.to_string()))? })
    }
    fn park(&self, reason: String) -> LocalFuture<()> {
        let request = self.addr.send(ParkSubtree { reason });
        Box::pin(async move {
            let _ = request.await;
        })
    }
    fn fix(&self) -> LocalFuture<Result<(), String>> {
        let request = self.addr.send(FixParked);
        Box::pin(async move { request.await.map_err(|e| e.to_string())? })
    }
    fn shutdown(&self, id: &str, _timeout: Duration) -> LocalFuture<ShutdownReport> {
        let request = self.addr.send(ShutdownSubtree);
        let id = id.to_owned();
        Box::pin(async move {
            request.await.unwrap_or_else(|e| ShutdownReport {
                stopped: Vec::new(),
                failed: vec![(id, StopFailure::Unreachable(e.to_string()))],
            })
        })
    }
    fn statuses(&self) -> LocalFuture<Vec<AgentStatus>> {
        let request = self.addr.send(SubtreeStatuses);
        Box::pin(async move { request.await.unwrap_or_default() })
    }
    fn is_supervisor(&self) -> bool {
        true
    }
}
