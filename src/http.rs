//! The HTTP service: Prometheus metrics, health probes and a JSON API over the shared
//! state, for `vigil run --http ADDR`, `vigil dashboard` (the database alone, no agents)
//! and applications that mount it in their own actix-web app ([`configure`]).
//!
//! | method | path                                   | what                                                    |
//! |--------|----------------------------------------|---------------------------------------------------------|
//! | GET    | `/healthz`                             | the process answers: always `200 {"status":"ok"}`        |
//! | GET    | `/readyz`                              | `200` or `503`, with each check (`database`, `writer`, `platform`, `agents`) and which failed |
//! | GET    | `/metrics`                             | Prometheus text format (see [`metrics`] for every name) |
//! | GET    | `/api/v1/status`                       | what `vigil status --json` prints                       |
//! | GET    | `/api/v1/events?limit=&agent=&severity=&type=` | `{"events": [...]}`, oldest first, as `vigil events --json` |
//! | GET    | `/api/v1/metrics?agent=&name=&since=&limit=`   | `{"metrics": [...]}`, newest first, as `vigil metrics --json` |
//! | GET    | `/api/v1/health`                       | what `vigil health --json` prints                       |
//! | GET    | `/api/v1/nodes`                        | what `vigil nodes --json` prints (PostgreSQL; `409` on SQLite) |
//! | GET    | `/api/v1/service`                      | what serves it: `mode` (`runtime`/`database`), `node`, `database`, `backend`, `operator_actions`, `version` |
//! | GET    | `/api/v1/agents?since=24h`             | `/api/v1/status` with each agent's `restarts` and `failures` in the window, `since_secs`, `transitions_truncated`, `writer` (the writer's figures or `null`) |
//! | GET    | `/api/v1/agents/{id}/timeline?since=1h&limit=200` | `{"agent_id", "since_secs", "transitions": [{"event_id", "at", "from", "to", "trigger", "cause", "failure"}]}`, oldest first; `404` for an unknown agent |
//! | GET    | `/api/v1/series?name=&agent=&since=1h&step=` | a metric (or `heartbeats`: per minute) bucketed over the window: `{"name", "agent", "unit", "since_secs", "step_secs", "start", "truncated", "points": [{"t", "count", "value", "min", "max"}]}` (see [`crate::report::Series`]); `name` required, at most 1000 buckets |
//! | GET    | `/api/v1/series/names?since=1h`        | `{"since_secs", "series": [{"name", "agents", "samples"}]}`: `heartbeats`, then every metric recorded in the window |
//! | GET    | `/api/v1/help?limit=20&status=`        | `{"requests": [{"request_id", "query", "query_truncated", "status", "created_at", "claimed_at", "claimed_by", "response": {"response", "truncated", "status", "at", "took_secs"} or null}]}`, newest first, texts cut at 2000 characters |
//! | GET    | `/api/v1/workflows?limit=20&status=`   | `{"runs": [...]}`, newest first, each as `vigil workflows --json` |
//! | GET    | `/api/v1/alerts?limit=50`              | `{"deliveries": [...], "webhooks": [...] \| null, "leading": bool \| null}`: alert delivery attempts, newest first (webhook names, never URLs); the webhooks' figures when this process alerts |
//! | GET    | `/api/v1/events/stream?after=`         | server-sent events: each new event as `id: N`, `event: event`, `data: <JSON as /api/v1/events>`; resumes after `Last-Event-ID` (see [`stream`]) |
//! | POST   | `/api/v1/agents/{id}/restart\|stop\|fix` | an operator action (bearer token; see below), `200 {"outcome": ...}` |
//! | GET    | `/`                                    | the dashboard page (see [`dashboard`]); `/assets/app.js`, `/assets/charts.js`, `/assets/style.css` |
//!
//! Errors are JSON: `{"error": "..."}` with `400` (a bad query value, named), `401`
//! (no or wrong token), `403` (operator actions not enabled), `404` (no such agent),
//! `409` (no platform runs; nodes on SQLite), `502` (the platform tried and failed),
//! `503` (the database did not answer), `504` (nothing carried the action out in time).
//!
//! **Computed at read time.** Nothing is cached between requests. Whether a platform
//! and its agents run, heartbeat ages, the help backlog: each request reads the
//! database and decides liveness as `vigil status` does
//! ([`vigil_persistence::presence`]), so a killed platform never looks healthy. The
//! writer's figures are this process's writer when it has one (`vigil run`), else the
//! figures a *running* platform published (dashboard mode); a dead platform's last
//! figures are not served as the present. Cycle, failure and restart counts need a
//! runtime in the process ([`HttpState::with_runtime`]); failures and restarts are
//! counted from its lifecycle events from the moment the state is built.
//!
//! **The dashboard.** `/` is a page compiled into the binary that shows the agents, a
//! live events feed, charts, help requests and workflow runs from the endpoints above
//! (see [`dashboard`]). It works in `vigil dashboard` too, where it says the data comes
//! from the database alone and offers no operator actions.
//!
//! **Security.** Every endpoint reads, unless operator actions are enabled with a
//! bearer token ([`HttpState::with_operator_token`]; `vigil run --http-token-env NAME`
//! reads it from the environment variable `NAME`, never from the command line). Then
//! `POST /api/v1/agents/{id}/restart|stop|fix` with `Authorization: Bearer <token>`
//! goes through the same control plane as `vigil agent ...` ([`crate::command`]).
//! Tokens are compared in constant time and never logged or echoed. No response holds
//! a connection string's password or an API key: the database is named by
//! [`DatabaseConfig::describe`](vigil_persistence::DatabaseConfig::describe). The
//! service binds loopback unless told otherwise and speaks plain HTTP: put a TLS proxy
//! in front to expose it.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use vigil::http::HttpState;
//!
//! # async fn demo(runtime: vigil::runtime::Runtime) -> std::io::Result<()> {
//! let state = HttpState::new(runtime.shared_state().clone()).with_runtime(runtime.clone());
//! HttpServer::new(move || {
//!     let state = state.clone();
//!     App::new().configure(move |cfg| vigil::http::configure(cfg, &state))
//! })
//! .bind(("127.0.0.1", 7700))?
//! .run()
//! .await
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use vigil_persistence::SharedState;
use vigil_runtime::Runtime;

mod api;
mod counters;
pub mod dashboard;
mod history;
pub mod metrics;
mod probes;
mod server;
pub mod stream;

pub use server::{HttpServerHandle, serve};

/// What the endpoints read: the shared state, and when the process runs agents, the
/// runtime. Cheap to clone (every worker of a server holds one).
#[derive(Clone)]
pub struct HttpState {
    /// The database, through this process's writer when it has one.
    shared: SharedState,
    /// The runtime of this process, for cycle counts and readiness of its own agents.
    runtime: Option<Runtime>,
    /// The bearer token that enables operator actions; `None`: read-only.
    token: Option<Arc<str>>,
    /// Failures and restarts, counted from the runtime's lifecycle events.
    counts: Arc<Mutex<counters::LifecycleCounts>>,
    /// How long an operator action waits for the platform's outcome.
    action_timeout: Duration,
    /// The event streams: how many are open, and the signal that ends them.
    streams: Arc<stream::StreamRegistry>,
    /// The longest silence of an event stream before a keepalive comment.
    stream_keepalive: Duration,
    /// The alerter of this process, when it has one (`vigil run` with webhooks).
    alerts: Option<crate::alerts::AlerterView>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never shown: only whether there is one.
        f.debug_struct("HttpState")
            .field("database", &self.shared.store().config().describe())
            .field("runtime", &self.runtime.as_ref().map(Runtime::node_id))
            .field("operator_actions", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// Read-only endpoints over `shared`, with no runtime (the dashboard's mode).
    pub fn new(shared: SharedState) -> Self {
        Self {
            shared,
            runtime: None,
            token: None,
            counts: Arc::default(),
            action_timeout: Duration::from_secs(30),
            streams: Arc::default(),
            stream_keepalive: stream::KEEPALIVE,
            alerts: None,
        }
    }

    /// Adds the alerter of this process: its webhooks' figures in `/metrics` and
    /// `/api/v1/alerts` (the delivery records are read from the database either way).
    #[must_use]
    pub fn with_alerts(mut self, alerter: crate::alerts::AlerterView) -> Self {
        self.alerts = Some(alerter);
        self
    }

    /// Adds the runtime of this process: its agents' cycle counts, and its failures and
    /// restarts, counted from now on by a task that follows its lifecycle events (call
    /// it inside the actix system that runs the runtime).
    #[must_use]
    pub fn with_runtime(mut self, runtime: Runtime) -> Self {
        counters::follow(runtime.subscribe(), Arc::clone(&self.counts));
        self.runtime = Some(runtime);
        self
    }

    /// Enables operator actions for requests that carry `Authorization: Bearer
    /// <token>`. An empty token enables nothing.
    #[must_use]
    pub fn with_operator_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then(|| Arc::from(token));
        self
    }

    /// How long an operator action waits for the platform's outcome (default 30 s).
    #[must_use]
    pub fn with_action_timeout(mut self, timeout: Duration) -> Self {
        self.action_timeout = timeout;
        self
    }

    /// The longest silence of `/api/v1/events/stream` before a `: keepalive` comment
    /// (default [`stream::KEEPALIVE`], 15 s): shorter behind a proxy that closes idle
    /// connections sooner. A client that went away is noticed at the next write.
    #[must_use]
    pub fn with_stream_keepalive(mut self, keepalive: Duration) -> Self {
        self.stream_keepalive = keepalive;
        self
    }

    /// How many `/api/v1/events/stream` responses are open (not ended or dropped).
    pub fn open_event_streams(&self) -> usize {
        self.streams.open()
    }

    /// Ends every open `/api/v1/events/stream` response, and those opened later, so a
    /// graceful shutdown does not wait for browsers ([`HttpServerHandle::stop`] calls
    /// it; an application serving [`configure`] itself calls it before stopping).
    pub fn close_event_streams(&self) {
        self.streams.close_all();
    }

    /// Whether operator actions are enabled (a token was given).
    pub fn operator_actions_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// The shared state the endpoints read.
    pub fn shared_state(&self) -> &SharedState {
        &self.shared
    }

    /// The writer's figures (`PersistenceStats` as JSON): this process's writer when
    /// it has one, else those a running platform published; `None` otherwise, so the
    /// last figures of a dead platform are never served as the present.
    async fn writer_figures(&self, platform_running: bool) -> Option<serde_json::Value> {
        if let Some(stats) = self.shared.writer_stats() {
            return serde_json::to_value(stats).ok();
        }
        if !platform_running {
            return None;
        }
        self.shared.get_system_state(crate::report::PERSISTENCE_STATS_KEY).await.ok().flatten()
    }
}

/// Mounts every endpoint of the table above on `cfg`, for
/// `App::new().configure(|cfg| vigil::http::configure(cfg, &state))`.
pub fn configure(cfg: &mut web::ServiceConfig, state: &HttpState) {
    cfg.app_data(web::Data::new(state.clone()))
        .route("/", web::get().to(dashboard::index))
        .route("/assets/{name}", web::get().to(dashboard::asset))
        .route("/healthz", web::get().to(probes::healthz))
        .route("/readyz", web::get().to(probes::readyz))
        .route("/metrics", web::get().to(metrics::scrape))
        .service(
            web::scope("/api/v1")
                .route("/status", web::get().to(api::status))
                .route("/events", web::get().to(api::events))
                .route("/events/stream", web::get().to(stream::events))
                .route("/metrics", web::get().to(api::metrics))
                .route("/health", web::get().to(api::health))
                .route("/nodes", web::get().to(api::nodes))
                .route("/service", web::get().to(dashboard::service))
                .route("/agents", web::get().to(history::agents))
                .route("/agents/{id}/timeline", web::get().to(history::timeline))
                .route("/series", web::get().to(history::series))
                .route("/series/names", web::get().to(history::series_names))
                .route("/help", web::get().to(history::help))
                .route("/workflows", web::get().to(history::workflows))
                .route("/alerts", web::get().to(api::alerts))
                .route("/agents/{id}/{action}", web::post().to(api::agent_action)),
        );
}
