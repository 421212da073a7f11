//! Alert delivery (`vigil::alerts`) against a local HTTP receiver, on SQLite and on
//! PostgreSQL when a server is there: a silent agent gives one `firing` and one
//! `resolved`; a receiver answering 500 is retried and every attempt recorded; a
//! receiver that hangs delays nothing else; repeats of an event fold into one alert;
//! bad configurations are typed errors that show no secret. Waits poll with a
//! deadline; absence is asserted after a later alert has arrived, never after a sleep.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::alerts::{AlertConfigError, Alerter, AlertsConfig, WebhookConfig, WebhookFormat};
use vigil_persistence::shared_state::{Heartbeat, Writer};
use vigil_persistence::testing::TestDb;
use vigil_persistence::{PersistenceActor, Severity, SharedState, State, Store};
use vigil_runtime::{Agent, AgentContext, AgentResult, ChildSpec, Runtime};

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "ticker", cycle = "100ms", heartbeat = "1s")]
struct Ticker;

impl Agent for Ticker {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

/// How a [`Receiver`] answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Reads the request and never answers.
    Hang,
}

/// A local webhook: records every request's body (and headers), answers per [`Answer`].
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    headers: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?token=s3cret-query", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bodies.clone(), headers.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (b, h, seen) = (b.clone(), h.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut socket).await else { return };
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    h.lock().unwrap().push(head);
                    b.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let status = match answer {
                        Answer::Hang => return std::future::pending::<()>().await,
                        Answer::FailFirst(k) if n < k => "500 Internal Server Error",
                        _ => "200 OK",
                    };
                    let reply =
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { url, bodies, headers }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The bodies about incident `key` with `status`.
    fn about(&self, key: &str, status: &str) -> Vec<Value> {
        self.bodies().into_iter().filter(|b| b["incident"]["key"] == key && b["status"] == status).collect()
    }

    async fn wait_for(&self, key: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            if let Some(body) = self.about(key, status).into_iter().next() {
                return body;
            }
            assert!(started.elapsed() < DEADLINE, "no {status} for {key}; got {:?}", self.bodies());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One HTTP/1.1 request: its head and its body (by `content-length`).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            return Some((head, data[end + 4..end + 4 + length].to_vec()));
        }
    }
}

/// A runtime with one ticker (the platform's presence, the writer) over `store`.
async fn start_runtime(store: Store) -> (Runtime, SharedState) {
    let writer = PersistenceActor::start(store.clone(), Default::default());
    let shared = SharedState::with_writer(store, Writer::Actor(writer));
    let runtime = Runtime::builder(shared.clone())
        .child(ChildSpec::agent("ticker", Ticker::default))
        .start()
        .await
        .expect("runtime starts");
    (runtime, shared)
}

fn webhook(name: &str, receiver: &Receiver, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig::new(name, &receiver.url, format).unwrap()
}

/// Small intervals, quick retries.
fn config(webhooks: Vec<WebhookConfig>) -> AlertsConfig {
    let mut config = AlertsConfig {
        webhooks,
        evaluate_interval: Duration::from_millis(100),
        dedup_window: Duration::from_secs(1),
        shutdown_grace: Duration::from_millis(300),
        ..AlertsConfig::default()
    };
    config.retry.base_backoff = Duration::from_millis(50);
    config.retry.max_backoff = Duration::from_millis(200);
    config
}

/// Starts an alerter and waits until it leads and has placed its event cursor.
async fn start_alerter(shared: &SharedState, config: AlertsConfig, node: &str) -> Alerter {
    let alerter = Alerter::start(shared.clone(), config, node).expect("alerter starts");
    let started = Instant::now();
    while !(alerter.is_leading() && alerter.passes() >= 1) {
        assert!(started.elapsed() < DEADLINE, "the alerter never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alerter
}

/// Logs a critical event `event_type` about `agent` (committed).
async fn critical(shared: &SharedState, event_type: &str, agent: &str) {
    shared
        .log_system_event(event_type, Some(json!({ "agent_id": agent })), Severity::Critical)
        .await
        .unwrap();
}

/// Every database: SQLite, and PostgreSQL when a server is there.
async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    dbs.extend(TestDb::postgres().await);
    dbs
}

#[actix_rt::test]
async fn a_silent_agent_gives_one_firing_and_one_resolved() {
    for db in databases().await {
        let (runtime, shared) = start_runtime(db.store().await).await;
        let json_hook = Receiver::start(Answer::Ok).await;
        let slack_hook = Receiver::start(Answer::Ok).await;
        let alerter = start_alerter(
            &shared,
            config(vec![
                webhook("ops", &json_hook, WebhookFormat::Json),
                webhook("chat", &slack_hook, WebhookFormat::Slack),
            ]),
            runtime.node_id(),
        )
        .await;
        // The probe heartbeats by hand, as an agent of this node beating every 200 ms.
        shared.register_agent("probe", "Probe").await.unwrap();
        let beating = Arc::new(AtomicBool::new(true));
        let (s, b, node) = (shared.clone(), beating.clone(), runtime.node_id().to_owned());
        let heart = tokio::spawn(async move {
            loop {
                if b.load(Ordering::SeqCst) {
                    let uptime = json!({ "node": node, "heartbeat_interval_secs": 0.2 });
                    let _ = s
                        .update_agent_heartbeat(
                            "probe",
                            Heartbeat::new().status(State::Active).uptime(uptime),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });

        let started = Instant::now();
        loop {
            let report = shared.liveness().await.unwrap();
            let probe = report.agents.iter().find(|a| a.agent_id == "probe");
            if probe.is_some_and(|p| p.liveness == vigil_persistence::presence::Liveness::Running) {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "the probe never ran: {probe:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        beating.store(false, Ordering::SeqCst);
        let firing = json_hook.wait_for("agent_silent:probe", "firing").await;
        assert_eq!(firing["incident"]["rule"], "agent_silent");
        assert_eq!(firing["incident"]["subject"], "probe");
        assert_eq!(firing["incident"]["severity"], "critical");
        assert!(firing["incident"]["started_at"].is_string() && firing["incident"]["resolved_at"].is_null());
        assert!(firing["event"].is_null());
        assert_eq!(firing["vigil"]["node"], runtime.node_id());
        let slack = slack_hook.wait_for_text("probe").await;
        assert!(slack["text"].as_str().unwrap().contains("FIRING"), "{slack}");

        beating.store(true, Ordering::SeqCst);
        let resolved = json_hook.wait_for("agent_silent:probe", "resolved").await;
        assert!(resolved["incident"]["resolved_at"].is_string());
        // A later alert proves more passes ran: still one of each for the probe.
        critical(&shared, "marker", "m").await;
        json_hook.wait_for("event:marker/m", "firing").await;
        assert_eq!(json_hook.about("agent_silent:probe", "firing").len(), 1, "{:?}", json_hook.bodies());
        assert_eq!(json_hook.about("agent_silent:probe", "resolved").len(), 1, "{:?}", json_hook.bodies());

        heart.abort();
        alerter.shutdown().await;
        runtime.shutdown().await;
    }
}

impl Receiver {
    /// The first Slack body whose `text` mentions `needle`.
    async fn wait_for_text(&self, needle: &str) -> Value {
        let started = Instant::now();
        loop {
            let found =
                self.bodies().into_iter().find(|b| b["text"].as_str().is_some_and(|t| t.contains(needle)));
            if let Some(body) = found {
                assert!(body["blocks"].is_array(), "{body}");
                return body;
            }
            assert!(started.elapsed() < DEADLINE, "no Slack text about {needle}: {:?}", self.bodies());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[actix_rt::test]
async fn a_receiver_answering_500_is_retried_and_every_attempt_recorded() {
    for db in databases().await {
        let (runtime, shared) = start_runtime(db.store().await).await;
        let flaky = Receiver::start(Answer::FailFirst(2)).await;
        let mut hook = webhook("flaky", &flaky, WebhookFormat::Json);
        hook.headers.insert("Authorization".into(), "Bearer h3ader-secret".into());
        let alerter = start_alerter(&shared, config(vec![hook]), runtime.node_id()).await;

        critical(&shared, "disk_full", "w1").await;
        flaky.wait_for("event:disk_full/w1", "firing").await;
        assert!(
            flaky.headers.lock().unwrap().iter().all(|h| h.contains("authorization: bearer h3ader-secret"))
        );
        let started = Instant::now();
        let rows = loop {
            let rows: Vec<_> = shared
                .recent_alert_deliveries(50)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.incident_key == "event:disk_full/w1" && r.status == "firing")
                .collect();
            if rows.len() >= 3 {
                break rows;
            }
            assert!(started.elapsed() < DEADLINE, "attempts recorded: {rows:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut rows = rows;
        rows.reverse();
        let seen: Vec<_> = rows.iter().map(|r| (r.attempt, r.outcome.as_str(), r.http_status)).collect();
        assert_eq!(seen, [(1, "failed", Some(500)), (2, "failed", Some(500)), (3, "delivered", Some(200))]);
        assert!(rows.iter().all(|r| r.webhook_name == "flaky" && r.duration_ms >= 0));
        let recorded = format!("{rows:?}");
        assert!(!recorded.contains("s3cret-query") && !recorded.contains("h3ader-secret"), "{recorded}");
        assert_eq!(flaky.about("event:disk_full/w1", "firing").len(), 3, "three requests, one per attempt");
        let stats = &alerter.stats()[0];
        assert_eq!((stats.delivered, stats.failed_attempts, stats.gave_up), (1, 2, 0));
        served_by_http(&shared, &alerter).await;

        alerter.shutdown().await;
        // The records are history: the retention cleanup removes them with the rest.
        let cutoff = vigil_persistence::types::Ts::from(chrono::Utc::now() + chrono::Duration::seconds(1));
        assert!(shared.cleanup_before(cutoff).await.unwrap().alert_deliveries >= 3);
        assert!(shared.recent_alert_deliveries(50).await.unwrap().is_empty());
        runtime.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_hanging_receiver_slows_nothing_else() {
    for db in databases().await {
        let (runtime, shared) = start_runtime(db.store().await).await;
        let hanging = Receiver::start(Answer::Hang).await;
        let healthy = Receiver::start(Answer::Ok).await;
        let mut config = config(vec![
            webhook("hanging", &hanging, WebhookFormat::Json),
            webhook("healthy", &healthy, WebhookFormat::Json),
        ]);
        config.timeout = Duration::from_secs(60);
        let alerter = start_alerter(&shared, config, runtime.node_id()).await;

        critical(&shared, "first", "a").await;
        healthy.wait_for("event:first/a", "firing").await;
        let started = Instant::now();
        while hanging.bodies().is_empty() {
            assert!(started.elapsed() < DEADLINE, "the hanging receiver was never called");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The hanging webhook holds its request; alerts and writes go on.
        let committed = shared.writer_stats().unwrap().writes_committed;
        for n in 0..5 {
            critical(&shared, "next", &format!("n{n}")).await;
            healthy.wait_for(&format!("event:next/n{n}"), "firing").await;
        }
        let started = Instant::now();
        while shared.writer_stats().unwrap().writes_committed < committed + 20 {
            assert!(started.elapsed() < DEADLINE, "the writer stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hanging.bodies().len(), 1, "still the first request, unanswered");
        assert_eq!(alerter.stats()[0].delivered, 0);
        // Shutdown is bounded by the grace, not by the hanging request's timeout.
        tokio::time::timeout(DEADLINE, alerter.shutdown()).await.expect("shutdown is bounded");
        runtime.shutdown().await;
    }
}

#[actix_rt::test]
async fn repeats_of_an_event_inside_the_window_give_one_alert() {
    for db in databases().await {
        let (runtime, shared) = start_runtime(db.store().await).await;
        let hook = Receiver::start(Answer::Ok).await;
        let mut config = config(vec![webhook("ops", &hook, WebhookFormat::Json)]);
        // Wide enough that five committed writes in a row fall inside it on any machine.
        config.dedup_window = Duration::from_secs(2);
        let alerter = start_alerter(&shared, config, "node-x").await;

        for _ in 0..5 {
            critical(&shared, "db_timeout", "w9").await;
        }
        let firing = hook.wait_for("event:db_timeout/w9", "firing").await;
        assert_eq!(firing["event"]["event_type"], "db_timeout");
        assert_eq!(firing["incident"]["summary"].as_str().map(|s| s.contains("db_timeout")), Some(true));
        let resolved = hook.wait_for("event:db_timeout/w9", "resolved").await;
        assert_eq!(resolved["incident"]["occurrences"], 5, "{resolved}");
        critical(&shared, "marker", "m").await;
        hook.wait_for("event:marker/m", "firing").await;
        assert_eq!(hook.about("event:db_timeout/w9", "firing").len(), 1, "{:?}", hook.bodies());
        assert_eq!(hook.about("event:db_timeout/w9", "resolved").len(), 1);
        // Below the webhook's min_severity (error): no incident.
        shared.log_system_event("minor", None, Severity::Warning).await.unwrap();
        critical(&shared, "marker2", "m").await;
        hook.wait_for("event:marker2/m", "firing").await;
        assert!(hook.bodies().iter().all(|b| b["incident"]["type"] != "minor"));

        alerter.shutdown().await;
        runtime.shutdown().await;
    }
}

#[test]
fn bad_configurations_are_typed_errors_without_secrets() {
    let parse = |alerts: Value| AlertsConfig::from_json(alerts);
    let hook = |extra: Value| {
        let mut hook = json!({ "name": "ops", "url": "https://user:pa55word@hooks.example/T0/B0/XyZsecretPath?token=qu3ry" });
        hook.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "webhooks": [hook] })
    };
    let secrets = ["pa55word", "XyZsecretPath", "qu3ry", "h3ader-value"];
    let clean = |error: &AlertConfigError| {
        let text = error.to_string();
        assert!(secrets.iter().all(|s| !text.contains(s)), "{text}");
        text
    };

    let ok = parse(hook(json!({ "headers": { "X-Auth": "h3ader-value" } }))).unwrap();
    assert!(!format!("{ok:?}").contains("h3ader-value") && !format!("{ok:?}").contains("XyZsecretPath"));

    let error = parse(hook(json!({ "format": "xml" }))).unwrap_err();
    assert!(
        matches!(&error, AlertConfigError::Parse { field, .. } if field == "webhooks[0].format"),
        "{error}"
    );
    clean(&error);
    let error = parse(hook(json!({ "min_severity": "loud" }))).unwrap_err();
    assert!(matches!(&error, AlertConfigError::Parse { field, .. } if field == "webhooks[0].min_severity"));
    let error =
        parse(json!({ "webhooks": [{ "name": "ops", "url": "ftp://h3ader-value@x/y" }] })).unwrap_err();
    assert!(clean(&error).contains("webhooks[0].url: not a usable webhook URL"), "{error}");
    let error = parse(hook(json!({ "headers": { "X-Auth": "h3ader-value\n" } }))).unwrap_err();
    assert!(
        matches!(&error, AlertConfigError::Header { name, what: "value", .. } if name == "X-Auth"),
        "{error}"
    );
    clean(&error);
    let two =
        json!({ "webhooks": [{ "name": "a", "url": "http://x/1" }, { "name": "a", "url": "http://x/2" }] });
    assert!(matches!(parse(two).unwrap_err(), AlertConfigError::DuplicateName { index: 1, .. }));
    assert!(matches!(
        parse(json!({ "queue_capacity": 0 })).unwrap_err(),
        AlertConfigError::OutOfRange { .. }
    ));
    assert!(matches!(parse(json!({ "dedup_windw": "1m" })).unwrap_err(), AlertConfigError::Parse { .. }));

    // Through vigil.json: the field is named, no secret is shown.
    let file =
        |alerts: Value| vigil::cli::run::PlatformConfig::parse(&json!({ "alerts": alerts }).to_string());
    let error = file(hook(json!({ "headers": { "X-Auth": 7 } }))).unwrap_err();
    assert!(error.starts_with("alerts.webhooks[0].headers"), "{error}");
    let error = file(hook(json!({ "headers": { "X-Auth": "h3ader-value\n" } }))).unwrap_err();
    assert!(error.starts_with("alerts") && secrets.iter().all(|s| !error.contains(s)), "{error}");
    let error =
        file(json!({ "webhooks": [{ "name": "ops", "url": "hooks.example/XyZsecretPath" }] })).unwrap_err();
    assert!(error.contains("alerts.webhooks[0].url: not a usable webhook URL"), "{error}");
    assert!(secrets.iter().all(|s| !error.contains(s)), "{error}");
    let error = file(hook(json!({ "format": "xml" }))).unwrap_err();
    assert!(error.contains("alerts.webhooks[0].format") && !error.contains("pa55word"), "{error}");
    assert!(file(hook(json!({}))).is_ok());
}

/// The HTTP service shows the alerter: `/api/v1/alerts` (the attempts of
/// `a_receiver_answering_500_is_retried_and_every_attempt_recorded`, the webhook's
/// figures, no secret) and its series in `/metrics`.
async fn served_by_http(shared: &SharedState, alerter: &Alerter) {
    use actix_web::{App, test};
    let state = vigil::http::HttpState::new(shared.clone()).with_alerts(alerter.view());
    let app = test::init_service(App::new().configure(|cfg| vigil::http::configure(cfg, &state))).await;
    let request = test::TestRequest::get().uri("/api/v1/alerts?limit=10").to_request();
    let body: Value = test::call_and_read_body_json(&app, request).await;
    let outcomes: Vec<&str> =
        body["deliveries"].as_array().unwrap().iter().filter_map(|d| d["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["delivered", "failed", "failed"], "{body}");
    assert_eq!(body["webhooks"][0]["name"], "flaky");
    assert_eq!(body["webhooks"][0]["delivered"], 1);
    assert_eq!(body["leading"], true);
    let text = body.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("h3ader-secret") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let bad = test::TestRequest::get().uri("/api/v1/alerts?limit=zero").to_request();
    assert_eq!(test::call_service(&app, bad).await.status(), actix_web::http::StatusCode::BAD_REQUEST);

    let metrics = test::call_and_read_body(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    for line in [
        "vigil_alert_notifications_total{webhook=\"flaky\",outcome=\"delivered\"} 1",
        "vigil_alert_failed_attempts_total{webhook=\"flaky\"} 2",
        "vigil_alert_queue_depth{webhook=\"flaky\"} 0",
        "vigil_alerter_leading 1",
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(line)), "{line} missing:\n{metrics}");
    }
}
