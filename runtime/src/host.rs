//! [`AgentHost`]: the actix actor that runs one agent.
//!
//! The host owns the agent's lifecycle state, its timers and its failure handling; the
//! agent struct itself sits behind an async mutex so that exactly one hook or message
//! handler touches it at a time while heartbeats keep flowing during a long cycle.
//!
//! ```text
//!  started ─▶ register ─▶ Initialize ─▶ initialize() ─▶ DeployComplete ─▶ Start ─▶ active
//!                                                                                  │
//!     ┌──────── cycle timer: cycle() unless the previous one still runs ◀──────────┤
//!     │         heartbeat timer: heartbeat row + last_heartbeat (own timer)         │
//!     ▼                                                                             │
//!  failure (error or panic in any hook or handler)                                  │
//!     ErrorOccurred ─▶ intensity left? ── yes ─▶ RecoveryStart ─▶ fresh agent from  │
//!                          │                      the factory ─▶ initialize() ─▶ RecoveryComplete
//!                          no ─▶ ManualIntervention (parked in `manual` until ManualFixed)
//!
//!  requested restart (operator, monitor, a sibling's failure): not a failure
//!     active ─▶ RecoveryStart (RestartRequested / SiblingRestart) ─▶ fresh agent ─▶ initialize() ─▶ RecoveryComplete
//! ```
//!
//! **Failures are typed.** A hook's error (with its `source()` chain as text), a panic
//! or a timeout becomes a [`Failure`] (stage and kind), recorded in the
//! `ErrorOccurred` transition's [`Cause::Failure`] and sent to the supervisor.
//!
//! **Messages at the moment of failure.** A typed message ([`Ask`]) is only handled
//! while the agent is serviceable (monitoring, active, optimizing, standby,
//! maintenance). One that arrives in another state, or that was waiting for the agent
//! when it failed, is answered with [`AskError::Unavailable`] or
//! [`AskError::Restarted`] — never handed to the fresh instance unasked and never
//! dropped silently. The failing message itself gets [`AskError::Failed`]. Once the
//! agent is shutting down or stopped, the answer is [`AskError::Stopped`].
//!
//! **A database outage is not a failure.** A cycle that returns an error saying the
//! database is unavailable ([`AgentError::is_transient`]) is skipped, published as
//! [`EventKind::CycleDeferred`], and tried again at the next tick; it never reaches
//! the supervisor, so an outage of any length uses none of its restart intensity.
//!
//! **Shutdown.** `ShutdownRequest` is applied like any transition; then the shutdown
//! hook runs (after a cycle in flight, which keeps the agent until it ends) within the
//! shutdown timeout, and the actor stops. The requester is answered from `stopped()`,
//! so a supervisor that awaits the answer asks its next child only once this one is
//! gone — its hook finished, failed, or cut at the timeout.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use vigil_persistence::shared_state::{Heartbeat, Writer};
use vigil_persistence::types::Ts;
use vigil_persistence::{SharedState, StoreError, Write};

use crate::agent::{Agent, AgentError, AgentSettings};
use crate::context::AgentContext;
use crate::events::{EventBus, EventKind, LifecycleEvent};
use crate::lifecycle::{
    Cause, Failure, LifecycleError, LifecycleMessage, Stage, State, StopFailure, Transition, Trigger,
};
use crate::supervisor::{ChildExited, Exit};

/// A message an agent answers with a typed reply: implement [`Handles`] for it.
pub trait AgentMessage: Send + 'static {
    /// The reply.
    type Reply: Send + 'static;
}

/// An agent that answers messages of type `M`.
pub trait Handles<M: AgentMessage>: Agent {
    /// Answers one message. An error is a failure of the agent, like a panic.
    #[allow(async_fn_in_trait)]
    async fn handle(&mut self, message: M, ctx: &AgentContext) -> Result<M::Reply, AgentError>;
}

/// Why a typed message got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The agent is not in a state that serves messages.
    #[error("agent is {0}, not serving messages")]
    Unavailable(State),
    /// The agent failed while the message waited; it was not delivered.
    #[error("agent failed and restarted before the message was handled")]
    Restarted,
    /// The handler failed (the agent is being recovered).
    #[error("handler failed: {0}")]
    Failed(Failure),
    /// The agent has shut down (or is shutting down): it will not answer again.
    #[error("agent has stopped")]
    Stopped,
    /// The message could not be delivered (a mailbox timeout; a closed mailbox is
    /// [`AskError::Stopped`]).
    #[error("agent mailbox: {0}")]
    Mailbox(MailboxError),
    /// No agent with that id and type.
    #[error("no agent `{0}` of that type")]
    NotFound(String),
}

impl From<MailboxError> for AskError {
    /// A closed mailbox means the agent's actor has stopped: [`AskError::Stopped`].
    fn from(error: MailboxError) -> Self {
        match error {
            MailboxError::Closed => AskError::Stopped,
            other => AskError::Mailbox(other),
        }
    }
}

/// Envelope of a typed message to an agent.
#[derive(Debug)]
pub struct Ask<M: AgentMessage>(pub M);

impl<M: AgentMessage> Message for Ask<M> {
    type Result = Result<M::Reply, AskError>;
}

/// Longest an agent's `initialize` hook may run before it counts as failed.
pub const INITIALIZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A snapshot of one agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentStatus {
    /// The agent's id.
    pub agent_id: String,
    /// Its state.
    pub state: State,
    /// Cycles completed since it was spawned.
    pub cycles: u64,
    /// Restarts since it was spawned.
    pub restarts: u64,
    /// Cycle ticks skipped because a cycle still ran.
    pub overruns: u64,
    /// How long the last completed cycle took, in microseconds (`None` before the first).
    pub last_cycle_micros: Option<u64>,
    /// Time spent in completed cycles since the agent was spawned, in microseconds
    /// (with `cycles`, the mean cycle time over any interval).
    pub busy_micros: u64,
}

/// Asks for an [`AgentStatus`].
#[derive(Debug, Message)]
#[rtype(result = "AgentStatus")]
pub struct GetStatus;

type Factory<A> = Box<dyn Fn() -> A>;

/// The actor that runs one agent of type `A`.
pub struct AgentHost<A: Agent> {
    id: String,
    settings: AgentSettings,
    state: Rc<Cell<State>>,
    /// Bumped on every restart; messages waiting across a restart are refused.
    generation: Rc<Cell<u64>>,
    agent: Rc<tokio::sync::Mutex<A>>,
    factory: Factory<A>,
    /// Shared with every hook call; an `Rc` so a message costs no context clone.
    ctx: Rc<AgentContext>,
    /// Where failures are reported; the supervisor decides what happens next.
    supervisor: Recipient<ChildExited>,
    last_payload: Option<serde_json::Value>,
    cycles: Rc<Cell<u64>>,
    /// Duration of the last completed cycle, for [`AgentStatus::last_cycle_micros`].
    last_cycle_micros: Rc<Cell<Option<u64>>>,
    /// Total time in completed cycles, for [`AgentStatus::busy_micros`].
    busy_micros: Rc<Cell<u64>>,
    /// Set while a cycle runs: a tick that finds it set is skipped, not queued.
    cycle_running: Rc<Cell<bool>>,
    /// The running cycle's future, cancelled when the instance is replaced.
    cycle_handle: Option<SpawnHandle>,
    restarts: u64,
    overruns: u64,
    /// Cycles deferred in a row because the database is unavailable: an outage is
    /// logged once when it starts and once when it ends, not at every tick.
    deferred_in_a_row: u64,
    /// When the host was spawned, and when its current instance was made.
    spawned_at: chrono::DateTime<chrono::Utc>,
    instance_since: chrono::DateTime<chrono::Utc>,
    ready: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Set once a `ShutdownRequest` is applied; its requesters are answered from
    /// `stopped()`, once the shutdown hook has ended and the actor has stopped (or was
    /// killed), so a supervisor asks the next child only then.
    stopping: Option<Stopping>,
}

/// A shutdown under way: the applied transition, the hook's outcome once it ended,
/// and who waits for the actor to stop.
struct Stopping {
    transition: Transition,
    /// `None` while the hook runs (and if the actor was killed before it ended).
    hook: Option<Result<(), StopFailure>>,
    waiters: Vec<StopWaiter>,
}

/// What a shutdown came to, sent to each of its requesters once the actor stopped.
#[derive(Debug, Clone)]
struct StopOutcome {
    /// The `ShutdownRequest` transition, or why it was refused.
    transition: Result<Transition, LifecycleError>,
    /// Whether the shutdown hook finished cleanly within its timeout.
    hook: Result<(), StopFailure>,
}

type StopWaiter = tokio::sync::oneshot::Sender<StopOutcome>;

impl<A: Agent> std::fmt::Debug for AgentHost<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHost")
            .field("id", &self.id)
            .field("state", &self.state.get())
            .finish_non_exhaustive()
    }
}

/// How to spawn an agent: its id, factory and supervisor.
pub(crate) struct HostParts<A: Agent> {
    pub(crate) id: String,
    pub(crate) factory: Factory<A>,
    /// `A::settings()` with the child spec's overrides.
    pub(crate) settings: AgentSettings,
    pub(crate) supervisor: Recipient<ChildExited>,
    pub(crate) shared: SharedState,
    pub(crate) events: EventBus,
    pub(crate) control: crate::control::RuntimeControl,
    pub(crate) ready: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl<A: Agent> AgentHost<A> {
    pub(crate) fn new(parts: HostParts<A>) -> Self {
        let first = (parts.factory)();
        let now = chrono::Utc::now();
        Self {
            settings: parts.settings,
            state: Rc::new(Cell::new(State::Initializing)),
            generation: Rc::new(Cell::new(0)),
            agent: Rc::new(tokio::sync::Mutex::new(first)),
            factory: parts.factory,
            ctx: Rc::new(AgentContext::new(parts.id.clone(), parts.shared, parts.events, parts.control)),
            id: parts.id,
            supervisor: parts.supervisor,
            last_payload: None,
            cycles: Rc::new(Cell::new(0)),
            last_cycle_micros: Rc::new(Cell::new(None)),
            busy_micros: Rc::new(Cell::new(0)),
            cycle_running: Rc::new(Cell::new(false)),
            cycle_handle: None,
            restarts: 0,
            overruns: 0,
            deferred_in_a_row: 0,
            spawned_at: now,
            instance_since: now,
            ready: Some(parts.ready),
            stopping: None,
        }
    }

    fn publish(&self, kind: EventKind, cause: Cause) {
        self.ctx.events().publish(LifecycleEvent::new(self.id.clone(), kind, cause));
    }

    /// Persists and applies a transition; the future resolves once it is recorded.
    fn transition(
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

    /// Runs `initialize` on the current agent instance, within [`INITIALIZE_TIMEOUT`]:
    /// an initialize that never returns is a failure, not a stuck supervisor.
    fn initialize(&self) -> impl Future<Output = Result<(), Failure>> + use<A> {
        let agent = self.agent.clone();
        let ctx = self.ctx.clone();
        async move {
            let hook = run_hook(Stage::Initialize, async move { agent.lock().await.initialize(&ctx).await });
            tokio::time::timeout(INITIALIZE_TIMEOUT, hook)
                .await
                .unwrap_or_else(|_| Err(Failure::timeout(Stage::Initialize, INITIALIZE_TIMEOUT)))
        }
    }

    /// Boot: register, walk to `active`, start the timers.
    fn boot(&mut self, ctx: &mut Context<Self>) {
        let shared = self.ctx.shared_state().clone();
        let id = self.id.clone();
        let name = std::any::type_name::<A>().rsplit("::").next().unwrap_or("agent").to_owned();
        // The write alone, not `register_agent`, which reads the row back for a caller
        // who wants it: the host does not, and 10,000 agents starting paid 10,000 reads.
        // Queued like the transitions that follow it, so a child is ready without
        // waiting for a commit and ordered start stays cheap.
        let register = async move {
            queue_or_write(&shared, Write::RegisterAgent { agent_id: id, agent_name: name, at: Ts::now() })
                .await
                .map_err(|e| Failure::error(Stage::Initialize, &e))
        };
        let sequence = register
            .into_actor(self)
            .then(|done, host: &mut Self, _| host.step(done, Trigger::Initialize))
            .then(|done, host: &mut Self, _| {
                let init = host.initialize();
                async move {
                    done?;
                    init.await
                }
                .into_actor(host)
            })
            .then(|done, host: &mut Self, _| host.step(done, Trigger::DeployComplete))
            .then(|done, host: &mut Self, _| host.step(done, Trigger::Start))
            .map(|outcome: Result<(), Failure>, host: &mut Self, ctx| {
                if let Some(ready) = host.ready.take() {
                    let _ = ready.send(outcome.clone().map_err(|failure| failure.to_string()));
                }
                match outcome {
                    Ok(()) => host.start_timers(ctx),
                    Err(failure) => host.fail(failure, ctx),
                }
            });
        ctx.wait(sequence);
    }

    /// One startup transition, unless an earlier step failed.
    fn step(
        &mut self,
        done: Result<(), Failure>,
        trigger: Trigger,
    ) -> ResponseActFuture<Self, Result<(), Failure>> {
        match done {
            Err(failure) => Box::pin(fut::ready(Err(failure))),
            Ok(()) => {
                Box::pin(self.transition(trigger, Cause::Startup).map(|applied, _, _| {
                    applied.map(drop).map_err(|e| Failure::error(Stage::Initialize, &e))
                }))
            }
        }
    }

    fn start_timers(&mut self, ctx: &mut Context<Self>) {
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

    /// Handles a failure: ErrorOccurred (persisted and published), then the supervisor
    /// is told and decides (restart per its strategy, or escalate).
    fn fail(&mut self, failure: Failure, ctx: &mut Context<Self>) {
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

    fn status(&self) -> AgentStatus {
        AgentStatus {
            agent_id: self.id.clone(),
            state: self.state.get(),
            cycles: self.cycles.get(),
            restarts: self.restarts,
            overruns: self.overruns,
            last_cycle_micros: self.last_cycle_micros.get(),
            busy_micros: self.busy_micros.get(),
        }
    }

    /// What a heartbeat records as the agent's `uptime_details`.
    fn uptime(&self) -> serde_json::Value {
        let now = chrono::Utc::now();
        serde_json::json!({
            "spawned_at": self.spawned_at,
            "instance_since": self.instance_since,
            "uptime_secs": (now - self.instance_since).num_milliseconds() as f64 / 1e3,
            "restarts": self.restarts,
            "cycles": self.cycles.get(),
            "overruns": self.overruns,
            "busy_secs": self.busy_micros.get() as f64 / 1e6,
            "last_cycle_ms": self.last_cycle_micros.get().map(|us| us as f64 / 1e3),
            // What a reader needs to judge liveness at read time (`presence`).
            "node": self.ctx.control().node(),
            "heartbeat_interval_secs": self.settings.heartbeat_interval.as_secs_f64(),
        })
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
    fn fix(
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

    /// Applies `ShutdownRequest` (atomically, like any transition), then runs the
    /// shutdown hook and stops the actor, all within `timeout` from now. `waiter` hears the outcome
    /// from `stopped()`; a refused transition is answered at once.
    ///
    /// The hook is spawned, not waited on: a cycle in flight (which holds the agent)
    /// keeps being driven to its end, so the hook gets the agent after it, and a
    /// [`Kill`](crate::supervisor::Kill) is handled while the hook runs.
    fn begin_shutdown(
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

/// Runs a hook of `stage`, turning an error (with its source chain) or a panic into a
/// typed [`Failure`].
async fn run_hook<F: Future<Output = Result<(), AgentError>>>(stage: Stage, hook: F) -> Result<(), Failure> {
    match AssertUnwindSafe(hook).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure::error(stage, &error)),
        Err(payload) => Err(Failure::panic(stage, panic_message(&payload))),
    }
}

/// The panic payload as text, when it is text.
fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
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

/// With the group-commit writer, queues `write` in the lifecycle lane (in order,
/// behind this agent's earlier writes, never refused for a full queue) without waiting
/// for its commit; with the direct writer, writes it. See [`persist_transition`] for
/// what that guarantees.
async fn queue_or_write(shared: &SharedState, write: Write) -> Result<(), vigil_persistence::StoreError> {
    match shared.writer() {
        Writer::Actor(writer) => Ok(writer.enqueue_lifecycle(write)?),
        Writer::Direct => shared.write(write).await,
    }
}

impl<A: Agent> Actor for AgentHost<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        self.boot(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.publish(EventKind::Stopped, Cause::Shutdown);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err("agent stopped before it started".into()));
        }
        if let Some(stopping) = self.stopping.take() {
            let timeout = self.settings.shutdown_timeout;
            let hook = stopping.hook.unwrap_or(Err(StopFailure::Killed { timeout }));
            let outcome = StopOutcome { transition: Ok(stopping.transition), hook };
            for waiter in stopping.waiters {
                let _ = waiter.send(outcome.clone());
            }
        }
    }
}

/// A reply sent by a task of its own once its future resolves, so that it can come
/// after the actor has stopped: a reply future spawned in the actor's context (actix's
/// `ResponseActFuture`) is dropped with the actor, unanswered.
pub struct DetachedReply<T>(std::pin::Pin<Box<dyn Future<Output = T>>>);

impl<T> DetachedReply<T> {
    fn new(reply: impl Future<Output = T> + 'static) -> Self {
        Self(Box::pin(reply))
    }
}

impl<T> std::fmt::Debug for DetachedReply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedReply").finish_non_exhaustive()
    }
}

impl<A: Actor, M: Message<Result = T>, T: 'static> actix::dev::MessageResponse<A, M> for DetachedReply<T> {
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<T>>) {
        actix_rt::spawn(async move {
            let reply = self.0.await;
            if let Some(tx) = tx {
                let _ = tx.send(reply);
            }
        });
    }
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

/// Supervisor to child: shut down — `ShutdownRequest`, then the shutdown hook within
/// `timeout`, then stop. Answered once the actor has stopped: `Ok` if the hook
/// finished cleanly, else why not.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StopFailure>")]
pub(crate) struct StopAgent {
    pub(crate) timeout: Duration,
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

/// An operational transition asked for by id, without the agent's type (see
/// [`Trigger::is_operational`]); the caller checked the trigger.
#[derive(Debug, Message)]
#[rtype(result = "Result<Transition, LifecycleError>")]
pub(crate) struct Operate(pub(crate) Trigger);

impl<A: Agent> Handler<Operate> for AgentHost<A> {
    type Result = AtomicResponse<Self, Result<Transition, LifecycleError>>;

    fn handle(&mut self, Operate(trigger): Operate, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.transition(trigger, Cause::Requested)))
    }
}

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
            let mut agent = agent.lock().await;
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

/// Supervisor to child: come back to `active` with fresh state.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, Failure>")]
pub(crate) struct RestartAgent {
    /// Restart number within the intensity period; 0 for a restart that does not count.
    pub(crate) attempt: u32,
    /// Recorded with RecoveryStart: [`Cause::Restart`] after a failure of this agent,
    /// [`Cause::RestartRequested`] or [`Cause::SiblingRestart`] otherwise.
    pub(crate) cause: Cause,
}

impl<A: Agent> Handler<RestartAgent> for AgentHost<A> {
    type Result = AtomicResponse<Self, Result<u64, Failure>>;

    fn handle(&mut self, message: RestartAgent, ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.restart(message.attempt, message.cause, ctx))
    }
}

/// Supervisor to child: go to `manual` and stay there until ManualFixed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ParkAgent {
    pub(crate) reason: String,
}

impl<A: Agent> Handler<ParkAgent> for AgentHost<A> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, message: ParkAgent, _ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.park(message.reason))
    }
}

impl<A: Agent> Handler<GetStatus> for AgentHost<A> {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}
