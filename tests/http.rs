//! The HTTP service (`vigil::http`): every endpoint in process against a real store
//! (SQLite, and PostgreSQL when a server is there) with a running runtime, the
//! dashboard's read-only mode on a stopped platform, the operator token, and `vigil run
//! --http` end to end. Waits poll with a deadline; nothing sleeps and then asserts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, test};
use serde_json::Value;
use vigil::http::{HttpState, configure};
use vigil_persistence::shared_state::Writer;
use vigil_persistence::testing::TestDb;
use vigil_persistence::{PersistenceActor, SharedState, Store};
use vigil_runtime::{Agent, AgentContext, AgentResult, ChildSpec, ClusterConfig, Runtime};

use crate::run::{DEADLINE, spawn_run, stop_with_sigterm};

mod dashboard;

const TOKEN: &str = "t0ken-for-the-http-tests";

#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "ticker", cycle = "100ms", heartbeat = "500ms")]
struct Ticker;

impl Agent for Ticker {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

/// A runtime of two tickers over `store`, with operator commands, as `vigil run` has.
async fn start_runtime(store: Store, cluster: bool) -> (Runtime, SharedState) {
    let writer = PersistenceActor::start(store.clone(), Default::default());
    let shared = SharedState::with_writer(store, Writer::Actor(writer));
    let mut builder = Runtime::builder(shared.clone())
        .operator_commands(true)
        .child(ChildSpec::agent("ticker_a", Ticker::default))
        .child(ChildSpec::agent("ticker_b", Ticker::default));
    if cluster {
        builder = builder.cluster(ClusterConfig::new());
    }
    (builder.start().await.expect("runtime starts"), shared)
}

/// Every `scheme://user:password@` in `text`: there must be none.
fn assert_no_password(text: &str, what: &str) {
    for (at, _) in text.match_indices("://") {
        let authority: String = text[at + 3..].chars().take_while(|c| !"/ \"?#".contains(*c)).collect();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            assert!(!userinfo.contains(':'), "{what} shows a password: {authority}");
        }
    }
}

async fn body(response: ServiceResponse) -> (StatusCode, String) {
    let status = response.status();
    let bytes = test::read_body(response).await;
    (status, String::from_utf8(bytes.to_vec()).expect("UTF-8 body"))
}

async fn get<S>(app: &S, path: &str) -> (StatusCode, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let response = test::call_service(app, test::TestRequest::get().uri(path).to_request()).await;
    let (status, text) = body(response).await;
    assert_no_password(&text, path);
    (status, text)
}

async fn get_json<S>(app: &S, path: &str) -> (StatusCode, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let (status, text) = get(app, path).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

async fn post<S>(app: &S, path: &str, token: Option<&str>) -> (StatusCode, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut request = test::TestRequest::post().uri(path);
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let (status, text) = body(test::call_service(app, request.to_request()).await).await;
    assert!(!text.contains(TOKEN), "{path} echoes the token");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `/metrics` parsed back: sample name + labels -> value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                // A histogram's value here is its observation count (the `+Inf` bucket);
                // its buckets must be cumulative.
                prometheus_parse::Value::Histogram(buckets) => {
                    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
                    assert!(counts.is_sorted(), "{}: buckets not cumulative: {counts:?}", sample.metric);
                    assert_eq!(buckets.last().map(|b| b.less_than), Some(f64::INFINITY), "{}", sample.metric);
                    counts.last().copied().unwrap_or(0.0)
                }
                other => panic!("{}: unexpected {other:?}", sample.metric),
            };
            (format!("{}{{{}}}", sample.metric, labels.join(",")), value)
        })
        .collect()
}

/// Polls `/readyz` until it says `200`, within [`DEADLINE`].
async fn wait_ready<S>(app: &S) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let started = Instant::now();
    loop {
        let (status, body) = get_json(app, "/readyz").await;
        if status == StatusCode::OK {
            return body;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(started.elapsed() < DEADLINE, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn every_endpoint_on_sqlite_with_a_running_platform() {
    let db = TestDb::sqlite();
    let (runtime, shared) = start_runtime(db.store().await, false).await;
    let state = HttpState::new(shared.clone()).with_runtime(runtime.clone()).with_operator_token(TOKEN);
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;

    let (status, body) = get_json(&app, "/healthz").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = wait_ready(&app).await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["failed"], serde_json::json!([]));
    for check in ["database", "writer", "platform", "agents"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{ready}");
    }

    let (status, status_json) = get_json(&app, "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_json["platform_running"], true);
    let agents = status_json["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{status_json}");
    assert!(agents.iter().all(|a| a["liveness"] == "running" && a["recorded_state"].is_string()));
    assert_eq!(status_json["counts"]["running"], 2);

    let (status, health) = get_json(&app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["platform_running"], true);
    assert!(health["backend"].is_string() && health["tables"].is_array(), "{health}");

    let (status, events) = get_json(&app, "/api/v1/events?limit=5&agent=ticker_a&severity=info").await;
    assert_eq!(status, StatusCode::OK);
    let events = events["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.len() <= 5);
    assert!(events.iter().all(|e| e["event_data"]["agent_id"] == "ticker_a"), "{events:?}");
    assert!(events.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()), "oldest first");
    let (status, error) = get_json(&app, "/api/v1/events?severity=loud").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"].as_str().unwrap().starts_with("severity: "), "{error}");

    shared
        .add_performance_metric(vigil::prelude::Metric::new("http_test", 4.5).agent("ticker_a"))
        .await
        .unwrap();
    let (status, metrics) = get_json(&app, "/api/v1/metrics?agent=ticker_a&name=http_test&since=10m").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metrics["metrics"][0]["metric_value"], 4.5, "{metrics}");
    for bad in ["since=-5m", "since=soon", "limit=0"] {
        let (status, error) = get_json(&app, &format!("/api/v1/metrics?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {error}");
    }

    let (status, error) = get_json(&app, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error["error"].as_str().unwrap().contains("PostgreSQL"));

    // Operator actions: refused without the token or with a wrong one, done with it.
    let restart = "/api/v1/agents/ticker_a/restart";
    assert_eq!(post(&app, restart, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, restart, Some("not-the-token")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, "/api/v1/agents/nobody/restart", Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, "/api/v1/agents/ticker_a/explode", Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    let (status, outcome) = post(&app, restart, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["action"], "restart");
    let (status, _) = get(&app, "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);

    // /metrics parsed back, once the restart was counted and cycles ran.
    let started = Instant::now();
    let metrics = loop {
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let metrics = parse_metrics(&text);
        let restarted = metrics.get("vigil_agent_restarts_total{agent=ticker_a,cause=requested}").copied();
        let cycles = metrics.get("vigil_agent_cycles_total{agent=ticker_b}").copied().unwrap_or(0.0);
        if restarted.is_some_and(|n| n >= 1.0) && cycles >= 1.0 {
            break metrics;
        }
        assert!(started.elapsed() < DEADLINE, "restart or cycles never counted: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (name, expected) in [
        ("vigil_database_up{}", 1.0),
        ("vigil_platform_running{}", 1.0),
        ("vigil_platforms{status=running}", 1.0),
        ("vigil_agent_up{agent=ticker_b}", 1.0),
        ("vigil_agent_heartbeat_interval_seconds{agent=ticker_b}", 0.5),
        ("vigil_help_requests_pending{}", 0.0),
    ] {
        assert_eq!(metrics.get(name), Some(&expected), "{name}: {metrics:?}");
    }
    let age = metrics["vigil_agent_heartbeat_age_seconds{agent=ticker_b}"];
    assert!((0.0..10.0).contains(&age), "heartbeat age {age}");
    assert!(metrics.keys().any(|k| k.starts_with("vigil_agents{") && k.contains("liveness=running")));
    for name in [
        "vigil_agent_cycle_overruns_total{agent=ticker_a}",
        "vigil_agent_cycle_busy_seconds_total{agent=ticker_a}",
        "vigil_lifecycle_events_missed_total{}",
        "vigil_writer_queue_depth{}",
        "vigil_writer_queue_capacity{}",
        "vigil_writer_batches_total{}",
        "vigil_writer_writes_total{}",
        "vigil_writer_batch_size_mean{}",
        "vigil_writer_retries_total{}",
        "vigil_writer_rejected_writes_total{}",
        "vigil_writer_fenced_writes_total{}",
        "vigil_writer_refused_writes_total{}",
        "vigil_writer_recovered_commits_total{}",
        "vigil_pool_connections{state=idle}",
        "vigil_pool_max_connections{}",
        "vigil_pool_checkouts_total{}",
        "vigil_pool_checkouts_waited_total{}",
        "vigil_pool_checkout_timeouts_total{}",
        "vigil_pool_connections_closed_broken_total{}",
        "vigil_pool_wait_mean_seconds{}",
        "vigil_queries_total{}",
        "vigil_query_errors_total{}",
        "vigil_query_connection_errors_total{}",
        "vigil_query_duration_mean_seconds{}",
        "vigil_help_requests_processing{}",
        "vigil_help_request_oldest_pending_age_seconds{}",
    ] {
        let value = metrics.get(name).unwrap_or_else(|| panic!("{name} missing: {metrics:?}"));
        assert!(value.is_finite() && *value >= 0.0, "{name} = {value}");
    }
    assert!(metrics["vigil_writer_writes_total{}"] > 0.0);
    // Every committed batch is in both histograms (the writer may commit more between
    // the two reads of one scrape, never fewer).
    let batches = metrics["vigil_writer_batches_total{}"];
    for histogram in ["vigil_writer_commit_latency_seconds{}", "vigil_writer_batch_size{}"] {
        let observed = metrics.get(histogram).unwrap_or_else(|| panic!("{histogram} missing: {metrics:?}"));
        assert!(
            *observed >= 1.0 && *observed <= batches,
            "{histogram} counted {observed} of {batches} batches"
        );
    }
    assert!(metrics.keys().all(|k| k.starts_with("vigil_")));

    runtime.shutdown().await;

    // The dashboard's mode on the stopped platform: read-only and not ready.
    let dashboard = HttpState::new(SharedState::direct(Store::connect_read_only(db.config()).await.unwrap()));
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &dashboard))).await;
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    let (status, ready) = get_json(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["ready"], false);
    let failed: Vec<&str> = ready["failed"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(failed, ["platform", "agents"], "{ready}");
    assert!(ready["checks"]["platform"]["detail"].as_str().unwrap().contains("no platform is running"));
    let (_, text) = get(&app, "/metrics").await;
    let metrics = parse_metrics(&text);
    assert_eq!(metrics.get("vigil_platform_running{}"), Some(&0.0));
    assert_eq!(metrics.get("vigil_platform_healthy{}"), Some(&0.0));
    assert_eq!(metrics.get("vigil_agent_up{agent=ticker_a}"), Some(&0.0));
    // A dead platform's last writer figures are not served as the present.
    assert!(!metrics.contains_key("vigil_writer_queue_depth{}"), "{text}");
    let (status, status_json) = get_json(&app, "/api/v1/status").await;
    assert_eq!((status, &status_json["healthy"]), (StatusCode::OK, &Value::Bool(false)));
    let (status, _) = post(&app, restart, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no operator actions without a token");
}

#[actix_rt::test]
async fn nodes_status_and_readiness_on_postgresql() {
    let Some(db) = TestDb::postgres().await else { return };
    let (runtime, shared) = start_runtime(db.store().await, true).await;
    let state = HttpState::new(shared).with_runtime(runtime.clone());
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;
    wait_ready(&app).await;
    let (status, nodes) = get_json(&app, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::OK);
    let nodes = nodes["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["node_id"], runtime.node_id());
    assert_eq!(nodes[0]["agents"].as_array().map(Vec::len), Some(2));
    let (_, status_json) = get_json(&app, "/api/v1/status").await;
    assert!(status_json["agents"].as_array().unwrap().iter().all(|a| a["owner"] == runtime.node_id()));
    let (status, health) = get_json(&app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["backend"], "postgresql", "{health}");
    let (_, text) = get(&app, "/metrics").await;
    assert_eq!(parse_metrics(&text).get("vigil_platform_running{}"), Some(&1.0));
    // Read-only without a token.
    assert_eq!(post(&app, "/api/v1/agents/ticker_a/stop", Some(TOKEN)).await.0, StatusCode::FORBIDDEN);
    runtime.shutdown().await;
}

/// `vigil run --http`: the real binary serves the probes and the metrics.
#[actix_rt::test]
async fn vigil_run_serves_http() {
    let dir = crate::cli::temp_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut platform = spawn_run(&dir, &["--for", "120s", "--no-status", "--http", &addr]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let base = format!("http://{addr}");
    let started = Instant::now();
    let ready = loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            break response.json::<Value>().await.unwrap();
        }
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        assert!(platform.try_wait().unwrap().is_none(), "vigil run exited: {log}");
        assert!(started.elapsed() < DEADLINE, "never ready: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["ready"], true);
    let healthz = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let metrics = parse_metrics(&metrics);
    assert_eq!(metrics.get("vigil_platform_running{}"), Some(&1.0));
    assert_eq!(metrics.keys().filter(|k| k.starts_with("vigil_agent_up{")).count(), 10, "{metrics:?}");
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let denied = client.post(format!("{base}/api/v1/agents/ai_help/restart")).send().await.unwrap();
    assert_eq!(denied.status(), reqwest::StatusCode::FORBIDDEN);
    let log = stop_with_sigterm(&mut platform, &dir.join("run.log"));
    assert!(log.contains(&format!("serving http://{addr}/metrics")), "{log}");
    std::fs::remove_dir_all(dir).ok();
}

/// A nested supervisor that exceeds its restart intensity shows in
/// `vigil_supervisor_escalations_total`, labelled with the supervisor.
#[actix_rt::test]
async fn a_supervisor_escalation_is_counted() {
    use vigil_runtime::supervisor::{Strategy, SupervisorSpec};
    use vigil_runtime::testkit::{Fault, FaultPlan, faulty_child, memory_state};
    use vigil_runtime::{EventKind, RestartIntensity};

    // `inner` allows one restart a minute and x fails twice (well after the counter
    // follows the runtime: cycles are 10 ms apart).
    let plan = FaultPlan::new().at_cycle("x", 30, Fault::Panic).at_cycle("x", 32, Fault::Panic);
    let inner = SupervisorSpec::new("inner", Strategy::OneForOne)
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(faulty_child(&plan, "x"));
    let runtime = Runtime::builder(memory_state().await)
        .intensity(RestartIntensity::new(100, Duration::from_secs(60)))
        .supervisor(inner)
        .start()
        .await
        .expect("runtime starts");
    let state = HttpState::new(runtime.shared_state().clone()).with_runtime(runtime.clone());
    let mut events = runtime.subscribe();
    events
        .wait_for(DEADLINE, |e| e.agent_id == "inner" && matches!(e.kind, EventKind::Failure { .. }))
        .await
        .expect("inner escalates");
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;
    let started = Instant::now();
    loop {
        let metrics = parse_metrics(&get(&app, "/metrics").await.1);
        if metrics.get("vigil_supervisor_escalations_total{supervisor=inner}") == Some(&1.0) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the escalation was never counted: {metrics:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runtime.shutdown().await;
}
