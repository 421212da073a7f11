//! `/healthz` and `/readyz`.
//!
//! `/healthz` says the process answers, nothing more: a liveness probe that failed on
//! a database outage would have the orchestrator restart a process that is fine.
//! `/readyz` is the readiness probe: `200` when every check passes, `503` otherwise,
//! with a JSON body naming each check and the ones that failed:
//!
//! | check      | passes when                                                              |
//! |------------|--------------------------------------------------------------------------|
//! | `database` | `SELECT 1` answers within 2 s                                            |
//! | `writer`   | its queue is below 80 % of its capacity (or there are no writer figures) |
//! | `platform` | a platform runs on the database (with a runtime: this process's node)    |
//! | `agents`   | every agent of it runs (heartbeat recent for its interval), and there is one |

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use vigil_persistence::presence::Liveness;

use super::HttpState;

/// How long the database may take to answer the readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A queue at least this full is backlogged.
const BACKLOG_RATIO: f64 = 0.8;

/// One check of `/readyz`.
#[derive(Debug, Serialize)]
struct Check {
    ok: bool,
    detail: String,
}

impl Check {
    fn pass(detail: impl Into<String>) -> Self {
        Self { ok: true, detail: detail.into() }
    }
    fn fail(detail: impl Into<String>) -> Self {
        Self { ok: false, detail: detail.into() }
    }
}

/// `GET /healthz`.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub(super) async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let shared = state.shared_state();
    let database = match tokio::time::timeout(PING_TIMEOUT, shared.ping()).await {
        Ok(Ok(took)) => Check::pass(format!("answered in {:.1} ms", took.as_secs_f64() * 1e3)),
        Ok(Err(e)) => Check::fail(format!("the database did not answer: {e}")),
        Err(_) => Check::fail(format!("the database did not answer within {PING_TIMEOUT:?}")),
    };
    let report = if database.ok { shared.liveness().await.ok() } else { None };
    let (platform, agents) = match &report {
        None => {
            let unknown = || Check::fail("unknown: the database could not be read");
            (unknown(), unknown())
        }
        Some(report) => {
            let own_node = state.runtime.as_ref().map(|r| r.node_id().to_owned());
            let platform = match &own_node {
                Some(node) if report.running().any(|p| &p.presence.node == node) => {
                    Check::pass(format!("this process's node {node} runs"))
                }
                Some(node) => Check::fail(format!("this process's node {node} is not seen running")),
                None if report.platform_running() => {
                    Check::pass(format!("{} platform(s) running", report.running().count()))
                }
                None => Check::fail(report.no_platform_message(&shared.store().config().describe())),
            };
            // Which agents must run: this runtime's, or every agent of a running platform.
            let expected: Vec<_> = match &state.runtime {
                Some(runtime) => {
                    let ids = runtime.agent_ids();
                    report.agents.iter().filter(|a| ids.contains(&a.agent_id)).collect()
                }
                None => report.agents.iter().filter(|a| a.liveness != Liveness::NotRunning).collect(),
            };
            let lagging: Vec<&str> = expected
                .iter()
                .filter(|a| a.liveness != Liveness::Running)
                .map(|a| a.agent_id.as_str())
                .collect();
            let agents = if !platform.ok || expected.is_empty() {
                Check::fail("no agent runs")
            } else if lagging.is_empty() {
                Check::pass(format!("{} agent(s) running", expected.len()))
            } else {
                Check::fail(format!("not running (or silent): {}", lagging.join(", ")))
            };
            (platform, agents)
        }
    };
    let running = report.as_ref().is_some_and(|r| r.platform_running());
    let writer = match state.writer_figures(running).await {
        None => Check::pass("no writer figures (no writer in this process, no platform publishing)"),
        Some(stats) => {
            let depth = stats["queue_depth"].as_f64().unwrap_or(0.0);
            let capacity = stats["queue_capacity"].as_f64().unwrap_or(0.0);
            if capacity > 0.0 && depth >= capacity * BACKLOG_RATIO {
                Check::fail(format!("backlogged: {depth} of {capacity} queued"))
            } else {
                Check::pass(format!("{depth} of {capacity} queued"))
            }
        }
    };
    let checks = [("database", database), ("writer", writer), ("platform", platform), ("agents", agents)];
    let failed: Vec<&str> = checks.iter().filter(|(_, c)| !c.ok).map(|(name, _)| *name).collect();
    let ready = failed.is_empty();
    let body = json!({
        "ready": ready,
        "failed": failed,
        "checks": checks.iter().map(|(name, check)| (name.to_string(), json!(check))).collect::<serde_json::Map<_, _>>(),
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
