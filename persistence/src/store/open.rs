//! Opening a [`Store`]: the pool of each backend, set up the way Vigil needs it, and
//! the migrations applied before the first query.
//!
//! On PostgreSQL every pooled connection is made by `connect_pg` (server-side command
//! timeout) and checked before each checkout; on SQLite each connection gets its
//! pragmas (WAL, `synchronous`, foreign keys), and an in-memory database keeps exactly
//! one connection, for ever.

use std::sync::Arc;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use super::executor::{DbRuntime, Execution, LastConnectError, QueryCounters, Store, StoreInner, retry};
use super::migrations::prepare_pg;
use super::sqlite_file::{self, Access};
use crate::backend::{Backend, SqliteConn, mark_broken};
use crate::config::{DatabaseConfig, SqliteLocation};
use crate::connect::{ConnectError, Purpose, connect_pg};
use crate::error::StoreError;

/// Longest the check of a pooled connection before checkout may take (less when the
/// command timeout is shorter).
const CHECKOUT_CHECK_DEADLINE: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the configured database, creating the pool and applying pending migrations.
    /// Database futures run on a runtime of the store's own ([`Execution::Dedicated`]).
    pub async fn connect(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::connect_with(config, Execution::Dedicated).await
    }

    /// Like [`connect`](Self::connect), but the pool lives on, and database futures run
    /// on, the current runtime ([`Execution::InProcess`]): for tests on virtual time,
    /// with SQLite. See the [module docs](crate::store#execution-modes) for its limits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Task`] outside a tokio runtime; otherwise as [`connect`](Self::connect).
    pub async fn connect_in_process(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::connect_with(config, Execution::InProcess).await
    }

    /// Opens the configured database only for reading: an SQLite file is opened
    /// read-only (`mode=ro`; see [`Access::ReadOnly`]), nothing is created or migrated,
    /// and a schema older than this build's is [`StoreError::SchemaBehind`]. Other
    /// databases open as with [`connect`](Self::connect).
    pub async fn connect_read_only(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::open(config, Execution::Dedicated, Access::ReadOnly).await
    }

    /// Opens the configured database with the given [`Execution`] mode.
    pub async fn connect_with(config: DatabaseConfig, execution: Execution) -> Result<Self, StoreError> {
        Self::open(config, execution, Access::ReadWrite).await
    }

    async fn open(config: DatabaseConfig, execution: Execution, access: Access) -> Result<Self, StoreError> {
        let database = config.describe();
        let runtime = DbRuntime::new(execution)?;
        let build_config = config.clone();
        let last_connect_error = LastConnectError::default();
        let sink = last_connect_error.clone();
        // Built on the runtime the futures will run on: bb8 spawns its reaper and
        // connection tasks, and the SQLite wrapper binds its `spawn_blocking`, there.
        let backend = runtime
            .run(async move {
                // On PostgreSQL, check the schema (and migrate it, when writing) over one
                // direct connection first: an unreachable or misconfigured server is
                // reported after a few quick retries, instead of after the pool's whole
                // connection timeout.
                let mut applied = Vec::new();
                if let DatabaseConfig::Postgres { url, pool, .. } = &build_config {
                    let database = build_config.describe();
                    applied = retry(&pool.retry, |_| prepare_pg(url, pool, access, &database)).await?;
                }
                Ok::<_, StoreError>((build_backend(&build_config, &sink, access).await?, applied))
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
        if store.is_postgres() {
            // Checked (and migrated) above, on the direct connection.
        } else {
            let status = store.schema_status().await?;
            status.check(&database, access)?;
            if !status.pending.is_empty() {
                applied.extend(store.migrate().await?);
            }
        }
        let _ = store.inner.applied_at_connect.set(applied);
        tracing::info!(database = %store.inner.config.describe(), ?execution, "store connected");
        Ok(store)
    }
}

async fn build_backend(
    config: &DatabaseConfig,
    sink: &LastConnectError,
    access: Access,
) -> Result<Backend, StoreError> {
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
            let in_memory = matches!(location, SqliteLocation::Memory(_));
            // FULL by default: an acknowledged write survives a power loss (see
            // `SqliteSynchronous`). A memory database has nothing to sync, and a reader
            // writes no pragma that would change the file.
            let setup = match (in_memory, access) {
                (true, _) => "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;".to_owned(),
                (false, Access::ReadOnly) => "PRAGMA busy_timeout = 5000;".to_owned(),
                (false, Access::ReadWrite) => format!(
                    "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                     PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
                ),
            };
            let target = match location {
                SqliteLocation::File(path) => {
                    if access == Access::ReadWrite
                        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                    {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            ConnectError::other(
                                path.display().to_string(),
                                format!("cannot create {}: {e}", parent.display()),
                            )
                        })?;
                    }
                    // A file that cannot be opened fails here at once, not after the pool
                    // retried for its connection timeout.
                    let (path, probe_setup) = (path.clone(), setup.clone());
                    tokio::task::spawn_blocking(move || sqlite_file::probe(&path, access, &probe_setup))
                        .await
                        .map_err(|e| StoreError::Task(e.to_string()))??
                }
                SqliteLocation::Memory(name) => format!("file:{name}?mode=memory&cache=shared"),
            };
            let mut manager_config = ManagerConfig::<SqliteConn>::default();
            manager_config.custom_setup = Box::new(move |url| {
                let setup = setup.clone();
                async move {
                    let mut conn = SqliteConn::establish(url).await?;
                    conn.batch_execute(&setup).await.map_err(ConnectionError::CouldntSetupConfiguration)?;
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
