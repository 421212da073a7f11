//! [`PrivateCluster`]: a PostgreSQL server of a test's own (`initdb` + `pg_ctl` in a
//! temporary directory), for tests that stop, crash or reconfigure the server, which
//! they must never do to the shared one; [`ClusterOptions`] adds `postgresql.conf`
//! lines and files (a TLS certificate and key) before its first start.

use std::path::PathBuf;

use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::postgres_required;
use crate::config::{ConnectRetryPolicy, PoolConfig};
use crate::{DatabaseConfig, Store};

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

/// What a [`PrivateCluster`] is started with besides its defaults: lines appended to
/// its `postgresql.conf`, and files written into its data directory (a relative path
/// in `postgresql.conf`, such as `ssl_cert_file = 'server.crt'`, is relative to it).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    settings: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl ClusterOptions {
    /// Appends a line to `postgresql.conf` (`ssl = on`).
    #[must_use]
    pub fn setting(mut self, line: impl Into<String>) -> Self {
        self.settings.push(line.into());
        self
    }

    /// Writes a file into the data directory, readable by the server's user only (the
    /// server refuses a private key that others may read).
    #[must_use]
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }
}

/// How the standby of [`PrivateCluster::primary_and_standby`] replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// PostgreSQL's default: a commit returns before the standby has its WAL, so a crash
    /// of the primary can lose what the standby had not received.
    Asynchronous,
    /// `synchronous_standby_names = '*'`, `synchronous_commit = on`: a commit returns once
    /// the standby has flushed its WAL.
    Synchronous,
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
        Self::start_with(ClusterOptions::default())
    }

    /// [`PrivateCluster::start`] with extra settings and files, put in place between
    /// `initdb` and the first start.
    ///
    /// # Panics
    ///
    /// As [`PrivateCluster::start`], and when a file cannot be written.
    pub fn start_with(options: ClusterOptions) -> Option<PrivateCluster> {
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
        cluster.apply(&options);
        cluster.start_again();
        Some(cluster)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`: it follows the primary's
    /// WAL, read-only, until [`promote`](Self::promote)d), on a port of its own.
    ///
    /// # Panics
    ///
    /// When the base backup or the start fails.
    pub fn standby_of(primary: &PrivateCluster) -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!("vigil-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create the standby's directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let standby = PrivateCluster { dir, bin: primary.bin.clone(), port, run_as: primary.run_as };
        if let Some(user) = standby.run_as {
            standby.command("chown", &[&format!("{user}:"), &standby.dir.display().to_string()]);
        }
        let source = format!("host=127.0.0.1 port={} user=postgres", primary.port);
        standby.pg("pg_basebackup", &["-d", &source, "-D", &standby.data_dir(), "-R", "-X", "stream"]);
        // The copied configuration may name a synchronous standby; this one has none, so
        // once promoted it must commit alone (what a failover manager sets) instead of
        // waiting for ever.
        standby.apply(&ClusterOptions::default().setting("synchronous_standby_names = ''"));
        standby.start_again();
        standby
    }

    /// A primary and a streaming standby of it, replicating as asked; the schema is not
    /// made yet (the first store connected to the primary makes it, and the standby
    /// follows).
    ///
    /// # Panics
    ///
    /// As [`PrivateCluster::start`] and [`PrivateCluster::standby_of`].
    pub fn primary_and_standby(replication: Replication) -> Option<(PrivateCluster, PrivateCluster)> {
        let options = match replication {
            Replication::Asynchronous => ClusterOptions::default(),
            // Any standby is the synchronous one: a commit returns once it has the WAL.
            Replication::Synchronous => ClusterOptions::default()
                .setting("synchronous_standby_names = '*'")
                .setting("synchronous_commit = on"),
        };
        let primary = Self::start_with(options)?;
        let standby = Self::standby_of(&primary);
        Some((primary, standby))
    }

    /// The URL that names this cluster, then `standby`, accepting only the one that
    /// takes writes (`target_session_attrs=read-write`): what an application that
    /// follows a failover is configured with.
    pub fn url_with(&self, standby: &PrivateCluster) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.port, standby.port
        )
    }

    /// Promotes a standby to a primary (`pg_ctl promote`), waiting until it is one.
    pub fn promote(&self) {
        self.pg("pg_ctl", &["promote", "-D", &self.data_dir(), "-w"]);
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
        impatient_store(self.config()).await
    }

    /// [`impatient_store`](Self::impatient_store) through [`url_with`](Self::url_with)
    /// `standby`: a store that follows a failover.
    pub async fn impatient_store_with(&self, standby: &PrivateCluster) -> Store {
        impatient_store(DatabaseConfig::postgres(&self.url_with(standby)).expect("a valid URL")).await
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

    /// Writes the options' files and settings into the data directory, owned by the
    /// server's user.
    fn apply(&self, options: &ClusterOptions) {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        let data = self.dir.join("data");
        for (name, contents) in &options.files {
            let path = data.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
            file.write_all(contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            if let Some(user) = self.run_as {
                self.command("chown", &[&format!("{user}:"), &path.display().to_string()]);
            }
        }
        if !options.settings.is_empty() {
            let conf = data.join("postgresql.conf");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", conf.display()));
            let lines = options.settings.join("\n");
            writeln!(file, "\n# PrivateCluster::start_with\n{lines}")
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        }
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

async fn impatient_store(config: DatabaseConfig) -> Store {
    let pool = PoolConfig::default()
        .with_connection_timeout(std::time::Duration::from_millis(500))
        .with_retry(ConnectRetryPolicy::default().with_max_attempts(2));
    Store::connect(config.with_pool(pool).expect("a valid pool")).await.expect("connect")
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
