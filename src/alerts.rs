//! Alert delivery: incidents found in the shared state, sent to webhooks — one
//! `firing`, then one `resolved`, per incident and webhook.
//!
//! ```text
//!  evaluator (every evaluate_interval)            one task per webhook
//!  ───────────────────────────────────            ──────────────────────────────
//!  lead? (claim, see "Several nodes")             bounded queue (drops the oldest)
//!  new system_events since the cursor ─┐          POST json | slack, timeout,
//!  liveness of every agent ────────────┤          retries with backoff + jitter
//!                                      ▼          every attempt ─▶ alert_deliveries
//!                              IncidentBook ──push──▶ (through the writer, not awaited)
//! ```
//!
//! **Rules.** An incident has a key, `rule:subject`:
//!
//! - `agent_silent:<agent>` (critical) — an agent whose node runs but whose last
//!   heartbeat is older than `silent_after_intervals` of its own heartbeat interval,
//!   judged at read time as [`vigil_persistence::presence`] judges liveness. An agent
//!   stopped on purpose (`shutdown`) is not silent. Resolved when it heartbeats again,
//!   is stopped, or no running node runs it any more.
//! - `event:<event_type>/<agent>` — a `system_events` row at or above the lowest
//!   `min_severity` of the webhooks (the agent is the event's `agent_id`, if any).
//!   Repeats fold into the open incident without a new alert; it resolves once the
//!   event has not recurred for `dedup_window`. Events are read by row id from the
//!   newest at start-up: history is never replayed.
//!
//! Each webhook gets an incident if it [accepts](WebhookConfig::accepts) its type and
//! severity; an incident whose severity rises later reaches the stricter webhooks then.
//! Payloads are in [`payload`]; the attempt records in
//! [`vigil_persistence::alert_deliveries`].
//!
//! **Never in the way.** The evaluator is a task of its own and only pushes to the
//! webhooks' queues; each webhook's task posts with a timeout. A dead or hanging
//! webhook delays its own notifications, nothing else (see [`delivery`]).
//!
//! **Several nodes** (PostgreSQL). Every `vigil run` with webhooks starts an alerter,
//! but only one evaluates: the holder of the claim `vigil.alerter` (the atomic,
//! expiring [`SharedState::claim_incident`] the monitors use for restarts), which it
//! renews at every pass; the others only try to take it. A leader that dies is replaced
//! within the claim's lifetime (3 passes, at least 10 s). Its successor starts with an
//! empty book and a fresh cursor: incidents still open are announced again by it, and
//! the `resolved` of an incident announced by the dead leader comes from no one — an
//! accepted cost of a failover, not of normal operation. On SQLite there is one node.
//!
//! ```no_run
//! # async fn demo(shared: vigil::SharedState) -> Result<(), vigil::alerts::AlertError> {
//! use vigil::alerts::{Alerter, AlertsConfig, WebhookConfig, WebhookFormat};
//! let webhook = WebhookConfig::new("ops", "https://hooks.example/alert", WebhookFormat::Json)?;
//! let config = AlertsConfig { webhooks: vec![webhook], ..AlertsConfig::default() };
//! let alerter = Alerter::start(shared, config, "my-node")?;
//! // ...
//! alerter.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod delivery;
pub mod incidents;
pub mod payload;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vigil_persistence::presence::Liveness;
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::{Severity, SharedState, State};

pub use config::{AlertConfigError, AlertsConfig, WebhookConfig, WebhookFormat, WebhookUrl};
pub use delivery::WebhookStats;

use delivery::{Courier, WebhookQueue};
use incidents::IncidentBook;

/// The subject of the claim that elects the evaluating node.
pub const LEADER_CLAIM: &str = "vigil.alerter";

/// Events read per pass at most; a burst beyond it is skipped (and logged).
const EVENTS_PER_PASS: i64 = 1000;

/// Why an alerter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// The configuration is wrong.
    #[error("alerts.{0}")]
    Config(#[from] AlertConfigError),
    /// The HTTP client could not be built.
    #[error("alerts: cannot build the HTTP client: {0}")]
    Client(String),
}

/// A running alerter: its evaluator and one delivery task per webhook.
#[derive(Debug)]
pub struct Alerter {
    stop: watch::Sender<bool>,
    evaluator: JoinHandle<()>,
    couriers: Vec<JoinHandle<()>>,
    view: AlerterView,
    grace: Duration,
}

/// A running alerter's figures, cheap to clone and to read: what `/metrics` and
/// `/api/v1/alerts` show of the alerter of their process
/// ([`HttpState::with_alerts`](crate::http::HttpState::with_alerts)).
#[derive(Debug, Clone)]
pub struct AlerterView {
    queues: Vec<Arc<WebhookQueue>>,
    status: Arc<EvaluatorStatus>,
}

impl AlerterView {
    /// Evaluation passes completed successfully so far (as leader or not): a pass that
    /// ends after an event was committed has seen it.
    pub fn passes(&self) -> u64 {
        self.status.passes.load(Ordering::Acquire)
    }

    /// Whether this alerter evaluates (holds the leader claim, see the module doc).
    pub fn is_leading(&self) -> bool {
        self.status.leading.load(Ordering::Acquire)
    }

    /// Each webhook's figures, in configuration order.
    pub fn stats(&self) -> Vec<WebhookStats> {
        self.queues.iter().map(|q| q.stats()).collect()
    }
}

/// What the evaluator shows of itself.
#[derive(Debug, Default)]
struct EvaluatorStatus {
    /// Passes completed (as leader or not).
    passes: AtomicU64,
    /// Whether this node evaluates (holds the leader claim).
    leading: AtomicBool,
}

impl Alerter {
    /// Starts alerting on `shared` as `node` (the id in payloads and in the leader
    /// claim; `Runtime::node_id` in a platform). Must be called inside a tokio runtime.
    pub fn start(
        shared: SharedState,
        config: AlertsConfig,
        node: impl Into<String>,
    ) -> Result<Self, AlertError> {
        config.validate()?;
        let node = node.into();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| AlertError::Client(e.without_url().to_string()))?;
        let queues: Vec<Arc<WebhookQueue>> = config
            .webhooks
            .iter()
            .map(|w| Arc::new(WebhookQueue::new(&w.name, config.queue_capacity)))
            .collect();
        let couriers = config
            .webhooks
            .iter()
            .zip(&queues)
            .map(|(webhook, queue)| {
                let courier = Courier {
                    webhook: webhook.clone(),
                    queue: queue.clone(),
                    client: client.clone(),
                    shared: shared.clone(),
                    retry: config.retry.clone(),
                    node: node.clone(),
                };
                tokio::spawn(courier.run())
            })
            .collect();
        let (stop, stopped) = watch::channel(false);
        let grace = config.shutdown_grace;
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        tracing::info!(webhooks = ?names, node = %node, "alerter started");
        let status = Arc::new(EvaluatorStatus::default());
        let evaluator = Evaluator {
            shared,
            config,
            node,
            queues: queues.clone(),
            book: IncidentBook::default(),
            status: status.clone(),
        };
        let evaluator = tokio::spawn(evaluator.run(stopped));
        Ok(Self { stop, evaluator, couriers, view: AlerterView { queues, status }, grace })
    }

    /// Its figures, now and later (a view that outlives no task: it reads counters).
    pub fn view(&self) -> AlerterView {
        self.view.clone()
    }

    /// Evaluation passes completed successfully so far (see [`AlerterView::passes`]).
    pub fn passes(&self) -> u64 {
        self.view.passes()
    }

    /// Whether this alerter evaluates (holds the leader claim, see the module doc).
    pub fn is_leading(&self) -> bool {
        self.view.is_leading()
    }

    /// Each webhook's figures, in configuration order.
    pub fn stats(&self) -> Vec<WebhookStats> {
        self.view.stats()
    }

    /// Stops evaluating, lets the webhooks' tasks deliver what is queued for up to
    /// `shutdown_grace`, then stops them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.evaluator.await;
        self.view.queues.iter().for_each(|q| q.close());
        let deadline = Instant::now() + self.grace;
        for mut courier in self.couriers {
            if tokio::time::timeout_at(deadline, &mut courier).await.is_err() {
                courier.abort();
            }
        }
        for stats in self.view.stats().into_iter().filter(|s| s.queued > 0 || s.dropped > 0) {
            tracing::warn!(webhook = %stats.name, unsent = stats.queued, dropped = stats.dropped, "alerter stopped with notifications not delivered");
        }
    }
}

/// For `vigil run`: an alerter when `config` names webhooks (`None` otherwise, or when
/// it cannot start, which is logged: alerts never keep the platform from running).
pub fn start_for_platform(shared: &SharedState, config: &AlertsConfig, node: &str) -> Option<Alerter> {
    if config.webhooks.is_empty() {
        return None;
    }
    Alerter::start(shared.clone(), config.clone(), node)
        .inspect_err(|e| tracing::error!(error = %e, "alerts disabled: the alerter could not start"))
        .ok()
}

/// [`Alerter::shutdown`] of an optional alerter.
pub async fn shutdown(alerter: Option<Alerter>) {
    if let Some(alerter) = alerter {
        alerter.shutdown().await;
    }
}

/// The evaluating task.
struct Evaluator {
    shared: SharedState,
    config: AlertsConfig,
    node: String,
    queues: Vec<Arc<WebhookQueue>>,
    book: IncidentBook,
    status: Arc<EvaluatorStatus>,
}

/// What the evaluator carries from one pass to the next.
#[derive(Default)]
struct Progress {
    leading: bool,
    /// The last event id read; `None` until the first pass as leader.
    cursor: Option<i32>,
    /// The last error logged, so an outage is logged once, not every pass.
    last_error: Option<String>,
}

impl Evaluator {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.evaluate_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = Progress::default();
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = ticker.tick() => {}
            }
            // A pass waits on the database; a stop does not wait for it.
            let result = tokio::select! {
                _ = stopped.changed() => return,
                result = self.pass(&mut progress) => result,
            };
            match result {
                Ok(()) => {
                    progress.last_error = None;
                    self.status.passes.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) => {
                    let text = e.to_string();
                    if progress.last_error.as_ref() != Some(&text) {
                        tracing::warn!(error = %text, "alert evaluation failed; retried at the next pass");
                    }
                    progress.last_error = Some(text);
                }
            }
        }
    }

    async fn pass(&mut self, progress: &mut Progress) -> Result<(), vigil_persistence::StoreError> {
        let ttl = (self.config.evaluate_interval * 3).max(Duration::from_secs(10));
        let leading = self.shared.claim_incident(LEADER_CLAIM, &self.node, ttl).await?;
        if leading != progress.leading {
            tracing::info!(node = %self.node, leading, "alerter leadership changed");
            progress.leading = leading;
            self.status.leading.store(leading, Ordering::Release);
            progress.cursor = None;
            self.book.clear();
        }
        if !leading {
            return Ok(());
        }
        let now = Instant::now();
        self.read_events(progress, now).await?;
        self.judge_agents(now).await?;
        self.book.settle_events(self.config.dedup_window, now);
        for (index, notification) in self.book.notifications(&self.config.webhooks) {
            self.queues[index].push(notification);
        }
        Ok(())
    }

    /// Folds the events written since the last pass into the book.
    async fn read_events(
        &mut self,
        progress: &mut Progress,
        now: Instant,
    ) -> Result<(), vigil_persistence::StoreError> {
        let Some(cursor) = progress.cursor else {
            // First pass as leader: start from the newest event, replay nothing.
            let newest =
                self.shared.recent_events(EventFilter { limit: Some(1), ..Default::default() }).await?;
            progress.cursor = Some(newest.first().map_or(0, |e| e.id));
            return Ok(());
        };
        let lowest = self.config.webhooks.iter().map(|w| w.min_severity).min().unwrap_or(Severity::Critical);
        let filter = EventFilter {
            min_severity: Some(lowest),
            after_id: Some(cursor),
            limit: Some(EVENTS_PER_PASS),
            ..Default::default()
        };
        let mut events = self.shared.recent_events(filter).await?;
        if events.len() as i64 == EVENTS_PER_PASS {
            tracing::warn!(
                read = EVENTS_PER_PASS,
                "more severe events than one pass reads: the oldest of them were skipped"
            );
        }
        events.reverse();
        for event in &events {
            let severity = event.severity.as_deref().and_then(Severity::parse).unwrap_or_default();
            if self.config.webhooks.iter().any(|w| w.accepts(&event.event_type, severity)) {
                self.book.observe_event(event, severity, now);
            }
            progress.cursor = Some(event.id.max(cursor));
        }
        Ok(())
    }

    /// Opens an incident per silent agent, resolves those no longer silent.
    async fn judge_agents(&mut self, now: Instant) -> Result<(), vigil_persistence::StoreError> {
        let report = self.shared.liveness().await?;
        let mut silent = BTreeSet::new();
        for agent in &report.agents {
            let interval = Duration::from_secs_f64(agent.heartbeat_interval_secs);
            let Some(age) = agent.heartbeat_age_secs.map(Duration::from_secs_f64) else { continue };
            let on_purpose = agent.recorded_state == Some(State::Shutdown);
            if agent.liveness != Liveness::NotRunning
                && !on_purpose
                && age > interval * self.config.silent_after_intervals
            {
                self.book.observe_silent(&agent.agent_id, age, interval, now);
                silent.insert(agent.agent_id.clone());
            }
        }
        self.book.settle_silent(&silent);
        Ok(())
    }
}
