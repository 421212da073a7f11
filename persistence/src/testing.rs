//! Test databases for Vigil's own tests and for users testing their agents: a fresh
//! PostgreSQL database or SQLite file per test, dropped afterwards.
//!
//! For tests on virtual time, [`in_memory_store`] and [`in_memory_shared_state`] open a
//! private in-memory SQLite database in process ([`Execution::InProcess`]): queries
//! take no virtual time, so `tokio::time::pause()` works and intervals of hours run at
//! once.
//!
//! ```no_run
//! # #[actix_rt::main]
//! # async fn main() {
//! tokio::time::pause(); // tokio's `test-util` feature
//! let shared = vigil_persistence::testing::in_memory_shared_state().await;
//! shared.register_agent("worker-1", "Worker").await.unwrap();
//! # }
//! ```
//!
//! PostgreSQL tests read `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without a server they skip with a
//! loud message — unless `REQUIRE_POSTGRES=1`, where a missing server fails the test.
//!
//! A test that needs a **database outage** must not stop that shared server: it takes
//! a [`PrivateCluster`] instead — its own `initdb` in a temporary directory, on its own
//! port, which it may stop and start at will and which is removed when dropped.
//!
//! ```no_run
//! use vigil_persistence::testing::PrivateCluster;
//! # fn main() {
//! let Some(cluster) = PrivateCluster::start() else { return }; // skipped loudly
//! let config = cluster.config();
//! cluster.stop(); // the outage
//! cluster.start_again();
//! # }
//! ```
//!
//! [`PrivateCluster::start_with`] starts one with extra `postgresql.conf` lines and
//! files in its data directory — a TLS server, say:
//!
//! ```no_run
//! use vigil_persistence::testing::{ClusterOptions, PrivateCluster};
//! # fn main() { let (cert_pem, key_pem) = (String::new(), String::new());
//! let options = ClusterOptions::default()
//!     .file("server.crt", cert_pem)
//!     .file("server.key", key_pem) // written 0600, as the server demands
//!     .setting("ssl = on");
//! let Some(cluster) = PrivateCluster::start_with(options) else { return };
//! # }
//! ```

use std::path::PathBuf;

use crate::config::{ConfigSource, DatabaseUrl};
use crate::{DatabaseConfig, Execution, SharedState, Store};

mod cluster;
mod pgbouncer;

pub use cluster::{ClusterOptions, PrivateCluster, Replication};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
pub use pgbouncer::{Pgbouncer, PoolMode};

/// The admin URL of the test server.
pub fn admin_url() -> DatabaseUrl {
    let raw = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    DatabaseUrl::parse(&raw, ConfigSource::Environment).expect("TEST_DATABASE_URL is a valid URL")
}

/// Whether `REQUIRE_POSTGRES=1` is set.
pub fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A fresh, private in-memory SQLite store, migrated, running in process on the current
/// runtime: the store for tests on virtual time. It lives as long as the store (and its
/// clones) and must be used on the runtime that opened it.
///
/// # Panics
///
/// Outside a tokio runtime, or if the database cannot be created.
pub async fn in_memory_store() -> Store {
    Store::connect_in_process(DatabaseConfig::sqlite_memory()).await.expect("open an in-memory SQLite store")
}

/// A [`SharedState`] writing straight through an [`in_memory_store`].
pub async fn in_memory_shared_state() -> SharedState {
    SharedState::direct(in_memory_store().await)
}

/// Opens one PostgreSQL connection the way the store opens each of its own (TLS,
/// keepalive, `statement_timeout`; see [`crate::connect`]), for tests that look at
/// the connection itself — `pg_stat_ssl`, say — or at why it failed.
///
/// # Panics
///
/// When `config` is not a PostgreSQL configuration.
pub async fn connect_postgres(
    config: &DatabaseConfig,
) -> Result<AsyncPgConnection, crate::connect::ConnectError> {
    let DatabaseConfig::Postgres { url, pool, .. } = config else {
        panic!("connect_postgres needs a PostgreSQL configuration, not {}", config.describe())
    };
    crate::connect::connect_pg(url, pool, crate::connect::Purpose::Pool).await
}

/// A database that exists for one test.
#[derive(Debug)]
pub enum TestDb {
    /// A PostgreSQL database created for the test.
    Postgres {
        /// Its URL.
        url: DatabaseUrl,
        /// Its name.
        name: String,
    },
    /// An SQLite file in a temporary directory.
    Sqlite {
        /// The directory holding `vigil.db`.
        dir: PathBuf,
    },
}

impl TestDb {
    /// A fresh PostgreSQL database, or `None` (after a loud message) without a server.
    pub async fn postgres() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match AsyncPgConnection::establish(admin.expose()).await {
            Ok(conn) => conn,
            Err(e) if !postgres_required() => {
                eprintln!(
                    "\n*** SKIPPED: no PostgreSQL at {admin} ({e}); set REQUIRE_POSTGRES=1 to fail instead ***\n"
                );
                return None;
            }
            Err(e) => panic!("REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable: {e}"),
        };
        let name = format!("vigil_t_{:016x}", rand::random::<u64>());
        conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        Some(TestDb::Postgres { url: admin.with_database(&name), name })
    }

    /// A fresh SQLite file.
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("vigil-t-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TestDb::Sqlite { dir }
    }

    /// The configuration that opens this database.
    pub fn config(&self) -> DatabaseConfig {
        match self {
            TestDb::Postgres { url, .. } => DatabaseConfig::postgres(url.expose()).expect("valid URL"),
            TestDb::Sqlite { dir } => DatabaseConfig::sqlite(dir.join("vigil.db")),
        }
    }

    /// Opens (and migrates) the database.
    pub async fn store(&self) -> Store {
        Store::connect(self.config()).await.expect("connect to the test database")
    }

    /// Opens (and migrates) the database in process ([`Execution::InProcess`]): on
    /// SQLite, for tests on virtual time.
    pub async fn store_in_process(&self) -> Store {
        Store::connect_with(self.config(), Execution::InProcess).await.expect("connect to the test database")
    }

    /// A SharedState writing straight through the store.
    pub async fn shared_state(&self) -> SharedState {
        SharedState::direct(self.store().await)
    }

    /// Terminates every other connection to this PostgreSQL database (no-op on SQLite).
    pub async fn kill_connections(&self) -> usize {
        let TestDb::Postgres { name, .. } = self else { return 0 };
        use diesel_async::RunQueryDsl;
        let mut conn = AsyncPgConnection::establish(admin_url().expose()).await.expect("admin connection");
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut conn)
        .await
        .expect("terminate backends")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Postgres { name, .. } => {
                let name = name.clone();
                // Drop may run inside an async test: do the work on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    rt.block_on(async {
                        let mut conn = AsyncPgConnection::establish(admin_url().expose()).await.ok()?;
                        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
                    })
                })
                .join();
            }
            TestDb::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Defines one test per backend from one async body taking a `&TestDb`: a module
/// `$name` with the tests `postgres` (skipped loudly without a server, see
/// [`TestDb::postgres`]) and `sqlite`, each running the body on a fresh database.
///
/// The caller needs `tokio` (with its `macros` and `rt` features) among its
/// dev-dependencies; the module the macro is used in is glob-imported (`use super::*`).
///
/// ```ignore
/// use vigil_persistence::on_both_backends;
///
/// on_both_backends! {
///     async fn registers_an_agent(db) {
///         let state = db.shared_state().await;
///         state.register_agent("a", "A").await.unwrap();
///         assert_eq!(state.get_registered_agents().await.unwrap().len(), 1);
///     }
/// }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: &$crate::testing::TestDb) $body

            #[::tokio::test]
            async fn postgres() {
                let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                run(&db).await;
            }

            #[::tokio::test]
            async fn sqlite() {
                run(&$crate::testing::TestDb::sqlite()).await;
            }
        }
    };
}

/// Asserts that no agent had two owners at once in `log` (an ownership log, see
/// [`Store::ownership_log`]): per agent, by epoch, every interval but the last has
/// ended, epochs rise, and each ended (server time) before the next began.
///
/// # Panics
///
/// Naming the agent and the overlapping intervals.
pub fn assert_no_overlapping_ownership(log: &[crate::nodes::OwnershipInterval]) {
    let mut by_agent: std::collections::HashMap<&str, Vec<&crate::nodes::OwnershipInterval>> =
        std::collections::HashMap::new();
    for interval in log {
        by_agent.entry(&interval.agent_id).or_default().push(interval);
    }
    for (agent, mut intervals) in by_agent {
        intervals.sort_by_key(|i| i.epoch);
        for pair in intervals.windows(2) {
            let ended =
                pair[0].ended_at.unwrap_or_else(|| panic!("{agent}: an open interval before a later one"));
            assert!(pair[0].epoch < pair[1].epoch, "{agent}: epochs rise");
            assert!(
                ended <= pair[1].acquired_at,
                "{agent} owned twice at once: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}
