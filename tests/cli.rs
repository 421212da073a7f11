//! The `vigil` binary on the embedded default.

use std::path::Path;
use std::process::{Command, Output};

fn vigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .output()
        .expect("run vigil")
}

fn temp_dir() -> std::path::PathBuf {
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

    let out = vigil(&dir, &["health", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health --json prints JSON");
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["tables"].as_array().unwrap().len(), 9);

    let out = vigil(&dir, &["status"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no agents registered");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_usage_exits_2_and_runtime_errors_exit_1_on_one_line() {
    let dir = temp_dir();
    let out = vigil(&dir, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));

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
