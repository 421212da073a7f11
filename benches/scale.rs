//! Issue 19's instrument: Vigil at scale next to actix, ractor and kameo, and its
//! writer next to hand-written ingest, every baseline measured in the same run.
//!
//! | figure | Vigil | against |
//! |---|---|---|
//! | spawn N (10,000 and 100,000) | N agents under one supervisor, from `start()` to every agent `active` **and** every registration and start-up transition committed (`writer.flush()`); also to `active` alone | kameo `spawn` + `wait_for_startup`, ractor `Actor::spawn` (returns after `pre_start`), actix `start` to `started` |
//! | refused | the writer's `refused_writes` over the spawns (the target is 0) | — |
//! | one_for_all restart | one of 10,000 children panics -> all 10,000 `active` again | — |
//! | tell | `addr.do_send(Ask(Ping))` (Vigil has no separate tell) | actix `do_send`, kameo `tell`, ractor `cast` |
//! | ask | `Runtime::ask` (id lookup included) and `addr.send(Ask(Ping))` | actix `send().await`, kameo `ask`, ractor `call` |
//! | memory per idle agent | RSS delta (`/proc/self/statm`) over the spawn of N, in a fresh child process per side and count (so no side reuses another's freed heap); Vigil's includes its writer's and SQLite's share | the same for each runtime |
//! | ingest, PostgreSQL | heartbeats + metrics + events of 1,000 agents through the `PersistenceActor` (1,000 tasks, each awaiting its writes) | tokio-postgres multi-row INSERT and COPY (`copy_in`) of the same rows, one transaction per round of 3,000 |
//! | ingest, SQLite | the same through the actor on a SQLite file | a plain rusqlite loop, same rows, same pragmas, one transaction per ~1,000 rows |
//!
//! Ask runs 100,000 messages and tell 10,000 (Vigil's queued tells are slow enough
//! that 100,000 would take minutes), from 1 sender and from 100 concurrent senders; a
//! tell figure stops the clock when an ask sent after the last tell is answered. Ingest
//! also reports client CPU per row (this process, all threads, from `/proc/self/stat`;
//! the database server's CPU is not in it) and the p50 of an awaited ack (the actor)
//! or of a transaction (the baselines).
//!
//! Vigil and actix run on an actix `System` (one thread, plus the writer's own); kameo
//! and ractor on a separate 2-worker tokio runtime, as a tokio application would run
//! them. The sides alternate (A, B, C, D, A, B, ...) `BENCH_REPS` times (default 3) and
//! medians are reported. The writer runs with its default configuration on a SQLite
//! file in a temporary directory (the default embedded store is a file too).
//!
//! Run with `cargo bench --bench scale` (a few minutes; `BENCH_QUICK=1` uses 10,000
//! instead of 100,000 as a smoke run). The PostgreSQL part needs `TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), creates a database of its
//! own and drops it; without PostgreSQL it says so and reports `ingest_vs_copy=nan`.
//! The last line is
//! `RESULT spawn_100k_vs_kameo=<x> tell_vs_actix=<x> ask_vs_actix=<x> kb_per_agent_100k=<x> ingest_vs_copy=<x> sqlite_vs_rusqlite=<x>`:
//! Vigil over the other for times (spawn to active and persisted; tell and
//! `Runtime::ask` from one sender), Vigil's KB per idle agent at 100,000, and Vigil's
//! rows/s over the other's for ingest. The bench reports; it asserts no target.
#![allow(missing_docs)]

#[path = "scale/actors.rs"]
mod actors;
#[path = "scale/common.rs"]
mod common;
#[path = "scale/ingest.rs"]
mod ingest;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/run.rs"]
mod run;
#[path = "scale/vigil.rs"]
mod vigil;

fn main() {
    run::main();
}
