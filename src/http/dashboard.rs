//! The dashboard: one page at `/`, its script and style under `/assets/`, all compiled
//! into the binary (`include_str!`), with no build step and nothing fetched from
//! elsewhere (no CDN, no web font). The page is plain HTML, CSS and modern JavaScript
//! (`fetch`, `EventSource`) that draws its charts as SVG by hand.
//!
//! The page reads the JSON API and follows `/api/v1/events/stream`; it decides nothing
//! itself: liveness, health and heartbeat ages are what the API computed at read time.
//! It asks `/api/v1/service` what serves it: with no runtime (`vigil dashboard`) it says
//! the data comes from the database alone, and operator buttons appear only when
//! operator actions are enabled (the token is typed into the page, kept in memory, and
//! sent as `Authorization: Bearer` by the restart/stop/fix buttons).
//!
//! Hooks for browser tests: `<table id="agents">` with one `<tr data-agent="ID"
//! data-state="active" data-liveness="running">` per agent; the live feed `<ol
//! id="events">` with one `<li data-event-id="N" data-event-type="T">` per event, newest
//! on top; `<span id="connection">` saying `live` while the stream is connected; `<div
//! id="platform" data-healthy="true|false">`.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::HttpState;
use super::api::error;

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");

/// The files under `/assets/`: (name, content type, content).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("assets/charts.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
];

/// `content` with `content_type`, revalidated on every load (`no-cache`): a new Vigil
/// binary serves its own page at once.
fn file(content_type: &'static str, content: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .body(content)
}

/// `GET /`.
pub(super) async fn index() -> HttpResponse {
    file("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /assets/{name}`: `404` for a name that is not one of [`ASSETS`].
pub(super) async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name.as_str()) {
        Some((_, content_type, content)) => file(content_type, content),
        None => error(actix_web::http::StatusCode::NOT_FOUND, format!("no asset `{name}`")),
    }
}

/// `GET /api/v1/service`: what serves the API, for the page's header: `mode`
/// (`runtime`: `vigil run` or an application with agents; `database`: the database
/// alone, as `vigil dashboard`), the `node` of the runtime (or `null`), the `database`
/// described without a password, whether `operator_actions` are enabled, the `version`.
pub(super) async fn service(state: web::Data<HttpState>) -> HttpResponse {
    let runtime = state.runtime.as_ref();
    HttpResponse::Ok().json(json!({
        "mode": if runtime.is_some() { "runtime" } else { "database" },
        "node": runtime.map(|r| r.node_id().to_owned()),
        "database": state.shared_state().store().config().describe(),
        "backend": if state.shared_state().store().config().is_postgres() { "postgresql" } else { "sqlite" },
        "operator_actions": state.operator_actions_enabled(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
