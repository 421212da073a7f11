//! Shutdown: `ShutdownRequest`, then the agent's shutdown hook within its timeout
//! (after a cycle in flight), then the actor stops; the requesters are answered from
//! `stopped()`. A [`Kill`] stops the actor at once.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{AgentHost, DetachedReply, StopOutcome, StopWaiter, Stopping, run_hook};
use crate::agent::Agent;
use crate::lifecycle::{Cause, Failure, Stage, StopFailure, Trigger};
use crate::protocol::{Kill, StopAgent};

impl<A: Agent> AgentHost<A> {
    /// Applies `ShutdownRequest` (atomically, like any transition), then runs the
    /// shutdown hook and stops the actor, all within `timeout` from now. `waiter` hears the outcome
    /// from `stopped()`; a refused transition is answered at once.
    ///
    /// The hook is spawned, not waited on: a cycle in flight (which holds the agent)
    /// keeps being driven to its end, so the hook gets the agent after it, and a
    /// [`Kill`] is handled while the hook runs.
    pub(super) fn begin_shutdown(
        &mut self,
        cause: Cause,
        timeout: Duration,
        waiter: StopWaiter,
        ctx: &mut Context<Self>,
    ) {
        let deadline = Instant::now() + timeout;
        let applied =
            self.transition(Trigger::ShutdownRequest, cause).map(move |result, host: &mut Self, ctx| {
                match result {
                    Ok(transition) => {
                        host.stopping = Some(Stopping { transition, hook: None, waiters: vec![waiter] });
                        host.run_shutdown_hook(deadline, timeout, ctx);
                    }
                    Err(refused) => {
                        // Not recorded, but stopped all the same: a shutdown is not optional.
                        let hook = Err(StopFailure::Refused(refused.clone()));
                        let _ = waiter.send(StopOutcome { transition: Err(refused), hook });
                        ctx.stop();
                    }
                }
            });
        ctx.wait(applied);
    }

    /// Runs the shutdown hook until `deadline` (`timeout` after the request), records
    /// how it ended, stops the actor.
    fn run_shutdown_hook(&mut self, deadline: Instant, timeout: Duration, ctx: &mut Context<Self>) {
        let agent = self.agent.clone();
        let hook_ctx = self.ctx.clone();
        let hook = async move {
            let hook = run_hook(Stage::Shutdown, async move { agent.lock().await.shutdown(&hook_ctx).await });
            match tokio::time::timeout_at(deadline.into(), hook).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(failure)) => Err(StopFailure::Hook(failure)),
                Err(_) => Err(StopFailure::Hook(Failure::timeout(Stage::Shutdown, timeout))),
            }
        };
        ctx.spawn(hook.into_actor(self).map(|outcome, host, ctx| {
            if let Err(reason) = &outcome {
                tracing::warn!(agent.id = %host.id, %reason, "agent did not shut down cleanly");
            }
            if let Some(stopping) = &mut host.stopping {
                stopping.hook = Some(outcome);
            }
            ctx.stop();
        }));
    }
}

impl<A: Agent> Handler<StopAgent> for AgentHost<A> {
    type Result = DetachedReply<Result<(), StopFailure>>;

    fn handle(&mut self, StopAgent { timeout }: StopAgent, ctx: &mut Context<Self>) -> Self::Result {
        let (waiter, stopped) = tokio::sync::oneshot::channel();
        match &mut self.stopping {
            // Already on its way down (a ShutdownRequest by hand): wait for the same end.
            Some(stopping) => stopping.waiters.push(waiter),
            None => self.begin_shutdown(Cause::Shutdown, timeout, waiter, ctx),
        }
        // No outcome at all: the actor stopped before the transition was applied.
        DetachedReply::new(async move { stopped.await.map_or(Ok(()), |outcome| outcome.hook) })
    }
}

impl<A: Agent> Handler<Kill> for AgentHost<A> {
    type Result = ();
    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
