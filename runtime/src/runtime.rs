//! Embedding Vigil: [`Runtime::builder`] takes the shared state and the agents, and
//! returns a [`Runtime`] handle to query them, message them, watch their events and
//! shut them down.
//!
//! The application owns the actix `System` and decides when to stop; the library
//! installs no global tracing subscriber.
//!
//! **One writer.** Given a direct shared state (`SharedState::direct`), the builder
//! starts a [`PersistenceActor`] of its own — configurable with
//! [`RuntimeBuilder::persistence`] — and every write of the running platform
//! (registrations, transitions, heartbeats, metrics, claims, commands) goes through its
//! group commit. [`Runtime::shutdown`] flushes and stops it after the last agent has
//! stopped. Given a shared state that already has an actor writer, the runtime uses
//! that one and only flushes it (its owner stops it).
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
//!     let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite("vigil.db")).await?);
//!     let runtime = Runtime::builder(state).agent(Ticker::default).start().await?;
//!     tokio::time::sleep(Duration::from_secs(3)).await; // or: wait for Ctrl-C
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use vigil_persistence::presence::{Presence, RENEW_EVERY};
use vigil_persistence::shared_state::Writer;
use vigil_persistence::types::Ts;
use vigil_persistence::{PersistenceActor, PersistenceConfig, PersistenceHandle, SharedState};

use vigil_persistence::nodes::Placement;

use crate::agent::Agent;
use crate::cluster::{ClusterConfig, Fences, Node};
use crate::control::RuntimeControl;
use crate::events::{EventBus, EventStream};
use crate::host::AgentHost;
use crate::lifecycle::{LifecycleError, LifecycleMessage, StopFailure, Transition};
use crate::messaging::{AgentMessage, Ask, AskError, Handles};
use crate::protocol::{AgentStatus, ShutdownSubtree, SubtreeStatuses};
use crate::supervisor::{ChildSpec, Environment, RestartIntensity, Strategy, Supervisor, SupervisorSpec};

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
    /// Cluster mode: the node could not join the cluster (or claim its agents).
    #[error("could not join the cluster: {0}")]
    Cluster(#[source] vigil_persistence::StoreError),
}

/// Builds a [`Runtime`]: the children of the top supervisor, its strategy and
/// intensity.
#[must_use = "call .start() to run the agents"]
pub struct RuntimeBuilder {
    shared: SharedState,
    /// Settings of the writer the runtime starts when `shared` writes directly; `None`
    /// sizes the default for the tree.
    persistence: Option<PersistenceConfig>,
    events: EventBus,
    top: SupervisorSpec,
    start_timeout: Duration,
    operator_commands: bool,
    /// Cluster mode (PostgreSQL): this runtime is one node of several.
    cluster: Option<ClusterConfig>,
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
    /// for this runtime's agents (default off; `vigil run` turns it on): rows of the
    /// `agent_commands` table for agents of this runtime are claimed, carried out
    /// through [`RuntimeControl`] and their outcome recorded. It wakes on PostgreSQL
    /// `NOTIFY` and also polls (the only way on SQLite).
    pub fn operator_commands(mut self, enabled: bool) -> Self {
        self.operator_commands = enabled;
        self
    }

    /// Settings of the persistence actor the runtime starts when its shared state
    /// writes directly. By default: [`PersistenceConfig::default`] with a queue of at
    /// least 10 writes per agent of the tree (a starting agent queues about seven:
    /// registration and three transitions of two rows each), so 10,000 agents get a
    /// queue of 100,000. Ignored when the shared state already has an actor writer.
    pub fn persistence(mut self, config: PersistenceConfig) -> Self {
        self.persistence = Some(config);
        self
    }

    /// How long the whole tree may take to reach `active` at start (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Makes this runtime one node of a cluster sharing the database (PostgreSQL only):
    /// its top-level singleton children run here only while this node holds their
    /// leases, and their writes are fenced. See [`crate::cluster`].
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Starts the tree: children in order, each reaching `active` before the next
    /// starts. Must be called inside an actix `System`.
    pub async fn start(mut self) -> Result<Runtime, RuntimeError> {
        let mut seen = std::collections::HashSet::new();
        for id in self.top.all_ids() {
            if !seen.insert(id.clone()) {
                return Err(RuntimeError::DuplicateId(id));
            }
        }
        let (shared, owned_writer) = match self.shared.writer() {
            Writer::Actor(_) => (self.shared, None),
            Writer::Direct => {
                let config = self.persistence.unwrap_or_else(|| {
                    let default = PersistenceConfig::default();
                    let sized = default.queue_capacity.max(10 * seen.len());
                    default.with_queue_capacity(sized)
                });
                let writer = PersistenceActor::start(self.shared.store().clone(), config);
                let shared =
                    SharedState::with_writer(self.shared.store().clone(), Writer::Actor(writer.clone()));
                (shared, Some(writer))
            }
        };
        let node_id = self.cluster.as_ref().and_then(|c| c.node_id().map(str::to_owned));
        let presence = Presence::new(node_id.unwrap_or_else(Presence::new_node_id), seen.len());
        let fences = Fences::default();
        let node = match &self.cluster {
            Some(config) => {
                let singletons = self
                    .top
                    .children()
                    .iter()
                    .filter(|child| child.placement_of() == Placement::Singleton)
                    .map(|child| child.id().to_owned())
                    .collect();
                let joined =
                    Node::join(&shared, config, presence.node.clone(), singletons, fences.clone()).await;
                let (node, held) = match joined {
                    Ok(joined) => joined,
                    Err(error) => {
                        // Nothing started yet but the writer, if it is ours.
                        if let Some(writer) = &owned_writer {
                            writer.shutdown().await;
                        }
                        return Err(RuntimeError::Cluster(error));
                    }
                };
                self.top.hold(held);
                Some(node)
            }
            None => None,
        };
        let control = RuntimeControl::new(Arc::default(), presence.node.clone());
        // Recorded before any agent starts (the writer keeps order), so a reader that
        // sees an agent's heartbeat naming this node also finds the node.
        let renewer = spawn_presence_renewer(shared.clone(), presence, control.clone());
        let env = Environment { shared, events: self.events, control, fences };
        let (ready, started) = tokio::sync::oneshot::channel();
        let root = Supervisor::new(self.top, env.clone(), None, ready).start();
        let runtime = Runtime {
            inner: Arc::new(RuntimeInner {
                env,
                root,
                owned_writer,
                commands: Mutex::new(None),
                presence: Mutex::new(Some(renewer)),
                node: Mutex::new(None),
                renewals_paused: node.as_ref().map(Node::pause_switch),
            }),
        };
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
        if let Some(node) = node {
            let node_id = node.id().to_owned();
            *runtime.inner.node.lock().expect("node lock") =
                Some((node_id, node.spawn(runtime.inner.root.clone())));
        }
        runtime.inner.env.control.mark_started();
        if self.operator_commands {
            let env = &runtime.inner.env;
            let processor =
                crate::operator_commands::spawn(env.shared.clone(), env.control.clone(), env.events.clone());
            *runtime.inner.commands.lock().expect("commands lock") = Some(processor);
        }
        Ok(runtime)
    }
}

struct RuntimeInner {
    env: Environment,
    root: Addr<Supervisor>,
    /// The persistence actor the runtime started, stopped at shutdown.
    owned_writer: Option<PersistenceHandle>,
    /// The operator command processor, when enabled; stopped at shutdown.
    commands: Mutex<Option<actix_rt::task::JoinHandle<()>>>,
    /// Renews this runtime's presence; at shutdown it is stopped and the presence
    /// marked stopped.
    presence: Mutex<Option<PresenceRenewer>>,
    /// Cluster mode: the node's id and the task renewing its leases; stopped at
    /// shutdown, when the node leaves the cluster.
    node: Mutex<Option<(String, actix_rt::task::JoinHandle<()>)>>,
    /// Cluster mode: stops the node's renewals (`testkit`).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    renewals_paused: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// The task that renews a runtime's presence every [`RENEW_EVERY`], on its own timer.
struct PresenceRenewer {
    task: actix_rt::task::JoinHandle<()>,
    presence: Arc<Mutex<Presence>>,
}

fn spawn_presence_renewer(
    shared: SharedState,
    presence: Presence,
    control: RuntimeControl,
) -> PresenceRenewer {
    let presence = Arc::new(Mutex::new(presence));
    let current = presence.clone();
    let task = actix_rt::spawn(async move {
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        let mut first = true;
        loop {
            ticks.tick().await; // the first tick is at once: the initial record
            let renewed = {
                let mut presence = current.lock().expect("presence lock");
                presence.renewed_at = Ts::now();
                // After the start, the agents it runs now (in a cluster, its share);
                // the first record, before any agent started, says how many it has.
                if !std::mem::take(&mut first) {
                    presence.agents = control.agent_ids().len();
                }
                presence.clone()
            };
            if let Err(e) = shared.record_presence(&renewed).await {
                tracing::warn!(node = %renewed.node, error = %e, "presence not renewed");
            }
        }
    });
    PresenceRenewer { task, presence }
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

/// What [`Runtime::shutdown`] did (defined with the supervisor protocol, which
/// observes it).
pub use crate::protocol::ShutdownReport;

impl Runtime {
    /// A builder over `shared`, with a one_for_one top supervisor.
    pub fn builder(shared: SharedState) -> RuntimeBuilder {
        RuntimeBuilder {
            shared,
            persistence: None,
            events: EventBus::default(),
            top: SupervisorSpec::new("root", Strategy::OneForOne),
            start_timeout: Duration::from_secs(60),
            operator_commands: false,
            cluster: None,
        }
    }

    /// The shared state the agents use (writing through the runtime's persistence actor).
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

    /// Cluster mode: this node's id, as recorded in `vigil_nodes` and the leases.
    pub fn node_id(&self) -> &str {
        self.inner.env.control.node()
    }

    /// Cluster mode: stops (or resumes) renewing this node's leases, as a node frozen or
    /// cut off from the database would — its agents go on running and writing, and once
    /// its lease expires other nodes take them over. For tests of fencing.
    #[cfg(feature = "testkit")]
    pub fn pause_lease_renewal(&self, paused: bool) {
        if let Some(switch) = &self.inner.renewals_paused {
            switch.store(paused, std::sync::atomic::Ordering::Release);
        }
    }

    /// Stops every agent in reverse start order, one at a time: each one's shutdown
    /// hook has finished (or was cut at its shutdown timeout) and its actor has stopped
    /// before the next is asked. Then flushes the persistence writer, so what the
    /// agents wrote — in their shutdown hooks too — is committed when this returns.
    pub async fn shutdown(&self) -> ShutdownReport {
        // From now on agents asking for restarts get `ShuttingDown` at once, instead of
        // waiting on a supervisor that is waiting for their own shutdown.
        self.inner.env.control.begin_shutdown();
        if let Some(processor) = self.inner.commands.lock().expect("commands lock").take() {
            processor.abort();
        }
        // No more claims or hand-overs while the tree stops.
        let node = self.inner.node.lock().expect("node lock").take();
        if let Some((_, renewer)) = &node {
            renewer.abort();
        }
        let mut report = self.inner.root.send(ShutdownSubtree).await.unwrap_or_default();
        // Every agent has stopped: readers now learn that nothing here runs them.
        let renewer = self.inner.presence.lock().expect("presence lock").take();
        if let Some(renewer) = renewer {
            renewer.task.abort();
            let mut stopped = renewer.presence.lock().expect("presence lock").clone();
            stopped.stopped_at = Some(Ts::now());
            if let Err(e) = self.inner.env.shared.record_presence(&stopped).await {
                tracing::warn!(node = %stopped.node, error = %e, "could not mark the presence stopped");
            }
        }
        // Everything the agents wrote, their shutdown hooks included, is committed before
        // the runtime reports done: a writer of the runtime's own is flushed and
        // stopped, a borrowed one flushed.
        match &self.inner.owned_writer {
            Some(writer) => {
                let written = writer.shutdown().await;
                if written.failed > 0 {
                    let why = written.reason.unwrap_or_default();
                    report.failed.push((
                        "persistence".into(),
                        StopFailure::Persistence(format!("{} writes not written: {why}", written.failed)),
                    ));
                }
            }
            None => {
                if let Err(e) = self.inner.env.shared.flush().await {
                    report.failed.push(("persistence".into(), StopFailure::Persistence(e.to_string())));
                }
            }
        }
        // Its agents stopped and their writes are committed: hand every lease over.
        if let Some((node_id, _)) = node {
            Node::leave(self.inner.env.shared.store(), &node_id).await;
        }
        tracing::info!(stopped = report.stopped.len(), failed = report.failed.len(), "runtime shut down");
        report
    }
}
