//! The dashboard's reads under `/api/v1/`: the agents with their restarts, one agent's
//! state timeline, a metric bucketed for a chart and the metrics there are to chart,
//! help requests with their answers, workflow runs. Each reads the database now
//! through a [`crate::report`] builder; a bad query value is a `400` naming it.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::HttpState;
use super::api::{Query, error, param, store_error, text};
use crate::report::{self, AgentsReport, HEARTBEATS, Series, SeriesQuery, Timeline};
use crate::values;

/// The window a request covers when it names none.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The value of `$parse` (a `Result<_, String>` read from a query), or (from the
/// handler) the `400` whose message names the bad parameter.
macro_rules! parsed {
    ($parse:expr) => {
        match $parse {
            Ok(value) => value,
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        }
    };
}

/// `GET /api/v1/agents?since=24h`: the status's agents with restarts and failures, and
/// the writer's figures (`writer`, as `/readyz` judges them; `null` when there are none).
pub(super) async fn agents(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let since =
        parsed!(param(&query, "since", values::parse_duration)).unwrap_or(Duration::from_secs(86_400));
    match AgentsReport::read(state.shared_state(), since).await {
        Ok(report) => {
            let mut body = report.to_json();
            body["writer"] = state.writer_figures(report.status.liveness.platform_running()).await.into();
            HttpResponse::Ok().json(body)
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/agents/{id}/timeline?since=1h&limit=200`: `404` for an unknown agent.
pub(super) async fn timeline(
    state: web::Data<HttpState>,
    path: web::Path<String>,
    query: Query,
) -> HttpResponse {
    let since = parsed!(param(&query, "since", values::parse_duration)).unwrap_or(DEFAULT_WINDOW);
    let limit = parsed!(param(&query, "limit", values::parse_limit)).unwrap_or(200);
    let agent_id = path.into_inner();
    match Timeline::read(state.shared_state(), &agent_id, since, limit).await {
        Ok(Some(timeline)) => HttpResponse::Ok().json(timeline.to_json()),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no agent `{agent_id}`")),
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/series?name=N&agent=ID&since=1h&step=1m`: `name` is required.
pub(super) async fn series(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let read = parsed!(series_query(&query));
    match Series::read(state.shared_state(), read).await {
        Ok(series) => HttpResponse::Ok().json(series.to_json()),
        Err(e) => store_error(&e),
    }
}

/// The series `query` asks for.
fn series_query(query: &Query) -> Result<SeriesQuery, String> {
    let name =
        text(query, "name").ok_or_else(|| format!("name: required (a metric name, or `{HEARTBEATS}`)"))?;
    let since = param(query, "since", values::parse_duration)?.unwrap_or(DEFAULT_WINDOW);
    let step = param(query, "step", values::parse_duration)?.unwrap_or(SeriesQuery::default_step(since));
    SeriesQuery::new(name, text(query, "agent"), since, step)
}

/// `GET /api/v1/series/names?since=1h`: `{"series": [{"name", "agents", "samples"}]}`,
/// [`HEARTBEATS`] first, then every metric recorded in the window.
pub(super) async fn series_names(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let since = parsed!(param(&query, "since", values::parse_duration)).unwrap_or(DEFAULT_WINDOW);
    let recorded = match state.shared_state().recorded_metrics(report::ts_ago(since)).await {
        Ok(recorded) => recorded,
        Err(e) => return store_error(&e),
    };
    // One entry per name (rows come ordered by name), with the agents it is about.
    let mut series: Vec<serde_json::Value> =
        vec![json!({ "name": HEARTBEATS, "agents": [], "samples": null })];
    for metric in recorded {
        if series.last().is_none_or(|last| last["name"] != metric.name.as_str()) {
            series.push(json!({ "name": metric.name, "agents": [], "samples": 0 }));
        }
        let Some(last) = series.last_mut() else { continue };
        last["samples"] = (last["samples"].as_i64().unwrap_or(0) + metric.samples).into();
        if let (Some(agent), Some(agents)) = (metric.agent_id, last["agents"].as_array_mut()) {
            agents.push(agent.into());
        }
    }
    HttpResponse::Ok().json(json!({ "since_secs": since.as_secs_f64(), "series": series }))
}

/// `GET /api/v1/help?limit=20&status=S`: help requests, newest first, with answers.
pub(super) async fn help(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let limit = parsed!(param(&query, "limit", values::parse_limit)).unwrap_or(20);
    let status = parsed!(param(&query, "status", values::parse_help_status));
    match state.shared_state().recent_help_exchanges(status, limit).await {
        Ok(exchanges) => {
            let requests: Vec<_> = exchanges.iter().map(report::help_exchange_json).collect();
            HttpResponse::Ok().json(json!({ "requests": requests }))
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/workflows?limit=20&status=S`: `{"runs": [...]}`, newest first, each
/// run as `vigil workflows --json` prints it.
pub(super) async fn workflows(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let limit = parsed!(param(&query, "limit", values::parse_limit)).unwrap_or(20);
    let status = parsed!(param(&query, "status", values::parse_workflow_status));
    match state.shared_state().list_workflow_runs(status, limit).await {
        Ok(runs) => HttpResponse::Ok().json(json!({ "runs": runs })),
        Err(e) => store_error(&e),
    }
}
