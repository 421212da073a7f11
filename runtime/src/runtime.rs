//! Embedding Vigil: [`Runtime::builder`] takes the shared state and the agents, and
//! returns a [`Runtime`] handle to query them, message them, watch their events and
//! shut them down.
//!
//! The application owns the actix `System` and decides when to stop; the library
//! installs no global tracing subscriber.
//!
//! ```no_run
//! use std::time::Duration;
//! use vigil_runtime::{Agent, AgentContext, AgentResult, Runtime};
//! use vigil_persistence::{DatabaseConfig, SharedState, Store};
//!
//! #[derive(vigil_runtime::Agent, Default)]
//! #[agent(name = "ticker", cycle = "1s")]
//! struct Ticker;
//!
//! impl Agent for Ticker {
//!     async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult { Ok(()) }
//! }
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let state = SharedState::new(Store::connect(DatabaseConfig::sqlite("vigil.db")).await?);
//!     let runtime = Runtime::builder(state).agent(Ticker::default).start().await?;
//!     tokio::time::sleep(Duration::from_secs(3)).await; // or: wait for Ctrl-C
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use vigil_persistence::SharedState;

use crate::agent::Agent;
use crate::control::RuntimeControl;
use crate::events::{EventBus, EventStream};
use crate::host::{AgentHost, AgentMessage, AgentStatus, Ask, AskError, Handles};
use crate::lifecycle::{LifecycleError, LifecycleMessage, StopFailure, Transition};
use crate::supervisor::{
    ChildSpec, Environment, RestartIntensity, ShutdownSubtree, Strategy, SubtreeStatuses, Supervisor,
    SupervisorSpec,
};

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// An agent failed to reach `active` at start.
    #[error("agent `{agent_id}` failed to start: {reason}")]
    AgentStart {
        /// The agent.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// Two children were given the same id.
    #[error("two children share the id `{0}`")]
    DuplicateId(String),
    /// The tree did not finish starting in time.
    #[error("the agents did not start within {0:?}")]
    StartTimeout(Duration),
}

/// Builds a [`Runtime`]: the children of the top supervisor, its strategy and
/// intensity.
#[must_use = "call .start() to run the agents"]
pub struct RuntimeBuilder {
    shared: SharedState,
    events: EventBus,
    top: SupervisorSpec,
    start_timeout: Duration,
    operator_commands: bool,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder").field("top", &self.top).finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Adds an agent under its derived name, built by `factory` (called again on
    /// every restart, so each restart starts from fresh state).
    pub fn agent<A: Agent>(self, factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let id = A::settings().name.to_owned();
        self.agent_with_id(id, factory)
    }

    /// Adds an agent under an explicit id (several agents of one type).
    pub fn agent_with_id<A: Agent>(
        self,
        id: impl Into<String>,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        self.child(ChildSpec::agent(id, factory))
    }

    /// Adds a child: an agent ([`ChildSpec::agent`]) or a nested supervisor
    /// ([`ChildSpec::supervisor`]).
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.top = self.top.child(child);
        self
    }

    /// Adds a nested supervisor.
    pub fn supervisor(self, spec: SupervisorSpec) -> Self {
        self.child(ChildSpec::supervisor(spec))
    }

    /// The top supervisor's strategy (default one_for_one).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.top.set_strategy(strategy);
        self
    }

    /// The top supervisor's restart intensity (default 1 in 5 s). Past it, the
    /// affected agents are parked in `manual`.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.top = self.top.intensity(intensity);
        self
    }

    /// Uses this event bus (to subscribe before the agents start).
    pub fn events(mut self, events: EventBus) -> Self {
        self.events = events;
        self
    }

    /// Carries out operator commands from the database (`vigil agent restart|stop|fix`)
    /// for this runtime's agents (default off; `vigil run` turns it on). See
    /// [`crate::commands`].
    pub fn operator_commands(mut self, enabled: bool) -> Self {
        self.operator_commands = enabled;
        self
    }

    /// How long the whole tree may take to reach `active` at start (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the tree: children in order, each reaching `active` before the next
    /// starts. Must be called inside an actix `System`.
    pub async fn start(self) -> Result<Runtime, RuntimeError> {
        let mut seen = std::collections::HashSet::new();
        for id in self.top.all_ids() {
            if !seen.insert(id.clone()) {
                return Err(RuntimeError::DuplicateId(id));
            }
        }
        let control = RuntimeControl::new(Arc::default());
        let env = Environment { shared: self.shared, events: self.events, control };
        let (ready, started) = tokio::sync::oneshot::channel();
        let root = Supervisor::new(self.top, env.clone(), None, ready).start();
        let runtime = Runtime { inner: Arc::new(RuntimeInner { env, root, commands: Mutex::new(None) }) };
        let failure = match tokio::time::timeout(self.start_timeout, started).await {
            Ok(Ok(failures)) => failures
                .into_iter()
                .next()
                .map(|(agent_id, reason)| RuntimeError::AgentStart { agent_id, reason }),
            Ok(Err(_)) => Some(RuntimeError::AgentStart {
                agent_id: "root".into(),
                reason: "supervisor stopped".into(),
            }),
            Err(_) => Some(RuntimeError::StartTimeout(self.start_timeout)),
        };
        if let Some(error) = failure {
            runtime.shutdown().await;
            return Err(error);
        }
        if self.operator_commands {
            let env = &runtime.inner.env;
            let processor =
                crate::commands::spawn(env.shared.clone(), env.control.clone(), env.events.clone());
            *runtime.inner.commands.lock().expect("commands lock") = Some(processor);
        }
        Ok(runtime)
    }
}

struct RuntimeInner {
    env: Environment,
    root: Addr<Supervisor>,
    /// The operator command processor, when enabled; stopped at shutdown.
    commands: Mutex<Option<actix_rt::task::JoinHandle<()>>>,
}

/// A handle to a running supervision tree. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("agents", &self.agent_ids()).finish_non_exhaustive()
    }
}

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Agents that went through ShutdownRequest, in the order they stopped.
    pub stopped: Vec<String>,
    /// Agents that did not stop cleanly, with the reason (and `persistence` if the
    /// writer's final flush failed).
    pub failed: Vec<(String, StopFailure)>,
}

impl Runtime {
    /// A builder over `shared`, with a one_for_one top supervisor.
    pub fn builder(shared: SharedState) -> RuntimeBuilder {
        RuntimeBuilder {
            shared,
            events: EventBus::default(),
            top: SupervisorSpec::new("root", Strategy::OneForOne),
            start_timeout: Duration::from_secs(60),
            operator_commands: false,
        }
    }

    /// The shared state the agents use.
    pub fn shared_state(&self) -> &SharedState {
        &self.inner.env.shared
    }

    /// Subscribes to the lifecycle event stream.
    pub fn subscribe(&self) -> EventStream {
        self.inner.env.events.subscribe()
    }

    /// The top supervisor (for `which_children`, `start_child`, ... messages).
    pub fn root(&self) -> &Addr<Supervisor> {
        &self.inner.root
    }

    /// The ids of every agent in the tree, in start order.
    pub fn agent_ids(&self) -> Vec<String> {
        self.inner.env.control.agent_ids()
    }

    /// Type-erased control by agent id (restart, stop, fix, statuses).
    pub fn control(&self) -> &RuntimeControl {
        &self.inner.env.control
    }

    /// A snapshot of every agent, in start order.
    pub async fn statuses(&self) -> Vec<AgentStatus> {
        self.inner.root.send(SubtreeStatuses).await.unwrap_or_default()
    }

    /// The address of agent `id` of type `A`.
    pub fn addr<A: Agent>(&self, id: &str) -> Option<Addr<AgentHost<A>>> {
        let registry = self.inner.env.control.registry().lock().expect("registry lock");
        registry.iter().find(|e| e.id == id)?.addr.downcast_ref::<Addr<AgentHost<A>>>().cloned()
    }

    /// Sends a typed message to agent `id` and awaits its reply.
    pub async fn ask<A, M>(&self, id: &str, message: M) -> Result<M::Reply, AskError>
    where
        A: Handles<M>,
        M: AgentMessage,
    {
        let addr = self.addr::<A>(id).ok_or_else(|| AskError::NotFound(id.into()))?;
        addr.send(Ask(message)).await?
    }

    /// Sends a lifecycle message to agent `id`.
    pub async fn transition<A: Agent, M>(&self, id: &str, message: M) -> Result<Transition, LifecycleError>
    where
        M: LifecycleMessage,
    {
        let addr = self.addr::<A>(id).ok_or(LifecycleError::AgentStopped)?;
        addr.send(message).await.map_err(|_| LifecycleError::AgentStopped)?
    }

    /// Stops every agent in reverse start order, each through ShutdownRequest within
    /// its shutdown timeout (then killed), and flushes the persistence writer.
    pub async fn shutdown(&self) -> ShutdownReport {
        if let Some(processor) = self.inner.commands.lock().expect("commands lock").take() {
            processor.abort();
        }
        let mut order = self.agent_ids();
        order.reverse();
        let failed = self.inner.root.send(ShutdownSubtree).await.unwrap_or_default();
        let failed_ids: HashSet<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
        let mut report = ShutdownReport {
            stopped: order.into_iter().filter(|id| !failed_ids.contains(id.as_str())).collect(),
            failed: failed.clone(),
        };
        // Everything the agents wrote is committed before the runtime reports done.
        if let vigil_persistence::shared_state::Writer::Actor(writer) = self.inner.env.shared.writer()
            && let Err(e) = writer.flush().await
        {
            report.failed.push(("persistence".into(), StopFailure::Persistence(e.to_string())));
        }
        tracing::info!(stopped = report.stopped.len(), failed = report.failed.len(), "runtime shut down");
        report
    }
}
