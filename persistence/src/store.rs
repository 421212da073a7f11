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
//! Transient failures ([`StoreError::is_transient`]) are retried with exponential
//! backoff and jitter per the configured [`RetryPolicy`]; every attempt is counted in
//! [`QueryStats`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::{DatabaseConfig, Store};
//! let store = Store::connect(DatabaseConfig::sqlite("vigil.db")).await?; // migrates too
//! println!("{:?}", store.health().await?.status);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::ConnectionError;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use serde::Serialize;

use crate::commit::{Marker, Unresolved, marked_transaction};
use crate::config::{DatabaseConfig, DatabaseUrl, PoolConfig, RetryPolicy, SqliteLocation};
use crate::connect::{ConnectError, Purpose, connect_pg};
use crate::error::StoreError;
use crate::writes::{Write, apply_batch_sqlite};

/// The PostgreSQL migrations, embedded at build time.
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
/// The SQLite migrations, embedded at build time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// An SQLite connection usable through diesel-async.
pub type SqliteConn = SyncConnectionWrapper<diesel::SqliteConnection>;

/// The nine tables of the specification, in dependency order.
pub const TABLES: [&str; 9] = [
    "agents",
    "performance_metrics",
    "system_state",
    "agent_heartbeats",
    "system_events",
    "help_requests",
    "help_responses",
    "agent_communications",
    "llm_conversations",
];

#[derive(Clone)]
pub(crate) enum Backend {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend the
/// store holds. The body is compiled once per backend, so it must type-check for both.
macro_rules! with_conn {
    ($inner:expr, |$conn:ident| $body:expr) => {{
        match &$inner.backend {
            $crate::store::Backend::Pg(pool) => {
                let mut pooled = $inner.checkout(pool).await?;
                let deadline = $inner.read_deadline();
                let answered = {
                    let $conn: &mut ::diesel_async::AsyncPgConnection = &mut *pooled;
                    ::tokio::time::timeout(deadline, async { $body }).await
                };
                match answered {
                    Ok(result) => result,
                    Err(_) => {
                        // The backend stopped answering: the pool must not hand this
                        // connection out again.
                        $crate::store::mark_broken(&mut pooled);
                        Err($crate::error::StoreError::DeadlineExceeded(deadline))
                    }
                }
            }
            $crate::store::Backend::Sqlite(pool) => {
                let mut pooled = $inner.checkout(pool).await?;
                let $conn: &mut $crate::store::SqliteConn = &mut *pooled;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// Grace beyond the server's `statement_timeout` before a reader gives up on a
/// connection: a slow statement is cancelled by the server first (and reported as
/// [`StoreError::CommandTimeout`]); only a backend or network that stopped answering
/// reaches the client-side deadline.
const READ_DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// Longest the check of a pooled connection before checkout may take (less when the
/// command timeout is shorter).
const CHECKOUT_CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// Marks a pooled PostgreSQL connection as broken, so that the pool drops it instead
/// of handing it out again (its transaction manager reports itself in error, which is
/// what diesel-async's pool checks on return).
pub(crate) fn mark_broken(conn: &mut AsyncPgConnection) {
    use diesel_async::TransactionManager;
    diesel_async::AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
}

/// Where a store runs its database futures; see the [module docs](self#execution-modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Execution {
    /// On a 2-thread tokio runtime owned by the store: usable from any executor.
    #[default]
    Dedicated,
    /// On the runtime that opened the store (for tests on virtual time, SQLite).
    InProcess,
}

/// The runtime database futures run on. An owned one is shut down in the background on
/// drop, so that dropping a store inside an async context never panics.
enum DbRuntime {
    /// The store's own runtime (`None` once dropped).
    Owned(Option<tokio::runtime::Runtime>),
    /// The caller's runtime, captured when the store was opened.
    Caller(tokio::runtime::Handle),
}

impl DbRuntime {
    fn new(execution: Execution) -> Result<Self, StoreError> {
        match execution {
            Execution::Dedicated => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("vigil-db")
                .enable_all()
                .build()
                .map(|rt| DbRuntime::Owned(Some(rt)))
                .map_err(|e| StoreError::Task(format!("cannot start the database runtime: {e}"))),
            Execution::InProcess => {
                tokio::runtime::Handle::try_current().map(DbRuntime::Caller).map_err(|_| {
                    StoreError::Task("an in-process store must be opened inside a tokio runtime".into())
                })
            }
        }
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match self {
            DbRuntime::Owned(rt) => rt.as_ref().expect("the runtime lives as long as the store").handle(),
            DbRuntime::Caller(handle) => handle,
        }
    }

    fn execution(&self) -> Execution {
        match self {
            DbRuntime::Owned(_) => Execution::Dedicated,
            DbRuntime::Caller(_) => Execution::InProcess,
        }
    }

    /// Runs `future` as a task of this runtime and awaits its outcome. Dropping the
    /// returned future leaves the task running: a query is never cancelled half-way.
    async fn run<T, F>(&self, future: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        match self.handle().spawn(future).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(StoreError::Task(format!("database task panicked: {e}"))),
            Err(e) => Err(StoreError::Task(e.to_string())),
        }
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        if let DbRuntime::Owned(rt) = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

/// Counters behind [`QueryStats`]; updated on every attempt.
#[derive(Debug, Default)]
struct QueryCounters {
    total: AtomicU64,
    errors: AtomicU64,
    connection_errors: AtomicU64,
    total_micros: AtomicU64,
}

pub(crate) struct StoreInner {
    pub(crate) backend: Backend,
    config: DatabaseConfig,
    counters: QueryCounters,
    /// The migration versions `connect` applied (so `vigil migrate` can say so).
    applied_at_connect: std::sync::OnceLock<Vec<String>>,
    /// Why the pool last failed to open a connection (bb8 only logs it to its sink).
    last_connect_error: LastConnectError,
    // Declared last: dropped after the pools, whose tasks live on it.
    runtime: DbRuntime,
}

impl StoreInner {
    /// Checks a connection out of `pool`, reporting the pool timeout with its value.
    pub(crate) async fn checkout<'a, M>(
        &self,
        pool: &'a bb8::Pool<M>,
    ) -> Result<bb8::PooledConnection<'a, M>, StoreError>
    where
        M: bb8::ManageConnection<Error = diesel_async::pooled_connection::PoolError>,
    {
        pool.get().await.map_err(|e| match StoreError::from(e) {
            StoreError::PoolTimeout { .. } => StoreError::PoolTimeout {
                waited: self.config.pool().connection_timeout,
                last_connect_error: self.last_connect_error.recent(2 * self.config.pool().connection_timeout),
            },
            other => other,
        })
    }

    pub(crate) fn pool_config(&self) -> &PoolConfig {
        self.config.pool()
    }

    /// Opens a PostgreSQL connection outside the pool, set up like the pooled ones, for
    /// a writer that keeps it (no health check per checkout, statements stay prepared).
    /// `None` on SQLite.
    pub(crate) async fn establish_pg(&self) -> Option<Result<AsyncPgConnection, StoreError>> {
        let DatabaseConfig::Postgres { url, pool, .. } = &self.config else { return None };
        Some(connect_pg(url, pool, Purpose::Writer).await.map_err(StoreError::Connect))
    }

    /// How long a reader waits for the server's answer before dropping the connection:
    /// the command timeout plus [`READ_DEADLINE_GRACE`].
    pub(crate) fn read_deadline(&self) -> Duration {
        self.config.pool().command_timeout + READ_DEADLINE_GRACE
    }

    /// Counts one database attempt in the query statistics.
    /// Ends every attempt on the database: gives a server cancellation at the statement
    /// timeout its typed form ([`StoreError::CommandTimeout`] with the configured
    /// limit), and counts the attempt in the query statistics.
    pub(crate) fn settle(&self, elapsed: Duration, error: Option<&mut StoreError>) {
        let error = error.map(|error| {
            let raw = std::mem::replace(error, StoreError::Closed);
            *error = raw.with_command_timeout(self.config.pool().command_timeout);
            &*error
        });
        self.record(elapsed, error);
    }
}

/// A handle to the shared-state database. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("database", &self.inner.config.describe()).finish_non_exhaustive()
    }
}

/// Query statistics since the store was opened (the specification's `get_query_stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryStats {
    /// Statements attempted, retries included.
    pub total_queries: u64,
    /// Attempts that failed.
    pub query_errors: u64,
    /// Attempts that failed because the connection did.
    pub connection_errors: u64,
    /// Mean time per attempt, in seconds.
    pub average_query_time: f64,
}

/// Connection pool figures (the specification's pool monitoring).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// Connections open now.
    pub size: u32,
    /// Configured minimum.
    pub min_size: u32,
    /// Configured maximum.
    pub max_size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Open connections in use.
    pub in_use: u32,
    /// Checkouts so far.
    pub checkouts: u64,
    /// Checkouts that had to wait for a free connection.
    pub waited: u64,
    /// Checkouts that gave up waiting (pool timeout).
    pub timed_out: u64,
    /// Mean wait per checkout, in milliseconds (the specification's "connection wait
    /// time"; zero when every checkout found a free connection).
    pub average_wait_ms: f64,
    /// Connections closed because they were found broken.
    pub closed_broken: u64,
}

/// Whether the database answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// It answered.
    Healthy,
    /// It did not; see [`DatabaseHealth::error`].
    Unhealthy,
}

/// Connection counts as the server sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    /// Connections running a statement.
    pub active: i64,
    /// Connections waiting for one.
    pub idle: i64,
}

/// Rows in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, diesel::QueryableByName)]
pub struct TableRows {
    /// Table name.
    #[diesel(sql_type = diesel::sql_types::Text, column_name = table_name)]
    pub table: String,
    /// Row count.
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = row_count)]
    pub rows: i64,
}

/// The database health report (the specification's `get_database_health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseHealth {
    /// Healthy when a round trip succeeded.
    pub status: HealthStatus,
    /// `postgresql` or `sqlite`.
    pub backend: &'static str,
    /// Where the database is, password hidden.
    pub database: String,
    /// Round trip of `SELECT 1`, in milliseconds.
    pub response_time_ms: f64,
    /// Server version string.
    pub server_version: Option<String>,
    /// Connections by state.
    pub connections: Option<ConnectionCounts>,
    /// Size of the database in bytes.
    pub database_size_bytes: Option<i64>,
    /// Row count of each of the nine tables.
    pub tables: Vec<TableRows>,
    /// Pool figures.
    pub pool: PoolStats,
    /// Query statistics.
    pub queries: QueryStats,
    /// Why the database is unhealthy.
    pub error: Option<String>,
}

/// One statement of [`Store::slow_queries`].
#[derive(Debug, Clone, PartialEq, Serialize, diesel::QueryableByName)]
pub struct SlowQuery {
    /// The normalized statement text.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub query: String,
    /// Times it ran.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub calls: i64,
    /// Mean execution time, in milliseconds.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub mean_ms: f64,
    /// Total execution time, in milliseconds.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub total_ms: f64,
}

impl Store {
    /// Opens the configured database, creating the pool and applying pending migrations.
    /// Database futures run on a runtime of the store's own ([`Execution::Dedicated`]).
    pub async fn connect(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::connect_with(config, Execution::Dedicated).await
    }

    /// Like [`connect`](Self::connect), but the pool lives on, and database futures run
    /// on, the current runtime ([`Execution::InProcess`]): for tests on virtual time,
    /// with SQLite. See the [module docs](self#execution-modes) for its limits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Task`] outside a tokio runtime; otherwise as [`connect`](Self::connect).
    pub async fn connect_in_process(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::connect_with(config, Execution::InProcess).await
    }

    /// Opens the configured database with the given [`Execution`] mode.
    pub async fn connect_with(config: DatabaseConfig, execution: Execution) -> Result<Self, StoreError> {
        let runtime = DbRuntime::new(execution)?;
        let build_config = config.clone();
        let last_connect_error = LastConnectError::default();
        let sink = last_connect_error.clone();
        // Built on the runtime the futures will run on: bb8 spawns its reaper and
        // connection tasks, and the SQLite wrapper binds its `spawn_blocking`, there.
        let backend = runtime
            .run(async move {
                // On PostgreSQL, migrate over one direct connection first: an unreachable
                // or misconfigured server is reported after a few quick retries, instead
                // of after the pool's whole connection timeout.
                let mut applied = Vec::new();
                if let DatabaseConfig::Postgres { url, pool, .. } = &build_config {
                    applied = retry(&pool.retry, |_| migrate_pg(url, pool)).await?;
                }
                Ok::<_, StoreError>((build_backend(&build_config, &sink).await?, applied))
            })
            .await?;
        let (backend, mut applied) = backend;
        let store = Store {
            inner: Arc::new(StoreInner {
                backend,
                config,
                counters: QueryCounters::default(),
                applied_at_connect: std::sync::OnceLock::new(),
                last_connect_error,
                runtime,
            }),
        };
        applied.extend(store.migrate().await?);
        let _ = store.inner.applied_at_connect.set(applied);
        tracing::info!(database = %store.inner.config.describe(), ?execution, "store connected");
        Ok(store)
    }

    /// The migration versions [`connect`](Self::connect) applied to bring the schema up
    /// to date (empty when it already was).
    pub fn migrations_applied_at_connect(&self) -> &[String] {
        self.inner.applied_at_connect.get().map_or(&[], Vec::as_slice)
    }

    /// Applies pending migrations; returns the versions applied (empty when up to date).
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.clone();
        self.spawn(async move {
            match &inner.backend {
                Backend::Pg(_) => {
                    let DatabaseConfig::Postgres { url, pool, .. } = &inner.config else {
                        unreachable!("a PostgreSQL pool comes from a PostgreSQL config")
                    };
                    migrate_pg(url, pool).await
                }
                Backend::Sqlite(pool) => {
                    let mut conn = inner.checkout(pool).await?;
                    conn.spawn_blocking(|c| {
                        Ok(c.run_pending_migrations(SQLITE_MIGRATIONS)
                            .map(|done| done.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                            .map_err(|e| e.to_string()))
                    })
                    .await?
                    .map_err(StoreError::Migration)
                }
            }
        })
        .await
    }

    /// Listens on a PostgreSQL notification channel: each notification's payload
    /// arrives on the returned receiver. The listener runs on the store's runtime on a
    /// connection of its own and reconnects (with backoff) when that connection drops;
    /// it ends when the receiver is dropped. `None` on SQLite, which has no
    /// notifications (poll instead).
    pub fn listen(&self, channel: &str) -> Option<tokio::sync::mpsc::Receiver<String>> {
        let DatabaseConfig::Postgres { url, pool, .. } = &self.inner.config else { return None };
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let (url, pool, channel) = (url.clone(), pool.clone(), channel.to_owned());
        let policy = pool.retry.clone();
        self.inner.runtime.handle().spawn(async move {
            use futures_util::StreamExt;
            let mut failures = 0;
            while !sender.is_closed() {
                let listened = async {
                    let mut conn = connect_pg(&url, &pool, Purpose::Listen).await?;
                    conn.batch_execute(&format!("LISTEN {channel}")).await?;
                    let mut notifications = std::pin::pin!(conn.notifications_stream());
                    while let Some(notification) = notifications.next().await {
                        failures = 0;
                        if sender.send(notification?.payload).await.is_err() {
                            break; // nobody listens any more
                        }
                    }
                    Ok::<_, StoreError>(())
                };
                if let Err(error) = listened.await {
                    tracing::warn!(%channel, %error, "notification listener lost its connection; reconnecting");
                    tokio::time::sleep(policy.backoff(failures)).await;
                    failures = (failures + 1).min(10);
                }
            }
        });
        Some(receiver)
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.backend, Backend::Pg(_))
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &DatabaseConfig {
        &self.inner.config
    }

    /// Where this store runs its database futures.
    pub fn execution(&self) -> Execution {
        self.inner.runtime.execution()
    }

    /// Runs a future as a task of the store's runtime — its own, or in process the one
    /// that opened it — and awaits it from any executor. Dropping the returned future
    /// does not cancel the task.
    pub(crate) async fn spawn<T, F>(&self, future: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.inner.runtime.run(future).await
    }

    /// Runs `op` on the store's runtime, retrying transient failures with backoff.
    /// `op` is called once per attempt with the shared store state.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Arc<StoreInner>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.spawn(async move {
            let policy = inner.pool_config().retry.clone();
            retry(&policy, |_| {
                let inner = inner.clone();
                let started = Instant::now();
                op(inner.clone()).map(move |mut result| {
                    inner.settle(started.elapsed(), result.as_mut().err());
                    result
                })
            })
            .await
        })
        .await
    }

    /// Applies a batch of writes in one transaction, retrying transient failures.
    /// The outer error means nothing was committed; otherwise each write has its own
    /// result (a write refused before reaching the database fails alone).
    pub async fn write_batch(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<crate::requests::Reply, StoreError>>, StoreError> {
        let writes = Arc::new(writes);
        // On PostgreSQL the transaction is marked (see `crate::commit`), so a retry after
        // a lost COMMIT answer neither applies the batch twice nor loses it. The marker
        // and what is unresolved carry over from one attempt to the next.
        let progress = Arc::new(std::sync::Mutex::new((Marker::new_writer(), None::<Unresolved>)));
        self.run(move |inner| {
            let (writes, progress) = (writes.clone(), progress.clone());
            async move {
                match &inner.backend {
                    Backend::Pg(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        let (marker, unresolved) = {
                            let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                            (progress.0, progress.1.take())
                        };
                        let deadline = inner.read_deadline();
                        match marked_transaction(&mut conn, &writes, marker, unresolved, deadline, None).await
                        {
                            Ok((outcome, _)) => Ok(outcome),
                            Err(failure) => {
                                if failure.retry {
                                    // Possibly dead, frozen or mid-transaction: not for the pool.
                                    mark_broken(&mut conn);
                                }
                                *progress.lock().unwrap_or_else(|e| e.into_inner()) = match failure.unresolved
                                {
                                    Some(open) => (open.marker, Some(open)),
                                    None => (marker.next(), None),
                                };
                                Err(failure.error)
                            }
                        }
                    }
                    Backend::Sqlite(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        apply_batch_sqlite(&mut conn, &writes).await
                    }
                }
            }
        })
        .await
    }

    /// Applies one write in its own transaction and returns its reply once committed.
    pub async fn write(&self, write: Write) -> Result<crate::requests::Reply, StoreError> {
        self.write_batch(vec![write]).await?.pop().expect("one result per write")
    }

    /// Runs one SQL statement (no results) with retries. Meant for tests and
    /// administration; the statement is passed to the database as written.
    #[doc(hidden)]
    pub async fn execute_raw_for_tests(&self, sql: &str) -> Result<usize, StoreError> {
        let sql = sql.to_owned();
        self.run(move |inner| {
            let sql = sql.clone();
            async move {
                use diesel_async::RunQueryDsl;
                with_conn!(inner, |conn| Ok(diesel::sql_query(sql).execute(conn).await?))
            }
        })
        .await
    }

    /// Query statistics since the store was opened.
    pub fn query_stats(&self) -> QueryStats {
        let c = &self.inner.counters;
        let total = c.total.load(Ordering::Relaxed);
        let micros = c.total_micros.load(Ordering::Relaxed);
        QueryStats {
            total_queries: total,
            query_errors: c.errors.load(Ordering::Relaxed),
            connection_errors: c.connection_errors.load(Ordering::Relaxed),
            average_query_time: if total == 0 { 0.0 } else { micros as f64 / total as f64 / 1e6 },
        }
    }

    /// Pool figures now.
    pub fn pool_stats(&self) -> PoolStats {
        let state = match &self.inner.backend {
            Backend::Pg(pool) => pool.state(),
            Backend::Sqlite(pool) => pool.state(),
        };
        let config = self.inner.config.pool();
        // bb8 counts them itself.
        let counts = &state.statistics;
        let checkouts = counts.get_direct + counts.get_waited + counts.get_timed_out;
        PoolStats {
            size: state.connections,
            min_size: config.min_connections.min(config.max_connections),
            max_size: config.max_connections,
            idle: state.idle_connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            checkouts,
            waited: counts.get_waited,
            timed_out: counts.get_timed_out,
            average_wait_ms: if checkouts == 0 {
                0.0
            } else {
                counts.get_wait_time.as_secs_f64() * 1e3 / checkouts as f64
            },
            closed_broken: counts.connections_closed_broken,
        }
    }

    /// One `SELECT 1` round trip on a pooled connection, not retried: the cheap
    /// liveness check for monitors that look every few seconds ([`health`](Self::health)
    /// also counts every table's rows). Resolves to the round trip's duration.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        use diesel::dsl::sql;
        use diesel::sql_types::Integer;
        use diesel_async::RunQueryDsl;
        let inner = self.inner.clone();
        self.spawn(async move {
            let started = Instant::now();
            let mut result: Result<i32, StoreError> = async {
                with_conn!(inner, |conn| Ok(diesel::select(sql::<Integer>("1")).get_result(conn).await?))
            }
            .await;
            let took = started.elapsed();
            inner.settle(took, result.as_mut().err());
            result.map(|_| took)
        })
        .await
    }

    /// The statements whose mean execution time is at least `min_mean`, slowest first
    /// (at most `limit`), from PostgreSQL's `pg_stat_statements` — the specification's
    /// slow-query monitor. The extension must be installed in the database and loaded
    /// through `shared_preload_libraries`; when it is not, PostgreSQL's own error says
    /// which. [`StoreError::Unsupported`] on SQLite.
    pub async fn slow_queries(&self, min_mean: Duration, limit: i64) -> Result<Vec<SlowQuery>, StoreError> {
        if !self.is_postgres() {
            return Err(StoreError::Unsupported {
                backend: "sqlite",
                what: "slow-query statistics (pg_stat_statements)",
            });
        }
        let min_mean_ms = min_mean.as_secs_f64() * 1e3;
        self.run(move |inner| async move {
            use diesel::sql_types::{BigInt, Double};
            use diesel_async::RunQueryDsl;
            let Backend::Pg(pool) = &inner.backend else { unreachable!("checked above") };
            let mut conn = inner.checkout(pool).await?;
            Ok(diesel::sql_query(
                "SELECT query, calls, mean_exec_time AS mean_ms, total_exec_time AS total_ms \
                 FROM pg_stat_statements WHERE mean_exec_time >= $1 \
                 ORDER BY mean_exec_time DESC LIMIT $2",
            )
            .bind::<Double, _>(min_mean_ms)
            .bind::<BigInt, _>(limit)
            .load::<SlowQuery>(&mut *conn)
            .await?)
        })
        .await
    }

    /// Checks the database and gathers the health report. A database that does not
    /// answer gives an `Unhealthy` report, not an error.
    pub async fn health(&self) -> Result<DatabaseHealth, StoreError> {
        let started = Instant::now();
        let probe = self.run(|inner| async move { probe(&inner).await }).await;
        let response_time_ms = started.elapsed().as_secs_f64() * 1e3;
        let backend = if self.is_postgres() { "postgresql" } else { "sqlite" };
        let mut report = DatabaseHealth {
            status: HealthStatus::Unhealthy,
            backend,
            database: self.inner.config.describe(),
            response_time_ms,
            server_version: None,
            connections: None,
            database_size_bytes: None,
            tables: Vec::new(),
            pool: self.pool_stats(),
            queries: self.query_stats(),
            error: None,
        };
        match probe {
            Ok(details) => {
                report.status = HealthStatus::Healthy;
                report.server_version = Some(details.version);
                report.connections = details.connections;
                report.database_size_bytes = Some(details.size_bytes);
                report.tables = details.tables;
                report.queries = self.query_stats();
            }
            Err(e) => report.error = Some(e.to_string()),
        }
        Ok(report)
    }
}

impl StoreInner {
    fn record(&self, elapsed: Duration, error: Option<&StoreError>) {
        let c = &self.counters;
        c.total.fetch_add(1, Ordering::Relaxed);
        c.total_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if let Some(error) = error {
            c.errors.fetch_add(1, Ordering::Relaxed);
            if error.is_connection_error() {
                c.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Calls `attempt` until it succeeds, fails for good, or the policy's attempts run out.
pub(crate) async fn retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut number = 0;
    loop {
        match attempt(number).await {
            Err(error) if error.is_transient() && number + 1 < policy.max_attempts => {
                let delay = policy.backoff(number);
                tracing::warn!(attempt = number + 1, ?delay, %error, "transient database error; retrying");
                tokio::time::sleep(delay).await;
                number += 1;
            }
            result => return result,
        }
    }
}

struct ProbeDetails {
    version: String,
    connections: Option<ConnectionCounts>,
    size_bytes: i64,
    tables: Vec<TableRows>,
}

/// `rows` in [`TABLES`] order (SQL does not promise the order of a `UNION ALL`).
fn in_table_order(mut rows: Vec<TableRows>) -> Vec<TableRows> {
    rows.sort_by_key(|r| TABLES.iter().position(|t| *t == r.table));
    rows
}

async fn probe(inner: &StoreInner) -> Result<ProbeDetails, StoreError> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;

    // Every table's count in one statement, the same on both backends.
    let count_all = TABLES
        .iter()
        .map(|table| format!("SELECT '{table}' AS table_name, COUNT(*) AS row_count FROM {table}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    match &inner.backend {
        Backend::Pg(pool) => {
            let mut conn = inner.checkout(pool).await?;
            let version: String = diesel::select(sql::<Text>("current_setting('server_version')"))
                .get_result(&mut *conn)
                .await?;
            let size_bytes: i64 = diesel::select(sql::<BigInt>("pg_database_size(current_database())"))
                .get_result(&mut *conn)
                .await?;
            let active: i64 = diesel::select(sql::<BigInt>(
                "(SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active')",
            ))
            .get_result(&mut *conn)
            .await?;
            let idle: i64 = diesel::select(sql::<BigInt>(
                "(SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle%')",
            ))
            .get_result(&mut *conn)
            .await?;
            let tables = in_table_order(diesel::sql_query(&count_all).load::<TableRows>(&mut *conn).await?);
            Ok(ProbeDetails {
                version,
                connections: Some(ConnectionCounts { active, idle }),
                size_bytes,
                tables,
            })
        }
        Backend::Sqlite(pool) => {
            let mut conn = inner.checkout(pool).await?;
            let version: String =
                diesel::select(sql::<Text>("sqlite_version()")).get_result(&mut *conn).await?;
            let size_bytes: i64 = diesel::select(sql::<BigInt>(
                "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())",
            ))
            .get_result(&mut *conn)
            .await?;
            let tables = in_table_order(diesel::sql_query(&count_all).load::<TableRows>(&mut *conn).await?);
            let state = pool.state();
            let connections = ConnectionCounts {
                active: i64::from(state.connections.saturating_sub(state.idle_connections)),
                idle: i64::from(state.idle_connections),
            };
            Ok(ProbeDetails {
                version: format!("SQLite {version}"),
                connections: Some(connections),
                size_bytes,
                tables,
            })
        }
    }
}

/// Applies the PostgreSQL migrations over a connection of their own.
async fn migrate_pg(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Vec<String>, StoreError> {
    let conn = connect_pg(url, pool, Purpose::Migrate).await?;
    tokio::task::spawn_blocking(move || migrate_pg_blocking(conn))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Applies the PostgreSQL migrations on a blocking thread, through diesel-async's sync
/// wrapper (no libpq), under an advisory lock so concurrent starts do not race.
fn migrate_pg_blocking(conn: AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    use diesel::RunQueryDsl;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
    // 0x5649_4749 = "VIGI": one lock id for every Vigil migration.
    diesel::sql_query("SELECT pg_advisory_lock(1447642953)").execute(&mut conn)?;
    let outcome = conn
        .run_pending_migrations(PG_MIGRATIONS)
        .map(|done| done.iter().map(|v| v.to_string()).collect())
        .map_err(|e| StoreError::Migration(e.to_string()));
    diesel::sql_query("SELECT pg_advisory_unlock(1447642953)").execute(&mut conn)?;
    outcome
}

/// The pool's last failure to open a connection, and when; bb8 hands it to its error
/// sink and then only reports a timeout to the caller waiting for a connection.
#[derive(Debug, Clone, Default)]
struct LastConnectError(Arc<std::sync::Mutex<Option<(Instant, ConnectError)>>>);

impl LastConnectError {
    /// The failure, if it happened within `window`.
    fn recent(&self, window: Duration) -> Option<ConnectError> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() <= window).map(|(_, error)| error.clone())
    }
}

impl<M: std::fmt::Display + Send + 'static> bb8::ErrorSink<M> for LastConnectError
where
    ConnectError: From<M>,
{
    fn sink(&self, error: M) {
        let error = ConnectError::from(error);
        tracing::warn!(%error, "the pool could not open a database connection");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), error));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<M>> {
        Box::new(self.clone())
    }
}

async fn build_backend(config: &DatabaseConfig, sink: &LastConnectError) -> Result<Backend, StoreError> {
    match config {
        DatabaseConfig::Postgres { url, pool, .. } => {
            let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
            let (setup_url, setup_pool) = (url.clone(), pool.clone());
            manager_config.custom_setup = Box::new(move |_| {
                // The command timeout is enforced by the server (set by `connect_pg`), so a
                // slow statement is cancelled cleanly instead of leaving a half-read
                // connection behind.
                let (url, pool) = (setup_url.clone(), setup_pool.clone());
                async move { connect_pg(&url, &pool, Purpose::Pool).await.map_err(ConnectError::into_diesel) }
                    .boxed()
            });
            // bb8 checks a connection before handing it out; a backend that stopped
            // answering must fail that check (and be dropped) rather than hang it.
            let check_deadline = pool.command_timeout.min(CHECKOUT_CHECK_DEADLINE);
            manager_config.recycling_method = RecyclingMethod::CustomFunction(Box::new(move |conn| {
                async move {
                    match tokio::time::timeout(check_deadline, conn.batch_execute("SELECT 1")).await {
                        Ok(checked) => checked,
                        Err(_) => {
                            mark_broken(conn);
                            Err(diesel::result::Error::BrokenTransactionManager)
                        }
                    }
                }
                .boxed()
            }));
            let manager = AsyncDieselConnectionManager::new_with_config(url.expose(), manager_config);
            let pool = Pool::builder()
                .max_size(pool.max_connections)
                .min_idle(Some(pool.min_connections.min(pool.max_connections)))
                .connection_timeout(pool.connection_timeout)
                .error_sink(Box::new(sink.clone()))
                .build(manager)
                .await
                .map_err(|e| StoreError::from(bb8::RunError::User(e)))?;
            Ok(Backend::Pg(pool))
        }
        DatabaseConfig::Sqlite { location, pool, synchronous, .. } => {
            let synchronous = synchronous.as_pragma();
            let (target, in_memory) = match location {
                SqliteLocation::File(path) => {
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            ConnectError::other(
                                path.display().to_string(),
                                format!("cannot create {}: {e}", parent.display()),
                            )
                        })?;
                    }
                    (path.to_string_lossy().into_owned(), false)
                }
                SqliteLocation::Memory(name) => (format!("file:{name}?mode=memory&cache=shared"), true),
            };
            let mut manager_config = ManagerConfig::<SqliteConn>::default();
            manager_config.custom_setup = Box::new(move |url| {
                async move {
                    let mut conn = SqliteConn::establish(url).await?;
                    // FULL by default: an acknowledged write survives a power loss (see
                    // `SqliteSynchronous`). A memory database has nothing to sync.
                    let journal = if in_memory {
                        String::new()
                    } else {
                        format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};")
                    };
                    conn.batch_execute(&format!(
                        "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; {journal}"
                    ))
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                }
                .boxed()
            });
            let manager = AsyncDieselConnectionManager::new_with_config(target, manager_config);
            // An in-memory database lives as long as one connection to it: keep exactly one
            // (a shared-cache database with several would also fail with SQLITE_LOCKED).
            let (max, min) = if in_memory { (1, 1) } else { (pool.max_connections, pool.min_connections) };
            // Nor may the pool ever close that one connection (bb8 would by default after
            // 10 idle or 30 live minutes): the database would vanish with it.
            let (idle_timeout, max_lifetime) = if in_memory {
                (None, None)
            } else {
                (Some(Duration::from_secs(600)), Some(Duration::from_secs(1800)))
            };
            let pool = Pool::builder()
                .max_size(max)
                .min_idle(Some(min.min(max)))
                .idle_timeout(idle_timeout)
                .max_lifetime(max_lifetime)
                .connection_timeout(pool.connection_timeout)
                .error_sink(Box::new(sink.clone()))
                .build(manager)
                .await
                .map_err(|e| StoreError::from(bb8::RunError::User(e)))?;
            Ok(Backend::Sqlite(pool))
        }
    }
}
