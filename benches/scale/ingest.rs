//! Ingest: heartbeats, metrics and events of 1,000 agents through the
//! `PersistenceActor`, against the same rows written by hand (PostgreSQL: a
//! multi-row INSERT and COPY; SQLite: a plain rusqlite loop).
//!
//! Per round every agent sends a heartbeat (a row, and its `agents.last_heartbeat`),
//! a metric and an event: 3,000 rows. The baselines write the same rows to the same
//! tables, and update `last_heartbeat` once per agent per transaction as the actor's
//! batches do.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use futures_util::SinkExt;
use vigil_persistence::types::Ts;
use vigil_persistence::{PersistenceActor, PersistenceConfig, Severity, Store, StoreError, Write};

use crate::common::{cpu_seconds, percentile_ms};

pub(crate) const AGENTS: usize = 1_000;
/// Rows per agent per round.
const KINDS: usize = 3;

pub(crate) struct IngestRun {
    pub(crate) rows_per_s: f64,
    /// Client CPU (this process, every thread) per row, in microseconds.
    pub(crate) cpu_us_per_row: f64,
    /// Awaited ack p50 (the actor), or a transaction's p50 (the baselines), in ms.
    pub(crate) p50_ms: f64,
    pub(crate) refused: u64,
}

fn agent_name(i: usize) -> String {
    format!("ingest-{i:04}")
}

fn writes(agent: usize) -> [Write; KINDS] {
    let (name, at) = (agent_name(agent), Ts::now());
    [
        Write::Heartbeat {
            agent_id: name.clone(),
            at,
            status: Some(vigil_persistence::State::Active),
            message: None,
            metadata: None,
            uptime: None,
        },
        Write::Metric {
            agent_id: Some(name.clone()),
            name: "queue_depth".into(),
            value: agent as f32,
            source_agent: Some(name),
            metadata: None,
            at,
        },
        Write::Event { event_type: "bench_tick".into(), severity: Severity::Info, data: None, at },
    ]
}

/// Registers the agents; returns their internal ids, by index.
pub(crate) async fn register(store: &Store) -> Result<Vec<i32>, StoreError> {
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
    let rows = vigil_persistence::SharedState::direct(store.clone()).get_registered_agents().await?;
    let mut ids = vec![0; AGENTS];
    for row in rows {
        if let Some(i) = row.agent_id.strip_prefix("ingest-").and_then(|n| n.parse::<usize>().ok()) {
            ids[i] = row.id;
        }
    }
    Ok(ids)
}

fn run(rows: usize, started: Instant, cpu: f64, mut latencies: Vec<Duration>, refused: u64) -> IngestRun {
    latencies.sort_unstable();
    IngestRun {
        rows_per_s: rows as f64 / started.elapsed().as_secs_f64(),
        cpu_us_per_row: (cpu_seconds() - cpu) * 1e6 / rows as f64,
        p50_ms: percentile_ms(&latencies, 0.5),
        refused,
    }
}

/// The actor with its default configuration: one task per agent, each awaiting its
/// writes in turn (an agent awaiting its heartbeat's ack), `rounds` rounds.
pub(crate) async fn actor(store: &Store, rounds: usize) -> IngestRun {
    let handle = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let tasks: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let handle = handle.clone();
            actix_rt::spawn(async move {
                let mut latencies = Vec::with_capacity(rounds * KINDS);
                for _ in 0..rounds {
                    for write in writes(agent) {
                        let sent = Instant::now();
                        handle.persist(write).await.expect("persist");
                        latencies.push(sent.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let result = run(latencies.len(), started, cpu, latencies, handle.stats().refused_writes);
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0, "{report:?}");
    result
}

// ------------------------------------------------------------------ PostgreSQL

const UPDATE: &str = "UPDATE agents AS a SET last_heartbeat = v.ts, updated_at = v.ts \
                      FROM UNNEST($1::int4[], $2::timestamptz[]) AS v(id, ts) WHERE a.id = v.id";

fn multi_row(table_and_columns: &str, columns: usize) -> String {
    let mut sql = format!("INSERT INTO {table_and_columns} VALUES ");
    for i in 0..AGENTS {
        let params: Vec<String> = (1..=columns).map(|c| format!("${}", i * columns + c)).collect();
        sql.push_str(&format!("{}({})", if i == 0 { "" } else { "," }, params.join(", ")));
    }
    sql
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Three prepared 1,000-row INSERTs and the UPDATE, one transaction per round.
pub(crate) async fn pg_insert(url: &str, ids: &[i32], rounds: usize) -> IngestRun {
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let client = connect(url).await;
    let heartbeats = client
        .prepare(&multi_row("agent_heartbeats (agent_id, timestamp, status)", 3))
        .await
        .expect("prepare");
    let metrics = client
        .prepare(&multi_row(
            "performance_metrics (agent_id, metric_name, metric_value, timestamp, source_agent)",
            5,
        ))
        .await
        .expect("prepare");
    let events = client
        .prepare(&multi_row("system_events (event_type, timestamp, severity)", 3))
        .await
        .expect("prepare");
    let update = client.prepare(UPDATE).await.expect("prepare");
    let names: Vec<String> = (0..AGENTS).map(agent_name).collect();
    let values: Vec<f32> = (0..AGENTS).map(|i| i as f32).collect();
    let (active, metric, event, info) = ("active", "queue_depth", "bench_tick", "info");
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let sent = Instant::now();
        let stamps = vec![SystemTime::now(); AGENTS];
        let (mut h, mut m, mut e): (Vec<Param<'_>>, Vec<Param<'_>>, Vec<Param<'_>>) =
            (vec![], vec![], vec![]);
        for i in 0..AGENTS {
            h.extend([&ids[i] as Param<'_>, &stamps[i], &active]);
            m.extend([&ids[i] as Param<'_>, &metric, &values[i], &stamps[i], &names[i]]);
            e.extend([&event as Param<'_>, &stamps[i], &info]);
        }
        client.batch_execute("BEGIN").await.expect("begin");
        client.execute(&heartbeats, &h).await.expect("heartbeats");
        client.execute(&metrics, &m).await.expect("metrics");
        client.execute(&events, &e).await.expect("events");
        client.execute(&update, &[&ids, &stamps]).await.expect("update");
        client.batch_execute("COMMIT").await.expect("commit");
        latencies.push(sent.elapsed());
    }
    run(rounds * AGENTS * KINDS, started, cpu, latencies, 0)
}

async fn copy(client: &tokio_postgres::Client, statement: &str, text: String) {
    let sink = client.copy_in::<_, VecDeque<u8>>(statement).await.expect("copy");
    futures_util::pin_mut!(sink);
    sink.send(VecDeque::from(text.into_bytes())).await.expect("copy rows");
    sink.finish().await.expect("copy finish");
}

/// The same rows by `COPY ... FROM STDIN` (text format), three COPYs and the UPDATE
/// per round, one transaction per round.
pub(crate) async fn pg_copy(url: &str, ids: &[i32], rounds: usize) -> IngestRun {
    let client = connect(url).await;
    let update = client.prepare(UPDATE).await.expect("prepare");
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let sent = Instant::now();
        let now = SystemTime::now();
        let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
        let (mut h, mut m, mut e) = (String::new(), String::new(), String::new());
        for (i, id) in ids.iter().enumerate() {
            h.push_str(&format!("{id}\t{stamp}\tactive\n"));
            m.push_str(&format!("{id}\tqueue_depth\t{i}\t{stamp}\t{}\n", agent_name(i)));
            e.push_str(&format!("bench_tick\t{stamp}\tinfo\n"));
        }
        client.batch_execute("BEGIN").await.expect("begin");
        copy(&client, "COPY agent_heartbeats (agent_id, timestamp, status) FROM STDIN", h).await;
        copy(
            &client,
            "COPY performance_metrics (agent_id, metric_name, metric_value, timestamp, source_agent) FROM STDIN",
            m,
        )
        .await;
        copy(&client, "COPY system_events (event_type, timestamp, severity) FROM STDIN", e).await;
        client.execute(&update, &[&ids, &vec![now; AGENTS]]).await.expect("update");
        client.batch_execute("COMMIT").await.expect("commit");
        latencies.push(sent.elapsed());
    }
    run(rounds * AGENTS * KINDS, started, cpu, latencies, 0)
}

/// Empties the ingest tables between runs, so every run starts from the same size.
pub(crate) async fn truncate(url: &str) {
    let client = connect(url).await;
    // Two statements: one batch would be one implicit transaction, and VACUUM refuses that.
    client
        .batch_execute("TRUNCATE agent_heartbeats, performance_metrics, system_events")
        .await
        .expect("truncate");
    client.batch_execute("VACUUM ANALYZE agents").await.expect("vacuum");
}

// ------------------------------------------------------------------ SQLite

/// The plain loop: rusqlite on a file the store created (same schema), the store's
/// pragmas (WAL, `synchronous = FULL`, foreign keys), prepared statements, the same
/// rows in the same order, one transaction per 1,000 rows.
pub(crate) fn rusqlite_loop(path: &std::path::Path, rounds: usize) -> IngestRun {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(
        "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
    )
    .expect("pragmas");
    let mut ids = vec![0i64; AGENTS];
    {
        let mut select = conn.prepare("SELECT id, agent_id FROM agents").expect("prepare");
        let rows =
            select.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).expect("agents");
        for row in rows {
            let (id, name) = row.expect("row");
            if let Some(i) = name.strip_prefix("ingest-").and_then(|n| n.parse::<usize>().ok()) {
                ids[i] = id;
            }
        }
    }
    let names: Vec<String> = (0..AGENTS).map(agent_name).collect();
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let (mut latencies, mut rows, mut sent) = (Vec::new(), 0usize, Instant::now());
    conn.execute_batch("BEGIN").expect("begin");
    for _ in 0..rounds {
        for agent in 0..AGENTS {
            let at = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string();
            let id = ids[agent];
            conn.prepare_cached(
                "INSERT INTO agent_heartbeats (agent_id, timestamp, status) VALUES (?1, ?2, 'active')",
            )
            .and_then(|mut s| s.execute(rusqlite::params![id, at]))
            .expect("heartbeat");
            conn.prepare_cached("UPDATE agents SET last_heartbeat = ?2, updated_at = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(rusqlite::params![id, at]))
                .expect("last_heartbeat");
            conn.prepare_cached(
                "INSERT INTO performance_metrics (agent_id, metric_name, metric_value, timestamp, source_agent) \
                 VALUES (?1, 'queue_depth', ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(rusqlite::params![id, agent as f64, at, names[agent]]))
            .expect("metric");
            conn.prepare_cached("INSERT INTO system_events (event_type, timestamp, severity) VALUES ('bench_tick', ?1, 'info')")
                .and_then(|mut s| s.execute(rusqlite::params![at]))
                .expect("event");
            rows += KINDS;
            // 1,000 agents x 3 rows: a commit every 333 agents is 999 rows, close enough
            // and never splitting an agent's rows.
            if rows % 999 == 0 {
                conn.execute_batch("COMMIT; BEGIN").expect("commit");
                latencies.push(sent.elapsed());
                sent = Instant::now();
            }
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    run(rows, started, cpu, latencies, 0)
}
