//! What a supervisor is built from: [`SupervisorSpec`] (name, [`Strategy`],
//! [`RestartIntensity`], children in start order) and [`ChildSpec`] (an agent from its
//! factory, or a nested supervisor; restart type, shutdown timeout, per-child settings
//! overrides).
//!
//! A spec is plain data that can travel in a message; a child spec carries the closure
//! that spawns its child on the supervisor's thread and registers it with the control
//! plane.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::child::{AgentChild, ChildControl, SupervisorChild};
use super::{Environment, LocalFuture, Supervisor};
use vigil_persistence::nodes::Placement;

use crate::agent::{Agent, AgentSettings, Restart};
use crate::control::{ControlEntry, Owner};
use crate::host::{AgentHost, HostParts};

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

/// Spawns a child (on the supervisor's thread); `Send` so specs can travel in messages.
pub(super) type Spawn = Box<
    dyn Fn(
            &Environment,
            Addr<Supervisor>,
            &SettingsOverrides,
        ) -> (Rc<dyn ChildControl>, LocalFuture<Result<(), String>>)
        + Send,
>;

/// Per-child overrides of an agent's [`AgentSettings`], set on its [`ChildSpec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SettingsOverrides {
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
    pub(super) id: String,
    /// For a supervisor child: the ids of its subtree (checked for duplicates).
    pub(super) nested_ids: Option<Vec<String>>,
    pub(super) restart: Restart,
    pub(super) shutdown_timeout: Duration,
    /// An agent child's settings that differ from its type's (tests, several
    /// instances of one type at different paces).
    pub(super) overrides: SettingsOverrides,
    /// Where it runs in a cluster of nodes (see [`crate::cluster`]).
    pub(super) placement: Placement,
    pub(super) spawn: Spawn,
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
                shared: env.shared_for(&child_id),
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
                owner: Owner {
                    restart: owner.clone().recipient(),
                    terminate: owner.clone().recipient(),
                    forget: owner.recipient(),
                },
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
            placement: Placement::Singleton,
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
            placement: Placement::Singleton,
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

    /// Where the child runs when several nodes share the database ([`crate::cluster`]):
    /// [`Placement::Singleton`] (the default) runs once in the cluster, on the node
    /// holding its lease; [`Placement::PerNode`] runs on every node, and its id must
    /// name the node (`format!("probe@{node}")`, see
    /// [`ClusterConfig::node_id`](crate::cluster::ClusterConfig::node_id)).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The child's placement.
    pub fn placement_of(&self) -> Placement {
        self.placement
    }
}

/// A supervisor's configuration and children.
#[must_use]
#[derive(Debug)]
pub struct SupervisorSpec {
    pub(super) name: String,
    pub(super) strategy: Strategy,
    pub(super) intensity: RestartIntensity,
    pub(super) children: Vec<ChildSpec>,
    /// Children not started with the others: placed on another node (cluster mode).
    pub(super) held: std::collections::HashSet<String>,
}

impl SupervisorSpec {
    /// A supervisor named `name` with `strategy`, default intensity and no children.
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Self {
        Self {
            name: name.into(),
            strategy,
            intensity: RestartIntensity::default(),
            children: Vec::new(),
            held: Default::default(),
        }
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

    /// The direct children (cluster placement looks at these).
    pub(crate) fn children(&self) -> &[ChildSpec] {
        &self.children
    }

    /// Starts these children only when acquired (cluster mode: they are placed on
    /// other nodes for now).
    pub(crate) fn hold(&mut self, ids: impl IntoIterator<Item = String>) {
        self.held.extend(ids);
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
