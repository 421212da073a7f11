//! [`Store`]: one handle over either backend, with pooling, retries and statistics.
//!
//! A store owns a small multi-threaded tokio runtime on which every database future
//! runs; callers only await the join handle. That keeps the store usable from any
//! executor — in particular actix's single-threaded one, where diesel-async's SQLite
//! wrapper and migration harness would otherwise panic ("can call blocking only when
//! running on the multi-threaded runtime") — and it means a caller that gives up on a
//! query never cancels it half-way.
//!
//! ```text
//!  caller (actix / tokio)            store runtime (2 threads)
//!  ─────────────────────            ──────────────────────────────────────
//!  store.run(op).await ── spawn ──▶ retry loop { pool.get(); op(conn) } ──▶ PostgreSQL
//!         ▲                                         │                       or SQLite
//!         └──────────── JoinHandle ◀────────────────┘
//! ```
//!
//! ## Execution modes
//!
//! | [`Execution`]                  | database futures run on                | for |
//! |--------------------------------|----------------------------------------|-----|
//! | [`Dedicated`](Execution::Dedicated) (default, [`Store::connect`]) | the store's own 2-thread runtime | production, any executor |
//! | [`InProcess`](Execution::InProcess) ([`Store::connect_in_process`]) | the runtime that opened the store | tests with virtual time |
//!
//! A dedicated runtime breaks `tokio::time::pause()`: while the caller's runtime waits
//! for the other runtime's I/O it looks idle, so the paused clock auto-advances and
//! fires every pending timer — safety-net timeouts included — at once. In process, the
//! pool is built and every database future is spawned on the caller's runtime (one code
//! path: `Store::spawn` picks the runtime by mode; the caller still awaits only a join
//! handle, so dropping it never cancels a query half-way). On **SQLite** that keeps
//! virtual time consistent: diesel-async's SQLite wrapper does its work through
//! `spawn_blocking` on that runtime, and tokio's `test-util` clock does not
//! auto-advance while a blocking task of a current-thread runtime runs — so a query
//! takes no virtual time and no timer fires early (checked by
//! `persistence/tests/in_process.rs`).
//!
//! Limits of the in-process mode:
//!
//! * Use the store only while the runtime that opened it runs (one store per test).
//!   Its futures run there; from another runtime they would wait for ever once it ends.
//! * **PostgreSQL works, but not on virtual time**: its socket I/O does not hold the
//!   paused clock, so timers fire while a query waits. Use it on real time only.
//! * Never cancel the spawned database tasks from inside the runtime (e.g. by aborting
//!   them): dropping an in-flight SQLite query on a current-thread runtime panics
//!   ("can call blocking only when running on the multi-threaded runtime"). The store
//!   never does; dropping the caller's future is safe, and so is dropping the runtime
//!   (the blocking query is waited for).
//!
//! ```no_run
//! # #[actix_rt::main]
//! # async fn main() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::{DatabaseConfig, Store};
//! tokio::time::pause(); // needs tokio's `test-util` feature
//! let store = Store::connect_in_process(DatabaseConfig::sqlite_memory()).await?;
//! store.health().await?; // takes no virtual time
//! # Ok(()) }
//! ```
//!
//! Transient failures ([`StoreError::is_transient`](crate::StoreError::is_transient)) are retried with exponential
//! backoff and jitter per the configured [`ConnectRetryPolicy`](crate::config::ConnectRetryPolicy); every attempt is counted in
//! [`QueryStats`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::{DatabaseConfig, Store};
//! let store = Store::connect(DatabaseConfig::sqlite("vigil.db")).await?; // migrates too
//! println!("{:?}", store.health().await?.status);
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | module            | what                                                          |
//! |-------------------|---------------------------------------------------------------|
//! | `store/executor`  | [`Store`], [`Execution`], the runtime, the shared state, retries |
//! | `store/open`      | [`Store::connect`]: building each backend's pool              |
//! | `store/migrations`| [`PG_MIGRATIONS`], [`SQLITE_MIGRATIONS`], [`Store::migrate`]  |
//! | `store/write`     | [`Store::write_batch`], [`Store::write`]: the direct write path |
//! | `store/health`    | [`QueryStats`], [`PoolStats`], [`DatabaseHealth`], [`Store::ping`] |
//!
//! The connection types both backends share ([`SqliteConn`], the backend enum) live in
//! `crate::backend`, below this module and [`crate::writes`].

mod executor;
mod health;
mod migrations;
mod open;
mod sqlite_file;
mod write;

pub use crate::backend::SqliteConn;
pub(crate) use executor::StoreInner;
pub use executor::{Execution, Store};
pub use health::{
    ConnectionCounts, DatabaseHealth, HealthStatus, PoolStats, QueryStats, SlowQuery, TABLES, TableRows,
};
pub use migrations::{PG_MIGRATIONS, SQLITE_MIGRATIONS};
pub use sqlite_file::Access;
pub(crate) use sqlite_file::has_side_files;
