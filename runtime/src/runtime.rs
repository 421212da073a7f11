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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use vigil_persistence::SharedState;

use crate::agent::Agent;
use crate::events::{EventBus, EventStream};
use crate::host::{
    AgentHost, AgentMessage, AgentStatus, Ask, AskError, GetStatus, Handles, HostParts, RestartIntensity,
};
use crate::lifecycle::{LifecycleError, LifecycleMessage, ShutdownRequest, Transition};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

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
    /// Two agents were given the same id.
    #[error("two agents share the id `{0}`")]
    DuplicateId(String),
}

/// Type-erased operations on one running agent.
trait AgentControl: Send + Sync {
    fn status(&self) -> BoxFuture<Result<AgentStatus, MailboxError>>;
    fn shutdown(&self) -> BoxFuture<Result<Result<Transition, LifecycleError>, MailboxError>>;
    fn addr_any(&self) -> &(dyn std::any::Any + Send + Sync);
    fn shutdown_timeout(&self) -> Duration;
}

struct Control<A: Agent> {
    addr: Addr<AgentHost<A>>,
    shutdown_timeout: Duration,
}

impl<A: Agent> AgentControl for Control<A> {
    fn status(&self) -> BoxFuture<Result<AgentStatus, MailboxError>> {
        Box::pin(self.addr.send(GetStatus))
    }
    fn shutdown(&self) -> BoxFuture<Result<Result<Transition, LifecycleError>, MailboxError>> {
        Box::pin(self.addr.send(ShutdownRequest))
    }
    fn addr_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        &self.addr
    }
    fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}

struct Entry {
    id: String,
    control: Box<dyn AgentControl>,
}

type Spawner =
    Box<dyn FnOnce(SharedState, EventBus) -> (Entry, tokio::sync::oneshot::Receiver<Result<(), String>>)>;

/// Builds a [`Runtime`].
#[must_use = "call .start() to run the agents"]
pub struct RuntimeBuilder {
    shared: SharedState,
    events: EventBus,
    spawners: Vec<(String, Spawner)>,
    start_timeout: Duration,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.spawners.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("RuntimeBuilder").field("agents", &ids).finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Adds an agent under its derived name, built by `factory` (called again on
    /// every restart, so each restart starts from fresh state).
    pub fn agent<A: Agent>(self, factory: impl Fn() -> A + 'static) -> Self {
        let id = A::settings().name.to_owned();
        self.agent_with_id(id, factory)
    }

    /// Adds an agent under an explicit id (several agents of one type).
    pub fn agent_with_id<A: Agent>(self, id: impl Into<String>, factory: impl Fn() -> A + 'static) -> Self {
        self.agent_with(id, RestartIntensity::default(), factory)
    }

    /// Adds an agent with an explicit id and restart intensity.
    pub fn agent_with<A: Agent>(
        mut self,
        id: impl Into<String>,
        intensity: RestartIntensity,
        factory: impl Fn() -> A + 'static,
    ) -> Self {
        let id = id.into();
        let agent_id = id.clone();
        let spawner: Spawner = Box::new(move |shared, events| {
            let (ready, started) = tokio::sync::oneshot::channel();
            let parts = HostParts {
                id: agent_id.clone(),
                factory: Box::new(factory),
                intensity,
                shared,
                events,
                ready,
            };
            let addr = AgentHost::new(parts).start();
            let control = Control { addr, shutdown_timeout: A::settings().shutdown_timeout };
            (Entry { id: agent_id, control: Box::new(control) }, started)
        });
        self.spawners.push((id, spawner));
        self
    }

    /// How long each agent may take to reach `active` at start (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the agents in the order added, each reaching `active` before the next
    /// starts. Must be called inside an actix `System`.
    pub async fn start(self) -> Result<Runtime, RuntimeError> {
        let mut seen = std::collections::HashSet::new();
        for (id, _) in &self.spawners {
            if !seen.insert(id.clone()) {
                return Err(RuntimeError::DuplicateId(id.clone()));
            }
        }
        let runtime = Runtime {
            inner: Arc::new(RuntimeInner {
                shared: self.shared,
                events: self.events,
                agents: Mutex::new(Vec::new()),
            }),
        };
        for (id, spawn) in self.spawners {
            let (entry, started) = spawn(runtime.inner.shared.clone(), runtime.inner.events.clone());
            runtime.inner.agents.lock().expect("registry lock").push(entry);
            let outcome = tokio::time::timeout(self.start_timeout, started).await;
            let failure = match outcome {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(reason))) => Some(reason),
                Ok(Err(_)) => Some("the agent stopped during startup".into()),
                Err(_) => Some(format!("not active within {:?}", self.start_timeout)),
            };
            if let Some(reason) = failure {
                runtime.shutdown().await;
                return Err(RuntimeError::AgentStart { agent_id: id, reason });
            }
        }
        Ok(runtime)
    }
}

struct RuntimeInner {
    shared: SharedState,
    events: EventBus,
    /// In start order; shutdown walks it backwards.
    agents: Mutex<Vec<Entry>>,
}

/// A handle to running agents. Cheap to clone.
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
    /// Agents that did not stop cleanly, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Runtime {
    /// A builder over `shared`.
    pub fn builder(shared: SharedState) -> RuntimeBuilder {
        RuntimeBuilder {
            shared,
            events: EventBus::default(),
            spawners: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }

    /// The shared state the agents use.
    pub fn shared_state(&self) -> &SharedState {
        &self.inner.shared
    }

    /// Subscribes to the lifecycle event stream.
    pub fn subscribe(&self) -> EventStream {
        self.inner.events.subscribe()
    }

    /// The ids of the running agents, in start order.
    pub fn agent_ids(&self) -> Vec<String> {
        self.inner.agents.lock().expect("registry lock").iter().map(|e| e.id.clone()).collect()
    }

    /// A snapshot of every agent, in start order.
    pub async fn statuses(&self) -> Vec<AgentStatus> {
        let requests: Vec<_> =
            self.inner.agents.lock().expect("registry lock").iter().map(|e| e.control.status()).collect();
        let mut statuses = Vec::with_capacity(requests.len());
        for request in requests {
            if let Ok(status) = request.await {
                statuses.push(status);
            }
        }
        statuses
    }

    /// The address of agent `id` of type `A`.
    pub fn addr<A: Agent>(&self, id: &str) -> Option<Addr<AgentHost<A>>> {
        let agents = self.inner.agents.lock().expect("registry lock");
        agents.iter().find(|e| e.id == id)?.control.addr_any().downcast_ref::<Addr<AgentHost<A>>>().cloned()
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
    /// its shutdown timeout (plus a second for persistence).
    pub async fn shutdown(&self) -> ShutdownReport {
        let entries: Vec<Entry> = std::mem::take(&mut *self.inner.agents.lock().expect("registry lock"));
        let mut report = ShutdownReport::default();
        for entry in entries.into_iter().rev() {
            let limit = entry.control.shutdown_timeout() + Duration::from_secs(1);
            match tokio::time::timeout(limit, entry.control.shutdown()).await {
                Ok(Ok(Ok(_))) => report.stopped.push(entry.id),
                Ok(Ok(Err(e))) => report.failed.push((entry.id, e.to_string())),
                Ok(Err(_)) => report.failed.push((entry.id, "already stopped".into())),
                Err(_) => report.failed.push((entry.id, format!("did not stop within {limit:?}"))),
            }
        }
        // Everything the agents wrote is committed before the runtime reports done.
        if let vigil_persistence::shared_state::Writer::Actor(writer) = self.inner.shared.writer()
            && let Err(e) = writer.flush().await
        {
            report.failed.push(("persistence".into(), e.to_string()));
        }
        tracing::info!(stopped = report.stopped.len(), failed = report.failed.len(), "runtime shut down");
        report
    }
}
