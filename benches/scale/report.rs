//! The ingest runs (they need the database set-up) and the printed report.

use vigil_persistence::config::{ConfigSource, DatabaseUrl};
use vigil_persistence::{DatabaseConfig, Store};

use crate::common::{big, list, median};
use crate::ingest::{self, IngestRun};
use crate::run::{Figures, push};

fn record(f: &mut Figures, name: &str, run: IngestRun) {
    push(f, format!("{name} rows/s"), run.rows_per_s);
    push(f, format!("{name} cpu"), run.cpu_us_per_row);
    push(f, format!("{name} p50"), run.p50_ms);
    push(f, format!("{name} refused"), run.refused as f64);
}

async fn admin_execute(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await
}

/// Ingest on PostgreSQL (if reachable) and SQLite, interleaved, `reps` times.
pub(crate) fn ingest(
    f: &mut Figures,
    reps: usize,
    system: &actix_rt::SystemRunner,
    tokio_rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) {
    // 20 rounds of 3,000 rows: about 1.5 s per run through the actor.
    let rounds = if big() > 10_000 { 20 } else { 5 };
    let admin_raw = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = DatabaseUrl::parse(&admin_raw, ConfigSource::Environment).expect("valid TEST_DATABASE_URL");
    let name = format!("vigil_scale_{:08x}", rand::random::<u32>());
    match tokio_rt.block_on(admin_execute(admin.expose(), &format!("CREATE DATABASE {name}"))) {
        Err(e) => println!(
            "\n!!!!!!!! PostgreSQL unavailable ({e}): PostgreSQL ingest SKIPPED, ingest_vs_copy=nan !!!!!!!!\n"
        ),
        Ok(()) => {
            let url = admin.with_database(&name);
            let url = url.expose().to_owned();
            let (store, ids) = system.block_on(async {
                let store =
                    Store::connect(DatabaseConfig::postgres(&url).expect("url")).await.expect("connect");
                let ids = ingest::register(&store).await.expect("register");
                (store, ids)
            });
            for _ in 0..reps {
                let (insert, copy) = tokio_rt.block_on(async {
                    ingest::truncate(&url).await;
                    let insert = ingest::pg_insert(&url, &ids, rounds).await;
                    ingest::truncate(&url).await;
                    (insert, ingest::pg_copy(&url, &ids, rounds).await)
                });
                record(f, "pg insert", insert);
                record(f, "pg copy", copy);
                let actor = system.block_on(async {
                    ingest::truncate(&url).await;
                    ingest::actor(&store, rounds).await
                });
                record(f, "pg vigil", actor);
            }
            drop(store);
            let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            tokio_rt.block_on(admin_execute(admin.expose(), &drop_sql)).expect("drop database");
        }
    }

    // SQLite: the actor and the plain loop on two files of the same schema, so neither
    // run finds the other's rows; both files grow alike over the repetitions.
    let plain = dir.join("plain.db");
    let store = system.block_on(async {
        // The plain loop's file: migrated and registered by a store, then left to rusqlite.
        let other = Store::connect(DatabaseConfig::sqlite(&plain)).await.expect("SQLite");
        ingest::register(&other).await.expect("register");
        drop(other);
        let store = Store::connect(DatabaseConfig::sqlite(dir.join("ingest.db"))).await.expect("SQLite");
        ingest::register(&store).await.expect("register");
        store
    });
    for _ in 0..reps {
        record(f, "sqlite vigil", system.block_on(ingest::actor(&store, rounds)));
        record(f, "sqlite rusqlite", ingest::rusqlite_loop(&plain, rounds));
    }
}

fn m(f: &Figures, name: &str) -> f64 {
    f.get(name).map_or(f64::NAN, |xs| median(xs))
}

/// Vigil's median and each other side's, with Vigil over the other.
fn row(f: &Figures, label: &str, vigil: &str, prefix: &str, unit: &str) {
    let v = m(f, vigil);
    let mut line = format!("| {label} | {v:.1} {unit} |");
    for side in ["actix", "kameo", "ractor"] {
        let o = m(f, &format!("{prefix} {side}"));
        line.push_str(&format!(" {o:.1} | {:.2} |", v / o));
    }
    println!("{line}");
}

pub(crate) fn print(f: &Figures, counts: &[usize], refused: u64) {
    let big = *counts.last().expect("a count");
    println!();
    println!("| figure | Vigil | actix | Vigil/actix | kameo | Vigil/kameo | ractor | Vigil/ractor |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in counts {
        row(
            f,
            &format!("spawn {n}, to active + persisted"),
            &format!("spawn {n} vigil"),
            &format!("spawn {n}"),
            "ms",
        );
        row(
            f,
            &format!("spawn {n}, to active"),
            &format!("spawn {n} vigil active"),
            &format!("spawn {n}"),
            "ms",
        );
    }
    for s in [1, 100] {
        row(f, &format!("tell, {s} sender(s)"), &format!("tell {s} vigil"), &format!("tell {s}"), "ns");
        row(
            f,
            &format!("ask `Runtime::ask`, {s} sender(s)"),
            &format!("ask {s} vigil"),
            &format!("ask {s}"),
            "ns",
        );
        row(
            f,
            &format!("ask `addr.send(Ask)`, {s} sender(s)"),
            &format!("ask {s} vigil addr"),
            &format!("ask {s}"),
            "ns",
        );
    }
    for &n in counts {
        row(
            f,
            &format!("memory per idle actor at {n}"),
            &format!("memory {n} vigil"),
            &format!("memory {n}"),
            "B",
        );
    }
    println!();
    println!("one_for_all restart of 10,000 -> all active: {:.0} ms", m(f, "restart vigil"));
    println!("writer refused_writes during the spawns: {refused}");
    println!();
    println!(
        "| ingest (1,000 agents; heartbeat + metric + event) | rows/s | client CPU µs/row | p50 ms (ack / txn) | Vigil rows/s over this |"
    );
    println!("|---|---|---|---|---|");
    for (name, label) in [
        ("pg vigil", "PostgreSQL, PersistenceActor (awaited)"),
        ("pg insert", "PostgreSQL, tokio-postgres multi-row INSERT"),
        ("pg copy", "PostgreSQL, tokio-postgres COPY"),
        ("sqlite vigil", "SQLite, PersistenceActor (awaited)"),
        ("sqlite rusqlite", "SQLite, plain rusqlite loop"),
    ] {
        let vigil = if name.starts_with("pg") { "pg vigil" } else { "sqlite vigil" };
        let rows = m(f, &format!("{name} rows/s"));
        println!(
            "| {label} | {rows:.0} | {:.1} | {:.2} | {:.2} |",
            m(f, &format!("{name} cpu")),
            m(f, &format!("{name} p50")),
            m(f, &format!("{vigil} rows/s")) / rows
        );
    }
    println!(
        "writer refused_writes during ingest: PostgreSQL {:.0}, SQLite {:.0}",
        m(f, "pg vigil refused"),
        m(f, "sqlite vigil refused")
    );
    println!();
    for (name, values) in f {
        println!("per repetition: {name}: [{}]", list(values));
    }
    println!(
        "RESULT spawn_100k_vs_kameo={:.2} tell_vs_actix={:.2} ask_vs_actix={:.2} kb_per_agent_100k={:.2} ingest_vs_copy={:.2} sqlite_vs_rusqlite={:.2}",
        m(f, &format!("spawn {big} vigil")) / m(f, &format!("spawn {big} kameo")),
        m(f, "tell 1 vigil") / m(f, "tell 1 actix"),
        m(f, "ask 1 vigil") / m(f, "ask 1 actix"),
        m(f, &format!("memory {big} vigil")) / 1024.0,
        m(f, "pg vigil rows/s") / m(f, "pg copy rows/s"),
        m(f, "sqlite vigil rows/s") / m(f, "sqlite rusqlite rows/s"),
    );
}
