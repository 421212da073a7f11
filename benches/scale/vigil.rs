//! The Vigil side: a fleet under one supervisor, its one_for_all restart, and typed
//! messages to one agent.

use std::time::{Duration, Instant};

use vigil_persistence::{PersistenceHandle, SharedState};
use vigil_runtime::supervisor::{ChildSpec, Strategy, SupervisorSpec};
use vigil_runtime::{Ask, AskError, EventBus, RestartIntensity, Runtime, State};

use crate::actors::local_senders;
use crate::common::{Boom, Idle, Ping};

/// Generous: a fleet start is timed, never cut short.
const LIMIT: Duration = Duration::from_secs(240);

/// Restarts without backoff: backoff is a chosen delay, not the runtime's cost.
fn zero_backoff() -> RestartIntensity {
    RestartIntensity::new(1_000_000, Duration::from_secs(1)).with_backoff(Duration::ZERO, Duration::ZERO)
}

fn fleet(name: &str, n: usize, strategy: Strategy) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(name, strategy).intensity(zero_backoff());
    for i in 0..n {
        spec = spec.child(ChildSpec::agent(format!("{name}-{i:06}"), Idle::default));
    }
    spec
}

pub(crate) struct SpawnRun {
    /// `start()` returned and `statuses()` shows every agent `active`.
    pub(crate) active_ms: f64,
    /// ... and the writer has committed every registration and transition.
    pub(crate) persisted_ms: f64,
}

/// `n` agents under one one_for_one supervisor, from `start()` to all-`active` and
/// persisted. The same ids every repetition: a registration of a known id is an
/// upsert, so the database does not grow between repetitions.
pub(crate) async fn spawn(shared: &SharedState, writer: &PersistenceHandle, n: usize) -> (SpawnRun, Runtime) {
    let builder = Runtime::builder(shared.clone())
        .supervisor(fleet("fleet", n, Strategy::OneForOne))
        .start_timeout(LIMIT);
    let started = Instant::now();
    let runtime = builder.start().await.expect("fleet started");
    let statuses = runtime.statuses().await;
    let active = started.elapsed();
    let not_active = statuses.iter().filter(|s| s.state != State::Active).count();
    assert_eq!((statuses.len(), not_active), (n, 0), "every agent active after start()");
    writer.flush().await.expect("flush");
    let persisted = started.elapsed();
    let run = SpawnRun { active_ms: active.as_secs_f64() * 1e3, persisted_ms: persisted.as_secs_f64() * 1e3 };
    (run, runtime)
}

/// A tree of `n` agents under one one_for_all supervisor, for [`restart`].
pub(crate) async fn restart_tree(shared: &SharedState, n: usize) -> Runtime {
    Runtime::builder(shared.clone())
        // Every restart of n agents publishes about 6n lifecycle events at once.
        .events(EventBus::new(8 * n))
        .supervisor(fleet("storm", n, Strategy::OneForAll))
        .start_timeout(LIMIT)
        .start()
        .await
        .expect("storm tree")
}

/// One child panics: time until all `n` are `active` again (the writer flushed before,
/// so the restart does not queue behind the tree's own start-up writes).
pub(crate) async fn restart(runtime: &Runtime, writer: &PersistenceHandle, n: usize) -> f64 {
    writer.flush().await.expect("flush");
    let addr = runtime.addr::<Idle>("storm-000000").expect("storm child");
    let mut events = runtime.subscribe();
    let sent = Instant::now();
    let reply = addr.send(Ask(Boom)).await.expect("mailbox");
    assert!(matches!(reply, Err(AskError::Failed(_))), "{reply:?}");
    let mut active = 0;
    while active < n {
        let event = events.wait_for(LIMIT, |e| e.entered() == Some(State::Active)).await.expect("active");
        if event.agent_id.starts_with("storm-") {
            active += 1;
        }
    }
    sent.elapsed().as_secs_f64() * 1e3
}

/// Nanoseconds per message from `senders` concurrent tasks, `tells` tells then `asks`
/// asks in all:
/// (tell, `addr.send(Ask(..))`, `Runtime::ask`). A tell is `addr.do_send(Ask(Ping))`
/// (Vigil has no separate fire-and-forget call); the clock stops when an ask sent
/// after the last tell is answered, so every tell has been handled.
pub(crate) async fn messages(
    runtime: &Runtime,
    senders: usize,
    tells: usize,
    asks: usize,
) -> (f64, f64, f64) {
    let addr = runtime.addr::<Idle>("echo").expect("echo agent");
    let ns = |started: Instant, total: usize| started.elapsed().as_nanos() as f64 / total as f64;

    let started = Instant::now();
    let a = addr.clone();
    local_senders(senders, tells / senders, move || {
        a.do_send(Ask(Ping));
        std::future::ready(())
    })
    .await;
    addr.send(Ask(Ping)).await.expect("mailbox").expect("reply");
    let tell = ns(started, tells);

    let per = asks / senders;
    let started = Instant::now();
    let a = addr.clone();
    local_senders(senders, per, move || {
        let a = a.clone();
        async move {
            a.send(Ask(Ping)).await.expect("mailbox").expect("reply");
        }
    })
    .await;
    let by_addr = ns(started, asks);

    let started = Instant::now();
    // An Rc per sender: cloning the `Runtime` itself per message would add its own cost.
    let r = std::rc::Rc::new(runtime.clone());
    local_senders(senders, per, move || {
        let r = r.clone();
        async move {
            r.ask::<Idle, Ping>("echo", Ping).await.expect("reply");
        }
    })
    .await;
    (tell, by_addr, ns(started, asks))
}
