//! What a supervisor is asked by the runtime, by its parent and by the control plane,
//! apart from the OTP calls ([`super::otp`]): restart, park, fix, stop or report on
//! the whole subtree, and a restart or a fix asked for by id.
//!
//! The messages are defined in [`crate::protocol`]; these are the supervisor's
//! handlers.

use actix::prelude::*;

use super::Supervisor;
use crate::lifecycle::{Failure, State};
use crate::protocol::{
    AgentStatus, FixParked, ForgetRestarts, ParkSubtree, RestartRequested, RestartSubtree, ShutdownReport,
    ShutdownSubtree, SubtreeStatuses, SupervisorError,
};

impl Handler<RestartSubtree> for Supervisor {
    type Result = AtomicResponse<Self, Result<u64, Failure>>;

    fn handle(&mut self, message: RestartSubtree, _ctx: &mut Context<Self>) -> Self::Result {
        self.generation += 1;
        self.recent.clear();
        let generation = self.generation;
        let controls: Vec<_> = self.children.iter().filter_map(|c| c.control.clone()).collect();
        AtomicResponse::new(Box::pin(
            async move {
                for control in controls {
                    control.restart(message.attempt, message.cause.clone()).await?;
                }
                Ok(generation)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ParkSubtree> for Supervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, message: ParkSubtree, _ctx: &mut Context<Self>) -> Self::Result {
        let controls: Vec<_> = self.children.iter().filter_map(|c| c.control.clone()).collect();
        AtomicResponse::new(Box::pin(
            async move {
                for control in controls {
                    control.park(message.reason.clone()).await;
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<FixParked> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), String>>;

    fn handle(&mut self, _: FixParked, _ctx: &mut Context<Self>) -> Self::Result {
        self.forget_restarts();
        let controls: Vec<_> = self.children.iter().filter_map(|c| c.control.clone()).collect();
        AtomicResponse::new(Box::pin(
            async move {
                for control in controls {
                    let parked = control.statuses().await.iter().any(|s| s.state == State::Manual);
                    if control.is_supervisor() || parked {
                        control.fix().await?;
                    }
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ShutdownSubtree> for Supervisor {
    type Result = AtomicResponse<Self, ShutdownReport>;

    fn handle(&mut self, _: ShutdownSubtree, _ctx: &mut Context<Self>) -> Self::Result {
        let children: Vec<_> = self
            .children
            .iter_mut()
            .rev()
            .filter_map(|c| {
                c.control.take().map(|control| (c.spec.id.clone(), c.spec.shutdown_timeout, control))
            })
            .collect();
        AtomicResponse::new(Box::pin(
            async move {
                let mut report = ShutdownReport::default();
                for (id, timeout, control) in children {
                    report.extend(control.shutdown(&id, timeout).await);
                }
                report
            }
            .into_actor(self)
            .map(|report, _, ctx| {
                ctx.stop();
                report
            }),
        ))
    }
}

impl Handler<SubtreeStatuses> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<AgentStatus>>;

    fn handle(&mut self, _: SubtreeStatuses, _ctx: &mut Context<Self>) -> Self::Result {
        let controls: Vec<_> = self.children.iter().filter_map(|c| c.control.clone()).collect();
        Box::pin(
            async move {
                let mut all = Vec::new();
                for control in controls {
                    all.extend(control.statuses().await);
                }
                all
            }
            .into_actor(self),
        )
    }
}

impl Handler<RestartRequested> for Supervisor {
    type Result = Result<(), SupervisorError>;

    fn handle(&mut self, request: RestartRequested, ctx: &mut Context<Self>) -> Self::Result {
        let index = self
            .children
            .iter()
            .position(|c| c.spec.id == request.child_id)
            .ok_or_else(|| SupervisorError::NoSuchChild(request.child_id.clone()))?;
        if self.children[index].control.is_none() {
            return Err(SupervisorError::Child { id: request.child_id, reason: "terminated".into() });
        }
        tracing::info!(supervisor = %self.name, child = %request.child_id, reason = %request.reason, "restart requested");
        self.on_request(index, request.reason, ctx);
        Ok(())
    }
}

impl Handler<ForgetRestarts> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: ForgetRestarts, _ctx: &mut Context<Self>) {
        self.forget_restarts();
    }
}
