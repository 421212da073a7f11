//! `/metrics`: the Prometheus text format, rendered with `prometheus-client` from a
//! registry built at each scrape (every value is read now; nothing is kept between
//! scrapes but the lifecycle counts of [`HttpState`]).
//!
//! | name | type | labels | from |
//! |------|------|--------|------|
//! | `vigil_database_up` | gauge | | the database answered this scrape's reads (0: the rows below that come from it are missing) |
//! | `vigil_platform_running` | gauge | | a platform runs on the database, decided now |
//! | `vigil_platform_healthy` | gauge | | as `vigil status --json`'s `healthy` |
//! | `vigil_platforms` | gauge | `status` (`running`, `stopped`, `process_gone`, `lease_expired`) | recorded presences, judged now |
//! | `vigil_agents` | gauge | `state` (recorded lifecycle state, `unknown`), `liveness` (`running`, `silent`, `not_running`) | agents by state |
//! | `vigil_agent_up` | gauge | `agent` | 1 when the agent runs (liveness `running`) |
//! | `vigil_agent_heartbeat_age_seconds` | gauge | `agent` | age of its last heartbeat |
//! | `vigil_agent_heartbeat_interval_seconds` | gauge | `agent` | its own heartbeat interval |
//! | `vigil_help_requests_pending` | gauge | | the help-request backlog |
//! | `vigil_help_requests_processing` | gauge | | help requests claimed, not answered |
//! | `vigil_help_request_oldest_pending_age_seconds` | gauge | | age of the oldest pending one (0 when none) |
//! | `vigil_agent_cycles_total` | counter | `agent` | cycles since the agent was spawned (runtime) |
//! | `vigil_agent_cycle_overruns_total` | counter | `agent` | ticks skipped while a cycle ran (runtime) |
//! | `vigil_agent_cycle_busy_seconds_total` | counter | `agent` | time spent in cycles (runtime) |
//! | `vigil_agent_failures_total` | counter | `agent`, `stage`, `kind` | failures seen since the service started (runtime) |
//! | `vigil_agent_restarts_total` | counter | `agent`, `cause` (`failure`, `requested`, `sibling`, `other`) | restarts since the service started (runtime) |
//! | `vigil_supervisor_escalations_total` | counter | `supervisor` | supervisors that exceeded their restart intensity and gave up (runtime) |
//! | `vigil_lifecycle_events_missed_total` | counter | | lifecycle events the counter fell behind on (runtime) |
//! | `vigil_writer_queue_depth` | gauge | | writes queued |
//! | `vigil_writer_queue_capacity` | gauge | | the queue's capacity |
//! | `vigil_writer_batches_total` | counter | | transactions committed |
//! | `vigil_writer_writes_total` | counter | | writes committed |
//! | `vigil_writer_rows_total` | counter | `kind` (the write kind) | writes committed by kind |
//! | `vigil_writer_batch_size_mean` | gauge | | mean writes per transaction |
//! | `vigil_writer_batch_size` | histogram | `le` (1 … 5000 writes) | writes per drained batch, every batch since the writer started |
//! | `vigil_writer_commit_latency_seconds` | histogram | `le` (1 ms … 10 s) | drain-to-commit time of every batch since the writer started |
//! | `vigil_writer_retries_total` | counter | | transient failures retried |
//! | `vigil_writer_rejected_writes_total` | counter | | writes refused with their own error |
//! | `vigil_writer_fenced_writes_total` | counter | | late writes of agents another node took over |
//! | `vigil_writer_refused_writes_total` | counter | | fire-and-forget writes refused on a full queue |
//! | `vigil_writer_recovered_commits_total` | counter | | commits of unknown outcome that had succeeded |
//! | `vigil_alerter_leading` | gauge | | this process's alerter evaluates incidents (alerter) |
//! | `vigil_alert_notifications_total` | counter | `webhook` (configured name), `outcome` (`delivered`, `gave_up`, `dropped`) | notifications by how they ended (alerter) |
//! | `vigil_alert_failed_attempts_total` | counter | `webhook` | delivery attempts that failed (alerter) |
//! | `vigil_alert_queue_depth` | gauge | `webhook` | notifications waiting (alerter) |
//! | `vigil_pool_connections` | gauge | `state` (`idle`, `in_use`) | this process's pool |
//! | `vigil_pool_max_connections` | gauge | | its maximum |
//! | `vigil_pool_checkouts_total` | counter | | checkouts |
//! | `vigil_pool_checkouts_waited_total` | counter | | checkouts that waited |
//! | `vigil_pool_checkout_timeouts_total` | counter | | checkouts that gave up |
//! | `vigil_pool_connections_closed_broken_total` | counter | | connections found broken |
//! | `vigil_pool_wait_mean_seconds` | gauge | | mean wait per checkout |
//! | `vigil_queries_total` | counter | | statements attempted by this process |
//! | `vigil_query_errors_total` | counter | | failed attempts |
//! | `vigil_query_connection_errors_total` | counter | | attempts that failed because the connection did |
//! | `vigil_query_duration_mean_seconds` | gauge | | mean time per attempt |
//!
//! The writer's metrics are this process's writer, or (dashboard) those a running
//! platform published; none when neither. The two histograms are the writer's own
//! bucket counts ([`vigil_persistence::Histogram`]), served as they are. Labels are bounded:
//! agent ids (the fleet), enums; never free text.

use std::sync::atomic::AtomicU64;

use actix_web::{HttpResponse, web};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use vigil_persistence::presence::{Liveness, PlatformVerdict, age_of};

use super::HttpState;

/// Label pairs: bounded keys and values only.
type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A registry and the helpers that register one value at a time.
struct Scrape {
    registry: Registry,
}

impl Scrape {
    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, value: f64) {
        let gauge = FloatGauge::default();
        gauge.set(value);
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, gauge),
            None => self.registry.register(name, help, gauge),
        }
    }

    /// `name` without `_total`: the encoder appends it.
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        self.registry.register(name, help, counter);
    }

    fn gauges(&mut self, name: &str, help: &str, unit: Option<Unit>) -> Family<Labels, FloatGauge> {
        let family = Family::<Labels, FloatGauge>::default();
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, family.clone()),
            None => self.registry.register(name, help, family.clone()),
        }
        family
    }

    fn counters(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let family = Family::<Labels, Counter>::default();
        self.registry.register(name, help, family.clone());
        family
    }

    fn float_counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
    ) -> Family<Labels, Counter<f64, AtomicU64>> {
        let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
        self.registry.register_with_unit(name, help, unit, family.clone());
        family
    }
}

/// A histogram whose buckets were counted elsewhere (by the writer), encoded as a
/// Prometheus histogram. `buckets` are `(upper bound, count)`, not cumulative, the
/// last bound `f64::MAX` (`+Inf` to the encoder).
#[derive(Debug)]
struct CountedHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl CountedHistogram {
    /// Reads a serialized [`vigil_persistence::Histogram`]; `None` when it is missing
    /// or malformed (figures published by an older platform).
    fn from_json(value: &serde_json::Value) -> Option<Self> {
        let bounds = value["bounds"].as_array()?;
        let counts = value["counts"].as_array()?;
        if counts.len() != bounds.len() + 1 {
            return None;
        }
        let bounds = bounds.iter().map(serde_json::Value::as_f64).chain([Some(f64::MAX)]);
        let buckets = bounds
            .zip(counts)
            .map(|(bound, count)| Some((bound?, count.as_u64()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { sum: value["sum"].as_f64()?, count: value["count"].as_u64()?, buckets })
    }
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn agent(id: &str) -> Labels {
    vec![("agent", id.to_owned())]
}

/// `GET /metrics`.
pub(super) async fn scrape(state: web::Data<HttpState>) -> HttpResponse {
    let text = render(&state).await;
    HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text)
}

/// Renders every metric of the table above, read now.
pub async fn render(state: &HttpState) -> String {
    let mut s = Scrape { registry: Registry::default() };
    let shared = state.shared_state();

    // From the database, judged now.
    let report = shared.liveness().await.ok();
    // Counted by the database: no request's text is read at a scrape.
    let backlog = shared.help_backlog().await.ok();
    let database_up = report.is_some() && backlog.is_some();
    s.gauge(
        "vigil_database_up",
        "Whether the database answered this scrape's reads.",
        None,
        f64::from(u8::from(database_up)),
    );
    let running = report.as_ref().is_some_and(|r| r.platform_running());
    if let Some(report) = &report {
        s.gauge(
            "vigil_platform_running",
            "Whether a platform runs on the database, decided now.",
            None,
            f64::from(u8::from(running)),
        );
        s.gauge(
            "vigil_platform_healthy",
            "A platform runs and every agent it runs is running and active.",
            None,
            f64::from(u8::from(report.healthy())),
        );
        let platforms =
            s.gauges("vigil_platforms", "Recorded platform presences by verdict, judged now.", None);
        for status in ["running", "stopped", "process_gone", "lease_expired"] {
            platforms.get_or_create(&vec![("status", status.to_owned())]).set(0.0);
        }
        for platform in &report.platforms {
            let status = match platform.status {
                PlatformVerdict::Running => "running",
                PlatformVerdict::Stopped { .. } => "stopped",
                PlatformVerdict::ProcessGone => "process_gone",
                PlatformVerdict::LeaseExpired { .. } => "lease_expired",
            };
            platforms.get_or_create(&vec![("status", status.to_owned())]).inc();
        }
        let agents = s.gauges("vigil_agents", "Agents by recorded state and liveness (decided now).", None);
        let up = s.gauges(
            "vigil_agent_up",
            "1 when the agent runs: its node runs and its heartbeat is recent.",
            None,
        );
        let age =
            s.gauges("vigil_agent_heartbeat_age", "Age of the agent's last heartbeat.", Some(Unit::Seconds));
        let interval = s.gauges(
            "vigil_agent_heartbeat_interval",
            "The agent's own heartbeat interval.",
            Some(Unit::Seconds),
        );
        for view in &report.agents {
            let liveness = match view.liveness {
                Liveness::Running => "running",
                Liveness::Silent => "silent",
                Liveness::NotRunning => "not_running",
            };
            let recorded = view.recorded_state.map_or("unknown", |s| s.as_str());
            agents
                .get_or_create(&vec![("state", recorded.to_owned()), ("liveness", liveness.to_owned())])
                .inc();
            up.get_or_create(&agent(&view.agent_id))
                .set(f64::from(u8::from(view.liveness == Liveness::Running)));
            if let Some(secs) = view.heartbeat_age_secs {
                age.get_or_create(&agent(&view.agent_id)).set(secs);
            }
            interval.get_or_create(&agent(&view.agent_id)).set(view.heartbeat_interval_secs);
        }
    }
    if let Some(backlog) = &backlog {
        s.gauge(
            "vigil_help_requests_pending",
            "Help requests waiting for the help agent.",
            None,
            backlog.pending as f64,
        );
        s.gauge(
            "vigil_help_requests_processing",
            "Help requests claimed and not yet answered.",
            None,
            backlog.processing as f64,
        );
        let oldest = backlog.oldest_pending_at.map_or(0.0, |at| age_of(at).as_secs_f64());
        s.gauge(
            "vigil_help_request_oldest_pending_age",
            "Age of the oldest pending help request (0 when none).",
            Some(Unit::Seconds),
            oldest,
        );
    }

    // From the runtime of this process.
    if let Some(runtime) = &state.runtime {
        let cycles = s.counters("vigil_agent_cycles", "Cycles completed since the agent was spawned.");
        let overruns =
            s.counters("vigil_agent_cycle_overruns", "Cycle ticks skipped because a cycle still ran.");
        let busy =
            s.float_counters("vigil_agent_cycle_busy", "Time spent in completed cycles.", Unit::Seconds);
        for status in runtime.statuses().await {
            let labels = agent(&status.agent_id);
            cycles.get_or_create(&labels).inc_by(status.cycles);
            overruns.get_or_create(&labels).inc_by(status.overruns);
            busy.get_or_create(&labels).inc_by(status.busy_micros as f64 / 1e6);
        }
        let failures = s
            .counters("vigil_agent_failures", "Agent failures by stage and kind, since the service started.");
        let restarts =
            s.counters("vigil_agent_restarts", "Agent restarts by cause, since the service started.");
        let escalations = s.counters(
            "vigil_supervisor_escalations",
            "Supervisors that exceeded their restart intensity and gave up, since the service started.",
        );
        let missed = match state.counts.lock() {
            Ok(counts) => {
                for ((id, stage, kind), n) in &counts.failures {
                    let labels = vec![
                        ("agent", id.clone()),
                        ("stage", (*stage).to_owned()),
                        ("kind", (*kind).to_owned()),
                    ];
                    failures.get_or_create(&labels).inc_by(*n);
                    // A supervisor that gives up reports an escalated failure of its own.
                    if *kind == "escalated" {
                        escalations.get_or_create(&vec![("supervisor", id.clone())]).inc_by(*n);
                    }
                }
                for ((id, cause), n) in &counts.restarts {
                    restarts
                        .get_or_create(&vec![("agent", id.clone()), ("cause", (*cause).to_owned())])
                        .inc_by(*n);
                }
                counts.missed
            }
            Err(_) => 0,
        };
        s.counter(
            "vigil_lifecycle_events_missed",
            "Lifecycle events the failure and restart counts missed.",
            missed,
        );
    }

    // The writer: this process's, or a running platform's published figures.
    if let Some(stats) = state.writer_figures(running).await {
        let number = |key: &str| stats[key].as_f64().unwrap_or(0.0);
        let count = |key: &str| stats[key].as_u64().unwrap_or(0);
        s.gauge(
            "vigil_writer_queue_depth",
            "Writes queued (the batch in flight not included).",
            None,
            number("queue_depth"),
        );
        s.gauge("vigil_writer_queue_capacity", "The write queue's capacity.", None, number("queue_capacity"));
        s.counter(
            "vigil_writer_batches",
            "Transactions committed by the writer.",
            count("batches_committed"),
        );
        s.counter("vigil_writer_writes", "Writes committed.", count("writes_committed"));
        let rows = s.counters("vigil_writer_rows", "Writes committed, by kind.");
        if let Some(kinds) = stats["rows_by_kind"].as_object() {
            for (kind, n) in kinds {
                rows.get_or_create(&vec![("kind", kind.clone())]).inc_by(n.as_u64().unwrap_or(0));
            }
        }
        s.gauge(
            "vigil_writer_batch_size_mean",
            "Mean writes per committed transaction.",
            None,
            number("mean_batch_size"),
        );
        if let Some(histogram) = CountedHistogram::from_json(&stats["batch_size"]) {
            s.registry.register("vigil_writer_batch_size", "Writes per drained batch.", histogram);
        }
        if let Some(histogram) = CountedHistogram::from_json(&stats["commit_latency_seconds"]) {
            s.registry.register_with_unit(
                "vigil_writer_commit_latency",
                "Time from draining a batch to its commit.",
                Unit::Seconds,
                histogram,
            );
        }
        s.counter(
            "vigil_writer_retries",
            "Write attempts that failed transiently and were retried.",
            count("retries"),
        );
        s.counter(
            "vigil_writer_rejected_writes",
            "Writes refused with their own error.",
            count("rejected_writes"),
        );
        s.counter(
            "vigil_writer_fenced_writes",
            "Late writes of agents another node took over.",
            count("fenced_writes"),
        );
        s.counter(
            "vigil_writer_refused_writes",
            "Fire-and-forget writes refused on a full queue.",
            count("refused_writes"),
        );
        s.counter(
            "vigil_writer_recovered_commits",
            "Commits of unknown outcome that had succeeded.",
            count("recovered_commits"),
        );
    }

    // This process's alerter, when it has one.
    if let Some(alerter) = &state.alerts {
        s.gauge(
            "vigil_alerter_leading",
            "Whether this process's alerter evaluates incidents (holds the leader claim).",
            None,
            if alerter.is_leading() { 1.0 } else { 0.0 },
        );
        let notifications =
            s.counters("vigil_alert_notifications", "Alert notifications by webhook and how they ended.");
        let failed = s.counters("vigil_alert_failed_attempts", "Delivery attempts that failed, by webhook.");
        let queued = s.gauges("vigil_alert_queue_depth", "Notifications waiting, by webhook.", None);
        for webhook in alerter.stats() {
            for (outcome, n) in
                [("delivered", webhook.delivered), ("gave_up", webhook.gave_up), ("dropped", webhook.dropped)]
            {
                let labels = vec![("webhook", webhook.name.clone()), ("outcome", outcome.to_owned())];
                notifications.get_or_create(&labels).inc_by(n);
            }
            failed.get_or_create(&vec![("webhook", webhook.name.clone())]).inc_by(webhook.failed_attempts);
            queued.get_or_create(&vec![("webhook", webhook.name.clone())]).set(webhook.queued as f64);
        }
    }

    // This process's pool and queries.
    let pool = shared.get_pool_stats();
    let connections = s.gauges("vigil_pool_connections", "Open connections of this process's pool.", None);
    connections.get_or_create(&vec![("state", "idle".to_owned())]).set(f64::from(pool.idle));
    connections.get_or_create(&vec![("state", "in_use".to_owned())]).set(f64::from(pool.in_use));
    s.gauge("vigil_pool_max_connections", "The pool's maximum size.", None, f64::from(pool.max_size));
    s.counter("vigil_pool_checkouts", "Connection checkouts.", pool.checkouts);
    s.counter("vigil_pool_checkouts_waited", "Checkouts that waited for a free connection.", pool.waited);
    s.counter("vigil_pool_checkout_timeouts", "Checkouts that gave up waiting.", pool.timed_out);
    s.counter(
        "vigil_pool_connections_closed_broken",
        "Connections closed because they were broken.",
        pool.closed_broken,
    );
    s.gauge(
        "vigil_pool_wait_mean",
        "Mean wait per checkout.",
        Some(Unit::Seconds),
        pool.average_wait_ms / 1e3,
    );
    let queries = shared.get_query_stats();
    s.counter(
        "vigil_queries",
        "Statements attempted by this process, retries included.",
        queries.total_queries,
    );
    s.counter("vigil_query_errors", "Statement attempts that failed.", queries.query_errors);
    s.counter(
        "vigil_query_connection_errors",
        "Statement attempts that failed because the connection did.",
        queries.connection_errors,
    );
    s.gauge(
        "vigil_query_duration_mean",
        "Mean time per statement attempt.",
        Some(Unit::Seconds),
        queries.average_query_time,
    );

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &s.registry);
    text
}
