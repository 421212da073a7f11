//! Supervision with OTP semantics: strategies, restart types, restart intensity with
//! escalation, backoff, ordered start and reverse-order shutdown, nested trees.
//!
//! A [`Supervisor`] is an actix actor that owns an ordered list of children — agents
//! or other supervisors. When a child fails (a hook or handler returned an error or
//! panicked; the child has already recorded `ErrorOccurred`), the supervisor decides:
//!
//! | strategy                  | restarted after child *c* fails                     |
//! |---------------------------|-----------------------------------------------------|
//! | [`Strategy::OneForOne`]   | *c* only                                            |
//! | [`Strategy::OneForAll`]   | every child, in start order                         |
//! | [`Strategy::RestForOne`]  | *c* and every child started after it, in order      |
//!
//! | restart type ([`Restart`]) | on failure                                         |
//! |----------------------------|----------------------------------------------------|
//! | `Permanent`                | restarted                                          |
//! | `Transient`                | restarted (Vigil agents end only by failure or ShutdownRequest; a ShutdownRequest is never undone) |
//! | `Temporary`                | not restarted: shut down and left out of the group |
//!
//! A restart gives the agent a fresh instance from its factory and walks
//! `error -> recovery -> active`; siblings restarted with it go straight
//! `active -> recovery -> active` with [`Cause::SiblingRestart`] (lifecycle extension
//! 3: they did not fail). The address stays the same, so senders keep working. The
//! first restart in a quiet period is immediate; later ones wait an exponential
//! backoff with jitter, capped.
//!
//! A restart somebody asked for ([`crate::RuntimeControl::restart`]) follows the
//! strategy too, but is not a failure: the child goes `active -> recovery -> active`
//! with [`Cause::RestartRequested`], at once, and nothing counts against intensity.
//!
//! **Intensity.** More than `max_restarts` restarts caused by failures within `period`
//! (OTP default 1 in 5 s) and the supervisor gives up: a nested supervisor *escalates* — its parent sees
//! it as a failed child and applies its own strategy to the whole subtree; the top
//! supervisor parks the affected agents in `manual` (persisted, published with the
//! reason). The runtime keeps running; `ManualFixed` restarts a parked agent, and a fix
//! ([`crate::RuntimeControl::fix`]) clears the restart history.
//!
//! ```no_run
//! use vigil_runtime::supervisor::{ChildSpec, Strategy, SupervisorSpec};
//! use vigil_runtime::{Agent, AgentContext, AgentResult, RestartIntensity};
//! # #[derive(vigil_runtime::Agent, Default)] struct Fetcher;
//! # impl Agent for Fetcher { async fn cycle(&mut self, _: &AgentContext) -> AgentResult { Ok(()) } }
//! # #[derive(vigil_runtime::Agent, Default)] struct Parser;
//! # impl Agent for Parser { async fn cycle(&mut self, _: &AgentContext) -> AgentResult { Ok(()) } }
//! let pipeline = SupervisorSpec::new("pipeline", Strategy::RestForOne)
//!     .intensity(RestartIntensity::new(3, std::time::Duration::from_secs(10)))
//!     .child(ChildSpec::agent("fetcher", Fetcher::default))
//!     .child(ChildSpec::agent("parser", Parser::default));
//! ```
//!
//! | file                 | what lives there                                                  |
//! |----------------------|-------------------------------------------------------------------|
//! | `supervisor.rs`      | the [`Supervisor`] actor: ordered start, failures, restarts, escalation |
//! | `supervisor/spec.rs` | [`SupervisorSpec`], [`ChildSpec`], [`Strategy`], [`RestartIntensity`] |
//! | `supervisor/child.rs`| child control: agents and nested supervisors behind one interface |
//! | `supervisor/otp.rs`  | the OTP calls: [`WhichChildren`], [`CountChildren`], [`StartChild`], [`TerminateChild`], [`RestartChild`] |
//! | `supervisor/subtree.rs` | the internal protocol: subtree restart, park, fix, shutdown, statuses |
//! | `supervisor/placement.rs` | cluster mode: a child held for another node, acquired and relinquished |

mod child;
mod otp;
mod placement;
mod spec;
mod subtree;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use vigil_persistence::SharedState;
use vigil_persistence::nodes::Fence;

use crate::agent::Restart;
use crate::events::{EventBus, EventKind, LifecycleEvent};
use crate::lifecycle::{Cause, Failure, FailureKind, Stage};
use crate::protocol::{ChildExited, Exit, ForgetRestarts};
pub use crate::protocol::{SupervisorError, TerminateChild};
use child::ChildControl;
pub use otp::{ChildCounts, ChildInfo, CountChildren, RestartChild, StartChild, WhichChildren};
pub(crate) use placement::{Acquire, Relinquish};
pub use spec::{ChildSpec, RestartIntensity, Strategy, SupervisorSpec};

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Everything a child needs from its supervisor to start.
#[derive(Clone)]
pub(crate) struct Environment {
    pub(crate) shared: SharedState,
    pub(crate) events: EventBus,
    /// Typed addresses of every agent in the tree, by id (`Runtime::addr`).
    pub(crate) control: crate::control::RuntimeControl,
    /// In cluster mode, the lease of each agent this node runs (see [`crate::cluster`]):
    /// an agent's writes carry it, so the writer refuses them once another node owns
    /// the agent. Empty otherwise.
    pub(crate) fences: Arc<Mutex<HashMap<String, Fence>>>,
}

impl Environment {
    /// The shared state agent `id` writes through: fenced by its lease in cluster mode.
    pub(crate) fn shared_for(&self, id: &str) -> SharedState {
        match self.fences.lock().expect("fences lock").get(id) {
            Some(fence) => self.shared.fenced(fence.clone()),
            None => self.shared.clone(),
        }
    }
}

struct Child {
    spec: ChildSpec,
    control: Option<Rc<dyn ChildControl>>,
    /// The generation the supervisor last knows of; older failure reports are stale.
    generation: u64,
    /// Placed on another node (cluster mode): not started until this node acquires it.
    held: bool,
}

/// The supervisor actor. See the module documentation.
pub struct Supervisor {
    name: String,
    strategy: Strategy,
    intensity: RestartIntensity,
    children: Vec<Child>,
    /// Times of the restarts that failures caused within the current period: restart
    /// intensity. Requested and sibling restarts are not failures and are not counted;
    /// a fix (`ForgetRestarts`) clears it.
    recent: VecDeque<Instant>,
    env: Environment,
    /// `None` at the top of the tree.
    parent: Option<Addr<Supervisor>>,
    /// Bumped when this supervisor's subtree is restarted by its parent.
    generation: u64,
    ready: Option<tokio::sync::oneshot::Sender<Vec<(String, String)>>>,
    self_addr: Option<Addr<Supervisor>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("children", &self.children.iter().map(|c| c.spec.id.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    pub(crate) fn new(
        spec: SupervisorSpec,
        env: Environment,
        parent: Option<Addr<Supervisor>>,
        ready: tokio::sync::oneshot::Sender<Vec<(String, String)>>,
    ) -> Self {
        Self {
            name: spec.name,
            strategy: spec.strategy,
            intensity: spec.intensity,
            children: spec
                .children
                .into_iter()
                .map(|child| {
                    let held = spec.held.contains(&child.id);
                    Child { spec: child, control: None, generation: 0, held }
                })
                .collect(),
            recent: VecDeque::new(),
            env,
            parent,
            generation: 0,
            ready: Some(ready),
            self_addr: None,
        }
    }

    /// Starts the children from `from` on that are not running, in order: each is
    /// spawned only once the one before it has reached `active` (or failed to), as OTP
    /// starts a child only after the previous child's start returned. Resolves to the
    /// children that failed to start.
    fn start_children(&mut self, from: usize) -> ResponseActFuture<Self, Vec<(String, String)>> {
        Box::pin(StartInOrder { next: from, starting: None, failures: Vec::new() })
    }

    /// Spawns child `index`; the future resolves when it is active or failed to start.
    fn spawn_child(&mut self, index: usize) -> LocalFuture<Result<(), String>> {
        // Only called from inside the actor, where the address exists.
        let me = self.self_addr.clone().expect("supervisor started");
        let spec = &self.children[index].spec;
        let (control, started) = (spec.spawn)(&self.env, me, &spec.overrides);
        self.children[index].control = Some(control);
        started
    }

    /// The children a failure of child `index` restarts, per the strategy.
    fn affected(&self, index: usize) -> Vec<usize> {
        let live = |i: &usize| self.children[*i].control.is_some();
        match self.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..self.children.len()).filter(live).collect(),
            Strategy::RestForOne => (index..self.children.len()).filter(live).collect(),
        }
    }

    fn publish(&self, agent_id: &str, kind: EventKind, cause: Cause) {
        self.env.events.publish(LifecycleEvent::new(agent_id, kind, cause));
    }

    /// Clears the restart history here and in every supervisor above: after a fix,
    /// the failures that parked an agent no longer count.
    fn forget_restarts(&mut self) {
        self.recent.clear();
        if let Some(parent) = &self.parent {
            parent.do_send(ForgetRestarts);
        }
    }

    /// Handles the failure of child `index`: restart per strategy, or escalate.
    fn on_failure(&mut self, index: usize, failure: Failure, ctx: &mut Context<Self>) {
        let id = self.children[index].spec.id.clone();
        if self.children[index].spec.restart == Restart::Temporary {
            tracing::info!(supervisor = %self.name, child = %id, "temporary child failed; not restarted");
            if let Some(control) = self.children[index].control.take() {
                let stopped = control.shutdown(&id, self.children[index].spec.shutdown_timeout);
                ctx.spawn(
                    async move {
                        stopped.await;
                    }
                    .into_actor(self),
                );
            }
            return;
        }
        let now = Instant::now();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.intensity.period) {
            self.recent.pop_front();
        }
        let attempt = self.recent.len() as u32 + 1;
        let affected = self.affected(index);
        if attempt > self.intensity.max_restarts {
            let why = format!(
                "supervisor `{}`: restart intensity exceeded ({} restarts within {:?}); last failure of `{id}`: {failure}",
                self.name, self.intensity.max_restarts, self.intensity.period
            );
            self.escalate(affected, why, ctx);
            return;
        }
        self.recent.push_back(now);
        let delay = self.intensity.backoff(attempt);
        tracing::info!(supervisor = %self.name, child = %id, attempt, ?delay, strategy = ?self.strategy, "restarting");
        self.restart_group(index, attempt, Cause::Restart { attempt }, delay, ctx);
    }

    /// Handles a restart somebody asked for: the child `index` and, per the strategy,
    /// its siblings are restarted at once, without passing through `error`, and
    /// nothing is counted against the restart intensity: it is not a failure.
    fn on_request(&mut self, index: usize, reason: String, ctx: &mut Context<Self>) {
        self.restart_group(index, 0, Cause::RestartRequested { reason }, std::time::Duration::ZERO, ctx);
    }

    /// Restarts child `index` with `cause` and its siblings per the strategy (cause
    /// [`Cause::SiblingRestart`]), in start order, after `delay`. A restart that fails
    /// (the fresh instance's `initialize`, say) is a failure of that child.
    fn restart_group(
        &mut self,
        index: usize,
        attempt: u32,
        cause: Cause,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        let id = self.children[index].spec.id.clone();
        let restarts: Vec<_> = self
            .affected(index)
            .into_iter()
            .map(|i| {
                let child = &self.children[i];
                let cause =
                    if i == index { cause.clone() } else { Cause::SiblingRestart { sibling: id.clone() } };
                let control = child.control.clone().expect("affected children are live");
                (i, child.spec.id.clone(), cause, control)
            })
            .collect();
        let work = async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut outcomes = Vec::new();
            // In start order, one after the other, as OTP does.
            for (i, child_id, cause, control) in restarts {
                outcomes.push((i, child_id, control.restart(attempt, cause).await));
            }
            outcomes
        };
        ctx.wait(work.into_actor(self).map(|outcomes, supervisor, ctx| {
            for (i, child_id, outcome) in outcomes {
                match outcome {
                    Ok(generation) => supervisor.children[i].generation = generation,
                    // The fresh instance failed to initialize: another failure.
                    Err(failure) => {
                        tracing::warn!(child = %child_id, %failure, "restart failed");
                        supervisor.on_failure(i, failure, ctx);
                        return;
                    }
                }
            }
        }));
    }

    /// Intensity exceeded: hand the failure to the parent, or at the top park the
    /// affected agents in `manual`.
    fn escalate(&mut self, affected: Vec<usize>, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(supervisor = %self.name, %reason, "escalating");
        let failure = Failure::new(Stage::Supervision, FailureKind::Escalated { reason: reason.clone() });
        self.publish(
            &self.name,
            EventKind::Failure { failure: failure.clone() },
            Cause::Escalation { reason: reason.clone() },
        );
        if let Some(parent) = self.parent.clone() {
            let report = ChildExited {
                child_id: self.name.clone(),
                generation: self.generation,
                exit: Exit::Failed(failure),
            };
            ctx.spawn(
                async move {
                    let _ = parent.send(report).await;
                }
                .into_actor(self),
            );
            return;
        }
        let parks: Vec<_> = affected
            .iter()
            .filter_map(|i| self.children[*i].control.as_ref().map(|c| c.park(reason.clone())))
            .collect();
        ctx.wait(
            async move {
                for park in parks {
                    park.await;
                }
            }
            .into_actor(self),
        );
    }
}

/// The ordered start as one flat loop over the children. (A chain of `then`s, one level
/// per child, made every poll walk the whole chain: starting 10,000 children was
/// quadratic, half the time of `vigil_runtime`'s spawn benchmark spent in `Then::poll`.)
struct StartInOrder {
    /// The first child not yet considered.
    next: usize,
    /// The child being started and its start.
    starting: Option<(String, LocalFuture<Result<(), String>>)>,
    /// Children that failed to start, with the reason.
    failures: Vec<(String, String)>,
}

impl ActorFuture<Supervisor> for StartInOrder {
    type Output = Vec<(String, String)>;

    fn poll(
        self: Pin<&mut Self>,
        supervisor: &mut Supervisor,
        _: &mut Context<Supervisor>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if let Some((id, started)) = &mut this.starting {
                if let Err(reason) = std::task::ready!(started.as_mut().poll(task)) {
                    this.failures.push((id.clone(), reason));
                }
                this.starting = None;
            }
            let not_running = |i: &usize| {
                let child = &supervisor.children[*i];
                child.control.is_none() && !child.held
            };
            let Some(index) = (this.next..supervisor.children.len()).find(not_running) else {
                return std::task::Poll::Ready(std::mem::take(&mut this.failures));
            };
            this.next = index + 1;
            let id = supervisor.children[index].spec.id.clone();
            this.starting = Some((id, supervisor.spawn_child(index)));
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.self_addr = Some(ctx.address());
        let startup = self.start_children(0);
        ctx.wait(startup.map(|failures, supervisor, _| {
            if let Some(ready) = supervisor.ready.take() {
                let _ = ready.send(failures);
            }
        }));
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, report: ChildExited, ctx: &mut Context<Self>) {
        let Some(index) = self.children.iter().position(|c| c.spec.id == report.child_id) else { return };
        let child = &self.children[index];
        if child.control.is_none() || report.generation < child.generation {
            return; // terminated, or a report about an instance already replaced
        }
        let Exit::Failed(failure) = report.exit;
        self.on_failure(index, failure, ctx);
    }
}
