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
//!
//! | file                     | what lives there                                               |
//! |--------------------------|----------------------------------------------------------------|
//! | `host.rs`                | the [`AgentHost`] actor, its state and status, startup          |
//! | `host/cycles.rs`         | timers: cycles (overruns, deferral in an outage) and heartbeats |
//! | `host/failure.rs`        | failure handling: report to the supervisor, restart, park, fix  |
//! | `host/transitions.rs`    | lifecycle transitions: applied, persisted, published            |
//! | `host/shutdown.rs`       | the shutdown hook and stopping                                  |
//! | `host/ask.rs`            | typed messages ([`crate::messaging`]) served by the host        |
//!
//! [`Ask`]: crate::messaging::Ask
//! [`AskError::Unavailable`]: crate::messaging::AskError::Unavailable
//! [`AskError::Restarted`]: crate::messaging::AskError::Restarted
//! [`AskError::Failed`]: crate::messaging::AskError::Failed
//! [`AskError::Stopped`]: crate::messaging::AskError::Stopped

mod ask;
mod cycles;
mod failure;
mod shutdown;
mod transitions;

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use actix::prelude::*;
use futures_util::FutureExt;
use vigil_persistence::shared_state::Writer;
use vigil_persistence::types::Ts;
use vigil_persistence::{SharedState, Write};

use crate::agent::{Agent, AgentError, AgentSettings};
use crate::context::AgentContext;
use crate::events::{EventBus, EventKind, LifecycleEvent};
use crate::lifecycle::{Cause, Failure, LifecycleError, Stage, State, StopFailure, Transition, Trigger};
use crate::protocol::{AgentStatus, ChildExited, GetStatus};

/// Longest an agent's `initialize` hook may run before it counts as failed.
pub const INITIALIZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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

    /// Runs `initialize` on the current agent instance, within [`INITIALIZE_TIMEOUT`]:
    /// an initialize that never returns is a failure, not a stuck supervisor.
    pub(super) fn initialize(&self) -> impl Future<Output = Result<(), Failure>> + use<A> {
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

impl<A: Agent> Handler<GetStatus> for AgentHost<A> {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// With the group-commit writer, queues `write` in the lifecycle lane (in order,
/// behind this agent's earlier writes, never refused for a full queue) without waiting
/// for its commit; with the direct writer, writes it. See `persist_transition` (`host/transitions.rs`) for
/// what that guarantees.
async fn queue_or_write(shared: &SharedState, write: Write) -> Result<(), vigil_persistence::StoreError> {
    match shared.writer() {
        Writer::Actor(writer) => Ok(writer.enqueue_lifecycle(write)?),
        Writer::Direct => shared.write(write).await,
    }
}
