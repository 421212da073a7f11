//! Deterministic failure testing for supervision trees.
//!
//! * [`FaultPlan`] — a script of faults (panic, error or hang of agent *X* at its
//!   *N*-th cycle, failures of `initialize`, random faults from a seed so a failing run
//!   can be replayed), shared by every instance an agent's factory creates.
//! * [`FaultyAgent`] — a ready-made agent that consults the plan on each hook.
//! * [`memory_state`] — a private in-memory shared state; [`fail_next_flushes`] makes
//!   the persistence writer's next flushes fail.
//! * Awaiting instead of sleeping — [`crate::EventStream::wait_for`],
//!   [`crate::EventStream::wait_for_state`] and [`wait_until_active`], each with a
//!   timeout as a safety net.
//!
//! A test a user would copy:
//!
//! ```no_run
//! use std::time::Duration;
//! use vigil_runtime::testkit::{memory_state, wait_until_active, Fault, FaultPlan, FaultyAgent};
//! use vigil_runtime::{Runtime, RestartIntensity, State};
//!
//! #[actix_rt::test]
//! async fn worker_recovers_from_a_panic() {
//!     let plan = FaultPlan::new().at_cycle("worker", 3, Fault::Panic);
//!     let factory = { let plan = plan.clone(); move || FaultyAgent::new(plan.clone()) };
//!     let runtime = Runtime::builder(memory_state().await)
//!         .intensity(RestartIntensity::new(3, Duration::from_secs(10)))
//!         .agent_with_id("worker", factory)
//!         .start()
//!         .await
//!         .unwrap();
//!     let mut events = runtime.subscribe();
//!     events.wait_for_state("worker", State::Recovery, Duration::from_secs(10)).await.unwrap();
//!     wait_until_active(&runtime, Duration::from_secs(10)).await.unwrap();
//!     assert_eq!(plan.injected(), 1);
//!     runtime.shutdown().await;
//! }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use vigil_persistence::SharedState;

use crate::agent::{Agent, AgentError, AgentResult};
use crate::context::AgentContext;
use crate::events::EventStreamError;
use crate::lifecycle::State;
use crate::runtime::Runtime;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The hook panics.
    Panic,
    /// The hook returns an error.
    Error,
    /// The hook never returns.
    Hang,
}

#[derive(Debug, Default)]
struct PlanState {
    /// (agent, cycle number counted across restarts) -> fault.
    at_cycle: HashMap<(String, u64), Fault>,
    /// Faults for the next `initialize` calls of an agent, in order.
    on_initialize: HashMap<String, VecDeque<Fault>>,
    /// Cycles run per agent, across restarts.
    cycles: HashMap<String, u64>,
    /// Random faults: the generator and the probability per cycle.
    random: Option<(rand::rngs::StdRng, f64)>,
    /// Faults injected so far.
    injected: u64,
    /// When false, nothing more is injected.
    enabled: bool,
}

/// A shared, cloneable script of faults. See the module documentation.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultPlan {
    /// An empty plan: no faults.
    pub fn new() -> Self {
        quiet_injected_panics();
        Self { state: Arc::new(Mutex::new(PlanState { enabled: true, ..PlanState::default() })) }
    }

    /// A plan that also fails each cycle with `probability`, drawn from a generator
    /// seeded with `seed` (half panics, half errors): the same seed replays the same
    /// sequence of draws.
    pub fn seeded(seed: u64, probability: f64) -> Self {
        let plan = Self::new();
        plan.lock().random = Some((rand::rngs::StdRng::seed_from_u64(seed), probability.clamp(0.0, 1.0)));
        plan
    }

    /// Injects `fault` at `agent`'s `cycle`-th cycle (1-based, counted across restarts).
    #[must_use]
    pub fn at_cycle(self, agent: &str, cycle: u64, fault: Fault) -> Self {
        self.lock().at_cycle.insert((agent.to_owned(), cycle), fault);
        self
    }

    /// Injects `fault` into `agent`'s next `times` calls of `initialize`.
    #[must_use]
    pub fn on_initialize(self, agent: &str, fault: Fault, times: usize) -> Self {
        self.lock()
            .on_initialize
            .entry(agent.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
        self
    }

    /// Stops injecting (scheduled and random faults alike).
    pub fn disable(&self) {
        self.lock().enabled = false;
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Cycles `agent` has run, across restarts.
    pub fn cycles(&self, agent: &str) -> u64 {
        self.lock().cycles.get(agent).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a cycle of `agent` and returns the fault to inject in it, if any.
    pub fn next_cycle_fault(&self, agent: &str) -> Option<Fault> {
        let mut state = self.lock();
        let cycle = {
            let count = state.cycles.entry(agent.to_owned()).or_default();
            *count += 1;
            *count
        };
        if !state.enabled {
            return None;
        }
        let mut fault = state.at_cycle.remove(&(agent.to_owned(), cycle));
        if fault.is_none()
            && let Some((rng, probability)) = &mut state.random
            && rng.random_bool(*probability)
        {
            fault = Some(if rng.random_bool(0.5) { Fault::Panic } else { Fault::Error });
        }
        if fault.is_some() {
            state.injected += 1;
        }
        fault
    }

    /// The fault for `agent`'s next `initialize`, if any.
    pub fn next_initialize_fault(&self, agent: &str) -> Option<Fault> {
        let mut state = self.lock();
        if !state.enabled {
            return None;
        }
        let fault = state.on_initialize.get_mut(agent).and_then(VecDeque::pop_front);
        if fault.is_some() {
            state.injected += 1;
        }
        fault
    }
}

/// Keeps the panics this module injects out of the test output (they are expected
/// and caught); any other panic is still reported by the previous hook. Idempotent.
pub fn quiet_injected_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(INJECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// The prefix of every panic message injected by [`act_out`].
pub const INJECTED_PANIC: &str = "injected panic";

/// Acts out a fault: panics, fails, or never returns.
pub async fn act_out(fault: Option<Fault>, agent: &str, hook: &str) -> AgentResult {
    match fault {
        None => Ok(()),
        Some(Fault::Panic) => panic!("{INJECTED_PANIC} in {agent}.{hook}"),
        Some(Fault::Error) => Err(AgentError::msg(format!("injected error in {agent}.{hook}"))),
        Some(Fault::Hang) => std::future::pending().await,
    }
}

/// An agent that does nothing but follow its [`FaultPlan`]: a stand-in for real
/// agents in supervision tests. Cycles every 10 ms.
#[derive(crate::Agent, Debug, Clone)]
#[agent(name = "faulty", cycle = "10ms", heartbeat = "1s", shutdown_timeout = "200ms")]
pub struct FaultyAgent {
    plan: FaultPlan,
}

impl FaultyAgent {
    /// An agent following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        Self { plan }
    }
}

impl Agent for FaultyAgent {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_initialize_fault(ctx.agent_id()), ctx.agent_id(), "initialize").await
    }

    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_cycle_fault(ctx.agent_id()), ctx.agent_id(), "cycle").await
    }
}

/// A private in-memory shared state (SQLite) whose queries run on the caller's
/// runtime, so a test may pause the clock (`tokio::time::pause()`) and timers of
/// minutes or hours run at once. See `vigil_persistence::store`, "Execution modes".
pub async fn memory_state() -> SharedState {
    vigil_persistence::testing::in_memory_shared_state().await
}

/// Makes the persistence writer's next `n` flushes fail with a transient error (they
/// are retried). Does nothing when the shared state writes directly.
pub fn fail_next_flushes(shared: &SharedState, n: u32) {
    if let vigil_persistence::shared_state::Writer::Actor(writer) = shared.writer() {
        writer.fail_next_flushes(n);
    }
}

/// Waits until every agent of `runtime` is `active`, watching events (no polling
/// sleeps), within `timeout`.
pub async fn wait_until_active(runtime: &Runtime, timeout: Duration) -> Result<(), EventStreamError> {
    let mut events = runtime.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let statuses = runtime.statuses().await;
        if statuses.iter().all(|s| s.state == State::Active) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(EventStreamError::Timeout(timeout));
        }
        // Any transition may be the last one missing; re-check after each.
        match events.wait_for(left, |e| e.entered().is_some()).await {
            Ok(_) | Err(EventStreamError::Lagged(_)) => {}
            Err(e) => return Err(e),
        }
    }
}
