//! `vigil workflow ...`: workflow files and their runs, from any shell.
//!
//! | command                                  | what it does                                          |
//! |------------------------------------------|-------------------------------------------------------|
//! | `check FILE`                             | reads and checks a workflow file: its name and version, or every problem (file, node, what) |
//! | `submit NAME [--input JSON\|-] [--id ID]` | a run of NAME's current version, registered by a `vigil run` with `langgraph.workflows_dir` |
//! | `show RUN [--json]`                      | status, step, next node, state, error, and the history of its nodes (timings, errors) |
//! | `approve RUN` / `reject RUN [--reason]`  | a run `waiting` at an approval node goes on / ends `rejected` |
//! | `cancel RUN`                             | a pending, running, waiting or failed run ends `cancelled` |
//! | `resume RUN`                             | a `failed` run runs again from its last checkpoint (the failed node first) |
//!
//! Everything goes through the database, as `vigil agent ...` does: `submit` inserts a
//! run row, the others move the run's status in one fenced `UPDATE`
//! ([`SharedState::set_workflow_status`]) and leave a line in the run's history (node
//! `operator`, outcome and who); the executor of a running `vigil run` —
//! in this shell or another, on this machine or another — acts on it within a cycle.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};
use vigil_actors::langgraph::registry::{self, SubmitError};
use vigil_actors::langgraph::{STEP_EVENT, workflow_file};
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::workflow_runs::{WorkflowRunRecord, WorkflowStatus};
use vigil_persistence::{Severity, SharedState};

use super::{CliError, connect, connect_read_only, out, print_json, resolve};

/// `vigil workflow ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowAction {
    /// Check a workflow file: print its name and version, or every problem in it.
    Check {
        /// The file (JSON).
        file: PathBuf,
    },
    /// Submit a run of a workflow registered by `vigil run` (langgraph.workflows_dir).
    Submit {
        /// The workflow's name (its current version), or `name@version`.
        name: String,
        /// The initial state: a JSON object, or `-` to read it from standard input.
        #[arg(long, value_name = "JSON", allow_hyphen_values = true)]
        input: Option<String>,
        /// The run's id [default: a new UUID].
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Show a run: status, step, state, error and the history of its nodes.
    Show {
        /// The run's id.
        run: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a run waiting at an approval node: it goes on.
    Approve(RunTarget),
    /// Reject a run waiting at an approval node: it ends `rejected`.
    Reject {
        /// The run.
        #[command(flatten)]
        target: RunTarget,
        /// Why (stored as the run's error).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel a pending, running, waiting or failed run.
    Cancel(RunTarget),
    /// Run a failed run again from its last checkpoint.
    Resume(RunTarget),
}

/// The run a command is for.
#[derive(Debug, clap::Args)]
pub struct RunTarget {
    /// The run's id (see `vigil workflows`).
    pub run: String,
}

/// Runs `vigil workflow ACTION`.
pub(super) async fn run(action: WorkflowAction, explicit_url: Option<String>) -> Result<(), CliError> {
    use WorkflowStatus::*;
    let who = format!("{}@vigil-cli", std::env::var("USER").unwrap_or_else(|_| "operator".into()));
    match action {
        WorkflowAction::Check { file } => check(&file),
        WorkflowAction::Submit { name, input, id } => {
            let input = read_input(input)?;
            let state = connect(resolve(explicit_url)?).await?;
            let run = registry::submit(&state, &name, input, id).await.map_err(|e| match e {
                SubmitError::Store(e) => CliError::Store(e),
                other => CliError::Input(other.to_string()),
            })?;
            out!("submitted run {} of {}", run.run_id, run.graph)?;
            warn_without_platform(&state).await
        }
        WorkflowAction::Show { run, json } => {
            show(&connect_read_only(resolve(explicit_url)?).await?, &run, json).await
        }
        WorkflowAction::Approve(target) => {
            let state = connect(resolve(explicit_url)?).await?;
            let change = Move {
                from: &[Waiting],
                to: Running,
                error: None,
                outcome: "approved",
                done: "approved: the run goes on",
            };
            operate(&state, &target.run, change, &who).await
        }
        WorkflowAction::Reject { target, reason } => {
            let state = connect(resolve(explicit_url)?).await?;
            let error = match reason {
                Some(reason) => format!("rejected by {who}: {reason}"),
                None => format!("rejected by {who}"),
            };
            let change = Move {
                from: &[Waiting],
                to: Rejected,
                error: Some(error),
                outcome: "rejected",
                done: "rejected: the run ends",
            };
            operate(&state, &target.run, change, &who).await
        }
        WorkflowAction::Cancel(target) => {
            let state = connect(resolve(explicit_url)?).await?;
            let change = Move {
                from: &[Pending, Running, Waiting, Failed],
                to: Cancelled,
                error: Some(format!("cancelled by {who}")),
                outcome: "cancelled",
                done: "cancelled",
            };
            operate(&state, &target.run, change, &who).await
        }
        WorkflowAction::Resume(target) => {
            let state = connect(resolve(explicit_url)?).await?;
            let change = Move {
                from: &[Failed],
                to: Running,
                error: None,
                outcome: "resumed",
                done: "resumed: the run goes on from its last checkpoint",
            };
            operate(&state, &target.run, change, &who).await
        }
    }
}

fn check(file: &std::path::Path) -> Result<(), CliError> {
    let spec = workflow_file::load_file(file).map_err(|e| CliError::Input(e.to_string()))?;
    out!(
        "{}: workflow `{}` version {} ({} nodes): ok",
        file.display(),
        spec.name,
        spec.version,
        spec.nodes.len()
    )
}

/// The `--input`: a JSON document from the argument or standard input (`-`); `{}`
/// without one.
fn read_input(input: Option<String>) -> Result<Value, CliError> {
    let text = match input.as_deref() {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Input(format!("cannot read the input from standard input: {e}")))?;
            text
        }
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("--input: not JSON: {e}")))
}

/// An operator's move of a run: from which statuses to which, the error it leaves,
/// and the word the history and the output use.
struct Move<'a> {
    from: &'a [WorkflowStatus],
    to: WorkflowStatus,
    error: Option<String>,
    /// `approved`, `rejected`, `cancelled`, `resumed`.
    outcome: &'a str,
    /// What the output says after `run ID`.
    done: &'a str,
}

/// Carries out `change` on `run` and records it in the run's history (node
/// `operator`, with who did it); says why not when the run is not in a status the
/// move starts from.
async fn operate(state: &SharedState, run: &str, change: Move<'_>, who: &str) -> Result<(), CliError> {
    if state.set_workflow_status(run, change.from, change.to, change.error).await? {
        if let Some(record) = state.get_workflow_run(run).await? {
            let data = json!({
                "run_id": run, "graph": record.graph, "node": "operator", "step": record.step,
                "started_at": chrono::Utc::now().to_rfc3339(), "duration_ms": 0,
                "outcome": change.outcome, "by": who, "error": null,
            });
            state.log_system_event(STEP_EVENT, Some(data), Severity::Info).await?;
        }
        out!("run {run} {}", change.done)?;
        return warn_without_platform(state).await;
    }
    let expected: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
    Err(CliError::Input(match state.get_workflow_run(run).await? {
        None => format!("no workflow run `{run}` (see `vigil workflows`)"),
        Some(found) => format!("run {run} is {}, not {}", found.status, expected.join(" or ")),
    }))
}

/// A run row changed with no platform running waits for the next `vigil run`: say so
/// on stderr (the command itself succeeded).
async fn warn_without_platform(state: &SharedState) -> Result<(), CliError> {
    if !state.liveness().await?.platform_running() {
        eprintln!("note: no platform runs on this database now; the run goes on when `vigil run` starts");
    }
    Ok(())
}

/// The `workflow_step` events of `run`, oldest first.
async fn history(state: &SharedState, run: &str) -> Result<Vec<Value>, CliError> {
    let filter =
        EventFilter { event_type: Some(STEP_EVENT.into()), limit: Some(10_000), ..Default::default() };
    let mut steps: Vec<Value> = state
        .recent_events(filter)
        .await?
        .into_iter()
        .filter_map(|event| event.event_data.map(|data| data.0))
        .filter(|data| data["run_id"] == run)
        .collect();
    steps.reverse();
    Ok(steps)
}

async fn show(state: &SharedState, run: &str, json: bool) -> Result<(), CliError> {
    let record: WorkflowRunRecord = state
        .get_workflow_run(run)
        .await?
        .ok_or_else(|| CliError::Input(format!("no workflow run `{run}` (see `vigil workflows`)")))?;
    let steps = history(state, run).await?;
    if json {
        let mut document = serde_json::to_value(&record).map_err(|e| CliError::Output(e.to_string()))?;
        document["history"] = Value::Array(steps);
        return print_json(&document);
    }
    out!("run {} of {}: {}, step {}", record.run_id, record.graph, record.status, record.step)?;
    if let Some(next) = &record.next_node {
        out!("next node: {next}")?;
    }
    if let Some(error) = &record.error {
        out!("error: {error}")?;
    }
    out!("state: {}", record.state.0)?;
    out!("history:")?;
    for step in &steps {
        let error = step["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
        let by = step["by"].as_str().map(|who| format!(" by {who}")).unwrap_or_default();
        out!(
            "  {:>3} {:<20} {:<9} {:>7} ms  {}{by}{error}",
            step["step"],
            step["node"].as_str().unwrap_or("?"),
            step["outcome"].as_str().unwrap_or("?"),
            step["duration_ms"],
            step["started_at"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}
