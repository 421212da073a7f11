//! `vigil workflow ...` against `vigil run` with a workflows folder: check, submit,
//! show, approve, cancel, resume through the database from "another shell", a bad
//! folder refusing to start, and a kill -9 in the middle of a run — restarted, the run
//! goes on from its checkpoint and no completed node's side effect is repeated (the
//! local server counts them).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{temp_dir, vigil};
use crate::run::{DEADLINE, spawn_run, stop_with_sigterm, wait_for_active};

/// A local HTTP server counting requests by path; `answer(path)` is the JSON reply.
fn counting_server(answer: fn(&str) -> String) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let seen = counts.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let length: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.read_exact(&mut body);
            let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
            let reply = answer(&path);
            *seen.lock().unwrap().entry(path).or_insert(0) += 1;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, counts)
}

fn relay(base: &str) -> Value {
    json!({
        "name": "relay", "version": "1", "start": "record", "inputs": ["x"],
        "nodes": [
            {"name": "record", "kind": "http", "method": "POST", "url": format!("{base}/record"), "body": {"x": "{{x}}"}, "output": "recorded"},
            {"name": "slow", "kind": "command", "program": "sh",
             "args": ["-c", "cat >/dev/null; echo run >> slow.log; sleep 3; echo '{\"slow\": true}'"], "outputs": ["slow"]},
            {"name": "gate", "kind": "approval"},
            {"name": "done", "kind": "http", "url": format!("{base}/done"), "output": "finished"}
        ],
        "edges": [
            {"from": "record", "to": "slow"}, {"from": "slow", "to": "gate"},
            {"from": "gate", "to": "done"}, {"from": "done", "to": "end"}
        ]
    })
}

fn show(dir: &Path, run: &str) -> Value {
    let out = vigil(dir, &["workflow", "show", run, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until run `run` is `status`; a run that ends otherwise fails at once, with its error.
fn wait_run(dir: &Path, run: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for(&format!("{run} {status}"), || {
        last = show(dir, run);
        let now = last["status"].as_str().unwrap_or_default().to_owned();
        let ended = ["completed", "failed", "cancelled", "rejected"].contains(&now.as_str());
        assert!(now == status || !ended, "run {run} ended {now}, not {status}: {}", last["error"]);
        now == status
    });
    last
}

fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vigil(dir, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = vigil(dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn check_reports_every_problem_and_a_bad_folder_stops_the_platform_at_start() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    let mut bad = relay("http://127.0.0.1:9");
    bad["nodes"][2]["kind"] = json!("sms");
    bad["edges"][3]["to"] = json!("nowhere");
    std::fs::write(dir.join("flows/relay.json"), bad.to_string()).unwrap();
    let stderr = fails(&dir, &["workflow", "check", "flows/relay.json"]);
    assert!(stderr.contains("flows/relay.json: node `gate`: unknown kind `sms`"), "{stderr}");
    assert!(stderr.contains("flows/relay.json: node `done`: an edge goes to `nowhere`"), "{stderr}");
    std::fs::write(dir.join("vigil.json"), r#"{"langgraph": {"workflows_dir": "flows"}}"#).unwrap();
    let stderr = fails(&dir, &["run", "--for", "1s", "--no-status"]);
    assert!(stderr.contains("langgraph.workflows_dir") && stderr.contains("unknown kind `sms`"), "{stderr}");
    std::fs::write(dir.join("flows/relay.json"), relay("http://127.0.0.1:9").to_string()).unwrap();
    let stdout = ok(&dir, &["workflow", "check", "flows/relay.json"]);
    assert!(stdout.contains("workflow `relay` version 1+") && stdout.contains("(4 nodes): ok"), "{stdout}");
}

#[test]
fn a_run_survives_kill_9_without_repeating_completed_nodes_and_is_operated_from_the_cli() {
    let (base, counts) = counting_server(|_| r#"{"ok": true}"#.into());
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("flows/relay.json"), relay(&base).to_string()).unwrap();
    std::fs::write(dir.join("vigil.json"), r#"{"langgraph": {"workflows_dir": "flows"}}"#).unwrap();
    let count = |path: &str| counts.lock().unwrap().get(path).copied().unwrap_or(0);
    let slow_runs =
        || std::fs::read_to_string(dir.join("flows/slow.log")).unwrap_or_default().lines().count();

    let mut platform = spawn_run(&dir, &["--no-status"]);
    wait_for_active(&dir, &[], 10);
    let out = ok(&dir, &["workflow", "submit", "relay", "--input", r#"{"x": 1}"#, "--id", "k1"]);
    assert!(out.contains("submitted run k1 of relay@1+"), "{out}");
    // Killed while `slow` runs: `record` is checkpointed, `slow` is not.
    wait_for("slow running", || slow_runs() == 1);
    platform.kill().expect("kill -9");
    platform.wait().unwrap();
    assert_eq!(show(&dir, "k1")["step"], 1);

    let mut platform = spawn_run(&dir, &["--no-status"]);
    wait_run(&dir, "k1", "waiting");
    assert_eq!(count("/record"), 1, "the completed http node was not repeated");
    assert_eq!(slow_runs(), 2, "the command in flight when the platform died ran again");
    let stderr = fails(&dir, &["workflow", "resume", "k1"]);
    assert!(stderr.contains("run k1 is waiting, not failed"), "{stderr}");
    ok(&dir, &["workflow", "approve", "k1"]);
    let run = wait_run(&dir, "k1", "completed");
    assert_eq!((run["step"].clone(), run["state"]["finished"]["status"].clone()), (json!(4), json!(200)));
    assert_eq!((count("/record"), count("/done")), (1, 1));
    // The `slow` that died with the platform left no history line; its re-run did.
    let history = run["history"].as_array().unwrap();
    let nodes: Vec<&str> =
        history.iter().map(|s| s["node"].as_str().unwrap()).filter(|n| *n != "operator").collect();
    assert_eq!(nodes, ["record", "slow", "gate", "done"]);
    let decisions: Vec<&str> =
        history.iter().filter(|s| s["node"] == "operator").map(|s| s["outcome"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["approved"], "the operator's decision is in the history");
    let text = ok(&dir, &["workflow", "show", "k1"]);
    assert!(
        text.contains("run k1 of relay@1+") && text.contains("completed, step 4") && text.contains("gate"),
        "{text}"
    );

    let stderr = fails(&dir, &["workflow", "approve", "nope"]);
    assert!(stderr.contains("no workflow run `nope`"), "{stderr}");
    let stderr = fails(&dir, &["workflow", "submit", "relay", "--input", "[1]"]);
    assert!(stderr.contains("must be a JSON object"), "{stderr}");
    ok(&dir, &["workflow", "submit", "relay", "--input", r#"{"x": 2}"#, "--id", "k2"]);
    let out = ok(&dir, &["workflow", "cancel", "k2"]);
    assert!(out.contains("run k2 cancelled"), "{out}");
    let workflows = ok(&dir, &["workflows", "--status", "cancelled"]);
    assert!(workflows.contains("k2"), "{workflows}");
    stop_with_sigterm(&mut platform, &dir.join("run.log"));
    // With no platform running, a run is still submitted, and the command says when it will run.
    let out = vigil(&dir, &["workflow", "submit", "relay", "--input", r#"{"x": 3}"#, "--id", "k3"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no platform runs on this database now"), "{stderr}");
    assert_eq!(show(&dir, "k3")["status"], "pending");
    // `--input -` reads the input from standard input.
    let mut submit = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["workflow", "submit", "relay", "--input", "-", "--id", "k4"])
        .current_dir(&dir)
        .env_remove("POSTGRES_CONNECTION_STRING")
        .env_remove("USE_POSTGRESQL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    submit.stdin.take().unwrap().write_all(br#"{"x": "from stdin"}"#).unwrap();
    assert!(submit.wait().unwrap().success());
    assert_eq!(show(&dir, "k4")["state"]["x"], "from stdin");
}

/// The example folder as shipped, its endpoints moved to a local server that also
/// plays the OpenAI-compatible model: submitted, approved, run to its end.
#[test]
fn the_example_triage_workflow_runs_end_to_end() {
    let (base, counts) = counting_server(|path| match path {
        "/v1/chat/completions" => json!({"model": "fake", "choices": [{"message": {"role": "assistant",
            "content": "{\"urgent\": true, \"reason\": \"a full disk stops writes\"}"}}]})
        .to_string(),
        ticket => {
            std::fs::read_to_string(format!("{}/examples/workflows{ticket}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_else(|_| "{}".into())
        }
    });
    let dir = temp_dir();
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workflows");
    assert!(ok(&dir, &["workflow", "check", example.join("triage.json").to_str().unwrap()]).contains("ok"));
    let triage = std::fs::read_to_string(example.join("triage.json")).unwrap();
    std::fs::write(flows.join("triage.json"), triage.replace("http://127.0.0.1:8765", &base)).unwrap();
    std::fs::copy(example.join("page.sh"), flows.join("page.sh")).unwrap();
    let config = json!({"langgraph": {"workflows_dir": "flows"}, "ai_help": {"openai": {"base_url": base, "api_key": "sk-test"}}});
    std::fs::write(dir.join("vigil.json"), config.to_string()).unwrap();

    let mut platform = spawn_run(&dir, &["--no-status"]);
    wait_for_active(&dir, &[], 10);
    ok(&dir, &["workflow", "submit", "triage", "--input", r#"{"ticket_id": "42"}"#, "--id", "t42"]);
    let waiting = wait_run(&dir, "t42", "waiting");
    assert_eq!(waiting["state"]["classification"]["urgent"], true);
    ok(&dir, &["workflow", "approve", "t42"]);
    let run = wait_run(&dir, "t42", "completed");
    assert_eq!(
        (run["state"]["paged"].clone(), run["state"]["page_id"].clone()),
        (json!(true), json!("page-42"))
    );
    assert_eq!(std::fs::read_to_string(flows.join("pages.log")).unwrap(), "ticket 42\n");
    assert_eq!(counts.lock().unwrap().get("/tickets/42.json"), Some(&1));
    stop_with_sigterm(&mut platform, &dir.join("run.log"));
}
