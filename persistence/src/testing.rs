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

use std::path::PathBuf;

use crate::config::{ConfigSource, DatabaseUrl};
use crate::{DatabaseConfig, Execution, SharedState, Store};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

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

/// A PostgreSQL cluster of a test's own, for tests that stop the server: created with
/// `initdb` in a temporary directory, trust authentication, listening on 127.0.0.1 on
/// a free port (and a socket in its own directory), never the shared server's. When the
/// test runs as root, the cluster runs as the `postgres` user (PostgreSQL refuses
/// root), which owns the directory. Stopped and removed on drop, a failed test too.
///
/// The binaries come from `VIGIL_PG_BIN` if set, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`.
#[derive(Debug)]
pub struct PrivateCluster {
    /// The temporary directory: `data/` (the cluster) and `server.log`.
    dir: PathBuf,
    /// Where `initdb` and `pg_ctl` are; empty for `PATH`.
    bin: PathBuf,
    port: u16,
    /// The user the server runs as, when it is not us (we are root).
    run_as: Option<&'static str>,
}

impl PrivateCluster {
    /// Creates and starts a cluster, or returns `None` after a loud message when
    /// PostgreSQL's server binaries are not installed — unless `REQUIRE_POSTGRES=1`,
    /// where that fails the test.
    ///
    /// # Panics
    ///
    /// When the binaries exist but the cluster cannot be created or started.
    pub fn start() -> Option<PrivateCluster> {
        let Some(bin) = postgres_bin_dir() else {
            assert!(!postgres_required(), "REQUIRE_POSTGRES=1 but initdb is not installed");
            eprintln!(
                "\n*** SKIPPED: initdb not found (install PostgreSQL's server or set VIGIL_PG_BIN) ***\n"
            );
            return None;
        };
        let dir = std::env::temp_dir().join(format!("vigil-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let run_as = is_root().then_some("postgres");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // Built before anything can fail, so Drop cleans up whatever was made.
        let cluster = PrivateCluster { dir, bin, port, run_as };
        if let Some(user) = run_as {
            cluster.command("chown", &[&format!("{user}:"), &cluster.dir.display().to_string()]);
        }
        let data = cluster.data_dir();
        cluster.pg("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        cluster.start_again();
        Some(cluster)
    }

    /// The cluster's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The configuration that opens its `postgres` database.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig::postgres(&self.url()).expect("a valid URL")
    }

    /// A store on the cluster whose readers give up within about a second (a 500 ms
    /// connection timeout, two attempts) instead of the default 30 s, so that work
    /// meets an outage rather than waiting it out inside the pool.
    pub async fn impatient_store(&self) -> Store {
        use crate::config::{ConnectRetryPolicy, PoolConfig};
        let pool = PoolConfig::default()
            .with_connection_timeout(std::time::Duration::from_millis(500))
            .with_retry(ConnectRetryPolicy::default().with_max_attempts(2));
        Store::connect(self.config().with_pool(pool).expect("a valid pool")).await.expect("connect")
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are cut, the data is kept).
    pub fn stop(&self) {
        self.pg("pg_ctl", &["stop", "-D", &self.data_dir(), "-m", "fast", "-w"]);
    }

    /// Crashes the server: `pg_ctl stop -m immediate` ends every process at once,
    /// without a checkpoint, so the next start runs crash recovery — what a power cut
    /// or an OOM kill does to PostgreSQL (its files survive: this cluster runs
    /// `fsync=off`, and the machine does not crash).
    pub fn crash(&self) {
        self.pg("pg_ctl", &["stop", "-D", &self.data_dir(), "-m", "immediate", "-w"]);
    }

    /// The process ids of the server's backends whose `application_name` is `name`
    /// (Vigil names its connections: `vigil-writer`, `vigil-pool`, ...).
    pub async fn backend_pids(&self, name: &str) -> Vec<i32> {
        use diesel::sql_types::{Integer, Text};
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Backend {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        let mut conn = AsyncPgConnection::establish(&self.url()).await.expect("connect to the cluster");
        let rows: Vec<Backend> =
            diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                .bind::<Text, _>(name)
                .load(&mut conn)
                .await
                .expect("list backends");
        rows.into_iter().map(|b| b.pid).collect()
    }

    /// Sends `signal` (`STOP` freezes a backend, `CONT` thaws it) to a server process.
    pub fn signal(&self, pid: i32, signal: &str) {
        self.command("kill", &[&format!("-{signal}"), &pid.to_string()]);
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.pg("pg_ctl", &["start", "-D", &self.data_dir(), "-o", &options, "-l", &log, "-w", "-t", "60"]);
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs as the cluster's user; panics on failure,
    /// with the server log.
    fn pg(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).display().to_string();
        match self.run_as {
            Some(user) => {
                let mut all = vec!["-u", user, "--", program.as_str()];
                all.extend_from_slice(args);
                self.command("runuser", &all);
            }
            None => self.command(&program, args),
        }
    }

    fn command(&self, program: &str, args: &[&str]) {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "{program} {args:?} failed: {}\n{}\n{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Whatever state the test left it in; `immediate` since the data is thrown away.
        let data = self.data_dir();
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let args = ["stop", "-D", data.as_str(), "-m", "immediate", "-w"];
        let _ = match self.run_as {
            Some(user) => std::process::Command::new("runuser")
                .args(["-u", user, "--", pg_ctl.as_str()])
                .args(args)
                .output(),
            None => std::process::Command::new(&pg_ctl).args(args).output(),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `pg_ctl` are: `VIGIL_PG_BIN`, the newest
/// `/usr/lib/postgresql/<version>/bin`, or `PATH` (an empty path); `None` if nowhere.
fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIL_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let on_path = std::process::Command::new("initdb").arg("--version").output();
    on_path.is_ok_and(|o| o.status.success()).then(PathBuf::new)
}

/// Whether this process runs as root (PostgreSQL will not).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
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
