//! The dashboard in a real browser: headless Chromium, driven over WebDriver
//! (fantoccini and Debian's `chromedriver`), loads the page of a running `vigil run
//! --http`, waits until it shows the ten built-in agents active and running, restarts
//! one through the API (a `fetch` from the page itself, with the operator token) and
//! waits for the restart's events to appear in the live feed without a reload. It saves
//! a screenshot as an artifact (`target/browser-artifacts/dashboard.png`); with
//! `VIGIL_UPDATE_SCREENSHOT=1` it also refreshes the README's `docs/dashboard.png`.
//!
//! Without Chromium it skips with a loud message, except under `REQUIRE_BROWSER=1`
//! (`.ci/run` sets it and installs the packages), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::run::{DEADLINE, spawn_run_with_env, stop_with_sigterm};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN_VARIABLE: &str = "VIGIL_BROWSER_TEST_TOKEN";
const TOKEN: &str = "browser-test-operator-token";

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether the browser and its driver are installed; when they are not, `false` after
/// a loud message, or a failure under `REQUIRE_BROWSER=1`.
fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message =
        format!("{CHROMIUM} or {CHROMEDRIVER} is missing (Debian packages chromium and chromium-driver)");
    assert!(std::env::var_os("REQUIRE_BROWSER").is_none(), "REQUIRE_BROWSER is set: {message}");
    eprintln!("\n!!! SKIPPED the browser test: {message}; `.ci/run` installs them !!!\n");
    false
}

/// `chromedriver` on its own port, killed on drop.
struct Driver {
    process: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Self { process, url: format!("http://127.0.0.1:{port}") }
    }

    /// A headless Chromium session, retried until the driver listens.
    async fn session(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                // No sandbox: CI runs as root, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let started = Instant::now();
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&self.url).await {
                Ok(client) => return client,
                Err(e) => assert!(started.elapsed() < DEADLINE, "no WebDriver session: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.process.kill().ok();
        self.process.wait().ok();
    }
}

/// Evaluates `script` (a function body that `return`s JSON) in the page.
async fn eval(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Evaluates `script` until `done` accepts its value, within [`DEADLINE`]; what it
/// saw last is in the failure.
async fn wait_until(client: &Client, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let value = eval(client, script).await;
        if done(&value) {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "the page never showed {what}; last: {value}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The agents table as the page shows it: `[{id, state, liveness}]`.
const AGENTS: &str = r#"return Array.from(document.querySelectorAll('#agents tr[data-agent]')).map(row =>
    ({id: row.dataset.agent, state: row.dataset.state, liveness: row.dataset.liveness}));"#;

/// The live feed: `[{id, type, text}]`, newest first.
const EVENTS: &str = r#"return Array.from(document.querySelectorAll('#events li[data-event-id]')).map(item =>
    ({id: Number(item.dataset.eventId), type: item.dataset.eventType, text: item.textContent}));"#;

fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("browser-artifacts")
}

#[actix_rt::test]
async fn the_dashboard_shows_the_platform_live_in_a_browser() {
    if !browser_available() {
        return;
    }
    let dir = crate::cli::temp_dir();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut platform = spawn_run_with_env(
        &dir,
        &["--for", "300s", "--no-status", "--http", &addr, "--http-token-env", TOKEN_VARIABLE],
        &[(TOKEN_VARIABLE, TOKEN)],
    );
    let driver = Driver::start();
    let client = driver.session().await;

    // The page loads (retried while the service starts) and reaches every agent.
    let base = format!("http://{addr}/");
    let started = Instant::now();
    while client.goto(&base).await.is_err()
        || eval(&client, "return document.getElementById('agents') !== null;").await != json!(true)
    {
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        assert!(platform.try_wait().unwrap().is_none(), "vigil run exited: {log}");
        assert!(started.elapsed() < DEADLINE, "the dashboard never loaded: {log}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let agents = wait_until(&client, "ten agents active and running", AGENTS, |agents| {
        let agents = agents.as_array().map(Vec::as_slice).unwrap_or_default();
        agents.len() == 10 && agents.iter().all(|a| a["state"] == "active" && a["liveness"] == "running")
    })
    .await;
    assert!(agents.as_array().unwrap().iter().any(|a| a["id"] == "heartbeat_health"), "{agents}");
    wait_until(
        &client,
        "the live stream connected",
        "return document.getElementById('connection').textContent;",
        |text| text.as_str().is_some_and(|t| t.contains("live")),
    )
    .await;

    // A restart from the page; its events arrive in the feed with no reload.
    eval(&client, "window.__notReloaded = true; return null;").await;
    let newest_before = eval(&client, EVENTS).await[0]["id"].as_i64().unwrap_or(0);
    let restart = eval(
        &client,
        &format!(
            "return fetch('/api/v1/agents/performance_monitor/restart', {{method: 'POST', \
             headers: {{Authorization: 'Bearer {TOKEN}'}}}}).then(r => r.status);"
        ),
    )
    .await;
    assert_eq!(restart, json!(200), "the operator restart was refused");
    let events = wait_until(&client, "the restart's events in the live feed", EVENTS, |events| {
        events.as_array().into_iter().flatten().any(|e| {
            e["id"].as_i64().unwrap_or(0) > newest_before
                && e["type"] == "state_transition"
                && e["text"].as_str().is_some_and(|t| t.contains("performance_monitor"))
        })
    })
    .await;
    assert_eq!(
        eval(&client, "return window.__notReloaded === true;").await,
        json!(true),
        "the page reloaded"
    );
    wait_until(&client, "performance_monitor active again", AGENTS, |agents| {
        agents
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["id"] == "performance_monitor" && a["state"] == "active")
    })
    .await;

    // The screenshot: an artifact of every run, the README's picture on request.
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::create_dir_all(artifact_dir()).unwrap();
    std::fs::write(artifact_dir().join("dashboard.png"), &png).unwrap();
    if std::env::var_os("VIGIL_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join("dashboard.png");
        std::fs::write(docs, &png).unwrap();
    }
    eprintln!(
        "{} events in the feed; screenshot in {}",
        events.as_array().map_or(0, Vec::len),
        artifact_dir().display()
    );

    client.close().await.ok();
    drop(driver);
    stop_with_sigterm(&mut platform, &dir.join("run.log"));
    std::fs::remove_dir_all(dir).ok();
}
