//! The JSON API under `/api/v1/`: the reports of [`crate::report`], as the `--json`
//! output of the matching command, and the operator actions of [`crate::command`].

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use vigil_persistence::StoreError;
use vigil_persistence::agent_commands::CommandAction;

use super::HttpState;
use crate::command::{self, CommandError};
use crate::report::{self, EventQuery, HealthReport, NodesReport, StatusReport};
use crate::values;

/// A query string, parsed by [`param`] and [`text`] so a bad value is a named `400`.
pub(super) type Query = web::Query<HashMap<String, String>>;

/// `{"error": message}` with `status`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

/// A database failure: `503` (the message names no password: the store's errors do
/// not quote the connection string).
pub(super) fn store_error(e: &StoreError) -> HttpResponse {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The query parameter `name` parsed by `parse`; a bad value's error names it (and
/// becomes a `400`).
pub(super) fn param<T>(
    query: &Query,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => parse(text).map(Some).map_err(|e| format!("{name}: {e}")),
    }
}

/// A text filter (`agent`, `name`, `type`); empty counts as absent.
pub(super) fn text(query: &Query, name: &str) -> Option<String> {
    query.get(name).filter(|v| !v.is_empty()).cloned()
}

/// `GET /api/v1/status`.
pub(super) async fn status(state: web::Data<HttpState>) -> HttpResponse {
    match StatusReport::read(state.shared_state()).await {
        Ok(report) => HttpResponse::Ok().json(report.to_json()),
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/health`.
pub(super) async fn health(state: web::Data<HttpState>) -> HttpResponse {
    match HealthReport::read(state.shared_state()).await {
        Ok(report) => HttpResponse::Ok().json(report.to_json()),
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/nodes`: `409` on SQLite, where one node runs everything.
pub(super) async fn nodes(state: web::Data<HttpState>) -> HttpResponse {
    match NodesReport::read(state.shared_state()).await {
        Ok(report) => HttpResponse::Ok().json(report.to_json()),
        Err(StoreError::Unsupported { .. }) => error(
            StatusCode::CONFLICT,
            "nodes are a PostgreSQL feature: on SQLite one `vigil run` runs every agent (see /api/v1/status)",
        ),
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/events?limit=50&agent=ID&severity=S&type=T`: oldest first.
pub(super) async fn events(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let parsed = (|| {
        let mut read = EventQuery::new(param(&query, "limit", values::parse_limit)?.unwrap_or(50));
        read.severity = param(&query, "severity", values::parse_severity)?;
        read.agent = text(&query, "agent");
        read.event_type = text(&query, "type");
        Ok::<_, String>(read)
    })();
    let read = match parsed {
        Ok(read) => read,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match report::recent_events(state.shared_state(), &read).await {
        Ok(mut events) => {
            events.reverse();
            HttpResponse::Ok().json(json!({ "events": events }))
        }
        Err(e) => store_error(&e),
    }
}

/// `GET /api/v1/metrics?agent=ID&name=N&since=1h&limit=100`: newest first.
pub(super) async fn metrics(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let parsed = (|| {
        let since = param(&query, "since", values::parse_duration)?.unwrap_or(Duration::from_secs(3600));
        let limit = param(&query, "limit", values::parse_limit)?.unwrap_or(100);
        Ok::<_, String>((since, limit))
    })();
    let (since, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (agent, name) = (text(&query, "agent"), text(&query, "name"));
    match report::recent_metrics(state.shared_state(), agent.as_deref(), name.as_deref(), since, limit).await
    {
        Ok(samples) => HttpResponse::Ok().json(json!({ "metrics": samples })),
        Err(e) => store_error(&e),
    }
}

/// Whether `request` carries the operator token (compared in constant time).
fn authorized(request: &HttpRequest, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// `POST /api/v1/agents/{id}/restart|stop|fix`.
pub(super) async fn agent_action(
    state: web::Data<HttpState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let Some(token) = state.token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            "operator actions are not enabled (start the service with a token: --http-token-env NAME)",
        );
    };
    if !authorized(&request, token) {
        return HttpResponse::Unauthorized()
            .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"))
            .json(json!({ "error": "a valid `Authorization: Bearer <token>` header is required" }));
    }
    let (agent_id, action) = path.into_inner();
    let action = match action.as_str() {
        "restart" => CommandAction::Restart,
        "stop" => CommandAction::Stop,
        "fix" => CommandAction::Fix,
        other => return error(StatusCode::NOT_FOUND, format!("no action `{other}`: restart, stop or fix")),
    };
    let requester = format!("vigil-http@{}", std::process::id());
    match command::carry_out(state.shared_state(), action, &agent_id, &requester, state.action_timeout).await
    {
        Ok(outcome) => HttpResponse::Ok().json(json!({
            "agent_id": agent_id,
            "action": action.as_str(),
            "outcome": outcome,
        })),
        Err(e) => {
            let status = match &e {
                CommandError::UnknownAgent(_) => StatusCode::NOT_FOUND,
                CommandError::NoPlatform(_) => StatusCode::CONFLICT,
                CommandError::Failed { .. } => StatusCode::BAD_GATEWAY,
                CommandError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.to_string())
        }
    }
}

/// `GET /api/v1/alerts?limit=50`: the recorded delivery attempts, newest first, and the
/// figures of this process's alerter when it has one.
pub(super) async fn alerts(state: web::Data<HttpState>, query: Query) -> HttpResponse {
    let limit = match param(&query, "limit", values::parse_limit) {
        Ok(limit) => limit.unwrap_or(50),
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let deliveries = match state.shared_state().recent_alert_deliveries(limit).await {
        Ok(deliveries) => deliveries,
        Err(e) => return store_error(&e),
    };
    let alerter = state.alerts.as_ref();
    HttpResponse::Ok().json(json!({
        "deliveries": deliveries,
        "webhooks": alerter.map(|a| a.stats()),
        "leading": alerter.map(|a| a.is_leading()),
    }))
}
