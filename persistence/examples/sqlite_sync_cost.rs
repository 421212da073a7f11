//! THROWAWAY (issue 12 item 5): 100k heartbeats through the PersistenceActor on an
//! SQLite file, synchronous FULL vs NORMAL, median of 3.
#![allow(missing_docs)]
use std::time::Instant;
use vigil_persistence::config::SqliteSynchronous;
use vigil_persistence::types::Ts;
use vigil_persistence::{DatabaseConfig, PersistenceActor, PersistenceConfig, Store, Write};

const AGENTS: usize = 1_000;
const PER_AGENT: usize = 100;

fn heartbeat(agent: usize) -> Write {
    Write::Heartbeat {
        agent_id: format!("agent-{agent}"),
        at: Ts::now(),
        status: None,
        message: None,
        metadata: Some(serde_json::json!({"cpu": 0.5, "mem": 123})),
        uptime: None,
    }
}

async fn once(mode: SqliteSynchronous, awaited: bool) -> f64 {
    if std::env::var("SERIAL").is_ok() {
        return serial(mode).await;
    }
    let dir = std::env::temp_dir().join(format!("vigil-sync-{:08x}", rand::random::<u32>()));
    let config = DatabaseConfig::sqlite(dir.join("bench.db")).with_sqlite_synchronous(mode);
    let store = Store::connect(config).await.unwrap();
    let writes: Vec<Write> = (0..AGENTS)
        .map(|i| Write::RegisterAgent { agent_id: format!("agent-{i}"), agent_name: format!("A{i}"), at: Ts::now() })
        .collect();
    store.write_batch(writes).await.unwrap();
    let handle = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let started = Instant::now();
    if awaited {
        let tasks: Vec<_> = (0..AGENTS)
            .map(|agent| {
                let handle = handle.clone();
                actix_rt::spawn(async move {
                    for _ in 0..PER_AGENT {
                        handle.persist(heartbeat(agent)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    } else {
        for i in 0..AGENTS * PER_AGENT {
            let mut write = heartbeat(i % AGENTS);
            loop {
                match handle.enqueue(write) {
                    Ok(()) => break,
                    Err(e) => {
                        write = e.into_write();
                        actix_rt::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
            }
        }
        handle.flush().await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    (AGENTS * PER_AGENT) as f64 / elapsed
}

/// One task, 5,000 heartbeats each awaited: one commit (one fsync under FULL) each.
async fn serial(mode: SqliteSynchronous) -> f64 {
    let dir = std::env::temp_dir().join(format!("vigil-sync-{:08x}", rand::random::<u32>()));
    let config = DatabaseConfig::sqlite(dir.join("bench.db")).with_sqlite_synchronous(mode);
    let store = Store::connect(config).await.unwrap();
    let handle = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let started = Instant::now();
    for _ in 0..5_000 {
        handle.persist(heartbeat(0)).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    handle.shutdown().await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    5_000.0 / elapsed
}

fn main() {
    let system = actix_rt::System::new();
    system.block_on(async {
        for awaited in [true, false] {
            let mut runs = std::collections::BTreeMap::<&str, Vec<f64>>::new();
            for _ in 0..3 {
                for (name, mode) in [("FULL", SqliteSynchronous::Full), ("NORMAL", SqliteSynchronous::Normal)] {
                    runs.entry(name).or_default().push(once(mode, awaited).await);
                }
            }
            for (name, mut r) in runs {
                r.sort_by(f64::total_cmp);
                println!(
                    "{} {name:6}: median {:>8.0} heartbeats/s  (runs {:.0} {:.0} {:.0})",
                    if awaited { "awaited (1000 tasks)" } else { "fire-and-forget    " },
                    r[1], r[0], r[1], r[2]
                );
            }
        }
    });
}
