//! [`Pgbouncer`]: a connection pooler of a test's own (PgBouncer, in a temporary
//! directory, on a free port) in front of a PostgreSQL server, for tests of what Vigil
//! does through one; [`PoolMode`] says how it shares server connections.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres_required;

/// How PgBouncer shares its server connections between clients (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolMode {
    /// A client holds one server connection until it disconnects.
    Session,
    /// A client holds a server connection for one transaction only.
    Transaction,
    /// A client holds a server connection for one statement only.
    Statement,
}

impl PoolMode {
    /// The name PgBouncer's configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// A PgBouncer of a test's own on 127.0.0.1, forwarding every database to one
/// upstream PostgreSQL server; stopped and removed on drop.
///
/// PgBouncer hands the server connections it holds to its clients in one of three
/// [`PoolMode`]s, which decide what a client may rely on:
///
/// | mode | a client keeps one server connection for | prepared statements, `LISTEN`, `SET` |
/// |---|---|---|
/// | `session` | its whole connection | work, as on the server itself |
/// | `transaction` | one transaction | lost, or left for the next client (PgBouncer < 1.21) |
/// | `statement` | one statement (transaction blocks refused) | lost |
///
/// The fixture writes a configuration (`auth_type = trust`, an `auth_file` naming
/// `postgres`, every database forwarded to the upstream server as the client's own
/// user) into a temporary directory, and runs `pgbouncer` in the foreground as a child
/// process listening on 127.0.0.1 on a free port. PgBouncer refuses to run as root:
/// when the test runs as root, the process runs as the `postgres` user, which owns the
/// directory (as [`PrivateCluster`](super::PrivateCluster) does for PostgreSQL). The
/// process is killed and reaped, and the directory removed, on drop — a failed test too.
///
/// The binary is looked for on `PATH`, then in `/usr/sbin` (where Debian's package
/// puts it, which a non-login root shell may not have on its `PATH`),
/// `/usr/local/sbin` and `/usr/local/bin`. Without it [`Pgbouncer::start`] returns
/// `None` after a loud message — unless `REQUIRE_POSTGRES=1`, where that fails the test.
///
/// ```no_run
/// use vigil_persistence::testing::{Pgbouncer, PoolMode};
/// # fn main() {
/// let Some(bouncer) = Pgbouncer::start(PoolMode::Session, "127.0.0.1", 5432) else { return };
/// let url = bouncer.url("my_database"); // postgres://postgres@127.0.0.1:<port>/my_database
/// # let _ = url;
/// # }
/// ```
#[derive(Debug)]
pub struct Pgbouncer {
    /// The temporary directory: `pgbouncer.ini`, `userlist.txt`, `pgbouncer.log`.
    dir: PathBuf,
    /// The running `pgbouncer` itself (no wrapper in between, so killing it ends it).
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    port: u16,
    /// The mode it was started in.
    mode: PoolMode,
}

/// How long PgBouncer may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

impl Pgbouncer {
    /// Starts a PgBouncer in `mode` in front of the server at `upstream_host`:
    /// `upstream_port`, waiting until it accepts connections, or returns `None` after
    /// a loud message when `pgbouncer` is not installed — unless `REQUIRE_POSTGRES=1`,
    /// where that fails the test.
    ///
    /// # Panics
    ///
    /// When the binary exists but PgBouncer cannot be configured or started (with its
    /// log).
    pub fn start(mode: PoolMode, upstream_host: &str, upstream_port: u16) -> Option<Pgbouncer> {
        let Some(binary) = pgbouncer_binary() else {
            assert!(
                !postgres_required(),
                "REQUIRE_POSTGRES=1 but pgbouncer is not installed (apt-get install pgbouncer)"
            );
            eprintln!("\n*** SKIPPED: pgbouncer not installed (apt-get install pgbouncer) ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("vigil-pgbouncer-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create pgbouncer's directory");
        // Removes the directory if anything below panics before `Pgbouncer` owns it.
        let guard = RemoveOnDrop(dir.clone());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // `""` is the (unused) password: `auth_type = trust` only checks the name is listed.
        write(&dir.join("userlist.txt"), "\"postgres\" \"\"\n");
        let config = format!(
            "[databases]\n\
             * = host={upstream_host} port={upstream_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = {mode}\n\
             logfile = {log}\n\
             admin_users = postgres\n\
             max_client_conn = 200\n\
             default_pool_size = 40\n",
            auth = dir.join("userlist.txt").display(),
            mode = mode.as_str(),
            log = dir.join("pgbouncer.log").display(),
        );
        let ini = dir.join("pgbouncer.ini");
        write(&ini, &config);

        let mut command = Command::new(&binary);
        command.arg(&ini).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = postgres_ids_if_root() {
            // PgBouncer refuses root. Setting the ids on the child itself (rather than
            // through `runuser`) keeps the child we kill on drop the pooler itself.
            for path in [&dir, &dir.join("userlist.txt"), &ini] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
            }
            use std::os::unix::process::CommandExt as _;
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        std::mem::forget(guard);
        let mut bouncer = Pgbouncer { dir, child, port, mode };
        bouncer.wait_until_listening();
        Some(bouncer)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mode it runs in.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The URL of database `database` through it, as `postgres` (no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// What PgBouncer has logged so far: each client login (`login attempt: db=...`),
    /// server connection and error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Polls its port until it accepts a TCP connection; panics with its log if the
    /// process exits first or the deadline passes.
    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self.child.try_wait().expect("poll pgbouncer") {
                panic!("pgbouncer exited at start ({status}); its log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "pgbouncer did not listen on {address} within {STARTUP_DEADLINE:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        // SIGKILL: nothing of its state is worth keeping, and it ends its clients' sessions.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory when dropped (unless forgotten).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// `pgbouncer` on `PATH`, else in the directories packages install it to.
fn pgbouncer_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let usual = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from);
    on_path.into_iter().chain(usual).map(|dir| dir.join("pgbouncer")).find(|binary| binary.is_file())
}

/// The `postgres` user's uid and gid when this process runs as root (PgBouncer will
/// not), else `None`.
fn postgres_ids_if_root() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let output = Command::new("id").args(args).output().ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    let uid = id(&["-u", "postgres"]).expect("running as root, so PgBouncer needs the `postgres` user");
    let gid = id(&["-g", "postgres"]).expect("the `postgres` user's group");
    Some((uid, gid))
}
