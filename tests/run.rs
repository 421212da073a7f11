//! `vigil run` end to end: the ten agents on both backends, operated from "another
//! shell" (other processes) while it runs, its data imported into PostgreSQL, and the
//! bad-input table. Waits poll the database with a deadline; nothing sleeps and then
//! asserts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::testing::TestDb;
use vigil_persistence::{DatabaseConfig, SharedState, Store};

use crate::cli::{pg_url, temp_dir, vigil};

pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// Starts `vigil run` in the background; its stderr goes to `dir/run.log` (a pipe
/// nobody reads would fill up and block it).
pub(crate) fn spawn_run(dir: &Path, args: &[&str]) -> Child {
    spawn_run_with_env(dir, args, &[])
}

/// [`spawn_run`] with `env` set for the process (an operator token, say).
pub(crate) fn spawn_run_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join("run.log")).expect("create run.log");
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("run")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigil run")
}

/// Sends SIGTERM to a `vigil run` and waits (within [`DEADLINE`]) for it to exit with
/// success, as a graceful shutdown does; returns what it wrote to `log`.
pub(crate) fn stop_with_sigterm(platform: &mut Child, log: &Path) -> String {
    Command::new("kill").args(["-TERM", &platform.id().to_string()]).status().expect("kill");
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = platform.try_wait().expect("wait") {
            break exit;
        }
        assert!(started.elapsed() < DEADLINE, "vigil run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(exit.success(), "exited with {exit}: {stderr}");
    stderr
}

/// Polls `vigil status --json` until `n` agents are active.
pub(crate) fn wait_for_active(dir: &Path, extra: &[&str], n: usize) -> Value {
    let started = Instant::now();
    loop {
        let mut args = extra.to_vec();
        args.extend(["status", "--json"]);
        let out = vigil(dir, &args);
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).expect("status --json");
            let active = status["agents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["recorded_state"] == "active" && a["liveness"] == "running")
                .count();
            if active >= n {
                return status;
            }
        }
        assert!(started.elapsed() < DEADLINE, "fewer than {n} agents became active");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn run_for_on(dir: &Path, extra: &[&str]) {
    let mut args = extra.to_vec();
    args.extend(["run", "--for", "3s", "--no-status"]);
    let out = vigil(dir, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("10 agents running"), "{stderr}");
    assert!(stderr.contains("stopped 10 agents in reverse order"), "{stderr}");
    let mut args = extra.to_vec();
    args.extend(["status", "--json"]);
    let status: Value = serde_json::from_slice(&vigil(dir, &args).stdout).unwrap();
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 10, "{status}");
    // Stopped cleanly: the rows say `shutdown`, and nothing claims to run or be healthy.
    assert!(agents.iter().all(|a| a["recorded_state"] == "shutdown"), "{status}");
    assert!(agents.iter().all(|a| a["liveness"] == "not_running" && a["health"].is_null()), "{status}");
    assert_eq!((&status["platform_running"], &status["healthy"]), (&Value::Bool(false), &Value::Bool(false)));
    assert_eq!(status["platforms"][0]["status"]["verdict"], "stopped", "{status}");
    let scores = status["last_coordinator_summary"]["agents"].as_object().unwrap();
    assert!(!scores.is_empty(), "the coordinator published health scores: {status}");
    let mut args = extra.to_vec();
    args.push("status");
    let text = String::from_utf8_lossy(&vigil(dir, &args).stdout).to_string();
    assert!(text.contains("no platform is running") && text.contains("stopped cleanly"), "{text}");
    let mut args = extra.to_vec();
    args.extend(["health", "--json"]);
    let report: Value = serde_json::from_slice(&vigil(dir, &args).stdout).unwrap();
    assert!(report["persistence"]["batches_committed"].as_u64().unwrap() > 0, "writer statistics: {report}");
    assert!(
        report["platform"]["queries"]["total_queries"].as_u64().unwrap() > 0,
        "platform statistics: {report}"
    );
}

#[test]
fn run_for_on_sqlite_then_import_its_data_into_postgresql() {
    let dir = temp_dir();
    // History from long ago, which the default retention (7 days) removes at start.
    let out = vigil(&dir, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let open = || async {
        SharedState::direct(Store::connect(DatabaseConfig::sqlite(dir.join("vigil.db"))).await.unwrap())
    };
    crate::cli::block_on(async {
        let ancient = "INSERT INTO system_events (event_type, event_data, timestamp, severity) \
                       VALUES ('ancient', '{}', '2000-01-01T00:00:00+00:00', 'info')";
        open().await.store().execute_raw_for_tests(ancient).await.unwrap();
    });
    run_for_on(&dir, &[]);
    crate::cli::block_on(async {
        let shared = open().await;
        let ancient = EventFilter { event_type: Some("ancient".into()), ..Default::default() };
        assert!(shared.recent_events(ancient).await.unwrap().is_empty(), "old history removed");
        let filter = EventFilter { event_type: Some("data_retention_cleanup".into()), ..Default::default() };
        let cleanups = shared.recent_events(filter).await.unwrap();
        let first = cleanups.last().expect("a retention cleanup was recorded");
        let data = first.event_data.as_ref().expect("counts").0.clone();
        assert_eq!(
            (data["days_kept"].as_u64(), data["deleted"]["events"].as_u64()),
            (Some(7), Some(1)),
            "{data}"
        );
    });
    let Some(db) = crate::cli::block_on(TestDb::postgres()) else { return };
    let from = format!("sqlite:{}", dir.join("vigil.db").display());
    let out = vigil(&dir, &["import", "--from", &from, "--to", &pg_url(&db), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = report["tables"].as_array().unwrap();
    assert!(tables.iter().all(|t| t["matches"] == true), "{report}");
    let events = tables.iter().find(|t| t["table"] == "system_events").unwrap();
    assert!(events["rows"].as_u64().unwrap() > 30, "a run's worth of events: {events}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_for_on_postgresql() {
    let Some(db) = crate::cli::block_on(TestDb::postgres()) else { return };
    let dir = temp_dir();
    let url = pg_url(&db);
    run_for_on(&dir, &["--database-url", &url]);
    assert!(!dir.join("vigil.db").exists(), "nothing written to the embedded default");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn operating_a_running_platform_from_other_processes() {
    let dir = temp_dir();
    let mut platform = spawn_run(&dir, &["--for", "300s", "--no-status"]);
    let status = wait_for_active(&dir, &[], 10);
    assert_eq!(status["agents"].as_array().unwrap().len(), 10);

    // A second platform on the same database is refused, not run on top of the first.
    let out = vigil(&dir, &["run", "--for", "1s", "--no-status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another platform is running") && stderr.contains("--force"), "{stderr}");

    let out = vigil(&dir, &["agent", "restart", "shared_state_monitor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("restart shared_state_monitor: restarted with fresh state; active again"),
        "{stdout}"
    );

    let out =
        vigil(&dir, &["events", "--agent", "shared_state_monitor", "--type", "state_transition", "--json"]);
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(lines.lines().any(|l| l.contains("\"to\":\"recovery\"")), "the restart is recorded: {lines}");

    let out = vigil(&dir, &["ask", "what is the status of agent_coordinator?"]);
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{answer} {}", String::from_utf8_lossy(&out.stderr));
    assert!(answer.contains("agent_coordinator") && answer.contains("active"), "{answer}");
    // The platform's own answer names every one of the ten agents.
    let out = vigil(&dir, &["ask", "what agents are running?"]);
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{answer} {}", String::from_utf8_lossy(&out.stderr));
    for agent in status["agents"].as_array().unwrap() {
        assert!(answer.contains(agent["agent_id"].as_str().unwrap()), "{agent} missing from: {answer}");
    }

    let out = vigil(&dir, &["metrics", "--limit", "5", "--json"]);
    assert!(out.status.success());
    assert!(serde_json::from_slice::<Value>(&out.stdout).unwrap().is_array());

    let out = vigil(&dir, &["agent", "fix", "shared_state_monitor"]);
    assert_eq!(out.status.code(), Some(1), "fix is refused for an agent that is not parked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fix shared_state_monitor failed"));

    // While it runs, status says so, with the process that runs it.
    let out = vigil(&dir, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&format!("platform running: pid {}", platform.id())), "{text}");

    // SIGTERM: a graceful shutdown that flushes and reports.
    let stderr = stop_with_sigterm(&mut platform, &dir.join("run.log"));
    assert!(stderr.contains("SIGTERM; shutting down") && stderr.contains("stopped 10 agents"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

/// After `kill -9` of `vigil run`, nothing the dead process wrote is replayed as the
/// present: at the very next read the platform is not running, no agent is running or
/// healthy, `ask` and `agent` fail at once saying so, and a new `vigil run` starts
/// without `--force` (the process is looked up, so nobody waits for a lease to expire).
#[test]
fn a_killed_platform_is_seen_dead_at_once() {
    let dir = temp_dir();
    let mut platform = spawn_run(&dir, &["--for", "300s", "--no-status"]);
    let running = wait_for_active(&dir, &[], 10);
    assert_eq!((&running["platform_running"], &running["healthy"]), (&Value::Bool(true), &Value::Bool(true)));
    // Until it has published its pool figures once (2 s after the start).
    let started = Instant::now();
    while serde_json::from_slice::<Value>(&vigil(&dir, &["health", "--json"]).stdout).unwrap()["platform"]
        .is_null()
    {
        assert!(started.elapsed() < DEADLINE, "the platform never published its figures");
        std::thread::sleep(Duration::from_millis(200));
    }

    platform.kill().expect("kill -9");
    platform.wait().expect("reap");
    // A fresh database: the zero-setup path migrated it, and said so.
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    assert!(log.contains(&format!("applied {migrations} migration(s) to sqlite:vigil.db")), "{log}");

    let out = vigil(&dir, &["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&status["platform_running"], &status["healthy"]), (&Value::Bool(false), &Value::Bool(false)));
    assert_eq!(status["platforms"][0]["status"]["verdict"], "process_gone", "{status}");
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 10);
    for agent in agents {
        assert_eq!(agent["liveness"], "not_running", "{agent}");
        assert!(agent["health"].is_null(), "no health score for an agent nothing runs: {agent}");
        // The row itself still says what the dead process last wrote; it is shown as such.
        assert_eq!(agent["recorded_state"], "active", "{agent}");
    }
    assert_eq!(status["counts"]["running"], 0);

    let text = String::from_utf8_lossy(&vigil(&dir, &["status"]).stdout).to_string();
    assert!(text.contains("no platform is running") && text.contains("killed or crashed"), "{text}");
    assert!(text.contains("(active)") && text.contains("not running"), "{text}");
    let health = String::from_utf8_lossy(&vigil(&dir, &["health"]).stdout).to_string();
    assert!(health.contains("no platform is running") && health.contains("not the present"), "{health}");

    let started = Instant::now();
    for args in [&["ask", "how is the system?"][..], &["agent", "restart", "performance_monitor"]] {
        let out = vigil(&dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no platform is running") && stderr.contains("start `vigil run`"),
            "{stderr}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20), "refused at once, not after a timeout");

    // Restarting needs no --force: the killed process is known to be gone.
    let out = vigil(&dir, &["run", "--for", "2s", "--no-status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_gets_one_line_and_the_right_exit_code() {
    let dir = temp_dir();
    assert!(vigil(&dir, &["migrate"]).status.success());
    std::fs::write(dir.join("corrupt.db"), b"this is not an SQLite database, just bytes").unwrap();
    std::fs::write(dir.join("bad.json"), "{ \"monitoring\": { \"nope\": 1 } }").unwrap();
    let corrupt = format!("sqlite:{}", dir.join("corrupt.db").display());
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--for", "soon"], 2, "not a duration"),
        (&["events", "--severity", "loud"], 2, "not a severity"),
        (&["cleanup", "--days", "-1"], 2, ""),
        (&["agent", "restart"], 2, ""),
        (&["agent", "restart", "ghost", "--timeout", "1s"], 1, "no agent `ghost` is registered"),
        (&["--database-url", "mysql://u@h/db", "status"], 2, "not postgres"),
        (&["--database-url", "postgresql://app:s3cret@127.0.0.1:1/x", "status"], 1, "cannot connect"),
        (&["--database-url", &corrupt, "status"], 1, "not a database"),
        (&["run", "--config", "missing.json", "--for", "1s"], 1, "missing.json"),
        (&["run", "--config", "bad.json", "--for", "1s"], 2, "unknown field `nope`"),
        (&["ask", "  "], 2, "the question is empty"),
    ];
    for (args, code, message) in cases {
        let out = vigil(&dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: `{stderr}` should mention `{message}`");
        assert!(!stderr.contains("panicked") && !stderr.contains("s3cret"), "{args:?}: {stderr}");
        if *code == 1 {
            assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
            assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// With `--log-format json`, every line `vigil run` writes on stderr is JSON: its own
/// notices (start, shutdown, summary) too, not only the log records.
#[test]
fn log_format_json_makes_every_stderr_line_json() {
    let dir = temp_dir();
    let out = vigil(&dir, &["run", "--for", "2s", "--no-status", "--log-format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("10 agents running")), "{stderr}");
    assert!(messages.iter().any(|m| m.contains("stopped 10 agents in reverse order")), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

/// The README's two roles on the real server, through the command: the application
/// role (DML only) runs the whole platform; the reader role runs `status` and `health`,
/// and a write it tries (`cleanup`) fails at once with "permission denied".
#[test]
fn the_platform_runs_as_a_dml_only_role_and_a_reader_only_reads() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let Some(db) = crate::cli::block_on(TestDb::postgres()) else { return };
    let TestDb::Postgres { name, .. } = &db else { unreachable!() };
    let dir = temp_dir();
    let owner = pg_url(&db);
    assert!(vigil(&dir, &["--database-url", &owner, "migrate"]).status.success());
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (app, reader) = (format!("vigil_app_{suffix}"), format!("vigil_ro_{suffix}"));
    let admin = |sql: String, db: Option<&str>| {
        let url = vigil_persistence::testing::admin_url();
        let url = db.map_or(url.clone(), |db| url.with_database(db));
        crate::cli::block_on(async move {
            let mut conn = AsyncPgConnection::establish(url.expose()).await.expect("admin connection");
            conn.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    };
    admin(format!("CREATE ROLE {app} LOGIN; CREATE ROLE {reader} LOGIN;"), None);
    admin(
        format!(
            "GRANT CONNECT ON DATABASE {name} TO {app}, {reader};
             GRANT USAGE ON SCHEMA public TO {app}, {reader};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"
        ),
        Some(name),
    );
    let as_role = |role: &str| owner.replacen("postgres@", &format!("{role}@"), 1);

    let out = vigil(&dir, &["--database-url", &as_role(&app), "run", "--for", "3s", "--no-status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("stopped 10 agents"), "{stderr}");
    assert!(!stderr.contains("applied"), "nothing to migrate, nothing migrated: {stderr}");
    for args in [&["status"][..], &["health"]] {
        let out = vigil(&dir, &[&["--database-url", &as_role(&reader)][..], args].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = vigil(&dir, &["--database-url", &as_role(&reader), "cleanup", "--days", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");

    admin(format!("DROP OWNED BY {app}, {reader};"), Some(name));
    drop(db);
    admin(format!("DROP ROLE {app}; DROP ROLE {reader};"), None);
    std::fs::remove_dir_all(dir).ok();
}
