//! Heartbeat throughput of the persistence actor against baselines measured in the
//! same run, on a database created (and dropped) for the run.
//!
//! 1,000 simulated agents send heartbeats (a heartbeat row + the agent's
//! `last_heartbeat`) for a fixed time through:
//!
//! | run | what                                                                      |
//! |-----|---------------------------------------------------------------------------|
//! | a   | diesel-async as a user writes it: UPDATE + INSERT per heartbeat, autocommit, one connection |
//! | b   | the same with a bb8 pool of 8 and 8 concurrent tasks                      |
//! | c   | the driver's ceiling: tokio-postgres, 1,000-row multi-row INSERT + one UNNEST UPDATE per transaction |
//! | d   | the PersistenceActor, 1,000 tasks each awaiting its heartbeats in turn    |
//! | e   | the PersistenceActor fire-and-forget (on QueueFull: count, sleep 1 ms, retry) |
//!
//! Then (d) and (e) on SQLite (a temp file). The PostgreSQL runs are interleaved,
//! three repetitions each, and medians reported (with the range). Run with
//! `cargo bench --bench persistence` (`TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `BENCH_SECONDS` per run, split
//! across the repetitions, default 3). The last line is
//! `RESULT persist_vs_ceiling=<d/c> persist_vs_naive=<d/a> persist_vs_pool8=<d/b>`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use vigil_persistence::config::{ConfigSource, DatabaseUrl};
use vigil_persistence::schema::{agent_heartbeats, agents};
use vigil_persistence::types::Ts;
use vigil_persistence::{
    DatabaseConfig, PersistenceActor, PersistenceConfig, PersistenceHandle, Store, StoreError, Write,
};

const AGENTS: usize = 1_000;
/// Repetitions of each PostgreSQL run; medians are reported.
const REPS: usize = 3;

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The repetition with the median throughput, whole (its latencies belong to it).
fn median_run(mut runs: Vec<ActorRun>) -> ActorRun {
    runs.sort_by(|x, y| x.rows_per_s.total_cmp(&y.rows_per_s));
    runs.swap_remove(runs.len() / 2)
}

/// "[min–max]" of the repetitions.
fn spread(values: &[f64]) -> String {
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    format!("[{lo:.0}–{hi:.0}]")
}

fn seconds() -> Duration {
    Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0))
}

fn agent_name(i: usize) -> String {
    format!("bench-agent-{i:04}")
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn heartbeat(agent: usize) -> Write {
    Write::Heartbeat {
        agent_id: agent_name(agent),
        at: Ts::now(),
        status: Some(vigil_persistence::State::Active),
        message: None,
        metadata: None,
        uptime: None,
    }
}

/// Registers the agents; returns their internal ids, by index.
async fn register(store: &Store) -> Result<Vec<i32>, StoreError> {
    let writes = (0..AGENTS)
        .map(|i| Write::RegisterAgent {
            agent_id: agent_name(i),
            agent_name: format!("Agent {i}"),
            at: Ts::now(),
        })
        .collect();
    for r in store.write_batch(writes).await? {
        r?;
    }
    let state = vigil_persistence::SharedState::direct(store.clone());
    let rows = state.get_registered_agents().await?;
    let mut ids = vec![0; AGENTS];
    for row in rows {
        if let Some(i) = row.agent_id.strip_prefix("bench-agent-").and_then(|n| n.parse::<usize>().ok()) {
            ids[i] = row.id;
        }
    }
    Ok(ids)
}

/// (a)/(b): one UPDATE and one INSERT per heartbeat, autocommit, through diesel-async.
async fn naive_heartbeat(conn: &mut AsyncPgConnection, name: &str, id: i32) -> diesel::QueryResult<()> {
    // Scoped here: diesel-async's `RunQueryDsl` has a blanket `load`/`execute`.
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::RunQueryDsl;

    let now = Ts::now();
    diesel::update(agents::table.filter(agents::agent_id.eq(name)))
        .set((agents::last_heartbeat.eq(now), agents::updated_at.eq(now)))
        .execute(conn)
        .await?;
    diesel::insert_into(agent_heartbeats::table)
        .values((
            agent_heartbeats::agent_id.eq(id),
            agent_heartbeats::timestamp.eq(now),
            agent_heartbeats::status.eq("active"),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

async fn run_naive(url: &str, ids: &[i32], time: Duration) -> f64 {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let names: Vec<String> = (0..AGENTS).map(agent_name).collect();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < time {
        let i = n as usize % AGENTS;
        naive_heartbeat(&mut conn, &names[i], ids[i]).await.expect("heartbeat");
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn run_pool8(url: &str, ids: &[i32], time: Duration) -> f64 {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    let pool = Pool::builder().max_size(8).min_idle(Some(8)).build(manager).await.expect("pool");
    let count = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids.to_vec());
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (pool, count, ids) = (pool.clone(), count.clone(), ids.clone());
            tokio::spawn(async move {
                let mut i = t;
                while started.elapsed() < time {
                    let mut conn = pool.get().await.expect("checkout");
                    naive_heartbeat(&mut conn, &agent_name(i % AGENTS), ids[i % AGENTS])
                        .await
                        .expect("heartbeat");
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 8;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// (c): tokio-postgres, one transaction per 1,000 heartbeats: a multi-row INSERT with
/// prepared statement and one UPDATE ... FROM UNNEST.
async fn run_ceiling(url: &str, ids: &[i32], time: Duration) -> f64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let mut sql = String::from("INSERT INTO agent_heartbeats (agent_id, timestamp, status) VALUES ");
    for i in 0..AGENTS {
        let p = i * 3;
        sql.push_str(&format!("{}(${}, ${}, ${})", if i == 0 { "" } else { "," }, p + 1, p + 2, p + 3));
    }
    let insert = client.prepare(&sql).await.expect("prepare insert");
    let update = client
        .prepare(
            "UPDATE agents AS a SET last_heartbeat = v.ts, updated_at = v.ts \
             FROM UNNEST($1::int4[], $2::timestamptz[]) AS v(id, ts) WHERE a.id = v.id",
        )
        .await
        .expect("prepare update");
    let status = "active".to_string();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < time {
        let now = SystemTime::now();
        let stamps = vec![now; AGENTS];
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(AGENTS * 3);
        for (id, stamp) in ids.iter().zip(&stamps) {
            params.push(id);
            params.push(stamp);
            params.push(&status);
        }
        client.batch_execute("BEGIN").await.expect("begin");
        client.execute(&insert, &params).await.expect("insert");
        client.execute(&update, &[&ids, &stamps]).await.expect("update");
        client.batch_execute("COMMIT").await.expect("commit");
        n += AGENTS as u64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

struct ActorRun {
    rows_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
    refused: u64,
}

/// (d): 1,000 tasks, each awaiting its own heartbeats in turn.
async fn run_awaited(store: &Store, config: PersistenceConfig, time: Duration) -> ActorRun {
    let handle = PersistenceActor::start(store.clone(), config);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let (handle, stop) = (handle.clone(), stop.clone());
            actix_rt::spawn(async move {
                let mut latencies = Vec::with_capacity(1024);
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    handle.persist(heartbeat(agent)).await.expect("persist");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    actix_rt::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let stats = handle.stats();
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0, "{report:?}");
    ActorRun {
        rows_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        mean_batch: stats.mean_batch_size,
        refused: 0,
    }
}

/// (e): fire-and-forget from 4 producers; a refusal (QueueFull) is counted, then the
/// producer yields and sends again. Timed until everything sent has committed.
async fn run_fire_and_forget(store: &Store, config: PersistenceConfig, time: Duration) -> ActorRun {
    let handle: PersistenceHandle = PersistenceActor::start(store.clone(), config);
    let started = Instant::now();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let handle = handle.clone();
            actix_rt::spawn(async move {
                let (mut sent, mut refused) = (0u64, 0u64);
                let mut agent = p;
                while started.elapsed() < time {
                    match handle.enqueue(heartbeat(agent % AGENTS)) {
                        Ok(()) => {
                            sent += 1;
                            agent += 4;
                            if sent % 64 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        Err(vigil_persistence::EnqueueError::Full { .. }) => {
                            // Back off briefly: spinning on the actor's own thread would
                            // starve the writer.
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => panic!("enqueue: {e}"),
                    }
                }
                (sent, refused)
            })
        })
        .collect();
    let (mut sent, mut refused) = (0, 0);
    for p in producers {
        let (s, r) = p.await.expect("producer");
        sent += s;
        refused += r;
    }
    handle.flush().await.expect("flush");
    let elapsed = started.elapsed();
    let stats = handle.stats();
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(stats.refused_writes, refused);
    ActorRun {
        rows_per_s: sent as f64 / elapsed.as_secs_f64(),
        p50_ms: stats.flush_latency_p50_ms,
        p99_ms: stats.flush_latency_p99_ms,
        mean_batch: stats.mean_batch_size,
        refused,
    }
}

async fn truncate(store_url: &str) {
    let mut conn = AsyncPgConnection::establish(store_url).await.expect("connect");
    conn.batch_execute("TRUNCATE agent_heartbeats").await.expect("truncate");
    conn.batch_execute("VACUUM ANALYZE agents").await.expect("vacuum");
}

fn main() {
    let time = seconds();
    let admin_raw = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = DatabaseUrl::parse(&admin_raw, ConfigSource::Environment).expect("valid TEST_DATABASE_URL");
    let name = format!("vigil_bench_{:08x}", rand::random::<u32>());
    let url = admin.with_database(&name);
    let url_str = url.expose().to_owned();
    let baselines =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");

    baselines.block_on(async {
        let mut conn =
            AsyncPgConnection::establish(admin.expose()).await.expect("PostgreSQL is needed for this bench");
        conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    });
    let config = PersistenceConfig::default();
    println!(
        "persistence bench: {AGENTS} agents, {time:?} per run, database {name}, actor config {config:?}"
    );

    let system = actix_rt::System::new();
    let (ids, store) = system.block_on(async {
        let store = Store::connect(DatabaseConfig::postgres(&url_str).expect("url")).await.expect("connect");
        (register(&store).await.expect("register"), store)
    });

    // The PostgreSQL runs interleaved, REPS times each, and the median of each taken:
    // the baselines and the actor then share the disk's good and bad moments, and one
    // lucky or unlucky slice does not make the ratio.
    let slice = time / REPS as u32;
    let (mut a_runs, mut b_runs, mut c_runs, mut d_runs, mut e_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        baselines.block_on(async {
            truncate(&url_str).await;
            a_runs.push(run_naive(&url_str, &ids, slice).await);
            truncate(&url_str).await;
            b_runs.push(run_pool8(&url_str, &ids, slice).await);
            truncate(&url_str).await;
            c_runs.push(run_ceiling(&url_str, &ids, slice).await);
        });
        system.block_on(async {
            truncate(&url_str).await;
            d_runs.push(run_awaited(&store, config.clone(), slice).await);
            truncate(&url_str).await;
            e_runs.push(run_fire_and_forget(&store, config.clone(), slice).await);
        });
    }
    let (a, b, c) = (median(&a_runs), median(&b_runs), median(&c_runs));
    let d_spread = spread(&d_runs.iter().map(|r| r.rows_per_s).collect::<Vec<_>>());
    let (d, e) = (median_run(d_runs), median_run(e_runs));
    println!(
        "(a) diesel-async, UPDATE+INSERT per heartbeat, 1 conn:   {a:>10.0} rows/s  {}",
        spread(&a_runs)
    );
    println!(
        "(b) diesel-async, same, bb8 pool of 8, 8 tasks:           {b:>10.0} rows/s  {}",
        spread(&b_runs)
    );
    println!(
        "(c) tokio-postgres ceiling, 1000-row INSERT + UNNEST UPDATE: {c:>8.0} rows/s  {}",
        spread(&c_runs)
    );
    println!(
        "(d) PersistenceActor, awaited (1000 tasks):              {:>10.0} rows/s  {d_spread}  ack p50 {:.2} ms  p99 {:.2} ms  mean batch {:.0}",
        d.rows_per_s, d.p50_ms, d.p99_ms, d.mean_batch
    );
    println!(
        "(e) PersistenceActor, fire-and-forget:                   {:>10.0} rows/s  flush p50 {:.2} ms  p99 {:.2} ms  mean batch {:.0}  refused {}",
        e.rows_per_s, e.p50_ms, e.p99_ms, e.mean_batch, e.refused
    );
    drop(store);

    let dir = std::env::temp_dir().join(format!("vigil-bench-{:08x}", rand::random::<u32>()));
    let (sd, se) = system.block_on(async {
        let store = Store::connect(DatabaseConfig::sqlite(dir.join("bench.db"))).await.expect("sqlite");
        register(&store).await.expect("register");
        let d = run_awaited(&store, config.clone(), time).await;
        let e = run_fire_and_forget(&store, config.clone(), time).await;
        (d, e)
    });
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "(d) SQLite PersistenceActor, awaited:                     {:>10.0} rows/s  ack p50 {:.2} ms  p99 {:.2} ms  mean batch {:.0}",
        sd.rows_per_s, sd.p50_ms, sd.p99_ms, sd.mean_batch
    );
    println!(
        "(e) SQLite PersistenceActor, fire-and-forget:             {:>10.0} rows/s  flush p50 {:.2} ms  p99 {:.2} ms  mean batch {:.0}  refused {}",
        se.rows_per_s, se.p50_ms, se.p99_ms, se.mean_batch, se.refused
    );
    println!("peak RSS (VmHWM): {:.1} MB", peak_rss_mb());

    baselines.block_on(async {
        let mut conn = AsyncPgConnection::establish(admin.expose()).await.expect("admin");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    });
    println!(
        "RESULT persist_vs_ceiling={:.2} persist_vs_naive={:.2} persist_vs_pool8={:.2}",
        d.rows_per_s / c,
        d.rows_per_s / a,
        d.rows_per_s / b
    );
}
