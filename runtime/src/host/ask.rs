//! Typed messages ([`crate::messaging`]) as the host serves them: only while the agent
//! is serviceable, never across a restart, and a failing handler is a failure of the
//! agent.

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;

use super::{AgentHost, panic_message};
use crate::agent::Agent;
use crate::lifecycle::{Failure, Stage, State};
use crate::messaging::{AgentMessage, Ask, AskError, Handles};

impl<A: Handles<M>, M: AgentMessage> Handler<Ask<M>> for AgentHost<A> {
    type Result = ActorResponse<Self, Result<M::Reply, AskError>>;

    fn handle(&mut self, Ask(message): Ask<M>, ctx: &mut Context<Self>) -> Self::Result {
        let state = self.state.get();
        let serviceable = matches!(
            state,
            State::Monitoring | State::Active | State::Optimizing | State::Standby | State::Maintenance
        );
        if state == State::Shutdown {
            return ActorResponse::reply(Err(AskError::Stopped));
        }
        if !serviceable {
            return ActorResponse::reply(Err(AskError::Unavailable(state)));
        }
        let agent = self.agent.clone();
        let hook_ctx = self.ctx.clone();
        let generation = self.generation.clone();
        let sent_in = generation.get();
        let mut answer = Box::pin(async move {
            // An uncontended lock is taken without `lock().await`, which spends tokio's
            // cooperative budget: past 128 messages in one poll of the actor every
            // answer would come back pending and be spawned into the context, which
            // polls all of them at each wake (a backlog of tells went quadratic).
            let mut agent = match agent.try_lock() {
                Ok(agent) => agent,
                Err(_) => agent.lock().await,
            };
            if generation.get() != sent_in {
                return Err(AskError::Restarted);
            }
            match AssertUnwindSafe(agent.handle(message, &hook_ctx)).catch_unwind().await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(error)) => Err(AskError::Failed(Failure::error(Stage::Message, &error))),
                Err(payload) => {
                    Err(AskError::Failed(Failure::panic(Stage::Message, panic_message(&payload))))
                }
            }
        });
        // Most handlers finish without waiting on anything: answer in place rather than
        // spawning a future into the context (a third of a message's cost). A handler
        // that does wait is polled again, with the context's waker, once spawned.
        let mut poll_cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(result) = answer.as_mut().poll(&mut poll_cx) {
            self.after_ask(&result, sent_in, ctx);
            return ActorResponse::reply(result);
        }
        ActorResponse::r#async(answer.into_actor(self).map(move |result, host, ctx| {
            host.after_ask(&result, sent_in, ctx);
            result
        }))
    }
}

impl<A: Agent> AgentHost<A> {
    /// A handler that failed is a failure of the agent (unless that instance was
    /// already replaced).
    fn after_ask<R>(&mut self, result: &Result<R, AskError>, sent_in: u64, ctx: &mut Context<Self>) {
        if let Err(AskError::Failed(failure)) = result
            && self.generation.get() == sent_in
        {
            self.fail(failure.clone(), ctx);
        }
    }
}
