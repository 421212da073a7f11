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
//! ([`FixParked`], [`crate::RuntimeControl::fix`]) clears the restart history.
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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use vigil_persistence::SharedState;

use crate::agent::AgentSettings;
use crate::agent::{Agent, Restart};
use crate::control::ControlEntry;
use crate::events::{EventBus, EventKind, LifecycleEvent};
use crate::host::{AgentHost, AgentStatus, GetStatus, HostParts, ParkAgent, RestartAgent, StopAgent};
use crate::lifecycle::{Cause, Failure, FailureKind, ManualFixed, Stage, State, StopFailure};

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// How a supervisor restarts its children when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the failed child.
    #[default]
    OneForOne,
    /// Restart every child.
    OneForAll,
    /// Restart the failed child and the children started after it.
    RestForOne,
}

/// Restart intensity and backoff: at most `max_restarts` within `period`, else
/// escalate (OTP's `intensity` and `period`; default 1 in 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartIntensity {
    /// Restarts allowed within the period.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
    /// Delay before the second restart within the period; doubles after, with jitter.
    pub base_backoff: Duration,
    /// Upper bound of that delay.
    pub max_backoff: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self {
            max_restarts: 1,
            period: Duration::from_secs(5),
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RestartIntensity {
    /// At most `max_restarts` within `period`.
    pub fn new(max_restarts: u32, period: Duration) -> Self {
        Self { max_restarts, period, ..Self::default() }
    }

    /// Sets the backoff bounds.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// Delay before restart number `attempt` within the period (1-based): none for the
    /// first, then exponential with jitter (between half and all of the step), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let step = self.base_backoff.saturating_mul(1 << (attempt - 2).min(16)).min(self.max_backoff);
        let half = step / 2;
        half + Duration::from_micros(rand::random_range(0..=half.as_micros() as u64))
    }
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A hook or handler failed, panicked or timed out, or a nested supervisor gave up.
    Failed(Failure),
}

/// Child to supervisor: I failed (already recorded as `ErrorOccurred`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    /// The child's id.
    pub child_id: String,
    /// The child's generation when it failed; a report about an instance the
    /// supervisor has already replaced is ignored.
    pub generation: u64,
    /// How it ended.
    pub exit: Exit,
}

/// Type-erased operations on one child (agent or supervisor).
trait ChildControl {
    fn restart(&self, attempt: u32, cause: Cause) -> LocalFuture<Result<u64, Failure>>;
    fn park(&self, reason: String) -> LocalFuture<()>;
    fn fix(&self) -> LocalFuture<Result<(), String>>;
    /// Stops the child (a supervisor: its subtree) and reports each agent as it stops.
    fn shutdown(&self, id: &str, timeout: Duration) -> LocalFuture<ShutdownReport>;
    fn statuses(&self) -> LocalFuture<Vec<AgentStatus>>;
    fn is_supervisor(&self) -> bool;
}

struct AgentChild<A: Agent> {
    addr: Addr<AgentHost<A>>,
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

/// Stops an agent's actor at once (the shutdown timeout has passed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Kill;

impl<A: Agent> Handler<Kill> for AgentHost<A> {
    type Result = ();
    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct SupervisorChild {
    addr: Addr<Supervisor>,
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

/// Everything a child needs from its supervisor to start.
#[derive(Clone)]
pub(crate) struct Environment {
    pub(crate) shared: SharedState,
    pub(crate) events: EventBus,
    /// Typed addresses of every agent in the tree, by id (`Runtime::addr`).
    pub(crate) control: crate::control::RuntimeControl,
}

/// Spawns a child (on the supervisor's thread); `Send` so specs can travel in messages.
type Spawn = Box<
    dyn Fn(
            &Environment,
            Addr<Supervisor>,
            &SettingsOverrides,
        ) -> (Rc<dyn ChildControl>, LocalFuture<Result<(), String>>)
        + Send,
>;

/// Per-child overrides of an agent's [`AgentSettings`], set on its [`ChildSpec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SettingsOverrides {
    cycle_interval: Option<Duration>,
    cycle_timeout: Option<Duration>,
    heartbeat_interval: Option<Duration>,
}

impl SettingsOverrides {
    fn apply(&self, mut settings: AgentSettings) -> AgentSettings {
        settings.cycle_interval = self.cycle_interval.unwrap_or(settings.cycle_interval);
        settings.cycle_timeout = self.cycle_timeout.unwrap_or(settings.cycle_timeout);
        settings.heartbeat_interval = self.heartbeat_interval.unwrap_or(settings.heartbeat_interval);
        settings
    }
}

/// One child of a supervisor: what it is, how to start it, when to restart it.
#[must_use]
pub struct ChildSpec {
    id: String,
    /// For a supervisor child: the ids of its subtree (checked for duplicates).
    nested_ids: Option<Vec<String>>,
    restart: Restart,
    shutdown_timeout: Duration,
    /// An agent child's settings that differ from its type's (tests, several
    /// instances of one type at different paces).
    overrides: SettingsOverrides,
    spawn: Spawn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// An agent child built by `factory` (called again for every restart). Its restart
    /// type and shutdown timeout come from the agent's settings.
    pub fn agent<A: Agent>(id: impl Into<String>, factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let id = id.into();
        let settings = A::settings();
        let factory = Arc::new(factory);
        let child_id = id.clone();
        // Set once this child has been registered: only a child spawned again (after
        // `TerminateChild`) has an old entry to drop. Scanning on every first spawn too
        // made starting n children O(n²) — 0.6 s of string compares for 10,000.
        let registered = std::cell::Cell::new(false);
        let spawn: Spawn = Box::new(move |env, owner, overrides| {
            let (ready, started) = tokio::sync::oneshot::channel();
            let factory = factory.clone();
            let parts = HostParts {
                id: child_id.clone(),
                factory: Box::new(move || factory()),
                settings: overrides.apply(A::settings()),
                supervisor: owner.clone().recipient(),
                shared: env.shared.clone(),
                events: env.events.clone(),
                control: env.control.clone(),
                ready,
            };
            let addr = AgentHost::new(parts).start();
            let entry = ControlEntry {
                id: child_id.clone(),
                addr: Box::new(addr.clone()),
                status: addr.clone().recipient(),
                fix: addr.clone().recipient(),
                operate: addr.clone().recipient(),
                owner,
            };
            let mut registry = env.control.registry().lock().expect("registry lock");
            if registered.replace(true) {
                registry.retain(|e| e.id != child_id);
            }
            registry.push(entry);
            drop(registry);
            let started: LocalFuture<Result<(), String>> =
                Box::pin(
                    async move { started.await.unwrap_or_else(|_| Err("stopped during startup".into())) },
                );
            (Rc::new(AgentChild { addr }) as Rc<dyn ChildControl>, started)
        });
        Self {
            id,
            nested_ids: None,
            restart: settings.restart,
            shutdown_timeout: settings.shutdown_timeout,
            overrides: SettingsOverrides::default(),
            spawn,
        }
    }

    /// A nested supervisor.
    pub fn supervisor(spec: SupervisorSpec) -> Self {
        let id = spec.name.clone();
        let nested_ids = Some(spec.all_ids());
        let spec = Mutex::new(Some(spec));
        let spawn: Spawn = Box::new(move |env, parent, _| {
            let (ready, started) = tokio::sync::oneshot::channel();
            // A supervisor child is spawned once; restarts restart its subtree in place.
            let spec = spec.lock().expect("spec lock").take().expect("a supervisor child is spawned once");
            let addr = Supervisor::new(spec, env.clone(), Some(parent), ready).start();
            let started: LocalFuture<Result<(), String>> = Box::pin(async move {
                match started.await {
                    Ok(failures) if failures.is_empty() => Ok(()),
                    Ok(failures) => Err(format!("{failures:?}")),
                    Err(_) => Err("supervisor stopped during startup".into()),
                }
            });
            (Rc::new(SupervisorChild { addr }) as Rc<dyn ChildControl>, started)
        });
        Self {
            id,
            nested_ids,
            restart: Restart::Permanent,
            shutdown_timeout: Duration::from_secs(60),
            overrides: SettingsOverrides::default(),
            spawn,
        }
    }

    /// Overrides the restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Overrides the time the child gets to stop before it is killed.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Overrides an agent child's cycle interval (`#[agent(cycle = ..)]`). Like the
    /// other settings overrides, it applies to every instance the factory makes and is
    /// ignored for a supervisor child.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use vigil_runtime::ChildSpec;
    /// use vigil_runtime::testkit::{FaultPlan, FaultyAgent};
    /// let plan = FaultPlan::new();
    /// // A hung cycle is caught after 200 ms instead of the default 5 minutes.
    /// let spec = ChildSpec::agent("worker", move || FaultyAgent::new(plan.clone()))
    ///     .cycle_interval(Duration::from_millis(5))
    ///     .cycle_timeout(Duration::from_millis(200))
    ///     .heartbeat_interval(Duration::from_millis(100));
    /// ```
    pub fn cycle_interval(mut self, interval: Duration) -> Self {
        self.overrides.cycle_interval = Some(interval);
        self
    }

    /// Overrides an agent child's cycle timeout (`#[agent(cycle_timeout = ..)]`): how
    /// long a cycle may run before it is dropped and the agent fails.
    pub fn cycle_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.cycle_timeout = Some(timeout);
        self
    }

    /// Overrides an agent child's heartbeat interval (`#[agent(heartbeat = ..)]`).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.overrides.heartbeat_interval = Some(interval);
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A supervisor's configuration and children.
#[must_use]
#[derive(Debug)]
pub struct SupervisorSpec {
    name: String,
    strategy: Strategy,
    intensity: RestartIntensity,
    children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor named `name` with `strategy`, default intensity and no children.
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Self {
        Self { name: name.into(), strategy, intensity: RestartIntensity::default(), children: Vec::new() }
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Adds a child (children start in the order added).
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_strategy(&mut self, strategy: Strategy) {
        self.strategy = strategy;
    }

    /// Every id in the tree: children, nested supervisors and their children.
    pub(crate) fn all_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for child in &self.children {
            ids.push(child.id.clone());
            if let Some(nested) = &child.nested_ids {
                ids.extend(nested.iter().cloned());
            }
        }
        ids
    }
}

struct Child {
    spec: ChildSpec,
    control: Option<Rc<dyn ChildControl>>,
    /// The generation the supervisor last knows of; older failure reports are stale.
    generation: u64,
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
                .map(|spec| Child { spec, control: None, generation: 0 })
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
            let not_running = |i: &usize| supervisor.children[*i].control.is_none();
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

/// Parent to nested supervisor: restart every child, in order, with fresh state.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, Failure>")]
struct RestartSubtree {
    attempt: u32,
    cause: Cause,
}

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

/// Parent to nested supervisor: park every agent of the subtree in `manual`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ParkSubtree {
    reason: String,
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

/// Restarts every parked agent of the subtree (ManualFixed on each).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct FixParked;

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

/// What a shutdown did: the agents that stopped, in the order they stopped, and the
/// ones that did not stop cleanly.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Agents whose shutdown hook finished within its timeout and whose actor then
    /// stopped, in the order they stopped (observed, one after the other).
    pub stopped: Vec<String>,
    /// Agents that did not stop cleanly — the hook failed, panicked or timed out, or
    /// the agent was killed — with the reason. They are stopped all the same.
    pub failed: Vec<(String, StopFailure)>,
}

impl ShutdownReport {
    fn extend(&mut self, other: ShutdownReport) {
        self.stopped.extend(other.stopped);
        self.failed.extend(other.failed);
    }
}

/// Stops every child in reverse start order, one at a time: each child's shutdown hook
/// has finished (or the child was stopped at its shutdown timeout) and its actor has
/// stopped before the next child is asked. A nested supervisor stops its own subtree
/// the same way. Replies with what stopped, in that order.
#[derive(Debug, Message)]
#[rtype(result = "ShutdownReport")]
pub struct ShutdownSubtree;

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

/// Statuses of every agent in the subtree, in start order.
#[derive(Debug, Message)]
#[rtype(result = "Vec<AgentStatus>")]
pub struct SubtreeStatuses;

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

/// What [`WhichChildren`] reports of one child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Whether it is a supervisor.
    pub supervisor: bool,
    /// Its restart type.
    pub restart: Restart,
    /// Whether it is running (not terminated).
    pub running: bool,
}

/// Lists the children in start order (OTP `which_children`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<ChildInfo>")]
pub struct WhichChildren;

impl Handler<WhichChildren> for Supervisor {
    type Result = MessageResult<WhichChildren>;

    fn handle(&mut self, _: WhichChildren, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.children
                .iter()
                .map(|c| ChildInfo {
                    id: c.spec.id.clone(),
                    supervisor: c.control.as_ref().is_some_and(|control| control.is_supervisor()),
                    restart: c.spec.restart,
                    running: c.control.is_some(),
                })
                .collect(),
        )
    }
}

/// Child counts (OTP `count_children`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChildCounts {
    /// Child specs held.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Running children that are supervisors.
    pub supervisors: usize,
    /// Running children that are agents.
    pub workers: usize,
}

/// Counts the children (OTP `count_children`).
#[derive(Debug, Message)]
#[rtype(result = "ChildCounts")]
pub struct CountChildren;

impl Handler<CountChildren> for Supervisor {
    type Result = MessageResult<CountChildren>;

    fn handle(&mut self, _: CountChildren, _ctx: &mut Context<Self>) -> Self::Result {
        let running: Vec<_> = self.children.iter().filter_map(|c| c.control.as_ref()).collect();
        let supervisors = running.iter().filter(|c| c.is_supervisor()).count();
        MessageResult(ChildCounts {
            specs: self.children.len(),
            active: running.len(),
            supervisors,
            workers: running.len() - supervisors,
        })
    }
}

/// Why a supervisor operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No child with that id.
    #[error("no child `{0}`")]
    NoSuchChild(String),
    /// A child with that id exists already.
    #[error("a child `{0}` exists already")]
    AlreadyExists(String),
    /// The child is already running.
    #[error("child `{0}` is already running")]
    AlreadyRunning(String),
    /// The child did not start or stop cleanly.
    #[error("child `{id}`: {reason}")]
    Child {
        /// The child.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Adds and starts a child at the end of the start order (OTP `start_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct StartChild(pub ChildSpec);

impl Handler<StartChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, StartChild(spec): StartChild, _ctx: &mut Context<Self>) -> Self::Result {
        if self.children.iter().any(|c| c.spec.id == spec.id) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::AlreadyExists(spec.id)))));
        }
        let index = self.children.len();
        self.children.push(Child { spec, control: None, generation: 0 });
        let startup = self.start_children(index);
        AtomicResponse::new(Box::pin(startup.map(|failures, _, _| match failures.into_iter().next() {
            None => Ok(()),
            Some((id, reason)) => Err(SupervisorError::Child { id, reason }),
        })))
    }
}

/// Stops a child and keeps its spec, so it can be restarted (OTP `terminate_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct TerminateChild(pub String);

impl Handler<TerminateChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, TerminateChild(id): TerminateChild, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(child) = self.children.iter_mut().find(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        let Some(control) = child.control.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        };
        let stopped = control.shutdown(&id, child.spec.shutdown_timeout);
        AtomicResponse::new(Box::pin(
            async move {
                match stopped.await.failed.into_iter().next() {
                    None => Ok(()),
                    Some((id, reason)) => Err(SupervisorError::Child { id, reason: reason.to_string() }),
                }
            }
            .into_actor(self),
        ))
    }
}

/// Starts a terminated child again from its spec (OTP `restart_child`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct RestartChild(pub String);

impl Handler<RestartChild> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, RestartChild(id): RestartChild, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(index) = self.children.iter().position(|c| c.spec.id == id) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::NoSuchChild(id)))));
        };
        if self.children[index].control.is_some() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::AlreadyRunning(id)))));
        }
        if self.children[index].spec.nested_ids.is_some() {
            let reason = "a terminated supervisor child cannot be started again; add a new one".to_owned();
            return AtomicResponse::new(Box::pin(fut::ready(Err(SupervisorError::Child { id, reason }))));
        }
        // Only this child: `start_children` skips the ones already running.
        let startup = self.start_children(index);
        AtomicResponse::new(Box::pin(startup.map(|failures, _, _| match failures.into_iter().next() {
            None => Ok(()),
            Some((id, reason)) => Err(SupervisorError::Child { id, reason }),
        })))
    }
}

/// A restart asked for by an agent or operator ([`crate::RuntimeControl::restart`]):
/// the strategy applies (siblings are restarted with the child), restart intensity
/// does not — it is not a failure. See [`Supervisor::on_request`].
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub(crate) struct RestartRequested {
    pub(crate) child_id: String,
    pub(crate) reason: String,
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

/// An operator fixed an agent of this subtree (`ManualFixed`): forget the restarts
/// that led to its parking, here and in every supervisor above, as
/// [`FixParked`] does — otherwise the history that parked it would park it again at
/// its next fault.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetRestarts;

impl Handler<ForgetRestarts> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: ForgetRestarts, _ctx: &mut Context<Self>) {
        self.forget_restarts();
    }
}
