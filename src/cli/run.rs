//! `vigil run`: the whole platform — the ten built-in agents under a supervisor, the
//! group-commit writer, operator commands from the database — until Ctrl-C, SIGTERM
//! or `--for` ends it, then a graceful shutdown that flushes every queued write.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use vigil_actors::monitoring_config::MonitoringConfig;
use vigil_actors::{
    AIHelpAgent, AiHelpConfig, LangGraphConfig, LangGraphExecutor, LangSmithBridge, LangSmithConfig,
};
use vigil_persistence::presence::{self, Liveness};
use vigil_persistence::shared_state::Writer;
use vigil_persistence::{DatabaseConfig, PersistenceActor, PersistenceConfig, Severity, SharedState, Store};
use vigil_runtime::{ChildSpec, ClusterConfig, RestartIntensity, Runtime, State};

use super::CliError;

/// The platform configuration file (`vigil.json` by default): one section per part,
/// each optional, each field with a documented default.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// The seven monitoring agents (see `vigil_actors::monitoring_config`).
    pub monitoring: MonitoringConfig,
    /// AIHelpAgent.
    pub ai_help: AiHelpConfig,
    /// LangSmithBridge.
    pub langsmith: LangSmithConfig,
    /// LangGraphExecutor.
    pub langgraph: LangGraphConfig,
    /// How long history is kept.
    pub retention: RetentionConfig,
    /// Alert delivery to webhooks ([`crate::alerts`]); validated as it is read.
    #[serde(deserialize_with = "crate::alerts::config::deserialize_validated")]
    pub alerts: crate::alerts::AlertsConfig,
}

/// How long `vigil run` keeps history: every `interval` (and once at start) it deletes
/// heartbeats, metrics, events, communications, conversations and alert deliveries
/// older than `days`, as `vigil cleanup --days` does (error and critical events are kept), and records a
/// `data_retention_cleanup` event with the counts. `"days": null` keeps everything.
///
/// | field      | default |
/// |------------|---------|
/// | `days`     | `7` (the specification's `cleanup_old_data(days_to_keep=7)`) |
/// | `interval` | `"1h"`  |
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of history kept; `None` keeps everything.
    pub days: Option<u32>,
    /// Time between two cleanups.
    #[serde(with = "vigil_actors::config::duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { days: Some(7), interval: Duration::from_secs(3600) }
    }
}

/// Whether a key of a configuration file holds a secret.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "password", "passwd", "secret", "token", "authorization", "headers"]
        .iter()
        .any(|w| key.contains(w))
}

/// Every secret in a configuration document: each scalar under a secret key (and inside
/// one), and the password of a URL in any string.
fn collect_secrets(value: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                collect_secrets(value, secret || is_secret_key(key), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_secrets(item, secret, out)),
        Value::String(text) => {
            if secret {
                out.push(text.clone());
            }
            out.extend(super::parse::url_passwords(text).map(str::to_owned));
        }
        Value::Null => {}
        scalar if secret => out.push(scalar.to_string()),
        _ => {}
    }
}

/// `message` with every secret, as written and as serde quotes it, replaced by `***`.
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut message = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let quoted = format!("{secret:?}");
        message = message.replace(&quoted[1..quoted.len() - 1], "***").replace(secret.as_str(), "***");
    }
    message
}

/// One retention pass: deletes what is older than `days` and records what went.
async fn apply_retention(shared: &SharedState, days: u32) {
    match shared.cleanup_old_data(days).await {
        Ok(report) => {
            tracing::info!(days, deleted = report.total(), "retention cleanup");
            let data = serde_json::json!({ "days_kept": days, "deleted": report });
            if let Err(e) =
                shared.log_system_event("data_retention_cleanup", Some(data), Severity::Info).await
            {
                tracing::warn!(error = %e, "could not record the retention cleanup");
            }
        }
        Err(e) => tracing::warn!(error = %e, days, "retention cleanup failed; retried at the next interval"),
    }
}

impl PlatformConfig {
    /// Reads `path`; a missing default file is an empty configuration. A file that
    /// cannot be read is a runtime error (exit code 1); what is wrong inside it, bad
    /// usage (exit code 2, see [`PlatformConfig::parse`]).
    pub fn load(path: &Path, explicit: bool) -> Result<Self, CliError> {
        if !explicit && !path.exists() {
            return Ok(Self::default().with_env_secrets(|name| std::env::var(name).ok()));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
        let config = Self::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        Ok(config.with_env_secrets(|name| std::env::var(name).ok()))
    }

    /// Parses the text of a configuration file (without the environment's API keys).
    /// The error names the field (`monitoring.performance.pass_interval: ...`) and never
    /// holds a secret: nothing of a value under a secret key (`api_key`, `password`,
    /// `token`, `secret`), and no text of one or of a URL's password anywhere else.
    pub fn parse(text: &str) -> Result<Self, String> {
        // serde would take a JSON array as the struct's fields in order: only an object is
        // a configuration.
        if !text.trim_start().starts_with('{') {
            return Err("expected a JSON object of sections".into());
        }
        // In two steps, so the secrets are known before any error can quote them.
        // serde_json's syntax errors say where, never what.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut secrets = Vec::new();
        collect_secrets(&value, false, &mut secrets);
        let config: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let last = path.rsplit('.').next().unwrap_or_default();
            if is_secret_key(last) {
                // Even the type named by serde may quote the value: say only where.
                return format!("{path}: not a valid value (a secret: not shown)");
            }
            format!("{path}: {}", scrub(&inner, &secrets))
        })?;
        let max = vigil_persistence::shared_state::MAX_DAYS_TO_KEEP;
        if config.retention.days.is_some_and(|days| days > max) {
            return Err(format!("retention.days: at most {max} (or null to keep everything)"));
        }
        Ok(config)
    }

    /// Fills the API keys the file leaves out from the environment, so secrets need not
    /// sit in a file: `OPENAI_API_KEY` for an `ai_help.openai` section, and
    /// `LANGSMITH_API_KEY` (or the older `LANGCHAIN_API_KEY`) for `langsmith`. A key in
    /// the file wins. A key alone enables nothing: OpenAI needs its section, remote
    /// export its `endpoint`.
    fn with_env_secrets(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        if let Some(openai) = &mut self.ai_help.openai
            && openai.api_key.is_empty()
            && let Some(key) = set(env("OPENAI_API_KEY"))
        {
            openai.api_key = key;
        }
        if set(self.langsmith.api_key.clone()).is_none() {
            self.langsmith.api_key = set(env("LANGSMITH_API_KEY")).or_else(|| set(env("LANGCHAIN_API_KEY")));
        }
        self
    }
}

pub use crate::report::{PERSISTENCE_STATS_KEY, PLATFORM_STATS_KEY};

/// Options of `vigil run`.
#[derive(Debug)]
pub struct RunOptions {
    /// Stop after this long.
    pub run_for: Option<Duration>,
    /// The platform configuration file.
    pub config: PathBuf,
    /// Whether `config` was given explicitly (then it must exist).
    pub config_explicit: bool,
    /// Show the live status line (default: when stderr is a terminal).
    pub status_line: bool,
    /// Start even if another platform seems to run on the (SQLite) database.
    pub force: bool,
    /// PostgreSQL: the node's lease period.
    pub lease: Duration,
    /// PostgreSQL: the node's id, if given.
    pub node_id: Option<String>,
    /// Every line on stderr is JSON (`--log-format json`), these notices included.
    pub json_logs: bool,
    /// Serve the HTTP endpoints ([`crate::http`]) on this address.
    pub http: Option<std::net::SocketAddr>,
    /// The bearer token that enables the HTTP operator actions (never printed).
    pub http_token: Option<String>,
}

/// Tells the operator something on stderr: a `vigil: ...` line, or with JSON logs a
/// JSON line shaped like the log records (`timestamp`, `level`, `target`, `fields`).
pub(crate) fn notice(json: bool, message: &str) {
    if json {
        eprintln!("{}", json_line("INFO", message));
    } else {
        eprintln!("vigil: {message}");
    }
}

/// A line of its own on stderr, shaped like the JSON log records.
pub(crate) fn json_line(level: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now(),
        "level": level,
        "target": "vigil",
        "fields": { "message": message },
    })
}

/// Refuses to start next to a live platform on the same database: the same agent ids
/// would overwrite each other's rows and repair each other's states. Live is decided
/// now, as `vigil status` decides it ([`vigil_persistence::presence`]): one of `ids`
/// is run by a runtime whose process is alive (looked up by pid on this machine) or,
/// on another machine, that renewed its presence within the lease. A platform killed
/// on this machine therefore never blocks a restart; `--force` is for one killed
/// elsewhere less than a lease ago.
async fn refuse_if_running(shared: &SharedState, ids: &[String], description: &str) -> Result<(), CliError> {
    let report = shared.liveness().await?;
    let live = report
        .agents
        .iter()
        .find(|agent| agent.liveness != Liveness::NotRunning && ids.contains(&agent.agent_id));
    let Some(agent) = live else { return Ok(()) };
    let node = agent.node.as_deref().unwrap_or("?");
    let owner = report.platforms.iter().find(|p| p.presence.node == node);
    let whom = owner.map_or_else(
        || format!("node {node}"),
        |p| format!("pid {} on {} (node {node})", p.presence.process.pid, p.presence.process.host),
    );
    Err(CliError::Input(format!(
        "another platform is running on {description}: `{}` is run by {whom}; stop it first (two would \
         overwrite each other's agents), or pass --force if that process is gone and it was on another \
         machine (it counts as gone {} s after its last renewal)",
        agent.agent_id,
        presence::LEASE_TIMEOUT.as_secs()
    )))
}

/// The restart intensity of the built-in tree's supervisor: **5 restarts within 60 s**,
/// the second and later waiting 250 ms, then 0.5, 1, 2 s (jittered, capped at 10 s).
/// The sixth failure within a minute parks the failing agent in `manual`.
///
/// What counts against it is a crash: an agent's error or panic. A database outage
/// does not — a cycle that fails because the database is unreachable is deferred to
/// the next tick ([`vigil_runtime::AgentError::is_transient`]), while the writer keeps
/// retrying what it holds — so minutes of downtime park nothing. (The OTP default, 1
/// in 5 s, shared by ten agents, parked the second agent that hiccuped in the same
/// five seconds.) A crash loop is still parked within seconds: five restarts take
/// about 4 s of backoff.
pub fn builtin_intensity() -> RestartIntensity {
    RestartIntensity::new(5, Duration::from_secs(60))
        .with_backoff(Duration::from_millis(250), Duration::from_secs(10))
}

/// The ten built-in agents as children, in start order: the coordinator first (it
/// holds the registry), the AI agents last.
pub fn builtin_agents(config: &PlatformConfig) -> Result<Vec<ChildSpec>, CliError> {
    let mut children = vigil_actors::monitoring_agents(&config.monitoring);
    let ai_help = config.ai_help.clone();
    // Validate once here, so a bad responder configuration is a clear startup error.
    AIHelpAgent::new(ai_help.clone()).map_err(|e| CliError::Input(format!("ai_help: {e}")))?;
    children.push(ChildSpec::agent("ai_help", move || {
        AIHelpAgent::new(ai_help.clone()).expect("validated at startup")
    }));
    let langsmith = config.langsmith.clone();
    children.push(ChildSpec::agent("langsmith", move || LangSmithBridge::new(langsmith.clone())));
    // Workflow files are checked here: every problem is a startup error.
    let langgraph =
        LangGraphExecutor::with_workflow_files(config.langgraph.clone(), config.ai_help.openai.as_ref())
            .map_err(|e| CliError::Input(format!("langgraph.workflows_dir:\n{e}")))?;
    children.push(ChildSpec::agent("langgraph", move || langgraph.clone()));
    Ok(children)
}

/// Runs the platform until a signal or `--for`.
pub(super) async fn run_platform(database: DatabaseConfig, options: RunOptions) -> Result<(), CliError> {
    let platform = PlatformConfig::load(&options.config, options.config_explicit)?;
    let description = database.describe();
    // On PostgreSQL every `vigil run` is a node of a cluster: a second one joins the
    // first, and the agents spread over them. SQLite has one node.
    let clustered = matches!(database, DatabaseConfig::Postgres { .. });
    let store = Store::connect(database).await?;
    // The zero-setup path migrates by itself; say so (a role that may not gets
    // "run `vigil migrate` as the schema owner" from `connect` instead).
    let applied = store.migrations_applied_at_connect();
    if !applied.is_empty() {
        notice(
            options.json_logs,
            &format!("applied {} migration(s) to {description}: {}", applied.len(), applied.join(", ")),
        );
    }
    let writer = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let shared = SharedState::with_writer(store, Writer::Actor(writer.clone()));
    let children = builtin_agents(&platform)?;
    if !options.force && !clustered {
        let ids: Vec<String> = children.iter().map(|c| c.id().to_owned()).collect();
        refuse_if_running(&shared, &ids, &description).await?;
    }
    let total = children.len();
    let mut builder = Runtime::builder(shared.clone()).intensity(builtin_intensity()).operator_commands(true);
    if clustered {
        let mut cluster = ClusterConfig::new().with_lease(options.lease);
        if let Some(node_id) = &options.node_id {
            cluster = cluster.with_node_id(node_id);
        }
        builder = builder.cluster(cluster);
    }
    for child in children {
        builder = builder.child(child);
    }
    let started = Instant::now();
    let runtime = builder.start().await.map_err(|e| CliError::Input(e.to_string()))?;
    let ids = runtime.agent_ids();
    if clustered {
        let nodes = shared.store().nodes().await.map(|n| n.iter().filter(|n| n.alive).count()).unwrap_or(1);
        notice(
            options.json_logs,
            &format!(
                "node {} joined the cluster on {description} ({nodes} node(s) alive): {} of {total} agents running here (Ctrl-C to stop)",
                runtime.node_id(),
                ids.len()
            ),
        );
    } else {
        notice(options.json_logs, &format!("{} agents running on {description} (Ctrl-C to stop)", ids.len()));
    }
    tracing::info!(database = %description, agents = ids.len(), "platform started");
    let alerter = crate::alerts::start_for_platform(&shared, &platform.alerts, runtime.node_id());
    let http = match options.http {
        Some(addr) => {
            let state =
                super::serve::platform_state(&runtime, options.http_token.as_deref(), alerter.as_ref());
            match super::serve::start_http(addr, state, options.json_logs) {
                Ok(server) => Some(server),
                Err(e) => {
                    // Nothing ran yet: stop what started, every write flushed.
                    crate::alerts::shutdown(alerter).await;
                    runtime.shutdown().await;
                    writer.shutdown().await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let stop = shutdown_signal(options.run_for);
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // Its first tick is at once: a start after a long pause cleans up first.
    let mut retention = tokio::time::interval(platform.retention.interval.max(Duration::from_secs(1)));
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cleaning: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_writes = writer.stats().writes_committed;
    let mut ticks: u64 = 0;
    let reason = loop {
        tokio::select! {
            reason = &mut stop => break reason,
            _ = retention.tick(), if platform.retention.days.is_some() => {
                // In the background, so a signal is never kept waiting; one at a time.
                if cleaning.as_ref().is_none_or(|task| task.is_finished()) {
                    let (shared, days) = (shared.clone(), platform.retention.days.unwrap_or_default());
                    cleaning = Some(tokio::task::spawn_local(async move { apply_retention(&shared, days).await }));
                }
            }
            _ = ticker.tick() => {
                ticks += 1;
                if ticks % 5 == 2 {
                    let stats = serde_json::to_value(writer.stats()).unwrap_or_default();
                    if let Err(e) = shared.set_system_state(PERSISTENCE_STATS_KEY, stats).await {
                        tracing::warn!(error = %e, "could not publish the writer's statistics");
                    }
                    let platform = serde_json::json!({
                        "at": chrono::Utc::now(),
                        "pool": shared.get_pool_stats(),
                        "queries": shared.get_query_stats(),
                    });
                    if let Err(e) = shared.set_system_state(PLATFORM_STATS_KEY, platform).await {
                        tracing::warn!(error = %e, "could not publish the pool statistics");
                    }
                }
                if options.status_line {
                    let stats = writer.stats();
                    let statuses = runtime.statuses().await;
                    let line = status_line(&statuses, stats.writes_committed - last_writes, stats.queue_depth);
                    last_writes = stats.writes_committed;
                    let mut err = std::io::stderr();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
            }
        }
    };
    // A cleanup still running gets a few seconds to finish; past them it is rolled back
    // (one transaction) and redone at the next start.
    if let Some(mut task) = cleaning
        && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
    {
        task.abort();
    }
    if options.status_line {
        eprintln!();
    }
    notice(options.json_logs, &format!("{reason}; shutting down"));
    if let Some(server) = &http {
        server.stop().await;
    }
    crate::alerts::shutdown(alerter).await; // first: stopping agents is no incident
    let report = runtime.shutdown().await;
    let persistence = writer.shutdown().await;
    let stats = writer.stats();
    let summary = format!(
        "stopped {} agents in reverse order after {:.1}s; {} writes committed in {} batches{}{}",
        report.stopped.len(),
        started.elapsed().as_secs_f64(),
        stats.writes_committed,
        stats.batches_committed,
        if stats.fenced_writes == 0 {
            String::new()
        } else {
            format!(
                "; {} late writes refused (fenced: another node had taken their agents over)",
                stats.fenced_writes
            )
        },
        if persistence.failed == 0 {
            String::new()
        } else {
            format!("; {} NOT written: {:?}", persistence.failed, persistence.reason)
        },
    );
    notice(options.json_logs, &summary);
    for (agent, why) in &report.failed {
        notice(options.json_logs, &format!("{agent} did not stop cleanly: {why}"));
    }
    if persistence.failed > 0 || !report.failed.is_empty() {
        return Err(CliError::Input("shutdown was not clean (see above)".into()));
    }
    Ok(())
}

fn status_line(statuses: &[vigil_runtime::AgentStatus], writes_per_s: u64, queue: usize) -> String {
    let mut by_state: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for status in statuses {
        *by_state.entry(status.state.as_str()).or_default() += 1;
    }
    let states: Vec<String> = by_state.iter().map(|(state, n)| format!("{n} {state}")).collect();
    let active = by_state.get(State::Active.as_str()).copied().unwrap_or(0);
    let mark = if active == statuses.len() { "●" } else { "◐" };
    format!(
        "{mark} agents: {} ({}) | writes/s: {writes_per_s} | queue: {queue}",
        statuses.len(),
        states.join(", ")
    )
}

/// Resolves with the reason to stop: Ctrl-C, SIGTERM, or the end of `--for`.
pub(super) async fn shutdown_signal(run_for: Option<Duration>) -> String {
    let deadline = async {
        match run_for {
            Some(limit) => {
                tokio::time::sleep(limit).await;
                format!("ran for {limit:?}")
            }
            None => std::future::pending().await,
        }
    };
    let terminate = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                    "SIGTERM".to_owned()
                }
                Err(_) => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<String>().await
    };
    tokio::select! {
        reason = deadline => reason,
        reason = terminate => reason,
        _ = tokio::signal::ctrl_c() => "interrupted".to_owned(),
    }
}

/// Whether to draw the live status line by default.
pub(super) fn status_line_default() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> PlatformConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn api_keys_come_from_the_environment_unless_the_file_has_them() {
        let env = |name: &str| match name {
            "OPENAI_API_KEY" => Some("sk-env".to_owned()),
            "LANGCHAIN_API_KEY" => Some("ls-legacy".to_owned()),
            _ => None,
        };
        let filled = config(r#"{"ai_help": {"openai": {"base_url": "http://x"}}}"#).with_env_secrets(env);
        assert_eq!(filled.ai_help.openai.unwrap().api_key, "sk-env");
        assert_eq!(filled.langsmith.api_key.as_deref(), Some("ls-legacy"));

        let own =
            config(r#"{"ai_help": {"openai": {"api_key": "sk-file"}}, "langsmith": {"api_key": "ls-file"}}"#)
                .with_env_secrets(env);
        assert_eq!(own.ai_help.openai.unwrap().api_key, "sk-file");
        assert_eq!(own.langsmith.api_key.as_deref(), Some("ls-file"));

        // No section, no OpenAI: the key alone does not switch the responder on.
        assert!(config("{}").with_env_secrets(env).ai_help.openai.is_none());
    }

    #[test]
    fn zero_and_negative_durations_are_refused_with_the_field_named() {
        for (json, field) in [
            (r#"{"monitoring": {"performance": {"pass_interval": "0s"}}}"#, "`0s` must be positive"),
            (r#"{"monitoring": {"performance": {"pass_interval": 0}}}"#, "`0` must be positive"),
            (r#"{"retention": {"interval": "-5s"}}"#, "`-5s` must be positive"),
            (r#"{"retention": {"interval": -5}}"#, "`-5` must be positive"),
        ] {
            let error = serde_json::from_str::<PlatformConfig>(json).unwrap_err().to_string();
            assert!(error.contains(field), "{json}: {error}");
        }
        // Read from a file, the error names the field.
        let dir = std::env::temp_dir().join(format!("vigil-zero-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.json");
        std::fs::write(&path, r#"{"monitoring": {"performance": {"pass_interval": "0s"}}}"#).unwrap();
        let error = PlatformConfig::load(&path, true).unwrap_err().to_string();
        assert!(error.contains("monitoring.performance.pass_interval: `0s` must be positive"), "{error}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_config_file_must_be_an_object() {
        let dir = std::env::temp_dir().join(format!("vigil-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.json");
        for text in ["[]", " [1, 2]", "7", "\"x\""] {
            std::fs::write(&path, text).unwrap();
            let error = PlatformConfig::load(&path, true).unwrap_err().to_string();
            assert!(error.contains("expected a JSON object"), "{text}: {error}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn unknown_keys_are_refused_in_every_section() {
        for json in [
            r#"{"ai_help": {"batch_sise": 5}}"#,
            r#"{"ai_help": {"openai": {"modle": "x"}}}"#,
            r#"{"ai_help": {"openai": {"retry": {"max_attempt": 2}}}}"#,
            r#"{"langsmith": {"endpiont": "http://x"}}"#,
            r#"{"langgraph": {"runs_per_cylce": 1}}"#,
            r#"{"monitoring": {"coordinator": {"pass_intervall": "1s"}}}"#,
            r#"{"monitors": {}}"#,
        ] {
            let error = serde_json::from_str::<PlatformConfig>(json).unwrap_err().to_string();
            assert!(error.contains("unknown field"), "{json}: {error}");
        }
    }
}
