//! Deterministic failure testing for supervision trees.
//!
//! * [`FaultPlan`] — a script of faults (panic, error or hang of agent *X* at its
//!   *N*-th cycle, failures of `initialize`, random faults from a seed so a failing run
//!   can be replayed), shared by every instance an agent's factory creates. A seeded
//!   plan replays **per agent**: each agent draws from its own stream, so one seed
//!   gives the same faults at the same cycles of the same agents in every run
//!   ([`FaultPlan::cycle_faults`]); [`FaultPlan::random_kinds`] adds hangs to the mix.
//! * [`Faulty`] — the plan around a real agent of yours (`Faulty::new(agent, plan)`),
//!   so its supervision is tested with its own code in the loop.
//! * [`FaultyAgent`] — a ready-made agent that consults the plan on each hook. Its
//!   pace is set per child, like any agent's:
//!   [`ChildSpec::cycle_interval`](crate::ChildSpec::cycle_interval),
//!   [`cycle_timeout`](crate::ChildSpec::cycle_timeout) (how soon a hang is caught) and
//!   [`heartbeat_interval`](crate::ChildSpec::heartbeat_interval).
//! * [`memory_state`] — a private in-memory shared state; [`fail_next_flushes`] makes
//!   the persistence writer's next flushes fail.
//! * Awaiting instead of sleeping — [`crate::EventStream::wait_for`],
//!   [`crate::EventStream::wait_for_state`], [`wait_until_active`] and
//!   [`wait_for_cycle`] (on a bus [`with_cycle_events`](crate::EventBus::with_cycle_events)),
//!   each with a timeout as a safety net; [`eventually`] polls what publishes no event.
//!
//! The module is compiled with the crate's `testkit` feature: in a user's
//! `Cargo.toml`, `vigil-runtime = { ..., features = ["testkit"] }` under
//! `[dev-dependencies]`.
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

use crate::agent::{AgentError, AgentResult};
use crate::events::{EventKind, EventStream, EventStreamError, LifecycleEvent};
use crate::lifecycle::State;
use crate::runtime::Runtime;

mod faulty;
pub use faulty::{Faulty, FaultyAgent, faulty_child};

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
    /// Random faults, if the plan is seeded.
    random: Option<RandomFaults>,
    /// Faults injected into each agent's cycles, with the cycle number, in order.
    cycle_faults: HashMap<String, Vec<(u64, Fault)>>,
    /// Faults injected so far.
    injected: u64,
    /// When false, nothing more is injected.
    enabled: bool,
}

/// The random part of a seeded plan.
///
/// **One stream per agent.** Each agent draws from its own generator, seeded from the
/// plan's seed and the agent's id with a stable hash, once per cycle. Agent *X*'s
/// *n*-th cycle therefore gets the same fault in every run with the same seed, however
/// the agents' cycles interleave; one stream shared by all would hand a fault to
/// whichever agent happened to draw next.
#[derive(Debug)]
struct RandomFaults {
    seed: u64,
    /// Chance that a cycle fails.
    probability: f64,
    /// What a failing cycle does, one picked per fault from the agent's stream.
    kinds: Vec<Fault>,
    streams: HashMap<String, rand::rngs::StdRng>,
}

impl RandomFaults {
    /// The fault, if any, for `agent`'s next cycle: two draws from its stream when it
    /// fails (whether, then which), one when it does not.
    fn draw(&mut self, agent: &str) -> Option<Fault> {
        let seed = self.seed;
        let stream = self
            .streams
            .entry(agent.to_owned())
            .or_insert_with(|| rand::rngs::StdRng::seed_from_u64(stream_seed(seed, agent)));
        if !stream.random_bool(self.probability) || self.kinds.is_empty() {
            return None;
        }
        Some(self.kinds[stream.random_range(0..self.kinds.len())])
    }
}

/// The seed of `agent`'s stream: FNV-1a of its id mixed into `seed` (SplitMix64's
/// finalizer), the same on every platform and in every run — unlike std's
/// `RandomState`, which is randomized per process.
fn stream_seed(seed: u64, agent: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in agent.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

    /// A plan that also fails each cycle with `probability` (half panics, half errors;
    /// see [`FaultPlan::random_kinds`]). Each agent draws from its own stream, seeded
    /// from `seed` and its id: the same seed gives the same faults at the same cycles
    /// of the same agents, whatever the scheduling ([`FaultPlan::cycle_faults`]).
    pub fn seeded(seed: u64, probability: f64) -> Self {
        let plan = Self::new();
        plan.lock().random = Some(RandomFaults {
            seed,
            probability: probability.clamp(0.0, 1.0),
            kinds: vec![Fault::Panic, Fault::Error],
            streams: HashMap::new(),
        });
        plan
    }

    /// What a random fault may be, each equally likely (default: panic or error).
    /// With [`Fault::Hang`], give the agents a short cycle timeout
    /// ([`ChildSpec::cycle_timeout`](crate::ChildSpec::cycle_timeout)) so a hang is
    /// detected in test time; the default is 5 minutes. No effect on an unseeded plan.
    #[must_use]
    pub fn random_kinds(self, kinds: &[Fault]) -> Self {
        if let Some(random) = &mut self.lock().random {
            random.kinds = kinds.to_vec();
        }
        self
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

    /// The faults injected into `agent`'s cycles so far, with the cycle number
    /// (counted across restarts), in order: what a replay compares.
    pub fn cycle_faults(&self, agent: &str) -> Vec<(u64, Fault)> {
        self.lock().cycle_faults.get(agent).cloned().unwrap_or_default()
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
        // The agent's stream is drawn every cycle, scheduled fault or not, so its n-th
        // draw always belongs to its n-th cycle.
        let drawn = state.random.as_mut().and_then(|random| random.draw(agent));
        let fault = state.at_cycle.remove(&(agent.to_owned(), cycle)).or(drawn);
        if let Some(fault) = fault {
            state.injected += 1;
            state.cycle_faults.entry(agent.to_owned()).or_default().push((cycle, fault));
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

/// Asserts that the run was undisturbed: every agent of `runtime` is `active`, and
/// nothing left on `events` (drained without waiting) reports a failure, a restart
/// after a failure, or an agent entering `error` or `manual`. Restarts somebody asked
/// for (a monitor that found an agent silent, an operator) are not disturbances.
///
/// # Panics
///
/// When it was disturbed, naming the status or event that shows it.
pub async fn assert_undisturbed(runtime: &Runtime, events: &mut crate::EventStream) {
    let statuses = runtime.statuses().await;
    assert!(statuses.iter().all(|s| s.state == State::Active), "{statuses:?}");
    while let Ok(event) = events.wait_for(Duration::ZERO, |_| true).await {
        let failed = matches!(event.kind, crate::EventKind::Failure { .. })
            || matches!(event.cause, crate::Cause::Failure { .. } | crate::Cause::Restart { .. })
            || matches!(event.entered(), Some(State::Error | State::Manual));
        assert!(!failed, "{event:?}");
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

/// Waits until `agent_id` completes its `cycle`-th cycle (counted since the agent was
/// spawned, across restarts), or a later one, within `timeout`. The runtime's bus
/// must publish cycle events ([`EventBus::with_cycle_events`](crate::EventBus::with_cycle_events)),
/// and `events` must have subscribed before that cycle ended.
pub async fn wait_for_cycle(
    events: &mut EventStream,
    agent_id: &str,
    cycle: u64,
    timeout: Duration,
) -> Result<LifecycleEvent, EventStreamError> {
    events
        .wait_for(timeout, |e| {
            e.agent_id == agent_id
                && matches!(e.kind, EventKind::CycleFinished { cycle: n, .. } if n >= cycle)
        })
        .await
}

/// Polls `probe` every 25 ms until it yields `Some`, and returns that value: for what
/// publishes no event (a row in the database, a counter). Prefer an event when there is
/// one.
///
/// ```no_run
/// # async fn demo(shared: vigil_persistence::SharedState) {
/// use std::time::Duration;
/// use vigil_runtime::testkit::eventually;
///
/// let agent = eventually("the worker's row", Duration::from_secs(10), || {
///     let shared = shared.clone();
///     async move { shared.get_agent("worker").await.ok().flatten() }
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
///
/// After `timeout`, with "timed out waiting for `what`".
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let search = async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(timeout, search).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
