//! Failure handling: a failure is recorded (`ErrorOccurred`) and reported to the
//! supervisor, which decides; the supervisor's answers — restart with a fresh
//! instance, park in `manual` — and an operator's fix (ManualFixed) are carried out
//! here.

use std::rc::Rc;

use actix::prelude::*;

use super::AgentHost;
use crate::agent::Agent;
use crate::events::EventKind;
use crate::lifecycle::{Cause, Failure, LifecycleError, Stage, State, Transition, Trigger};
use crate::protocol::{ChildExited, Exit, ParkAgent, RestartAgent};

impl<A: Agent> AgentHost<A> {
    /// Handles a failure: ErrorOccurred (persisted and published), then the supervisor
    /// is told and decides (restart per its strategy, or escalate).
    pub(super) fn fail(&mut self, failure: Failure, ctx: &mut Context<Self>) {
        let state = self.state.get();
        if matches!(state, State::Error | State::Manual | State::Shutdown) {
            return; // already being handled, parked, or gone
        }
        tracing::warn!(agent.id = %self.id, %failure, "agent failed");
        self.generation.set(self.generation.get() + 1);
        let generation = self.generation.get();
        let cause = Cause::Failure { failure: failure.clone() };
        self.publish(EventKind::Failure { failure: failure.clone() }, cause.clone());
        let error = self.transition(Trigger::ErrorOccurred, cause);
        let next = error.map(move |applied, host: &mut Self, ctx| {
            if let Err(e) = applied {
                tracing::error!(agent.id = %host.id, error = %e, "could not record the failure");
            }
            let report = ChildExited { child_id: host.id.clone(), generation, exit: Exit::Failed(failure) };
            // `send`, not `do_send`: it waits for room in the supervisor's bounded mailbox.
            let supervisor = host.supervisor.clone();
            ctx.spawn(
                async move {
                    let _ = supervisor.send(report).await;
                }
                .into_actor(host),
            );
        });
        ctx.wait(next);
    }

    /// Brings the agent back to `active` with a fresh instance from the factory, and
    /// resolves to the new generation, or to the failure that kept it from coming back
    /// (the agent is then in `error`, and the supervisor treats it as a new failure):
    ///
    /// | from                              | path                                              |
    /// |-----------------------------------|---------------------------------------------------|
    /// | `error` (it failed)               | RecoveryStart (`cause`) -> recovery -> active      |
    /// | a running state (a requested or sibling restart) | RecoveryStart (`cause`, extension 3) -> recovery -> active; no `error` |
    /// | `recovery` (an earlier restart stuck) | RecoveryFailed -> error -> RecoveryStart -> ...  |
    /// | `manual`                          | ManualFixed, as [`fix`](Self::fix)                |
    ///
    /// A RecoveryStart that cannot be applied (not persisted, say) is a failed restart:
    /// the instance is not replaced and the failure is returned.
    fn restart(
        &mut self,
        attempt: u32,
        cause: Cause,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<u64, Failure>> {
        let state = self.state.get();
        if state == State::Shutdown {
            return Box::pin(fut::ready(Err(Failure::unreachable("the agent has shut down"))));
        }
        if state == State::Manual {
            return Box::pin(self.fix(ctx).map(|result, host: &mut Self, _| match result {
                Ok(_) => Ok(host.generation.get()),
                Err(LifecycleError::InitializeFailed(failure)) => Err(failure),
                Err(e) => Err(Failure::error(Stage::Supervision, &e)),
            }));
        }
        self.generation.set(self.generation.get() + 1);
        let out_of_recovery: ResponseActFuture<Self, ()> = if state == State::Recovery {
            Box::pin(self.transition(Trigger::RecoveryFailed, cause.clone()).map(|_, _, _| ()))
        } else {
            Box::pin(fut::ready(()))
        };
        let published = cause.clone();
        Box::pin(
            out_of_recovery
                .then(move |(), host: &mut Self, _| host.transition(Trigger::RecoveryStart, cause))
                .then(
                    move |started, host: &mut Self, ctx| -> ResponseActFuture<Self, Result<u64, Failure>> {
                        if let Err(e) = started {
                            tracing::error!(agent.id = %host.id, error = %e, "could not start the recovery");
                            return Box::pin(fut::ready(Err(Failure::error(Stage::Supervision, &e))));
                        }
                        host.replace_instance(ctx);
                        Box::pin(host.initialize().into_actor(host).then(
                            move |initialized, host: &mut Self, _| {
                                host.restarts += 1;
                                host.publish(EventKind::Restarted { attempt }, published);
                                let next = match &initialized {
                                    Ok(()) => host.transition(Trigger::RecoveryComplete, Cause::Startup),
                                    Err(failure) => host.transition(
                                        Trigger::RecoveryFailed,
                                        Cause::Failure { failure: failure.clone() },
                                    ),
                                };
                                next.map(move |applied, host: &mut Self, _| {
                                    initialized?;
                                    applied.map_err(|e| Failure::error(Stage::Supervision, &e))?;
                                    Ok(host.generation.get())
                                })
                            },
                        ))
                    },
                ),
        )
    }

    /// Puts a fresh instance from the factory in place of the current one. A cycle of
    /// the old instance that is still running (hung, say) is dropped, not waited for:
    /// its database work runs on the store's runtime and is not cut half-way.
    fn replace_instance(&mut self, ctx: &mut Context<Self>) {
        if let Some(running) = self.cycle_handle.take() {
            ctx.cancel_future(running);
        }
        self.cycle_running.set(false);
        self.agent = Rc::new(tokio::sync::Mutex::new((self.factory)()));
        self.instance_since = chrono::Utc::now();
    }

    /// Drives the agent to `manual` from wherever it is, recording `reason`.
    fn park(&mut self, reason: String) -> ResponseActFuture<Self, ()> {
        let cause = Cause::Escalation { reason: reason.clone() };
        let to_error: ResponseActFuture<Self, ()> = match self.state.get() {
            State::Manual | State::Shutdown => return Box::pin(fut::ready(())),
            State::Error => Box::pin(fut::ready(())),
            State::Recovery => {
                Box::pin(self.transition(Trigger::RecoveryFailed, cause.clone()).map(|_, _, _| ()))
            }
            _ => Box::pin(self.transition(Trigger::ErrorOccurred, cause.clone()).map(|_, _, _| ())),
        };
        self.generation.set(self.generation.get() + 1);
        Box::pin(to_error.then(move |(), host: &mut Self, _| {
            host.transition(Trigger::ManualIntervention, cause).map(|result, host: &mut Self, _| {
                if let Err(e) = result {
                    tracing::error!(agent.id = %host.id, error = %e, "could not park the agent");
                }
            })
        }))
    }

    /// From `manual`: a fresh instance, initialize, then ManualFixed. If the fresh
    /// instance's `initialize` fails, nothing is persisted: the agent stays in
    /// `manual` (with the fresh, uninitialized instance, which runs no cycles there)
    /// and the caller gets [`LifecycleError::InitializeFailed`].
    pub(super) fn fix(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl ActorFuture<Self, Output = Result<Transition, LifecycleError>> + use<A> {
        self.generation.set(self.generation.get() + 1);
        self.replace_instance(ctx);
        self.initialize().into_actor(self).then(
            |initialized,
             host: &mut Self,
             _|
             -> ResponseActFuture<Self, Result<Transition, LifecycleError>> {
                match initialized {
                    Ok(()) => {
                        host.restarts += 1;
                        Box::pin(host.transition(Trigger::ManualFixed, Cause::Requested))
                    }
                    Err(failure) => {
                        tracing::warn!(agent.id = %host.id, %failure, "fix failed; the agent stays parked");
                        host.publish(
                            EventKind::Failure { failure: failure.clone() },
                            Cause::Failure { failure: failure.clone() },
                        );
                        Box::pin(fut::ready(Err(LifecycleError::InitializeFailed(failure))))
                    }
                }
            },
        )
    }
}

impl<A: Agent> Handler<RestartAgent> for AgentHost<A> {
    type Result = AtomicResponse<Self, Result<u64, Failure>>;

    fn handle(&mut self, message: RestartAgent, ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.restart(message.attempt, message.cause, ctx))
    }
}

impl<A: Agent> Handler<ParkAgent> for AgentHost<A> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, message: ParkAgent, _ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.park(message.reason))
    }
}
