//! Lifecycle transitions of a running agent: each is checked against the table,
//! persisted (see [`persist_transition`] for what is guaranteed when), applied,
//! published, and handed to the agent's `on_transition` hook. Lifecycle messages sent
//! to the host, and operational transitions asked for by id, land here.

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use vigil_persistence::types::Ts;
use vigil_persistence::{SharedState, StoreError, Write};

use super::{AgentHost, DetachedReply, panic_message, queue_or_write};
use crate::agent::Agent;
use crate::events::EventKind;
use crate::lifecycle::{Cause, Failure, LifecycleError, LifecycleMessage, Stage, State, Transition, Trigger};
use crate::protocol::Operate;

impl<A: Agent> AgentHost<A> {
    /// Persists and applies a transition; the future resolves once it is recorded.
    pub(super) fn transition(
        &mut self,
        trigger: Trigger,
        cause: Cause,
    ) -> impl ActorFuture<Self, Output = Result<Transition, LifecycleError>> + use<A> {
        let planned = Transition::new(self.id.clone(), self.state.get(), trigger, cause);
        let shared = self.ctx.shared_state().clone();
        async move {
            let transition = planned?;
            persist_transition(&shared, &transition).await.map_err(|e| LifecycleError::Persistence(e.to_string()))?;
            Ok(transition)
        }
        .into_actor(self)
        .map(|result, host: &mut Self, ctx| {
            if let Ok(transition) = &result {
                host.state.set(transition.to);
                tracing::info!(agent.id = %host.id, from = %transition.from, to = %transition.to, cause = %transition.cause, "transition");
                host.publish(
                    EventKind::Transition { from: transition.from, to: transition.to, trigger: transition.trigger },
                    transition.cause.clone(),
                );
                let agent = host.agent.clone();
                let hook_ctx = host.ctx.clone();
                let applied = transition.clone();
                ctx.spawn(
                    async move {
                        let mut agent = agent.lock().await;
                        AssertUnwindSafe(agent.on_transition(&applied, &hook_ctx)).catch_unwind().await.err()
                    }
                    .into_actor(host)
                    .map(|panic, host, ctx| {
                        if let Some(payload) = panic {
                            host.fail(Failure::panic(Stage::Transition, panic_message(&payload)), ctx);
                        }
                    }),
                );
            }
            result
        })
    }

    /// Runs `work` as an atomic step (nothing else of this agent runs meanwhile, as
    /// with actix's `AtomicResponse`) and replies with its result.
    fn atomically<T: 'static>(
        &mut self,
        work: impl ActorFuture<Self, Output = Result<T, LifecycleError>> + 'static,
        ctx: &mut Context<Self>,
    ) -> DetachedReply<Result<T, LifecycleError>> {
        let (reply, replied) = tokio::sync::oneshot::channel();
        ctx.wait(work.map(move |result, _, _| {
            let _ = reply.send(result);
        }));
        DetachedReply::new(async move { replied.await.unwrap_or(Err(LifecycleError::AgentStopped)) })
    }
}

/// Records a transition: the agent's status and a `state_transition` event.
///
/// **Durability.** How long this waits depends on the writer:
///
/// | writer            | resolves when                                       | a failed write              |
/// |-------------------|-----------------------------------------------------|-----------------------------|
/// | `Writer::Direct`  | both rows have committed                            | fails the transition        |
/// | `Writer::Actor`   | both rows are *queued* in the persistence actor     | logged and counted by the actor; the transition stands |
///
/// With the persistence actor the transition is applied and published without waiting
/// for its commit (a restart walks three transitions, and awaiting six commits made
/// restarts take milliseconds instead of microseconds). What stays guaranteed:
/// - **order**: the actor commits its queue in order, and an agent's transitions are
///   queued one after the other, behind everything the agent queued before;
/// - **durability at the end**: [`Runtime::shutdown`](crate::Runtime::shutdown) flushes
///   the writer, so every transition is committed before it returns; in between,
///   `PersistenceHandle::flush` waits for everything queued so far (read-your-writes);
/// - **a bounded lane of its own**: transitions are admitted past the queue's capacity
///   (`PersistenceHandle::enqueue_lifecycle`), so a platform stopping under a full
///   queue never waits for room; an agent queues its next transition only after the
///   last, so they are at most a few per agent;
/// - an invalid row is still refused at once, as a typed error.
async fn persist_transition(
    shared: &SharedState,
    t: &Transition,
) -> Result<(), vigil_persistence::StoreError> {
    let at = Ts::from(t.at);
    // The record is the event's data, as readers expect it (`TransitionRecord::from_event`).
    // Cannot fail in practice (plain fields, string keys); if it did, the row is refused.
    let data = serde_json::to_value(t)
        .map_err(|e| StoreError::InvalidInput { field: "event_data", reason: e.to_string() })?;
    let writes = [
        Write::StateChange { agent_id: t.agent_id.clone(), status: t.to, at },
        Write::Event {
            event_type: Transition::EVENT_TYPE.into(),
            severity: t.severity(),
            data: Some(data),
            at,
        },
    ];
    for write in writes {
        queue_or_write(shared, write).await?;
    }
    Ok(())
}

impl<A: Agent, M: LifecycleMessage> Handler<M> for AgentHost<A> {
    type Result = DetachedReply<Result<Transition, LifecycleError>>;

    /// Applies the trigger atomically. A `ShutdownRequest` is answered once the agent
    /// has stopped: its shutdown hook ended (or timed out at the agent's
    /// `shutdown_timeout`) and the actor is gone.
    fn handle(&mut self, message: M, ctx: &mut Context<Self>) -> Self::Result {
        let cause = message.cause();
        match M::TRIGGER {
            Trigger::ManualFixed if self.state.get() == State::Manual => {
                let fix = self.fix(ctx);
                self.atomically(fix, ctx)
            }
            Trigger::ShutdownRequest => {
                let (waiter, stopped) = tokio::sync::oneshot::channel();
                self.begin_shutdown(cause, self.settings.shutdown_timeout, waiter, ctx);
                DetachedReply::new(async move {
                    stopped.await.map_or(Err(LifecycleError::AgentStopped), |outcome| outcome.transition)
                })
            }
            trigger => {
                let transition = self.transition(trigger, cause);
                self.atomically(transition, ctx)
            }
        }
    }
}

impl<A: Agent> Handler<Operate> for AgentHost<A> {
    type Result = AtomicResponse<Self, Result<Transition, LifecycleError>>;

    fn handle(&mut self, Operate(trigger): Operate, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.transition(trigger, Cause::Requested)))
    }
}
