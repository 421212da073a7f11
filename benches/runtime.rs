//! What the runtime costs over raw actix, each figure against a baseline measured in
//! the same run, medians over several repetitions.
//!
//! | figure   | Vigil                                                         | raw actix baseline                       |
//! |----------|---------------------------------------------------------------|------------------------------------------|
//! | message  | `addr.send(Ask(Ping))` to an `AgentHost<A: Handles<Ping>>`    | `addr.send(RawPing)` to a plain actor    |
//! | spawn    | 10,000 agents under one supervisor: to running, and to active | 10,000 plain actors to running           |
//! | restart  | typed handler panics -> `active` again (one_for_one)          | —                                        |
//! | storm    | one of 10,000 children panics -> all 10,000 `active` (one_for_all) | —                                   |
//!
//! The agents persist through an in-memory SQLite store and the `PersistenceActor`
//! (group commit), as an embedding application would run them. "Running" means the
//! actor has been polled once (its `started` ran; an agent has handed its registration
//! to the writer); "active" means it registered and walked initializing -> deploying
//! -> monitoring -> active. The restart figures use zero restart backoff: backoff is a
//! deliberate delay, not runtime latency.
//!
//! Run with `cargo bench --bench runtime` (`BENCH_REPS`, default 5). The last line is
//! `RESULT msg_overhead=<agent/raw> spawn_overhead=<agent/raw> restart_p50_us=<n> storm_10k_ms=<n>`,
//! where `spawn_overhead` compares spawn to *running* (both sides, same definition).
#![allow(missing_docs)]

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use vigil_persistence::shared_state::Writer;
use vigil_persistence::{
    DatabaseConfig, PersistenceActor, PersistenceConfig, PersistenceHandle, SharedState, Store,
};
use vigil_runtime::supervisor::{ChildSpec, Strategy, SupervisorSpec};
use vigil_runtime::{
    Agent, AgentContext, AgentError, AgentMessage, AgentResult, Ask, AskError, EventBus, Handles,
    RestartIntensity, Runtime, State,
};

const SPAWN: usize = 10_000;
const ROUND_TRIPS: usize = 100_000;
const RESTARTS: usize = 200;
const LIMIT: Duration = Duration::from_secs(60);

fn reps() -> usize {
    std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1)
}

// ------------------------------------------------------------------ the actors

/// The agent: answers `Ping`, panics on `Boom`, never cycles during the bench.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "bench", cycle = "1h", heartbeat = "1h")]
struct Bench {
    pings: u64,
}

impl Agent for Bench {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

struct Ping;
impl AgentMessage for Ping {
    type Reply = u64;
}

impl Handles<Ping> for Bench {
    async fn handle(&mut self, _: Ping, _ctx: &AgentContext) -> Result<u64, AgentError> {
        self.pings += 1;
        Ok(self.pings)
    }
}

struct Boom;
impl AgentMessage for Boom {
    type Reply = ();
}

impl Handles<Boom> for Bench {
    async fn handle(&mut self, _: Boom, _ctx: &AgentContext) -> Result<(), AgentError> {
        panic!("boom requested")
    }
}

/// The baseline: a plain actor with the equivalent handler.
struct Raw {
    pings: u64,
    started: Rc<Cell<usize>>,
}

impl Actor for Raw {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.started.set(self.started.get() + 1);
    }
}

#[derive(Message)]
#[rtype(result = "u64")]
struct RawPing;

impl Handler<RawPing> for Raw {
    type Result = u64;
    fn handle(&mut self, _: RawPing, _: &mut Context<Self>) -> u64 {
        self.pings += 1;
        self.pings
    }
}

// ------------------------------------------------------------------ helpers

/// Pending once, waking itself: it goes to the back of the arbiter's queue, so it
/// completes after every task that was queued before it has been polled.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

fn zero_backoff(max: u32) -> RestartIntensity {
    RestartIntensity::new(max, Duration::from_secs(1)).with_backoff(Duration::ZERO, Duration::ZERO)
}

async fn db_size(shared: &SharedState) -> f64 {
    shared.get_database_health().await.ok().and_then(|h| h.database_size_bytes).unwrap_or(0) as f64
}

// ------------------------------------------------------------------ 1. messages

async fn raw_round_trips() -> f64 {
    let addr = Raw { pings: 0, started: Rc::default() }.start();
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        addr.send(RawPing).await.expect("raw reply");
    }
    started.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64
}

async fn agent_round_trips(runtime: &Runtime) -> (f64, f64) {
    let addr = runtime.addr::<Bench>("echo").expect("echo agent");
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        addr.send(Ask(Ping)).await.expect("mailbox").expect("reply");
    }
    let by_addr = started.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        runtime.ask::<Bench, Ping>("echo", Ping).await.expect("reply");
    }
    let by_ask = started.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
    (by_addr, by_ask)
}

// ------------------------------------------------------------------ 2. spawn

struct SpawnRun {
    to_running_ms: f64,
    to_active_ms: f64,
    rss_per_actor: f64,
    db_bytes_per_agent: f64,
}

async fn spawn_raw(keep: &mut Vec<Addr<Raw>>) -> SpawnRun {
    let counter = Rc::new(Cell::new(0));
    let rss = rss_bytes();
    let started = Instant::now();
    for _ in 0..SPAWN {
        keep.push(Raw { pings: 0, started: counter.clone() }.start());
    }
    // The same marker as for the agents (spawned after the last actor, it re-queues
    // itself once); the counter checks that the method sees every first poll.
    let seen = counter.clone();
    let marker = actix_rt::spawn(async move {
        YieldOnce(false).await;
        (Instant::now(), seen.get())
    });
    let (at, ran) = marker.await.expect("marker ran");
    let elapsed = at.duration_since(started);
    assert_eq!(ran, SPAWN, "every raw actor ran `started` before the marker");
    let ms = elapsed.as_secs_f64() * 1e3;
    SpawnRun {
        to_running_ms: ms,
        to_active_ms: ms,
        rss_per_actor: (rss_bytes() - rss) / SPAWN as f64,
        db_bytes_per_agent: 0.0,
    }
}

async fn spawn_agents(shared: &SharedState) -> (Runtime, SpawnRun) {
    // The factory of the last child arms a marker: queued right before that child's
    // actor, it re-queues itself once and so completes after every agent's first poll.
    // Factories must be Send + Sync (specs travel in messages): atomics and a mutex.
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (marker_tx, marker_rx) = tokio::sync::oneshot::channel::<Instant>();
    let marker_tx = Arc::new(std::sync::Mutex::new(Some(marker_tx)));
    let mut spec = SupervisorSpec::new("fleet", Strategy::OneForOne).intensity(zero_backoff(1_000_000));
    for i in 0..SPAWN {
        let (made, marker_tx) = (made.clone(), marker_tx.clone());
        spec = spec.child(ChildSpec::agent(format!("fleet-{i:05}"), move || {
            let count = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if count == SPAWN
                && let Some(tx) = marker_tx.lock().expect("marker lock").take()
            {
                actix_rt::spawn(async move {
                    YieldOnce(false).await;
                    let _ = tx.send(Instant::now());
                });
            }
            Bench::default()
        }));
    }
    let builder = Runtime::builder(shared.clone()).supervisor(spec).start_timeout(LIMIT);
    let db = db_size(shared).await;
    let rss = rss_bytes();
    let started = Instant::now();
    let runtime = builder.start().await.expect("fleet started");
    let active = started.elapsed();
    let running = marker_rx.await.expect("marker ran").duration_since(started);
    let rss_delta = rss_bytes() - rss;
    let db_delta = db_size(shared).await - db;
    (
        runtime,
        SpawnRun {
            to_running_ms: running.as_secs_f64() * 1e3,
            to_active_ms: active.as_secs_f64() * 1e3,
            rss_per_actor: rss_delta / SPAWN as f64,
            db_bytes_per_agent: db_delta / SPAWN as f64,
        },
    )
}

// ------------------------------------------------------------------ 3. restart

async fn restart_latencies(runtime: &Runtime, id: &str) -> Vec<Duration> {
    let addr = runtime.addr::<Bench>(id).expect("agent");
    let mut events = runtime.subscribe();
    let mut latencies = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let sent = Instant::now();
        let reply = addr.send(Ask(Boom)).await.expect("mailbox");
        assert!(matches!(reply, Err(AskError::Failed(_))), "{reply:?}");
        events.wait_for_state(id, State::Active, LIMIT).await.expect("active again");
        latencies.push(sent.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

// ------------------------------------------------------------------ 4. storm

async fn storm(runtime: &Runtime) -> f64 {
    let addr = runtime.addr::<Bench>("storm-00000").expect("storm child");
    let mut events = runtime.subscribe();
    let sent = Instant::now();
    let reply = addr.send(Ask(Boom)).await.expect("mailbox");
    assert!(matches!(reply, Err(AskError::Failed(_))), "{reply:?}");
    let mut active = 0;
    while active < SPAWN {
        let event = events.wait_for(LIMIT, |e| e.entered() == Some(State::Active)).await.expect("active");
        if event.agent_id.starts_with("storm-") {
            active += 1;
        }
    }
    sent.elapsed().as_secs_f64() * 1e3
}

// ------------------------------------------------------------------ main

fn main() {
    let reps = reps();
    // Thousands of requested panics follow; their messages are noise here.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"boom requested") {
            default_hook(info);
        }
    }));
    let system = actix_rt::System::new();
    system.block_on(async {
        let store = Store::connect(DatabaseConfig::sqlite_memory()).await.expect("in-memory SQLite");
        // A queue sized for the fleet: a one_for_all storm of 10,000 queues 60,000
        // transition rows at once; with the default 20,000 the storm waits on commits.
        let config = PersistenceConfig::default().with_queue_capacity(100_000);
        let writer: PersistenceHandle = PersistenceActor::start(store.clone(), config.clone());
        let shared = SharedState::with_writer(store, Writer::Actor(writer.clone()));
        println!(
            "runtime bench: {reps} repetitions, {SPAWN} actors per spawn/storm, in-memory SQLite + PersistenceActor (queue {})",
            config.queue_capacity
        );

        // 2 first, on a fresh heap: memory is measured on the first repetition, raw
        // actors kept alive so the agents' allocations cannot reuse their memory.
        let (mut raw_spawn, mut agent_spawn) = (Vec::new(), Vec::new());
        let mut memory = None;
        for rep in 0..reps {
            let mut keep = Vec::with_capacity(SPAWN);
            let raw = spawn_raw(&mut keep).await;
            let (runtime, agents) = spawn_agents(&shared).await;
            if rep == 0 {
                memory = Some((raw.rss_per_actor, agents.rss_per_actor, agents.db_bytes_per_agent));
            }
            let report = runtime.shutdown().await;
            assert!(report.failed.is_empty(), "{:?}", &report.failed[..report.failed.len().min(3)]);
            drop(keep);
            raw_spawn.push(raw);
            agent_spawn.push(agents);
        }

        // 1.
        let echo = Runtime::builder(shared.clone()).agent_with_id("echo", Bench::default).start().await.expect("echo");
        let (mut raw_ns, mut agent_ns, mut ask_ns) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            raw_ns.push(raw_round_trips().await);
            let (by_addr, by_ask) = agent_round_trips(&echo).await;
            agent_ns.push(by_addr);
            ask_ns.push(by_ask);
        }
        echo.shutdown().await;

        // 3.
        let crashy = Runtime::builder(shared.clone())
            .intensity(zero_backoff(1_000_000))
            .agent_with_id("crashy", Bench::default)
            .start()
            .await
            .expect("crashy");
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let latencies = restart_latencies(&crashy, "crashy").await;
            p50s.push(percentile(&latencies, 0.50));
            p99s.push(percentile(&latencies, 0.99));
            writer.flush().await.expect("flush");
        }
        crashy.shutdown().await;

        // 4.
        let mut spec = SupervisorSpec::new("storm", Strategy::OneForAll).intensity(zero_backoff(1_000_000));
        for i in 0..SPAWN {
            spec = spec.child(ChildSpec::agent(format!("storm-{i:05}"), Bench::default));
        }
        let storm_runtime = Runtime::builder(shared.clone())
            .events(EventBus::new(8 * SPAWN))
            .supervisor(spec)
            .start_timeout(LIMIT)
            .start()
            .await
            .expect("storm tree");
        // Every storm from an idle writer, the first one too: the tree's own start
        // left 40,000 writes queued, and a storm behind that backlog fills the queue
        // and waits on commits (about 1 s instead of 0.15 s; the writer's speed, not
        // the supervisor's, which the persistence bench measures).
        writer.flush().await.expect("flush");
        let mut storms = Vec::new();
        for _ in 0..reps.min(3) {
            storms.push(storm(&storm_runtime).await);
            writer.flush().await.expect("flush");
        }
        storm_runtime.shutdown().await;
        let persisted = writer.stats();
        let report = writer.shutdown().await;
        assert_eq!(report.failed, 0, "{report:?}");

        // Report.
        let raw_msg = median(raw_ns.clone());
        let agent_msg = median(agent_ns.clone());
        let ask_msg = median(ask_ns.clone());
        let raw_run = median(raw_spawn.iter().map(|r| r.to_running_ms).collect());
        let agent_run = median(agent_spawn.iter().map(|r| r.to_running_ms).collect());
        let agent_active = median(agent_spawn.iter().map(|r| r.to_active_ms).collect());
        let (raw_mem, agent_mem, db_mem) = memory.expect("first repetition");
        let p50 = median(p50s.clone());
        let p99 = median(p99s.clone());
        let storm_ms = median(storms.clone());
        let fmt = |xs: &[f64]| xs.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
        println!();
        println!("| figure | Vigil | raw actix | ratio |");
        println!("|---|---|---|---|");
        println!("| typed round trip, `addr.send(Ask(M))` | {agent_msg:.0} ns | {raw_msg:.0} ns | {:.2} |", agent_msg / raw_msg);
        println!("| typed round trip, `Runtime::ask` (registry lookup) | {ask_msg:.0} ns | {raw_msg:.0} ns | {:.2} |", ask_msg / raw_msg);
        println!(
            "| spawn 10k to running | {agent_run:.1} ms ({:.2} µs/actor) | {raw_run:.1} ms ({:.2} µs/actor) | {:.2} |",
            agent_run * 1e3 / SPAWN as f64,
            raw_run * 1e3 / SPAWN as f64,
            agent_run / raw_run
        );
        println!(
            "| spawn 10k to active (registered, 3 transitions persisted) | {agent_active:.1} ms | {raw_run:.1} ms | {:.1} |",
            agent_active / raw_run
        );
        println!(
            "| memory per actor (RSS delta, 1st rep) | {:.0} B (+{:.0} B SQLite rows) | {raw_mem:.0} B | {:.1} |",
            agent_mem - db_mem,
            db_mem,
            (agent_mem - db_mem) / raw_mem
        );
        println!("| restart, panic -> active (one_for_one) | p50 {p50:.0} µs, p99 {p99:.0} µs | — | — |");
        println!("| 10k one_for_all storm -> all active | {storm_ms:.0} ms | — | — |");
        println!();
        println!("per repetition: raw msg ns [{}] agent msg ns [{}] ask ns [{}]", fmt(&raw_ns), fmt(&agent_ns), fmt(&ask_ns));
        println!(
            "per repetition: spawn running ms raw [{}] agents [{}]; agents active ms [{}]",
            fmt(&raw_spawn.iter().map(|r| r.to_running_ms).collect::<Vec<_>>()),
            fmt(&agent_spawn.iter().map(|r| r.to_running_ms).collect::<Vec<_>>()),
            fmt(&agent_spawn.iter().map(|r| r.to_active_ms).collect::<Vec<_>>())
        );
        println!("per repetition: restart p50 µs [{}] p99 µs [{}]; storm ms [{}]", fmt(&p50s), fmt(&p99s), fmt(&storms));
        println!(
            "writer: {} writes in {} batches (mean {:.0}), {} retried, {} refused",
            persisted.writes_committed,
            persisted.batches_committed,
            persisted.mean_batch_size,
            persisted.retries,
            persisted.refused_writes
        );
        println!(
            "RESULT msg_overhead={:.2} spawn_overhead={:.2} restart_p50_us={:.0} storm_10k_ms={:.0}",
            agent_msg / raw_msg,
            agent_run / raw_run,
            p50,
            storm_ms
        );
    });
}
