//! The order of the runs, the memory child processes, and the report.

use std::collections::BTreeMap;
use vigil_persistence::shared_state::Writer;
use vigil_persistence::{
    DatabaseConfig, PersistenceActor, PersistenceConfig, PersistenceHandle, SharedState, Store,
};
use vigil_runtime::Runtime;

use crate::actors::{self, tokio_senders};
use crate::common::{Idle, Ping, big, reps, rss_bytes};
use crate::vigil;

const MESSAGES: usize = 100_000;
/// Tells per figure. Fewer than asks: Vigil's tells queued at once cost far more each
/// than its asks (about 0.3 ms per tell at 100,000 queued, measured when this bench was
/// written), and 100,000 would take most of the bench's time budget.
const TELLS: usize = 10_000;
const SENDERS: [usize; 2] = [1, 100];
const RESTART: usize = 10_000;
const MEMORY_ENV: &str = "VIGIL_SCALE_MEMORY";

/// Figures by name, one value per repetition.
pub(crate) type Figures = BTreeMap<String, Vec<f64>>;

pub(crate) fn push(figures: &mut Figures, name: impl Into<String>, value: f64) {
    figures.entry(name.into()).or_default().push(value);
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-scale-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The writer of the fleets: default configuration, a SQLite file.
async fn writer(dir: &std::path::Path) -> (PersistenceHandle, SharedState) {
    let store = Store::connect(DatabaseConfig::sqlite(dir.join("fleet.db"))).await.expect("SQLite");
    let writer = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let shared = SharedState::with_writer(store, Writer::Actor(writer.clone()));
    (writer, shared)
}

/// In a child process: spawn `n` of one side, print the RSS delta per actor.
fn memory_child(spec: &str) {
    let (side, n) = spec.split_once(':').expect("side:n");
    let n: usize = n.parse().expect("n");
    let (tokio_rt, system, dir) = (tokio_runtime(), actix_rt::System::new(), temp_dir());
    let delta = match side {
        "vigil" => system.block_on(async {
            let (writer, shared) = writer(&dir).await;
            let before = rss_bytes();
            let (_, runtime) = vigil::spawn(&shared, &writer, n).await;
            let delta = rss_bytes() - before;
            runtime.shutdown().await;
            delta
        }),
        "actix" => system.block_on(async {
            let before = rss_bytes();
            let (_, keep) = actors::actix_spawn(n).await;
            let delta = rss_bytes() - before;
            drop(keep);
            delta
        }),
        "kameo" => tokio_rt.block_on(async {
            let before = rss_bytes();
            let (_, keep) = actors::kameo_spawn(n).await;
            let delta = rss_bytes() - before;
            std::mem::forget(keep);
            delta
        }),
        "ractor" => tokio_rt.block_on(async {
            let before = rss_bytes();
            let (_, keep) = actors::ractor_spawn(n).await;
            let delta = rss_bytes() - before;
            std::mem::forget(keep);
            delta
        }),
        other => panic!("unknown side {other}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!("MEMORY {}", delta / n as f64);
    // No orderly teardown of 100,000 actors: the process ends here.
    std::process::exit(0);
}

fn memory_of(side: &str, n: usize) -> f64 {
    let output = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env(MEMORY_ENV, format!("{side}:{n}"))
        .output()
        .expect("memory child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("MEMORY ")?.parse().ok())
        .unwrap_or_else(|| panic!("{side}:{n}: {stdout} {}", String::from_utf8_lossy(&output.stderr)))
}

pub(crate) fn main() {
    if let Ok(spec) = std::env::var(MEMORY_ENV) {
        return memory_child(&spec);
    }
    // The restart's panics are requested; their messages are noise here.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"boom requested") {
            default_hook(info);
        }
    }));
    let (reps, big) = (reps(), big());
    let counts = if big > 10_000 { vec![10_000, big] } else { vec![big] };
    let (tokio_rt, system, dir) = (tokio_runtime(), actix_rt::System::new(), temp_dir());
    let (writer, shared) = system.block_on(writer(&dir));
    println!(
        "scale bench: {reps} repetitions, spawn counts {counts:?}, {MESSAGES} messages, SQLite file writer ({})",
        dir.display()
    );
    let mut f = Figures::new();
    // Progress on stderr: where the bench's own minutes go.
    let clock = std::time::Instant::now();
    let progress = |what: &str| eprintln!("[{:>5.1} s] {what} done", clock.elapsed().as_secs_f64());

    // 1. Spawn, interleaved: Vigil, kameo, ractor, actix at each count.
    let refused_before = writer.stats().refused_writes;
    for _ in 0..reps {
        for &n in &counts {
            let run = system.block_on(async {
                let (run, runtime) = vigil::spawn(&shared, &writer, n).await;
                runtime.shutdown().await;
                writer.flush().await.expect("flush");
                run
            });
            push(&mut f, format!("spawn {n} vigil active"), run.active_ms);
            push(&mut f, format!("spawn {n} vigil"), run.persisted_ms);
            let kameo = tokio_rt.block_on(async {
                let (ms, keep) = actors::kameo_spawn(n).await;
                actors::kameo_stop(keep).await;
                ms
            });
            push(&mut f, format!("spawn {n} kameo"), kameo);
            let ractor = tokio_rt.block_on(async {
                let (ms, keep) = actors::ractor_spawn(n).await;
                actors::ractor_stop(keep).await;
                ms
            });
            push(&mut f, format!("spawn {n} ractor"), ractor);
            let actix = system.block_on(async { actors::actix_spawn(n).await.0 });
            push(&mut f, format!("spawn {n} actix"), actix);
        }
    }
    let refused = writer.stats().refused_writes - refused_before;
    progress("spawn");

    // 2. The one_for_all restart of 10,000.
    system.block_on(async {
        let tree = vigil::restart_tree(&shared, RESTART).await;
        for _ in 0..reps {
            push(&mut f, "restart vigil", vigil::restart(&tree, &writer, RESTART).await);
        }
        tree.shutdown().await;
        writer.flush().await.expect("flush");
    });
    progress("restart");

    // 3. Messages: one actor per runtime, kept for every repetition.
    let echo = system.block_on(async {
        Runtime::builder(shared.clone()).agent_with_id("echo", Idle::default).start().await.expect("echo")
    });
    let actix_addr = system.block_on(async { actors::actix_one() });
    let kameo = tokio_rt.block_on(async { actors::kameo_one() });
    let (ractor, ractor_handle) = tokio_rt.block_on(actors::ractor_one());
    for _ in 0..reps {
        for senders in SENDERS {
            let per = MESSAGES / senders;
            let ns = |started: std::time::Instant| started.elapsed().as_nanos() as f64 / MESSAGES as f64;
            let tell_per = TELLS / senders;
            let tell_ns = |started: std::time::Instant| started.elapsed().as_nanos() as f64 / TELLS as f64;
            let (tell, by_addr, ask) = system.block_on(vigil::messages(&echo, senders, TELLS, MESSAGES));
            push(&mut f, format!("tell {senders} vigil"), tell);
            push(&mut f, format!("ask {senders} vigil addr"), by_addr);
            push(&mut f, format!("ask {senders} vigil"), ask);
            let (tell, ask) = system.block_on(async {
                let started = std::time::Instant::now();
                let a = actix_addr.clone();
                actors::local_senders(senders, tell_per, move || {
                    a.do_send(Ping);
                    std::future::ready(())
                })
                .await;
                actix_addr.send(Ping).await.expect("actix");
                let tell = tell_ns(started);
                let started = std::time::Instant::now();
                let a = actix_addr.clone();
                actors::local_senders(senders, per, move || {
                    let a = a.clone();
                    async move {
                        a.send(Ping).await.expect("actix");
                    }
                })
                .await;
                (tell, ns(started))
            });
            push(&mut f, format!("tell {senders} actix"), tell);
            push(&mut f, format!("ask {senders} actix"), ask);
            let (tell, ask) = tokio_rt.block_on(async {
                let started = std::time::Instant::now();
                let a = kameo.clone();
                tokio_senders(senders, tell_per, move || {
                    let a = a.clone();
                    async move { a.tell(Ping).await.expect("kameo tell") }
                })
                .await;
                kameo.ask(Ping).await.expect("kameo ask");
                let tell = tell_ns(started);
                let started = std::time::Instant::now();
                let a = kameo.clone();
                tokio_senders(senders, per, move || {
                    let a = a.clone();
                    async move {
                        a.ask(Ping).await.expect("kameo ask");
                    }
                })
                .await;
                (tell, ns(started))
            });
            push(&mut f, format!("tell {senders} kameo"), tell);
            push(&mut f, format!("ask {senders} kameo"), ask);
            let (tell, ask) = tokio_rt.block_on(async {
                let started = std::time::Instant::now();
                let a = ractor.clone();
                tokio_senders(senders, tell_per, move || {
                    actors::ractor_tell(&a);
                    std::future::ready(())
                })
                .await;
                actors::ractor_ask(&ractor).await;
                let tell = tell_ns(started);
                let started = std::time::Instant::now();
                let a = ractor.clone();
                tokio_senders(senders, per, move || {
                    let a = a.clone();
                    async move {
                        actors::ractor_ask(&a).await;
                    }
                })
                .await;
                (tell, ns(started))
            });
            push(&mut f, format!("tell {senders} ractor"), tell);
            push(&mut f, format!("ask {senders} ractor"), ask);
        }
    }
    system.block_on(echo.shutdown());
    tokio_rt.block_on(async {
        ractor.stop(None);
        let _ = ractor_handle.await;
    });

    progress("messages");

    // 4. Memory, once per side and count, each in a fresh process.
    for &n in &counts {
        for side in ["vigil", "kameo", "ractor", "actix"] {
            push(&mut f, format!("memory {n} {side}"), memory_of(side, n));
        }
    }

    progress("memory");

    // 5. Ingest.
    crate::report::ingest(&mut f, reps, &system, &tokio_rt, &dir);
    progress("ingest");

    system.block_on(async {
        let report = writer.shutdown().await;
        assert_eq!(report.failed, 0, "{report:?}");
    });
    let _ = std::fs::remove_dir_all(&dir);
    crate::report::print(&f, &counts, refused);
}
