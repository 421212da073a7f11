//! The `vigil` binary on the embedded default.

use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn vigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .output()
        .expect("run vigil")
}

pub(crate) fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cli-{:016x}", rand_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[test]
fn migrate_health_and_status_on_the_embedded_default() {
    let dir = temp_dir();
    let out = vigil(&dir, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("vigil.db").exists(), "the embedded database is created in the working directory");
    let said = String::from_utf8_lossy(&out.stdout);
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    assert!(said.contains(&format!("applied {migrations} migration(s)")), "a fresh database: {said}");
    let again = vigil(&dir, &["migrate"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no migration was pending"), "{again:?}");

    let out = vigil(&dir, &["health", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health --json prints JSON");
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["tables"].as_array().unwrap().len(), 9);

    let out = vigil(&dir, &["status"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no platform is running on sqlite:vigil.db (none has ever run there)\nno agents registered"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A directory named as the SQLite database is refused at once, saying so (SQLite itself
/// would only say "unable to open database file").
#[test]
fn a_directory_is_not_a_database_file() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for command in ["status", "migrate"] {
        let out = vigil(&dir, &["--database-url", "sqlite:data", command]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains("sqlite:data is a directory, not a database file"), "{command}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// `vigil` as a user who cannot write `dir`: this user when it is not root (root
/// writes anything), else `nobody` through `setpriv`.
fn vigil_without_write_access(dir: &Path, args: &[&str]) -> Output {
    let root =
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut command = if root {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", env!("CARGO_BIN_EXE_vigil")]);
        setpriv
    } else {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
    };
    command
        .args(args)
        .current_dir(dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .output()
        .expect("run vigil (as root this needs setpriv, from util-linux)")
}

/// A database in a read-only folder, itself read-only: the commands that only read open
/// it read-only and work; one that writes fails at once (not after retrying for the
/// pool's timeout) and says why.
#[test]
fn a_read_only_database_is_read_and_a_write_fails_at_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    assert!(vigil(&dir, &["migrate"]).status.success());
    let db = dir.join("vigil.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    for args in [&["status"][..], &["events"], &["health"], &["metrics"], &["workflows"]] {
        let out = vigil_without_write_access(&dir, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let status = String::from_utf8_lossy(&vigil_without_write_access(&dir, &["status"]).stdout).to_string();
    assert!(status.contains("no platform is running"), "{status}");

    let started = std::time::Instant::now();
    let out = vigil_without_write_access(&dir, &["cleanup", "--days", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sqlite:vigil.db") && stderr.contains("read-only"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "not retried: {:?}", started.elapsed());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("vigil.db")], "nothing created in the folder");

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn workflows_lists_runs_by_status() {
    let dir = temp_dir();
    let out = vigil(&dir, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    block_on(async {
        let store = vigil_persistence::Store::connect(vigil_persistence::DatabaseConfig::sqlite(
            dir.join("vigil.db"),
        ))
        .await
        .unwrap();
        let shared = vigil_persistence::SharedState::direct(store);
        shared.submit_workflow_run("review", "review-1", serde_json::json!({ "doc": "x" })).await.unwrap();
    });
    let list = |args: &[&str]| {
        let mut all = vec!["workflows", "--json"];
        all.extend(args);
        let out = vigil(&dir, &all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let runs = list(&[]);
    assert_eq!(runs[0]["run_id"], "review-1");
    assert_eq!(runs[0]["status"], "pending");
    assert_eq!(list(&["--status", "pending"]).as_array().unwrap().len(), 1);
    assert!(list(&["--status", "failed"]).as_array().unwrap().is_empty());
    let text = vigil(&dir, &["workflows"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("review-1"));
    let bad = vigil(&dir, &["workflows", "--status", "sleeping"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a workflow status"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_usage_exits_2_and_runtime_errors_exit_1_on_one_line() {
    let dir = temp_dir();
    let out = vigil(&dir, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));

    // Reading commands do not create the embedded database; they say where it is not.
    let out = vigil(&dir, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at vigil.db"));
    assert!(!dir.join("vigil.db").exists(), "nothing created by a status query");

    let out = vigil(&dir, &["--database-url", "postgresql://app:topsecret@127.0.0.1:1/x", "health"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("topsecret"), "password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::write(dir.join("postgres_config.json"), "{ broken").unwrap();
    let out = vigil(&dir, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres_config.json"));
    std::fs::remove_dir_all(dir).ok();
}

// ------------------------------------------------------------------ vigil import

use vigil_persistence::presence::Presence;
use vigil_persistence::shared_state::{Heartbeat, Metric};
use vigil_persistence::testing::TestDb;
use vigil_persistence::{DatabaseConfig, HelpStatus, Severity, SharedState, Store};

pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime").block_on(future)
}

/// `vigil migrate` in `dir`, then a little of everything through the SharedState API.
fn sqlite_database_with_data(dir: &Path) -> std::path::PathBuf {
    let out = vigil(dir, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("vigil.db");
    block_on(async {
        let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await.unwrap());
        state.register_agent("heartbeat_health", "HeartbeatHealthAgent").await.unwrap();
        state.register_agent("ai_help", "AIHelpAgent").await.unwrap();
        state.update_agent_state("ai_help", vigil_persistence::State::Active).await.unwrap();
        state
            .update_agent_heartbeat(
                "heartbeat_health",
                Heartbeat::new().status(vigil_persistence::State::Active).message("ok ✓"),
            )
            .await
            .unwrap();
        state.add_performance_metric(Metric::new("cycle_ms", 12.5).agent("heartbeat_health")).await.unwrap();
        state.set_system_state("thresholds", serde_json::json!({"stale_s": 300, "ü": [1, 2]})).await.unwrap();
        state
            .log_system_event("import_test", Some(serde_json::json!({"k": "v"})), Severity::Warning)
            .await
            .unwrap();
        state.create_help_request("r1", "how?", None).await.unwrap();
        state.respond_to_help_request("r1", "like this", HelpStatus::Complete).await.unwrap();
        state.create_help_request("r2", "still waiting", Some(serde_json::json!({"n": 2}))).await.unwrap();
        state.record_agent_communication("ai_help", "heartbeat_health", "ping", "hello").await.unwrap();
        state.log_llm_conversation(Some("ai_help"), "c1", "q", "a", None).await.unwrap();
    });
    path
}

pub(crate) fn pg_url(db: &TestDb) -> String {
    match db {
        TestDb::Postgres { url, .. } => url.expose().to_owned(),
        TestDb::Sqlite { .. } => unreachable!("TestDb::postgres gives a PostgreSQL database"),
    }
}

#[test]
fn import_copies_an_sqlite_database_into_postgresql_and_verifies_it() {
    let Some(pg) = block_on(TestDb::postgres()) else { return };
    let dir = temp_dir();
    let path = sqlite_database_with_data(&dir);
    let from = format!("sqlite:{}", path.display());
    let to = pg_url(&pg);

    let out = vigil(&dir, &["import", "--from", &from, "--to", &to, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "no progress when stderr is not a terminal");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("import --json prints JSON");
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 9);
    for table in tables {
        assert_eq!(table["matches"], true, "{table}");
        assert_eq!(table["checksum_source"], table["checksum_target"], "{table}");
    }
    let rows = |name: &str| tables.iter().find(|t| t["table"] == name).unwrap()["rows"].as_u64().unwrap();
    assert_eq!(rows("agents"), 2);
    assert_eq!(rows("help_requests"), 2);
    assert_eq!(rows("help_responses"), 1);
    let total: u64 = tables.iter().map(|t| t["rows"].as_u64().unwrap()).sum();
    assert_eq!(report["total_rows"], total);

    // The same agents, by id, on PostgreSQL; new rows continue after the imported ids.
    block_on(async {
        let sqlite = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await.unwrap());
        let postgres = SharedState::direct(pg.store().await);
        assert_eq!(
            postgres.get_registered_agents().await.unwrap(),
            sqlite.get_registered_agents().await.unwrap()
        );
        assert_eq!(postgres.register_agent("third", "Third").await.unwrap().id, 3);
    });

    // Again: the target is no longer empty. One line, exit code 1.
    let out = vigil(&dir, &["import", "--from", &from, "--to", &to]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: ") && stderr.contains("not empty"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // The text report, into a second empty database.
    let Some(pg2) = block_on(TestDb::postgres()) else { return };
    let out = vigil(&dir, &["import", "--from", &from, "--to", &pg_url(&pg2)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("imported {total} rows from sqlite:")), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.ends_with(" yes")).count(), 9, "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn import_rejects_bad_sources_and_targets() {
    let dir = temp_dir();
    let missing = dir.join("missing.db");
    let to = "postgresql://app:topsecret@127.0.0.1:1/x";

    // A missing source is an error, and is not created.
    let out = vigil(&dir, &["import", "--from", &format!("sqlite:{}", missing.display()), "--to", to]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"), "{:?}", out);
    assert!(!missing.exists(), "the source must not be created");

    // A file that is not an SQLite database.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, "not a database at all").unwrap();
    let out = vigil(&dir, &["import", "--from", &format!("sqlite:{}", junk.display()), "--to", to]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an SQLite database"));

    // Wrong kinds of URL are usage errors; the password never shows.
    let path = sqlite_database_with_data(&dir);
    let from = format!("sqlite:{}", path.display());
    for (from, to) in
        [(from.as_str(), "sqlite:other.db"), (to, to), (from.as_str(), "http://app:topsecret@h/x")]
    {
        let out = vigil(&dir, &["import", "--from", from, "--to", to]);
        assert_eq!(out.status.code(), Some(2), "{from} -> {to}: {out:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("topsecret"));
    }
    let out = vigil(&dir, &["import", "--to", to]);
    assert_eq!(out.status.code(), Some(2), "--from is required");

    // An unreachable server: a runtime error, one line, no password.
    let out = vigil(&dir, &["import", "--from", &from, "--to", to]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: ") && !stderr.contains("topsecret"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

/// Day counts and durations beyond a hundred years are usage errors that name the
/// range, from the command line and from vigil.json alike; none of them panics.
#[test]
fn out_of_range_days_and_durations_are_usage_errors() {
    let dir = temp_dir();
    assert!(vigil(&dir, &["migrate"]).status.success());
    for args in [
        &["cleanup", "--days", "100000000"][..],
        &["cleanup", "--days", "4294967295"],
        &["metrics", "--since", "99999999d"],
    ] {
        let out = vigil(&dir, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("36500"), "{args:?} names the range: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
    std::fs::write(dir.join("vigil.json"), r#"{"retention": {"days": 4294967295}}"#).unwrap();
    let out = vigil(&dir, &["run", "--for", "1s", "--no-status"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("retention.days: at most 36500"), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

/// A reader that stops early (`vigil events | head -1`) ends the command quietly with
/// success, as coreutils do: no panic, no error.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::process::Stdio;
    let dir = temp_dir();
    assert!(vigil(&dir, &["migrate"]).status.success());
    for args in [&["status"][..], &["events"], &["metrics"], &["health"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .current_dir(&dir)
            .env_remove("POSTGRES_CONNECTION_STRING")
            .env_remove("USE_POSTGRESQL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vigil");
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().expect("wait");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {said}", out.status);
        assert!(said.trim().is_empty(), "{args:?} said nothing: {said}");
    }
    std::fs::remove_dir_all(dir).ok();
}

// ------------------------------------------------------------------ conventions

/// `vigil help` and `vigil help run` work as in cargo and git; every command's summary
/// in `vigil --help` is one line.
#[test]
fn help_is_the_help_subcommand_and_summaries_are_one_line() {
    let dir = temp_dir();
    let top = vigil(&dir, &["help"]);
    assert_eq!(top.status.code(), Some(0), "{top:?}");
    let text = String::from_utf8_lossy(&top.stdout);
    assert_eq!(text, String::from_utf8_lossy(&vigil(&dir, &["--help"]).stdout), "help = --help");
    let commands: Vec<&str> =
        text.lines().skip_while(|l| *l != "Commands:").skip(1).take_while(|l| !l.trim().is_empty()).collect();
    assert!(commands.len() >= 13, "{text}");
    for line in &commands {
        // `  name  Summary`: a command on each line, none continued on the next.
        let mut words = line.split_whitespace();
        let (name, summary) = (words.next().unwrap(), words.collect::<Vec<_>>().join(" "));
        assert!(line.starts_with("  ") && !line.starts_with("   "), "a continuation line: {line:?}");
        assert!(!summary.is_empty() && line.len() <= 100, "{name}: {line:?}");
    }
    assert!(commands.iter().any(|l| l.trim_start().starts_with("ask ")), "{text}");

    let run = vigil(&dir, &["help", "run"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("Usage: vigil run"), "{run:?}");
    let ask = vigil(&dir, &["help", "ask"]);
    assert!(String::from_utf8_lossy(&ask.stdout).contains("Usage: vigil ask"), "{ask:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// `vigil run --help` names every section of vigil.json, and `--database-url` names
/// everything that chooses the database when it is absent.
#[test]
fn run_help_lists_every_config_section_and_the_database_sources() {
    let dir = temp_dir();
    let out = vigil(&dir, &["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    // The sections, from the configuration type itself: serde lists them for an unknown one.
    let error =
        serde_json::from_str::<vigil::cli::run::PlatformConfig>(r#"{"?": 1}"#).unwrap_err().to_string();
    let sections: Vec<&str> = error.split('`').skip(3).step_by(2).collect();
    assert!(sections.contains(&"retention") && sections.len() >= 5, "{error}");
    for section in sections {
        assert!(help.contains(section), "`vigil run --help` does not name `{section}`: {help}");
    }
    for name in ["POSTGRES_CONNECTION_STRING", "postgres_config.json", "USE_POSTGRESQL"] {
        assert!(help.contains(name), "--database-url's help does not name {name}: {help}");
        let short = String::from_utf8_lossy(&vigil(&dir, &["run", "-h"]).stdout).into_owned();
        assert!(short.contains(name), "-h does not name {name}: {short}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Negative numbers and durations on the command line say "must be positive".
#[test]
fn negative_values_must_be_positive() {
    let dir = temp_dir();
    for args in [
        &["cleanup", "--days", "-5"][..],
        &["metrics", "--since", "-5m"],
        &["metrics", "--limit", "-1"],
        &["events", "--limit", "-1"],
        &["workflows", "--limit", "0"],
        &["slow-queries", "--min-ms", "-3"],
        &["run", "--for", "-5s"],
        &["agent", "restart", "x", "--timeout", "-1s"],
        &["ask", "why?", "--timeout", "-1"],
    ] {
        let out = vigil(&dir, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("must be positive"), "{args:?}: {said}");
        assert!(!said.contains("unexpected argument"), "{args:?}: {said}");
    }
    assert!(!dir.join("vigil.db").exists());
    std::fs::remove_dir_all(dir).ok();
}

/// A malformed URL is bad usage (exit code 2) whichever source it came from, an empty
/// one says it is empty, and no message shows the password.
#[test]
fn malformed_and_empty_urls_are_usage_errors_from_every_source() {
    let dir = temp_dir();
    let from = "sqlite:some.db";
    let with_env = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .current_dir(&dir)
            .env("POSTGRES_CONNECTION_STRING", url)
            .env_remove("USE_POSTGRESQL")
            .output()
            .expect("run vigil")
    };
    let cases: Vec<(Output, &str)> = vec![
        (
            vigil(&dir, &["--database-url", "postgresql://app:s3cret@host:99999/x", "status"]),
            "--database-url",
        ),
        (vigil(&dir, &["--database-url", "mysql://app:s3cret@host/x", "status"]), "--database-url"),
        (vigil(&dir, &["--database-url", "not a url", "health"]), "--database-url"),
        (vigil(&dir, &["import", "--from", from, "--to", "postgresql://app:s3cret@[::1/x"]), "--to"),
        (vigil(&dir, &["import", "--from", from, "--to", "http://app:s3cret@host/x"]), "--to"),
        (
            vigil(&dir, &["import", "--from", "postgresql://app:s3cret@h/x", "--to", "postgresql://h/x"]),
            "--from",
        ),
        (with_env("postgresql://app:s3cret@host:99999/x", &["status"]), "POSTGRES_CONNECTION_STRING"),
        (with_env("mysql://app:s3cret@host/x", &["events"]), "POSTGRES_CONNECTION_STRING"),
    ];
    for (out, source) in &cases {
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{source}: {said}");
        assert!(said.contains(source), "{source} is named: {said}");
        assert!(!said.contains("s3cret"), "password leaked: {said}");
    }
    for (args, source) in [
        (&["--database-url", "", "status"][..], "--database-url"),
        (&["--database-url", "  ", "migrate"], "--database-url"),
        (&["--database-url", "sqlite:", "migrate"], "--database-url"),
        (&["import", "--from", "", "--to", "postgresql://h/x"], "--from"),
        (&["import", "--from", from, "--to", ""], "--to"),
    ] {
        let out = vigil(&dir, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(source) && said.contains("the URL is empty"), "{args:?}: {said}");
    }
    // An empty POSTGRES_CONNECTION_STRING counts as unset: the embedded default.
    let out = with_env("", &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("vigil.db"), "{out:?}");
    // A URL typed where no value belongs is quoted without its password.
    let out = vigil(&dir, &["status", "postgresql://app:s3cret@db/x"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("postgresql://app:***@db/x") && !said.contains("s3cret"), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

/// `vigil ask` with the question on standard input.
fn ask_with_stdin(dir: &Path, args: &[&str], input: Vec<u8>) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vigil");
    let mut stdin = child.stdin.take().unwrap();
    // vigil stops reading past its limit: a write that finds the pipe closed is expected.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// `vigil ask -` (or no argument, stdin not a terminal) reads the question from
/// standard input: a 1 MB question is filed whole; one past the 16 MiB limit of a help
/// request's text is refused with the limit, exit code 2, before any database is read.
#[test]
fn ask_reads_the_question_from_stdin_within_the_text_limit() {
    let dir = temp_dir();
    assert!(vigil(&dir, &["migrate"]).status.success());
    // `ask` refuses at once when no platform runs; this test process stands in for one
    // (its presence is genuine: the process is alive), so the question is filed.
    block_on(async {
        let state =
            SharedState::direct(Store::connect(DatabaseConfig::sqlite(dir.join("vigil.db"))).await.unwrap());
        let presence = Presence::new(Presence::new_node_id(), 0);
        state.record_presence(&presence).await.unwrap();
    });
    let megabyte: String = "why is the sky blue? ".chars().cycle().take(1 << 20).collect();
    for args in [&["ask", "-", "--timeout", "200ms"][..], &["ask", "--timeout", "200ms"]] {
        let out = ask_with_stdin(&dir, args, megabyte.clone().into_bytes());
        let said = String::from_utf8_lossy(&out.stderr);
        // The stand-in platform runs no help agent: the question is filed, and nobody answers it.
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("no answer within"), "{args:?}: {said}");
    }
    let asked = block_on(async {
        let state =
            SharedState::direct(Store::connect(DatabaseConfig::sqlite(dir.join("vigil.db"))).await.unwrap());
        state.get_pending_help_requests().await.unwrap()
    });
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|r| r.query == megabyte), "the question arrives whole");

    let too_long = vec![b'?'; (16 << 20) + 1];
    let out = ask_with_stdin(&dir, &["ask", "-"], too_long);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("longer than 16 MiB"), "{said}");
    for (input, message) in [(b"  \n".to_vec(), "the question is empty"), (vec![0xff, 0xfe], "not UTF-8")] {
        let out = ask_with_stdin(&dir, &["ask", "-"], input);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains(message), "{said}");
    }
    std::fs::remove_dir_all(dir).ok();
}
