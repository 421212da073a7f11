//! `vigil` through a connection pooler: PgBouncer (a [`Pgbouncer`] of the test's own,
//! in front of the shared server) in session mode runs the whole platform — the ten
//! agents, their heartbeats, a clean shutdown, operator commands and `status`.
//!
//! Transaction mode has no test: what breaks there depends on which server connection
//! each transaction lands on (see the README's "Connection poolers"), so no outcome
//! can be asserted robustly. Statement mode refuses every transaction block, every
//! time: that failure is asserted to be loud and prompt.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_persistence::testing::{Pgbouncer, PoolMode, TestDb, admin_url};

use crate::cli::{block_on, pg_url, temp_dir, vigil};
use crate::run::{DEADLINE, run_for_on, spawn_run, stop_with_sigterm, wait_for_active};

/// Held by each test here: they run one at a time, so that the statement-mode test's
/// storm of refused writes does not slow the session-mode runs (whose 3 s must see the
/// coordinator publish).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A fresh database on the shared server and a PgBouncer in `mode` in front of that
/// server, or `None` (skipped loudly) without either.
fn database_behind(mode: PoolMode) -> Option<(TestDb, Pgbouncer, String)> {
    let db = block_on(TestDb::postgres())?;
    let hosts = admin_url().hosts();
    let first = hosts.split(',').next().unwrap_or_default();
    let (host, port) = first.rsplit_once(':').expect("host:port");
    let bouncer = Pgbouncer::start(mode, host, port.parse().expect("a port"))?;
    let TestDb::Postgres { name, .. } = &db else { unreachable!("TestDb::postgres") };
    let url = bouncer.url(name);
    Some((db, bouncer, url))
}

/// The database's clients really came through the bouncer.
fn assert_went_through(bouncer: &Pgbouncer, db: &TestDb) {
    let TestDb::Postgres { name, .. } = db else { unreachable!("TestDb::postgres") };
    let log = bouncer.log();
    assert!(
        log.contains(&format!("login attempt: db={name} ")),
        "no client of {name} in pgbouncer's log:\n{log}"
    );
}

#[test]
fn run_for_through_pgbouncer_in_session_mode() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((db, bouncer, url)) = database_behind(PoolMode::Session) else { return };
    let dir = temp_dir();
    let out = vigil(&dir, &["--database-url", &url, "migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Ten agents running, stopped in reverse order, every row `shutdown`, the
    // coordinator's scores and the writer's statistics recorded, status read back.
    run_for_on(&dir, &["--database-url", &url]);
    assert_went_through(&bouncer, &db);
    std::fs::remove_dir_all(dir).ok();
}

/// While the platform runs through the bouncer, its agents heartbeat, other processes
/// operate it through the bouncer too (`status`, an operator command, which rides on
/// `LISTEN`/`NOTIFY` and the session's own settings), and SIGTERM stops it cleanly.
#[test]
fn operating_a_platform_through_pgbouncer_in_session_mode() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((db, bouncer, url)) = database_behind(PoolMode::Session) else { return };
    let dir = temp_dir();
    let through = ["--database-url", url.as_str()];
    let mut platform = spawn_run(&dir, &["--database-url", &url, "--for", "300s", "--no-status"]);

    let status = wait_for_active(&dir, &through, 10);
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 10, "{status}");
    for agent in agents {
        assert!(agent["heartbeat_age_secs"].as_f64().is_some(), "a heartbeat was written: {agent}");
    }
    assert_eq!((&status["platform_running"], &status["healthy"]), (&Value::Bool(true), &Value::Bool(true)));

    let out = vigil(&dir, &["--database-url", &url, "agent", "restart", "shared_state_monitor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("restarted with fresh state; active again"), "{stdout}");

    let stderr = stop_with_sigterm(&mut platform, &dir.join("run.log"));
    assert!(stderr.contains("stopped 10 agents") && !stderr.contains("WARN"), "{stderr}");

    let out = vigil(&dir, &["--database-url", &url, "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["platforms"][0]["status"]["verdict"], "stopped", "{status}");
    assert!(
        status["agents"].as_array().unwrap().iter().all(|a| a["recorded_state"] == "shutdown"),
        "{status}"
    );
    assert_went_through(&bouncer, &db);
    std::fs::remove_dir_all(dir).ok();
}

/// Statement mode hands out a server connection per statement and refuses `BEGIN`:
/// every write Vigil makes is a transaction, and the prepared statements of a
/// connection are not there for its next statement, so the run fails — loudly, naming
/// the reason, within the deadline, without a panic.
#[test]
fn statement_mode_fails_loudly_and_promptly() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((db, bouncer, url)) = database_behind(PoolMode::Statement) else { return };
    let dir = temp_dir();
    // Migrated directly, so that what fails is the platform, not the migrations.
    let out = vigil(&dir, &["--database-url", &pg_url(&db), "migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut platform = spawn_run(&dir, &["--database-url", &url, "--for", "2s", "--no-status"]);
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = platform.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > DEADLINE {
            platform.kill().ok();
            platform.wait().ok();
            panic!("vigil run through statement mode hung; pgbouncer's log:\n{}", bouncer.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(!exit.success(), "{stderr}");
    // Which comes first depends on the server connection each statement lands on.
    let refused = ["transaction blocks not allowed in statement pooling mode", "prepared statement \""];
    assert!(refused.iter().any(|reason| stderr.contains(reason)), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}
