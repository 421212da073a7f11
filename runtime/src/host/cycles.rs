//! The host's timers: the cycle timer (a tick while a cycle still runs is an overrun,
//! skipped; a cycle that fails for a database outage is deferred, not a failure; a
//! cycle past its timeout is dropped and fails the agent) and the heartbeat timer,
//! which keeps beating during a long cycle.

use std::time::Instant;

use actix::prelude::*;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use vigil_persistence::shared_state::Heartbeat;

use super::{AgentHost, panic_message};
use crate::agent::{Agent, AgentError};
use crate::events::EventKind;
use crate::lifecycle::{Cause, Failure, Stage, State};

impl<A: Agent> AgentHost<A> {
    pub(super) fn start_timers(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.cycle_interval, |host, ctx| host.tick(ctx));
        ctx.run_interval(self.settings.heartbeat_interval, |host, ctx| host.beat(ctx));
        // A first heartbeat right away, so a new agent is never reported stale.
        self.beat(ctx);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.state.get() != State::Active {
            return;
        }
        if self.cycle_running.get() {
            self.overruns += 1;
            self.publish(
                EventKind::CycleOverrun,
                Cause::Other { reason: "previous cycle still running".into() },
            );
            return;
        }
        self.cycle_running.set(true);
        let agent = self.agent.clone();
        let running = self.cycle_running.clone();
        let hook_ctx = self.ctx.clone();
        let generation = self.generation.get();
        let cycles = self.cycles.clone();
        let last_cycle = self.last_cycle_micros.clone();
        let busy = self.busy_micros.clone();
        let timeout = self.settings.cycle_timeout;
        let handle = ctx.spawn(
            async move {
                let mut agent = agent.lock().await;
                let started = Instant::now();
                // A hung cycle is dropped at its timeout, which releases the instance,
                // and fails the agent: the supervisor then restarts it fresh.
                let outcome = tokio::time::timeout(timeout, run_cycle(agent.cycle(&hook_ctx)))
                    .await
                    .unwrap_or_else(|_| CycleEnd::Failed(Failure::timeout(Stage::Cycle, timeout)));
                running.set(false);
                (outcome, started.elapsed())
            }
            .into_actor(self)
            .map(move |(outcome, elapsed), host, ctx| match outcome {
                CycleEnd::Completed => {
                    if host.deferred_in_a_row > 0 {
                        tracing::info!(agent.id = %host.id, deferred = host.deferred_in_a_row, "database back; cycles resumed");
                        host.deferred_in_a_row = 0;
                    }
                    cycles.set(cycles.get() + 1);
                    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                    last_cycle.set(Some(micros));
                    busy.set(busy.get().saturating_add(micros));
                    tracing::trace!(agent.id = %host.id, ?elapsed, "cycle");
                    if host.ctx.events().wants_cycle_events() {
                        host.publish(
                            EventKind::CycleFinished { cycle: cycles.get(), duration: elapsed },
                            Cause::Other { reason: "cycle completed".into() },
                        );
                    }
                }
                // The database is away: not the agent's fault, and restarting it would
                // not bring the database back. The next tick tries again.
                CycleEnd::Deferred(reason) => {
                    host.deferred_in_a_row += 1;
                    if host.deferred_in_a_row == 1 {
                        tracing::warn!(agent.id = %host.id, %reason, "database unavailable; cycles deferred until it is back");
                    } else {
                        tracing::debug!(agent.id = %host.id, %reason, "cycle deferred");
                    }
                    host.publish(
                        EventKind::CycleDeferred { reason: reason.clone() },
                        Cause::Other { reason },
                    );
                }
                // A failure of an instance that was already replaced is old news.
                CycleEnd::Failed(failure) if host.generation.get() == generation => host.fail(failure, ctx),
                CycleEnd::Failed(_) => {}
            }),
        );
        self.cycle_handle = Some(handle);
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if let Ok(agent) = self.agent.try_lock() {
            self.last_payload = agent.heartbeat_payload();
        }
        let mut heartbeat = Heartbeat::new().status(self.state.get()).uptime(self.uptime());
        if let Some(payload) = self.last_payload.clone() {
            heartbeat = heartbeat.metadata(payload);
        }
        let shared = self.ctx.shared_state().clone();
        let id = self.id.clone();
        ctx.spawn(
            async move { shared.update_agent_heartbeat(&id, heartbeat).enqueue().await }
                .into_actor(self)
                .map(|result, host, _| {
                    if let Err(e) = result {
                        tracing::warn!(agent.id = %host.id, error = %e, "heartbeat not recorded");
                        host.publish(
                            EventKind::HeartbeatMissed { reason: e.to_string() },
                            Cause::Other { reason: e.to_string() },
                        );
                    }
                }),
        );
    }
}

/// How a cycle ended.
enum CycleEnd {
    Completed,
    /// It failed because the database is unavailable ([`AgentError::is_transient`]):
    /// skipped, not a failure of the agent.
    Deferred(String),
    /// It returned another error, panicked or timed out: a failure of the agent.
    Failed(Failure),
}

/// Runs a cycle, telling a database outage apart from a failure of the agent.
async fn run_cycle<F: Future<Output = Result<(), AgentError>>>(cycle: F) -> CycleEnd {
    match AssertUnwindSafe(cycle).catch_unwind().await {
        Ok(Ok(())) => CycleEnd::Completed,
        Ok(Err(error)) if error.is_transient() => CycleEnd::Deferred(error.to_string()),
        Ok(Err(error)) => CycleEnd::Failed(Failure::error(Stage::Cycle, &error)),
        Err(payload) => CycleEnd::Failed(Failure::panic(Stage::Cycle, panic_message(&payload))),
    }
}
