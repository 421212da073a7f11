//! Where a [`Store`]'s database futures run, and the state every query shares.
//!
//! [`Store`] is a cheap handle around [`StoreInner`]: the pool ([`crate::backend::Backend`]),
//! the configuration, the query counters and the runtime ([`Execution`]) on which every
//! database future is spawned. `Store::run` is the one way in: it spawns the operation
//! there and retries transient failures ([`retry`]) under the configured
//! [`ConnectRetryPolicy`]. Opening a store is in `open.rs`; what it reads and writes is in
//! the sibling modules.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use crate::backend::Backend;
use crate::config::{ConnectRetryPolicy, DatabaseConfig, PoolConfig};
use crate::connect::{ConnectError, Purpose, connect_pg};
use crate::error::StoreError;

/// Grace beyond the server's `statement_timeout` before a reader gives up on a
/// connection: a slow statement is cancelled by the server first (and reported as
/// [`StoreError::CommandTimeout`]); only a backend or network that stopped answering
/// reaches the client-side deadline.
const READ_DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// Where a store runs its database futures; see the [module docs](crate::store#execution-modes).
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
pub(super) enum DbRuntime {
    /// The store's own runtime (`None` once dropped).
    Owned(Option<tokio::runtime::Runtime>),
    /// The caller's runtime, captured when the store was opened.
    Caller(tokio::runtime::Handle),
}

impl DbRuntime {
    pub(super) fn new(execution: Execution) -> Result<Self, StoreError> {
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
    pub(super) async fn run<T, F>(&self, future: F) -> Result<T, StoreError>
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
pub(super) struct QueryCounters {
    pub(super) total: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) connection_errors: AtomicU64,
    pub(super) total_micros: AtomicU64,
}

pub(crate) struct StoreInner {
    pub(crate) backend: Backend,
    pub(super) config: DatabaseConfig,
    pub(super) counters: QueryCounters,
    /// The migration versions `connect` applied (so `vigil migrate` can say so).
    pub(super) applied_at_connect: std::sync::OnceLock<Vec<String>>,
    /// Why the pool last failed to open a connection (bb8 only logs it to its sink).
    pub(super) last_connect_error: LastConnectError,
    // Declared last: dropped after the pools, whose tasks live on it.
    pub(super) runtime: DbRuntime,
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

impl Store {
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
}

/// Calls `attempt` until it succeeds, fails for good, or the policy's attempts run out.
pub(crate) async fn retry<T, F, Fut>(policy: &ConnectRetryPolicy, mut attempt: F) -> Result<T, StoreError>
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

/// sink and then only reports a timeout to the caller waiting for a connection.
#[derive(Debug, Clone, Default)]
pub(super) struct LastConnectError(Arc<std::sync::Mutex<Option<(Instant, ConnectError)>>>);

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
