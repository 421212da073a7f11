//! Operating a running platform from another shell. The control plane is the shared
//! database, so these commands work across processes (and machines): they read the
//! tables, or file a row (`agent_commands`, `help_requests`) that the running
//! platform carries out, and wait for its outcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::models::SystemEventRecord;
use vigil_persistence::nodes::AgentLease;
use vigil_persistence::presence::{self, Liveness, LivenessReport};
use vigil_persistence::shared_state::EventFilter;

use crate::command::{self, CommandError};
use crate::report::{self, NodesReport, StatusReport};
use vigil_persistence::workflow_runs::WorkflowStatus;
use vigil_persistence::{HelpStatus, Severity};
use vigil_persistence::{SharedState, StoreError};

use super::out;
use super::{CliError, print_json};

/// How often a waiting command looks again.
const POLL: Duration = Duration::from_millis(200);

/// `vigil status [--json] [--watch]`: every agent with its liveness, decided now (see
/// [`vigil_persistence::presence`]): a row's state is shown as recorded, but whether
/// the agent runs comes from its runtime's presence and its heartbeat's age against
/// its own interval, and a health score only for an agent that runs.
pub(super) async fn status(state: &SharedState, json: bool, watch: bool) -> Result<(), CliError> {
    let database = state.store().config().describe();
    loop {
        let report = StatusReport::read(state).await?;
        if json {
            print_json(&report.to_json())?;
        } else {
            if watch {
                use std::io::Write as _;
                write!(std::io::stdout(), "\x1b[2J\x1b[H").map_err(CliError::from_write)?;
            }
            print_platforms(&report.liveness, &database)?;
            print_agents(&report.liveness, &report.health, &report.owners)?;
        }
        if !watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_platforms(report: &LivenessReport, database: &str) -> Result<(), CliError> {
    if !report.platform_running() {
        out!("{}", report.no_platform_message(database))?;
        return Ok(());
    }
    for platform in report.running() {
        let p = &platform.presence;
        out!(
            "platform running: pid {} on {} (node {}), up {}, renewed {} ago, {} agents",
            p.process.pid,
            p.process.host,
            p.node,
            presence::human_age(presence::age_of(p.started_at)),
            presence::human_age(presence::age_of(p.renewed_at)),
            p.agents
        )?;
    }
    Ok(())
}

fn print_agents(
    report: &LivenessReport,
    health: &HashMap<String, f64>,
    owners: &HashMap<String, AgentLease>,
) -> Result<(), CliError> {
    if report.agents.is_empty() {
        out!("no agents registered")?;
        return Ok(());
    }
    // The owner column only where nodes share the database.
    let clustered = !owners.is_empty();
    let owner_header = if clustered { "  OWNER" } else { "" };
    out!(
        "{:<32} {:<12} {:<12} {:>14} {:>9} {:>7}{owner_header}",
        "AGENT",
        "STATE",
        "LIVENESS",
        "HEARTBEAT AGE",
        "INTERVAL",
        "HEALTH"
    )?;
    for agent in &report.agents {
        let score = health.get(&agent.agent_id).map(|h| format!("{h:.0}")).unwrap_or_else(|| "-".into());
        // A recorded state is only the present while the agent runs.
        let recorded = agent.recorded_state.map_or("-", vigil_persistence::State::as_str);
        let state = if agent.liveness == Liveness::NotRunning {
            format!("({recorded})")
        } else {
            recorded.to_owned()
        };
        let age = agent
            .heartbeat_age_secs
            .map_or_else(|| "never".into(), |secs| presence::human_age(Duration::from_secs_f64(secs)));
        let owner = match (clustered, owners.get(&agent.agent_id).and_then(|l| l.node_id.as_deref())) {
            (false, _) => String::new(),
            (true, Some(node)) => format!("  {node}"),
            (true, None) => "  -".to_owned(),
        };
        out!(
            "{:<32} {state:<12} {:<12} {age:>14} {:>9} {score:>7}{owner}",
            agent.agent_id,
            agent.liveness.as_str(),
            presence::human_age(Duration::from_secs_f64(agent.heartbeat_interval_secs)),
        )?;
    }
    if report.agents.iter().any(|a| a.liveness == Liveness::NotRunning) {
        out!("(state) is what the row last recorded; nothing runs that agent now")?;
    }
    Ok(())
}

/// `vigil nodes [--json]`: the nodes of the cluster (PostgreSQL), alive or not as the
/// server's clock decides now, with how many agents each holds.
pub(super) async fn nodes(state: &SharedState, json: bool) -> Result<(), CliError> {
    let report = match NodesReport::read(state).await {
        Ok(report) => report,
        Err(StoreError::Unsupported { .. }) => {
            return Err(CliError::Input(
                "nodes are a PostgreSQL feature: on SQLite one `vigil run` runs every agent (see `vigil status`)"
                    .into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        return print_json(&report.to_json());
    }
    let nodes = &report.nodes;
    if nodes.is_empty() {
        out!("no node has joined {}", state.store().config().describe())?;
        return Ok(());
    }
    out!("{:<36} {:<8} {:>10} {:<24} {:>8} {:>6}", "NODE", "STATUS", "LEASE AGE", "HOST", "PID", "AGENTS")?;
    for node in nodes {
        let status = match (node.alive, node.stopped_at.is_some()) {
            (true, _) => "alive",
            (false, true) => "left",
            (false, false) => "dead",
        };
        let owned = report.agents.get(&node.record.node_id).map_or(0, Vec::len);
        out!(
            "{:<36} {status:<8} {:>10} {:<24} {:>8} {owned:>6}",
            node.record.node_id,
            presence::human_age(node.lease_age),
            node.record.host,
            node.record.pid
        )?;
    }
    Ok(())
}

/// Fails at once, saying so, when no platform runs on the database (see
/// [`command::require_platform`]).
pub(super) async fn require_platform(state: &SharedState, what: &str) -> Result<(), CliError> {
    command::require_platform(state, what).await.map_err(command_error)
}

/// An operator command that was not carried out, as the command reports it.
fn command_error(error: CommandError) -> CliError {
    match error {
        CommandError::Store(e) => e.into(),
        e => CliError::Input(e.to_string()),
    }
}

/// What `vigil events` shows.
#[derive(Debug, Clone)]
pub struct EventsQuery {
    /// Keep printing new events.
    pub follow: bool,
    /// Only events about this agent.
    pub agent: Option<String>,
    /// Only this severity or worse.
    pub severity: Option<Severity>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// How many recent events first.
    pub limit: i64,
    /// JSON lines.
    pub json: bool,
}

fn print_event(event: &SystemEventRecord, json: bool) -> Result<(), CliError> {
    if json {
        let line = serde_json::to_string(event).map_err(|e| CliError::Output(e.to_string()))?;
        out!("{line}")?;
        return Ok(());
    }
    let at = event.timestamp.map(|t| t.get().format("%Y-%m-%d %H:%M:%S%.3f").to_string()).unwrap_or_default();
    let data = event.event_data.as_ref().map(|d| d.0.to_string()).unwrap_or_default();
    out!("{at} {:<8} {:<28} {data}", event.severity.as_deref().unwrap_or("info"), event.event_type)?;
    Ok(())
}

/// `vigil events [--follow] [--agent ID] [--severity S] [--type T]`.
pub(super) async fn events(state: &SharedState, query: EventsQuery) -> Result<(), CliError> {
    let mut read = report::EventQuery::new(query.limit);
    read.agent = query.agent.clone();
    read.severity = query.severity;
    read.event_type = query.event_type.clone();
    let recent = report::recent_events(state, &read).await?;
    let mut last_id = recent.first().map(|e| e.id).unwrap_or(0);
    if recent.is_empty() {
        // Start following from the newest event of any kind.
        last_id = state
            .recent_events(EventFilter { limit: Some(1), ..EventFilter::default() })
            .await?
            .first()
            .map_or(0, |e| e.id);
    }
    for event in recent.iter().rev() {
        print_event(event, query.json)?;
    }
    if !query.follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let new = state.recent_events(read.filter(Some(last_id), 1000)).await?;
        if let Some(newest) = new.first() {
            last_id = newest.id;
        }
        for event in new.iter().rev().filter(|e| read.keeps(e)) {
            print_event(event, query.json)?;
        }
    }
}

/// `vigil workflows`: runs, newest first.
pub(super) async fn workflows(
    state: &SharedState,
    status: Option<WorkflowStatus>,
    limit: i64,
    json: bool,
) -> Result<(), CliError> {
    let runs = state.list_workflow_runs(status, limit.max(1)).await?;
    if json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        out!("no workflow runs")?;
        return Ok(());
    }
    out!("{:<28} {:<20} {:<10} {:>5}  {:<20} {:<23}", "RUN", "GRAPH", "STATUS", "STEP", "NEXT", "UPDATED")?;
    for run in &runs {
        let updated =
            run.updated_at.map(|t| t.get().format("%Y-%m-%d %H:%M:%S%.3f").to_string()).unwrap_or_default();
        let next = run.next_node.as_deref().unwrap_or("-");
        out!(
            "{:<28} {:<20} {:<10} {:>5}  {next:<20} {updated:<23}",
            run.run_id,
            run.graph,
            run.status,
            run.step
        )?;
        if let Some(error) = &run.error {
            out!("    error: {error}")?;
        }
    }
    Ok(())
}

/// `vigil metrics [--agent ID] [--name N] [--since 10m]`.
pub(super) async fn metrics(
    state: &SharedState,
    agent: Option<&str>,
    name: Option<&str>,
    since: Duration,
    limit: i64,
    json: bool,
) -> Result<(), CliError> {
    let samples = report::recent_metrics(state, agent, name, since, limit).await?;
    if json {
        return print_json(&samples);
    }
    if samples.is_empty() {
        out!("no metrics in that window")?;
        return Ok(());
    }
    let names: HashMap<i32, String> =
        state.get_registered_agents().await?.into_iter().map(|a| (a.id, a.agent_id)).collect();
    out!("{:<23} {:<28} {:<32} {:>14}", "TIME", "AGENT", "METRIC", "VALUE")?;
    for sample in samples.iter().rev() {
        let at =
            sample.timestamp.map(|t| t.get().format("%Y-%m-%d %H:%M:%S%.3f").to_string()).unwrap_or_default();
        let who = sample
            .agent_id
            .and_then(|id| names.get(&id).cloned())
            .or_else(|| sample.source_agent.clone())
            .unwrap_or_else(|| "-".into());
        out!("{at:<23} {who:<28} {:<32} {:>14.3}", sample.metric_name, sample.metric_value)?;
    }
    Ok(())
}

/// `vigil agent restart|stop|fix|maintenance|... ID`: files the command and waits for
/// its outcome.
pub(super) async fn agent_command(
    state: &SharedState,
    action: CommandAction,
    agent_id: &str,
    timeout: Duration,
) -> Result<(), CliError> {
    let requester = format!("vigil-cli@{}", std::process::id());
    let outcome =
        command::carry_out(state, action, agent_id, &requester, timeout).await.map_err(command_error)?;
    out!("{} {agent_id}: {outcome}", action.as_str())?;
    Ok(())
}

/// The question of `vigil ask`: the argument, or standard input for `-` (and for no
/// argument when standard input is not a terminal), at most `max_bytes` long (the
/// store's `max_text_bytes`, which a help request's text may not exceed).
pub(super) fn read_question(argument: Option<String>, max_bytes: usize) -> Result<String, CliError> {
    use std::io::{IsTerminal as _, Read as _};
    let limit = |len: usize| {
        if len > max_bytes {
            Err(CliError::Usage(format!(
                "the question is longer than {}, the most a help request may hold",
                human_bytes(max_bytes)
            )))
        } else {
            Ok(())
        }
    };
    let question =
        match argument {
            Some(question) if question != "-" => question,
            None if std::io::stdin().is_terminal() => {
                return Err(CliError::Usage(
                    "no question: give it as an argument, or `-` to read it from standard input".into(),
                ));
            }
            _ => {
                let mut bytes = Vec::new();
                // One byte past the limit tells a question that is too long; no more is read.
                std::io::stdin().lock().take(max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(|e| {
                    CliError::Input(format!("cannot read the question from standard input: {e}"))
                })?;
                limit(bytes.len())?;
                String::from_utf8(bytes)
                    .map_err(|_| CliError::Usage("the question on standard input is not UTF-8 text".into()))?
            }
        };
    limit(question.len())?;
    if question.trim().is_empty() {
        return Err(CliError::Usage("the question is empty".into()));
    }
    Ok(question)
}

/// `16 MiB`, `1000 bytes`.
fn human_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// `vigil ask "question"`: files a help request and waits for the answer.
pub(super) async fn ask(state: &SharedState, question: &str, timeout: Duration) -> Result<(), CliError> {
    require_platform(state, "asking (its help agent answers)").await?;
    let request_id = format!("cli-{}-{}", Utc::now().timestamp_micros(), std::process::id());
    state
        .create_help_request(&request_id, question, Some(serde_json::json!({ "source": "vigil ask" })))
        .await?;
    let started = Instant::now();
    loop {
        if let Some(response) = state.get_help_response(&request_id).await? {
            if response.status.as_deref() == Some(HelpStatus::Failed.as_str()) {
                return Err(CliError::Input(format!(
                    "the help agent could not answer: {}",
                    response.response
                )));
            }
            out!("{}", response.response)?;
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(CliError::Input(format!(
                "no answer within {timeout:?} (is `vigil run` running on this database?); request `{request_id}` stays queued"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `vigil cleanup --days N`.
pub(super) async fn cleanup(state: &SharedState, days: u32, json: bool) -> Result<(), CliError> {
    let report = state.cleanup_old_data(days).await?;
    if json {
        return print_json(&report);
    }
    out!(
        "removed {} rows older than {days} days: {} heartbeats, {} metrics, {} events (errors kept), {} communications, {} conversations, {} alert deliveries",
        report.total(),
        report.heartbeats,
        report.metrics,
        report.events,
        report.communications,
        report.conversations,
        report.alert_deliveries
    )?;
    Ok(())
}
