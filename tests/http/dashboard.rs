//! The dashboard (`/` and its assets), the JSON endpoints it reads, and the events
//! stream (`/api/v1/events/stream`): in process over SQLite (and PostgreSQL when a
//! server is there), and under `vigil::http::serve` with other requests in flight.
//! Streams are read chunk by chunk with a deadline; nothing sleeps and then asserts.

use std::pin::Pin;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::{App, test};
use serde_json::{Value, json};
use vigil::http::{HttpState, configure};
use vigil_persistence::testing::TestDb;
use vigil_persistence::{HelpStatus, Severity, SharedState};

use super::{TOKEN, get, get_json, post, start_runtime, wait_ready};
use crate::run::DEADLINE;

/// The value of header `name` of `response`.
fn header(response: &actix_web::dev::ServiceResponse, name: &str) -> String {
    let value = response.headers().get(name).unwrap_or_else(|| panic!("no {name} header"));
    value.to_str().unwrap().to_owned()
}

/// Every URL with a scheme in `text`: the page must load nothing from elsewhere.
fn assert_no_external_url(text: &str, what: &str) {
    for scheme in ["http://", "https://", "//cdn", "url("] {
        assert!(!text.contains(scheme), "{what} holds `{scheme}`");
    }
}

#[actix_rt::test]
async fn the_page_and_its_assets_ship_inside_vigil() {
    let db = TestDb::sqlite();
    // The dashboard's mode: the database alone, no runtime, no token.
    let state = HttpState::new(SharedState::direct(db.store().await));
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&response, "cache-control"), "no-cache");
    let html = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    assert_no_external_url(&html, "/");
    for hook in [
        r#"<table id="agents">"#,
        r#"<ol id="events">"#,
        r#"<span id="connection""#,
        r#"<div id="platform" data-healthy="#,
        r#"src="/assets/app.js""#,
        r#"src="/assets/charts.js""#,
        r#"href="/assets/style.css""#,
    ] {
        assert!(html.contains(hook), "the page lacks {hook}");
    }
    // Every script and style the page names is local, and served with its type.
    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/charts.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        assert!(text.len() > 500, "{path} is nearly empty");
        assert_no_external_url(&text, path);
    }
    assert_eq!(get(&app, "/assets/../Cargo.toml").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get_json(&app, "/assets/nothing.js").await.0, StatusCode::NOT_FOUND);

    // Without a runtime the page is told so, and that actions are off.
    let (status, service) = get_json(&app, "/api/v1/service").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(service["mode"], "database", "{service}");
    assert_eq!(service["node"], Value::Null);
    assert_eq!(service["operator_actions"], false);
    assert_eq!(service["backend"], "sqlite");
    assert!(service["database"].as_str().unwrap().starts_with("sqlite:"), "{service}");
}

#[actix_rt::test]
async fn dashboard_endpoints_on_sqlite() {
    dashboard_endpoints(TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn dashboard_endpoints_on_postgresql() {
    let Some(db) = TestDb::postgres().await else { return };
    dashboard_endpoints(db).await;
}

/// Every endpoint the page reads, over a running runtime of two tickers on `db`.
async fn dashboard_endpoints(db: TestDb) {
    let (runtime, shared) = start_runtime(db.store().await, false).await;
    let state = HttpState::new(shared.clone()).with_runtime(runtime.clone()).with_operator_token(TOKEN);
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;
    wait_ready(&app).await;

    let (_, service) = get_json(&app, "/api/v1/service").await;
    assert_eq!((&service["mode"], &service["node"]), (&json!("runtime"), &json!(runtime.node_id())));
    assert_eq!(service["operator_actions"], true);

    // A restart shows in the agents' counts and in the agent's timeline.
    let (status, outcome) = post(&app, "/api/v1/agents/ticker_a/restart", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    let (status, agents) = get_json(&app, "/api/v1/agents?since=1h").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents["since_secs"], 3600.0);
    assert_eq!(agents["transitions_truncated"], false);
    assert!(agents["writer"]["queue_capacity"].as_u64().is_some_and(|c| c > 0), "{agents}");
    let by_id = |id: &str| agents["agents"].as_array().unwrap().iter().find(|a| a["agent_id"] == id).cloned();
    let ticker_a = by_id("ticker_a").expect("ticker_a listed");
    assert_eq!(ticker_a["restarts"], 1, "{ticker_a}");
    assert_eq!(ticker_a["failures"], 0);
    assert!(ticker_a["liveness"].is_string() && ticker_a["heartbeat_interval_secs"] == 0.5);
    assert_eq!(by_id("ticker_b").expect("ticker_b listed")["restarts"], 0);

    let (status, timeline) = get_json(&app, "/api/v1/agents/ticker_a/timeline?since=10m").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(timeline["agent_id"], "ticker_a");
    let transitions = timeline["transitions"].as_array().unwrap();
    let states: Vec<(&str, &str)> =
        transitions.iter().map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap())).collect();
    assert_eq!(states.first(), Some(&("initializing", "deploying")), "{timeline}");
    assert!(states.contains(&("active", "recovery")) && states.last() == Some(&("recovery", "active")));
    assert!(transitions.windows(2).all(|w| w[0]["event_id"].as_i64() < w[1]["event_id"].as_i64()));
    assert!(
        transitions.iter().all(|t| t["at"].is_string() && t["trigger"].is_string() && t["failure"] == false)
    );
    assert_eq!(get_json(&app, "/api/v1/agents/nobody/timeline").await.0, StatusCode::NOT_FOUND);

    // Charts: a recorded metric, bucketed; the heartbeat rate.
    for value in [2.0, 4.0] {
        shared
            .add_performance_metric(vigil::prelude::Metric::new("http_chart", value).agent("ticker_a"))
            .await
            .unwrap();
    }
    let (status, series) =
        get_json(&app, "/api/v1/series?name=http_chart&agent=ticker_a&since=10m&step=1m").await;
    assert_eq!(status, StatusCode::OK, "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!((points.len(), &series["step_secs"], &series["unit"]), (10, &json!(60.0), &json!("mean")));
    let filled: Vec<&Value> = points.iter().filter(|p| p["count"] != 0).collect();
    assert_eq!(filled.len(), 1, "{series}");
    assert_eq!(
        (&filled[0]["value"], &filled[0]["min"], &filled[0]["max"]),
        (&json!(3.0), &json!(2.0), &json!(4.0))
    );
    assert!(points.iter().all(|p| p["t"].is_string()) && points[0]["value"].is_null());
    let started = Instant::now();
    loop {
        let (status, beats) =
            get_json(&app, "/api/v1/series?name=heartbeats&agent=ticker_b&since=2m&step=10s").await;
        assert_eq!((status, &beats["unit"]), (StatusCode::OK, &json!("per_minute")));
        let count: u64 =
            beats["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
        if count > 0 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no heartbeat charted: {beats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, names) = get_json(&app, "/api/v1/series/names?since=10m").await;
    let names = names["series"].as_array().unwrap();
    assert_eq!(names[0]["name"], "heartbeats");
    let chart = names.iter().find(|s| s["name"] == "http_chart").expect("http_chart listed");
    assert_eq!((&chart["agents"], &chart["samples"]), (&json!(["ticker_a"]), &json!(2)));

    // Help requests with their answers, newest first; workflow runs.
    shared.create_help_request("http-help-1", "why is ticker_a slow?", None).await.unwrap();
    shared.create_help_request("http-help-2", &"x".repeat(5000), None).await.unwrap();
    shared.respond_to_help_request("http-help-1", "it is not", HelpStatus::Complete).await.unwrap();
    let (status, help) = get_json(&app, "/api/v1/help?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    let requests = help["requests"].as_array().unwrap();
    let find =
        |id: &str| requests.iter().find(|r| r["request_id"] == id).unwrap_or_else(|| panic!("{id}: {help}"));
    let (answered, long) = (find("http-help-1"), find("http-help-2"));
    assert_eq!(
        (&answered["response"]["response"], &answered["status"]),
        (&json!("it is not"), &json!("complete"))
    );
    assert!(answered["response"]["took_secs"].as_f64().is_some_and(|s| s >= 0.0), "{answered}");
    assert_eq!((&long["response"], &long["query_truncated"]), (&Value::Null, &json!(true)));
    assert_eq!(long["query"].as_str().unwrap().len(), vigil::report::MAX_HELP_TEXT_CHARS);
    let (_, pending) = get_json(&app, "/api/v1/help?status=pending").await;
    assert!(pending["requests"].as_array().unwrap().iter().all(|r| r["status"] == "pending"), "{pending}");

    shared.submit_workflow_run("triage", "http-run-1", json!({ "ticket": 7 })).await.unwrap();
    let (status, runs) = get_json(&app, "/api/v1/workflows?limit=5&status=pending").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs["runs"][0]["run_id"], "http-run-1", "{runs}");
    assert_eq!((&runs["runs"][0]["graph"], &runs["runs"][0]["step"]), (&json!("triage"), &json!(0)));

    // A bad value is a 400 that names it.
    for (path, name) in [
        ("/api/v1/series?since=1h", "name"),
        ("/api/v1/series?name=x&since=soon", "since"),
        ("/api/v1/series?name=x&step=0s", "step"),
        ("/api/v1/series?name=x&since=1h&step=1s", "step"),
        ("/api/v1/series/names?since=-1h", "since"),
        ("/api/v1/agents?since=forever", "since"),
        ("/api/v1/agents/ticker_a/timeline?limit=0", "limit"),
        ("/api/v1/help?status=lost", "status"),
        ("/api/v1/help?limit=many", "limit"),
        ("/api/v1/workflows?status=done", "status"),
        ("/api/v1/events/stream?after=last", "after"),
    ] {
        let (status, error) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
        assert!(error["error"].as_str().unwrap().starts_with(&format!("{name}: ")), "{path}: {error}");
    }
    let request = test::TestRequest::get().uri("/api/v1/events/stream").insert_header(("Last-Event-ID", "x"));
    let response = test::call_service(&app, request.to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    runtime.shutdown().await;
}

/// The next chunk of a streamed body, within what is left of `deadline`.
async fn next_chunk(body: &mut Pin<Box<BoxBody>>, deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    let chunk = tokio::time::timeout(left, std::future::poll_fn(|cx| body.as_mut().poll_next(cx)))
        .await
        .expect("the stream sent nothing before the deadline")
        .expect("the stream ended")
        .expect("a chunk");
    String::from_utf8(chunk.to_vec()).expect("UTF-8")
}

/// The `(id, data)` of each event message in SSE `text` (comments and `retry:` skipped).
fn sse_events(text: &str) -> Vec<(i64, Value)> {
    text.split("\n\n")
        .filter_map(|message| {
            let field = |name: &str| message.lines().find_map(|l| l.strip_prefix(name));
            assert!(field("event: ").is_none_or(|e| e == "event"), "unexpected message: {message}");
            let id = field("id: ")?.parse().expect("numeric id");
            let data = serde_json::from_str(field("data: ")?).expect("JSON data");
            Some((id, data))
        })
        .collect()
}

/// Reads `body` until an event of type `event_type` arrives; every event read so far.
async fn read_until_event(body: &mut Pin<Box<BoxBody>>, event_type: &str) -> Vec<(i64, Value)> {
    let deadline = Instant::now() + DEADLINE;
    let mut text = String::new();
    loop {
        text.push_str(&next_chunk(body, deadline).await);
        // Chunks end on a message boundary: the stream writes whole messages.
        let events = sse_events(&text);
        if events.iter().any(|(_, e)| e["event_type"] == event_type) {
            return events;
        }
    }
}

async fn open_stream<S>(app: &S, last_event_id: Option<i64>) -> Pin<Box<BoxBody>>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let mut request = test::TestRequest::get().uri("/api/v1/events/stream");
    if let Some(id) = last_event_id {
        request = request.insert_header(("Last-Event-ID", id.to_string()));
    }
    let response = test::call_service(app, request.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "cache-control"), "no-cache");
    Box::pin(response.into_body())
}

#[actix_rt::test]
async fn the_events_stream_delivers_new_events_and_resumes_after_last_event_id() {
    let db = TestDb::sqlite();
    let shared = SharedState::direct(db.store().await);
    shared.log_system_event("before_the_stream", None, Severity::Info).await.unwrap();
    let state = HttpState::new(shared.clone());
    let app = test::init_service(App::new().configure(|cfg| configure(cfg, &state))).await;

    let mut stream = open_stream(&app, None).await;
    let preamble = next_chunk(&mut stream, Instant::now() + DEADLINE).await;
    assert!(preamble.starts_with("retry: "), "{preamble}");
    shared.log_system_event("stream_first", Some(json!({ "n": 1 })), Severity::Info).await.unwrap();
    shared.log_system_event("stream_second", Some(json!({ "n": 2 })), Severity::Warning).await.unwrap();
    let events = read_until_event(&mut stream, "stream_second").await;
    let types: Vec<&str> = events.iter().map(|(_, e)| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["stream_first", "stream_second"], "only what came after the connection opened");
    for (id, event) in &events {
        assert_eq!(event["id"].as_i64(), Some(*id), "the SSE id is the row id");
    }
    // The data is what /api/v1/events serves.
    let (_, listed) = get_json(&app, "/api/v1/events?type=stream_second").await;
    assert_eq!(listed["events"][0], events[1].1);
    drop(stream);

    // A reconnect with Last-Event-ID gets what followed that id, and nothing before.
    let first_id = events[0].0;
    let mut resumed = open_stream(&app, Some(first_id)).await;
    let again = read_until_event(&mut resumed, "stream_second").await;
    assert_eq!(again.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [events[1].0]);
    // ?after= does the same for a page that loaded recent events first.
    let (status, text) = get(&app, "/api/v1/events/stream?after=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
}

#[actix_rt::test]
async fn the_events_stream_runs_under_serve_beside_other_requests() {
    let db = TestDb::sqlite();
    let shared = SharedState::direct(db.store().await);
    let state = HttpState::new(shared.clone()).with_stream_keepalive(Duration::from_millis(200));
    let server = vigil::http::serve("127.0.0.1:0".parse().unwrap(), state.clone()).unwrap();
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::builder().timeout(DEADLINE).build().unwrap();
    let mut stream = client.get(format!("{base}/api/v1/events/stream")).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let deadline = Instant::now() + DEADLINE;
    let left = || deadline.saturating_duration_since(Instant::now());
    let preamble = tokio::time::timeout(left(), stream.chunk()).await.expect("deadline").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&preamble).starts_with("retry: "));
    // The one worker serves other requests while the stream is open.
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let status = client.get(format!("{base}/api/v1/status")).send().await.unwrap();
    assert_eq!(status.status(), reqwest::StatusCode::OK);
    shared.log_system_event("served_stream", None, Severity::Info).await.unwrap();
    let mut text = String::new();
    while !text.contains("served_stream") {
        let chunk = tokio::time::timeout(left(), stream.chunk()).await.expect("deadline").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    assert!(text.contains("event: event\n"), "{text}");
    // A client that goes away ends its stream (noticed at the next keepalive write).
    assert_eq!(state.open_event_streams(), 1);
    drop(stream);
    let started = Instant::now();
    while state.open_event_streams() > 0 {
        assert!(started.elapsed() < DEADLINE, "the stream outlived its client");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A stream open at stop is ended: the graceful stop does not wait for it.
    let mut open = client.get(format!("{base}/api/v1/events/stream")).send().await.unwrap();
    tokio::time::timeout(left(), open.chunk()).await.expect("deadline").unwrap();
    let stopped = Instant::now();
    server.stop().await;
    assert!(stopped.elapsed() < Duration::from_secs(4), "stop waited {:?}", stopped.elapsed());
    let rest = tokio::time::timeout(left(), open.chunk()).await.expect("deadline");
    assert!(matches!(rest, Ok(None)), "the stream ended cleanly: {rest:?}");
    assert_eq!(state.open_event_streams(), 0);
}
