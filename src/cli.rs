//! The `vigil` command: argument parsing and the commands themselves.
//!
//! The binary (`src/bin/vigil.rs`) only calls [`main`]. Every command resolves the
//! database the same way (see [`vigil_persistence::config`]): `--database-url`, then
//! `POSTGRES_CONNECTION_STRING`, then `postgres_config.json`, then the default URL
//! under `USE_POSTGRESQL=true`; otherwise the embedded SQLite file `./vigil.db`.
//!
//! `vigil import --from sqlite:PATH --to postgresql://...` is the exception: it names
//! both databases itself and ignores that resolution (see
//! [`vigil_persistence::import`]).
//!
//! `vigil help [COMMAND]` prints help, as in cargo and git; `vigil ask` asks the help
//! agent a question.
//!
//! Exit codes: 0 success, 1 a runtime failure (one line on stderr), 2 bad usage — a
//! flag, a malformed or empty database URL from any source, or the content of the
//! `--config` file. No message quotes a password (see [`parse`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::config::{ConfigInputs, DatabaseConfigError, SqliteLocation};
use vigil_persistence::import::ImportError;
use vigil_persistence::workflow_runs::WorkflowStatus;
use vigil_persistence::{DatabaseConfig, SharedState, Store, StoreError};

mod database;
pub mod operate;
pub mod parse;
pub mod run;
mod serve;
pub mod workflow;

use database::print_json;
#[doc(hidden)]
pub use parse::{EarlyExit, parse_args};

/// Vigil: supervised background agents over a shared-state database.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
pub struct Cli {
    /// Database URL: postgresql://user:pass@host:port/db or sqlite:PATH [default:
    /// POSTGRES_CONNECTION_STRING, postgres_config.json, USE_POSTGRESQL, ./vigil.db]
    ///
    /// Without it: the URL in POSTGRES_CONNECTION_STRING, then ./postgres_config.json,
    /// then with USE_POSTGRESQL=true the default
    /// postgresql://postgres:postgres@localhost:5432/background_agents; otherwise (and
    /// whenever USE_POSTGRESQL=false) the SQLite file ./vigil.db.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Apply the schema to the configured database.
    Migrate,
    /// Show the database health report.
    Health {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the slowest statements by mean time (PostgreSQL's pg_stat_statements).
    SlowQueries {
        /// Only statements whose mean time is at least this many milliseconds.
        #[arg(long, value_name = "MS", default_value = "100", allow_negative_numbers = true, value_parser = parse::parse_min_ms)]
        min_ms: f64,
        /// At most this many statements.
        #[arg(long, default_value = "20", allow_negative_numbers = true, value_parser = parse::parse_limit)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the platform: the ten built-in agents under a supervisor.
    ///
    /// Runs until Ctrl-C, SIGTERM or --for, then shuts down gracefully (every queued
    /// write flushed). On the embedded SQLite file ./vigil.db unless PostgreSQL is
    /// configured (see --database-url).
    ///
    /// The configuration file (--config, or ./vigil.json when present) is a JSON object
    /// of optional sections: monitoring (the seven monitoring agents), ai_help (the help
    /// agent and its OpenAI-compatible model), langsmith (trace export), langgraph
    /// (workflow runs), retention (how long history is kept: days, interval) and alerts
    /// (webhooks for critical incidents: firing and resolved, retried, recorded).
    Run {
        /// Stop after this long (e.g. 30s, 10m), then shut down gracefully.
        #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true, value_parser = parse::parse_duration)]
        run_for: Option<std::time::Duration>,
        /// Platform configuration file (JSON; sections monitoring, ai_help, langsmith,
        /// langgraph, retention) [default: ./vigil.json if present].
        #[arg(long, value_name = "PATH")]
        config: Option<std::path::PathBuf>,
        /// Never draw the live status line (default: drawn when stderr is a terminal).
        #[arg(long)]
        no_status: bool,
        /// Log format on stderr (levels from RUST_LOG).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Start even if another platform seems to be running on this SQLite database:
        /// for one killed on another machine less than a lease ago. (On PostgreSQL a
        /// second `vigil run` joins the first as another node instead.)
        #[arg(long)]
        force: bool,
        /// PostgreSQL: how long this node's leases last without renewal; its agents
        /// run elsewhere within about two of these after it dies.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::parse_duration)]
        lease: std::time::Duration,
        /// PostgreSQL: this node's id in the cluster [default: host/pid/n].
        #[arg(long, value_name = "ID")]
        node_id: Option<String>,
        /// Serve /metrics, /healthz, /readyz and /api/v1/ on this address (e.g.
        /// 127.0.0.1:7700; off unless given).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Enable the HTTP operator actions with the bearer token in this environment
        /// variable (never on the command line).
        #[arg(long, value_name = "NAME", requires = "http")]
        http_token_env: Option<String>,
    },
    /// Serve the HTTP endpoints from the database alone, read-only, with no agents.
    ///
    /// The same /metrics, /healthz, /readyz and /api/v1/ as `vigil run --http`, read
    /// from the database: liveness decided at each request, no operator actions. Runs
    /// until Ctrl-C or SIGTERM.
    Dashboard {
        /// The address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
        http: std::net::SocketAddr,
    },
    /// List the nodes of the cluster (PostgreSQL) and the agents each runs.
    ///
    /// Alive or not is decided now, from each node's lease age by the server's clock.
    Nodes {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List registered agents with their state, heartbeat age and health score.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Redraw every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Show system events, newest last.
    Events {
        /// Keep printing new events until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
        /// Only events about this agent.
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// Only this severity or worse (debug, info, warning, error, critical).
        #[arg(long, value_name = "S", value_parser = parse::parse_severity)]
        severity: Option<vigil_persistence::Severity>,
        /// Only this event type (e.g. state_transition).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// How many recent events to show first.
        #[arg(long, default_value = "50", allow_negative_numbers = true, value_parser = parse::parse_limit)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show performance metrics.
    Metrics {
        /// Only samples about this agent.
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// Only this metric.
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// Only samples this recent (e.g. 10m, 2h).
        #[arg(long, value_name = "DURATION", default_value = "1h", allow_hyphen_values = true, value_parser = parse::parse_duration)]
        since: std::time::Duration,
        /// At most this many samples.
        #[arg(long, default_value = "100", allow_negative_numbers = true, value_parser = parse::parse_limit)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List LangGraph workflow runs, newest first, with their status and step.
    Workflows {
        /// Only runs in this state: pending, running, completed, failed, waiting, cancelled, rejected.
        #[arg(long, value_parser = parse::parse_workflow_status)]
        status: Option<WorkflowStatus>,
        /// At most this many runs.
        #[arg(long, default_value = "20", allow_negative_numbers = true, value_parser = parse::parse_limit)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check workflow files; submit, show, approve, reject, cancel or resume runs.
    Workflow {
        /// What to do.
        #[command(subcommand)]
        action: workflow::WorkflowAction,
    },
    /// Restart, stop, fix or pause an agent of a running platform, and wait.
    ///
    /// The command is filed in the database; the running platform carries it out and
    /// this waits for the outcome. Besides restart, stop and fix, an agent can be moved
    /// to maintenance, standby or optimization and back.
    Agent {
        /// What to do.
        #[command(subcommand)]
        action: AgentAction,
    },
    /// Ask the help agent a question and wait for its answer.
    ///
    /// The question is the argument, or standard input with `-` (or with no argument
    /// when standard input is not a terminal): `vigil ask - < question.txt`. It may be
    /// as long as a help request's text may be (PayloadLimits::max_text_bytes, 16 MiB
    /// by default).
    Ask {
        /// The question ("what is the status of agent_coordinator?"), or `-` to read it
        /// from standard input.
        #[arg(allow_hyphen_values = true)]
        question: Option<String>,
        /// Give up waiting after this long.
        #[arg(long, default_value = "30s", allow_hyphen_values = true, value_parser = parse::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Delete history older than N days (error and critical events are kept).
    ///
    /// Deletes heartbeats, metrics, events (errors kept), communications and
    /// conversations older than N days.
    Cleanup {
        /// Keep this many days (0 to 36500).
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse::parse_days)]
        days: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a Vigil SQLite database into PostgreSQL and verify every table.
    ///
    /// Copies keeping ids, in one transaction, and verifies every table (row counts and
    /// checksums). The target must be empty unless --append is given; on any failure it
    /// is left as it was.
    Import {
        /// The SQLite database to read: sqlite:PATH (an existing file, only read: the
        /// import works on a snapshot of it, migrated, in TMPDIR).
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The PostgreSQL database to fill: postgresql://user:pass@host:port/db
        /// (its schema is created if missing).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Add to a target that already has rows; ids are kept, and a key present on
        /// both sides fails the import.
        #[arg(long)]
        append: bool,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `vigil agent ...`.
#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Restart with fresh state through its supervisor.
    Restart(AgentTarget),
    /// Stop it (it is not restarted).
    Stop(AgentTarget),
    /// Restart an agent parked in `manual` (ManualFixed).
    Fix(AgentTarget),
    /// Pause its cycles in `standby` (StandbyRequest; from `active`).
    Standby(AgentTarget),
    /// Back to `active` from `standby` (Activate).
    Activate(AgentTarget),
    /// Pause its cycles for maintenance (MaintenanceRequest; from `active`).
    Maintenance(AgentTarget),
    /// Back to `active` from `maintenance` (MaintenanceComplete).
    EndMaintenance(AgentTarget),
    /// Pause its cycles while it is optimized (OptimizationRequest; from `active`).
    Optimize(AgentTarget),
    /// Back to `active` from `optimizing` (OptimizationComplete).
    EndOptimization(AgentTarget),
}

/// The agent a command is for.
#[derive(Debug, clap::Args)]
pub struct AgentTarget {
    /// The agent's id (see `vigil status`).
    pub id: String,
    /// Give up waiting for the outcome after this long.
    #[arg(long, default_value = "30s", allow_hyphen_values = true, value_parser = parse::parse_duration)]
    pub timeout: std::time::Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// An error a command reports on one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Output could not be written or encoded.
    #[error("cannot write output: {0}")]
    Output(String),
    /// The import failed; the target is unchanged.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// An input named on the command line cannot be used (a missing file, ...).
    #[error("{0}")]
    Input(String),
    /// The arguments, a database URL, or the configuration file they name are wrong in
    /// a way clap cannot see (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Whoever read the output stopped reading (`vigil events | head -1`): the command
    /// ends quietly with success, as coreutils do.
    #[error("standard output was closed")]
    ClosedStdout,
}

impl CliError {
    /// The exit code of the command that failed with this error: 2 for bad usage, 0
    /// for a closed standard output, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::ClosedStdout => 0,
            _ => 1,
        }
    }

    /// A failed write to standard output: a closed pipe is [`CliError::ClosedStdout`].
    pub(crate) fn from_write(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::ClosedStdout
        } else {
            CliError::Output(error.to_string())
        }
    }
}

/// `println!` for the commands: a closed standard output ends the command (with
/// [`CliError::ClosedStdout`]) instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {
        {
            use std::io::Write as _;
            writeln!(std::io::stdout(), $($arg)*).map_err($crate::cli::CliError::from_write)
        }
    };
}
pub(crate) use out;

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse_args(&args) {
        Ok(cli) => cli,
        Err(early) => {
            use std::io::Write as _;
            // Help and the version go to stdout; a reader that stops early is no error.
            let _ = if early.stdout {
                write!(std::io::stdout(), "{}", early.message)
            } else {
                write!(std::io::stderr(), "{}", early.message)
            };
            return ExitCode::from(early.code);
        }
    };
    init_logging(&cli);
    let json_logs = matches!(cli.command, Command::Run { log_format: LogFormat::Json, .. });
    // An actix System: `vigil run` hosts actors; the other commands need only its runtime.
    let system = actix_rt::System::new();
    match system.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::ClosedStdout) {
                let message = parse::redact(&e.to_string(), &args);
                if json_logs {
                    eprintln!("{}", run::json_line("ERROR", &message));
                } else {
                    eprintln!("error: {message}");
                }
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// What `vigil` would say about a command line before touching a database: the early
/// exit of [`parse_args`] (help, version, bad usage), or the usage errors found in
/// the parsed arguments (a malformed or empty database URL, a bad `--from`/`--to`), with
/// `inputs` standing for the environment. For tests of the parser.
#[doc(hidden)]
pub fn check_args<I, T>(args: I, mut inputs: ConfigInputs) -> Result<Cli, EarlyExit>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cli = parse_args(&args)?;
    let checked = match &cli.command {
        Command::Import { from, to, .. } => {
            database::sqlite_source(from).and_then(|_| database::postgres_target(to)).map(drop)
        }
        _ => {
            inputs.explicit_url.clone_from(&cli.database_url);
            resolve_from(inputs).map(drop)
        }
    };
    match checked {
        Ok(()) => Ok(cli),
        Err(e) => Err(EarlyExit {
            code: e.exit_code(),
            message: format!("error: {}\n", parse::redact(&e.to_string(), &args)),
            stdout: false,
        }),
    }
}

/// Installs the global tracing subscriber of the `vigil` binary (never done by the
/// library): levels from `RUST_LOG` (default `warn` for `vigil run`, nothing for the one-shot commands), text or
/// JSON on stderr, and actix's `log` records bridged in.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let (default, json) = match &cli.command {
        Command::Run { log_format, .. } => ("warn", *log_format == LogFormat::Json),
        // One-shot commands report their outcome in one line; logs only on request.
        _ => ("off", false),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let explicit_url = cli.database_url;
    match cli.command {
        Command::Migrate => database::migrate(resolve(explicit_url)?).await,
        Command::Health { json } => {
            database::health(&connect_read_only(resolve(explicit_url)?).await?, json).await
        }
        Command::SlowQueries { min_ms, limit, json } => {
            database::slow_queries(&connect_read_only(resolve(explicit_url)?).await?, min_ms, limit, json)
                .await
        }
        Command::Nodes { json } => {
            operate::nodes(&connect_read_only(resolve(explicit_url)?).await?, json).await
        }
        Command::Dashboard { http } => {
            serve::dashboard(connect_read_only(resolve(explicit_url)?).await?, http).await
        }
        Command::Run {
            run_for,
            config,
            no_status,
            log_format,
            force,
            lease,
            node_id,
            http,
            http_token_env,
        } => {
            let options = run::RunOptions {
                run_for,
                force,
                lease,
                node_id,
                config_explicit: config.is_some(),
                config: config.unwrap_or_else(|| "vigil.json".into()),
                status_line: !no_status && run::status_line_default(),
                json_logs: log_format == LogFormat::Json,
                http,
                http_token: serve::http_token(http_token_env.as_deref())?,
            };
            run::run_platform(resolve(explicit_url)?, options).await
        }
        Command::Status { json, watch } => {
            operate::status(&connect_read_only(resolve(explicit_url)?).await?, json, watch).await
        }
        Command::Events { follow, agent, severity, event_type, limit, json } => {
            let query = operate::EventsQuery { follow, agent, severity, event_type, limit, json };
            operate::events(&connect_read_only(resolve(explicit_url)?).await?, query).await
        }
        Command::Workflows { status, limit, json } => {
            operate::workflows(&connect_read_only(resolve(explicit_url)?).await?, status, limit, json).await
        }
        Command::Workflow { action } => workflow::run(action, explicit_url).await,
        Command::Metrics { agent, name, since, limit, json } => {
            let state = connect_read_only(resolve(explicit_url)?).await?;
            operate::metrics(&state, agent.as_deref(), name.as_deref(), since, limit, json).await
        }
        Command::Agent { action } => {
            let (action, target) = match action {
                AgentAction::Restart(t) => (CommandAction::Restart, t),
                AgentAction::Stop(t) => (CommandAction::Stop, t),
                AgentAction::Fix(t) => (CommandAction::Fix, t),
                AgentAction::Standby(t) => (CommandAction::Standby, t),
                AgentAction::Activate(t) => (CommandAction::Activate, t),
                AgentAction::Maintenance(t) => (CommandAction::Maintenance, t),
                AgentAction::EndMaintenance(t) => (CommandAction::EndMaintenance, t),
                AgentAction::Optimize(t) => (CommandAction::Optimize, t),
                AgentAction::EndOptimization(t) => (CommandAction::EndOptimization, t),
            };
            let state = connect(resolve(explicit_url)?).await?;
            operate::agent_command(&state, action, &target.id, target.timeout).await
        }
        Command::Ask { question, timeout } => {
            let config = resolve(explicit_url)?;
            let question = operate::read_question(question, config.payload_limits().max_text_bytes)?;
            operate::ask(&connect(config).await?, &question, timeout).await
        }
        Command::Cleanup { days, json } => {
            operate::cleanup(&connect(resolve(explicit_url)?).await?, days, json).await
        }
        // Names both of its databases; the usual resolution does not apply.
        Command::Import { from, to, append, json } => database::import(&from, &to, append, json).await,
    }
}

/// The configured database: `--database-url`, the environment, then the defaults.
fn resolve(explicit_url: Option<String>) -> Result<DatabaseConfig, CliError> {
    let mut inputs = ConfigInputs::from_env();
    inputs.explicit_url = explicit_url;
    resolve_from(inputs)
}

/// [`resolve`] from given inputs. A malformed URL is bad usage (exit code 2) whichever
/// source it came from, as are `--from` and `--to` of `vigil import` and a bad value of
/// an environment variable (`USE_POSTGRESQL=maybe`); an empty URL says so. (An empty
/// `POSTGRES_CONNECTION_STRING` counts as unset.) A `postgres_config.json` that cannot
/// be used stays a runtime error (exit code 1).
fn resolve_from(inputs: ConfigInputs) -> Result<DatabaseConfig, CliError> {
    if let Some(url) = &inputs.explicit_url {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        if url.trim().is_empty() {
            return Err(CliError::Usage("--database-url: the URL is empty".into()));
        }
        if path.is_some_and(|path| path.trim().is_empty()) {
            return Err(CliError::Usage(
                "--database-url: the URL is empty: sqlite:PATH names no file".into(),
            ));
        }
    }
    let config = DatabaseConfig::resolve(&inputs).map_err(|e| match e {
        e @ (DatabaseConfigError::InvalidUrl { .. } | DatabaseConfigError::InvalidValue { .. }) => {
            CliError::Usage(e.to_string())
        }
        e => StoreError::from(e).into(),
    })?;
    tracing::debug!(database = %config.describe(), "resolved database");
    Ok(config)
}

/// Opens an existing database for a command that reads or operates it. Only `migrate`
/// and `run` create the SQLite file: `vigil status` in the wrong directory says so
/// instead of leaving an empty `vigil.db` behind.
async fn connect(config: DatabaseConfig) -> Result<SharedState, CliError> {
    require_existing(&config)?;
    Ok(SharedState::direct(Store::connect(config).await?))
}

/// [`connect`] for a command that only reads: an SQLite file is opened read-only and
/// not migrated, so a read-only file or folder can be inspected.
async fn connect_read_only(config: DatabaseConfig) -> Result<SharedState, CliError> {
    require_existing(&config)?;
    Ok(SharedState::direct(Store::connect_read_only(config).await?))
}

fn require_existing(config: &DatabaseConfig) -> Result<(), CliError> {
    if let DatabaseConfig::Sqlite { location: SqliteLocation::File(path), .. } = config
        && !path.exists()
    {
        return Err(CliError::Input(format!(
            "no database at {} (start with `vigil migrate` or `vigil run` here, or pass --database-url)",
            path.display()
        )));
    }
    Ok(())
}
