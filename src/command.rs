//! Operator commands through the control plane: [`carry_out`] files a row in
//! `agent_commands` ([`SharedState::submit_agent_command`]) that the running platform
//! carries out within a second (the node that runs the agent, on PostgreSQL), and
//! waits for its outcome. `vigil agent restart|stop|fix|... ID` and the HTTP API's
//! `POST /api/v1/agents/{id}/restart|stop|fix` both come here, so an action asked for
//! over HTTP is the same action, recorded the same way, as one asked for in a shell.
//!
//! It refuses at once — instead of filing a request nobody would carry out — when the
//! agent is not registered or no platform runs on the database (decided now, see
//! [`vigil_persistence::presence`]).
//!
//! ```no_run
//! # async fn demo(state: vigil::SharedState) -> Result<(), vigil::command::CommandError> {
//! use std::time::Duration;
//! use vigil::persistence::agent_commands::CommandAction;
//!
//! let outcome = vigil::command::carry_out(&state, CommandAction::Restart, "monitor", "ops", Duration::from_secs(30)).await?;
//! println!("{outcome}");
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::{SharedState, StoreError};

/// How often a waiting command looks again.
const POLL: Duration = Duration::from_millis(200);

/// Why an operator command was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No agent with that id is registered.
    #[error("no agent `{0}` is registered (see `vigil status`)")]
    UnknownAgent(String),
    /// No platform runs on the database: nobody would carry the command out. The
    /// message names the last platform and how it ended.
    #[error("{0}")]
    NoPlatform(String),
    /// The platform tried and failed; the outcome it recorded.
    #[error("{action} {agent_id} failed: {outcome}")]
    Failed {
        /// The action.
        action: &'static str,
        /// The agent.
        agent_id: String,
        /// What the platform recorded.
        outcome: String,
    },
    /// Nothing carried it out in time; the row stays in `status`.
    #[error(
        "no running platform carried out `{action} {agent_id}` within {timeout:?} (is `vigil run` running on this database?); command {id} stays {status}"
    )]
    TimedOut {
        /// The action.
        action: &'static str,
        /// The agent.
        agent_id: String,
        /// How long it waited.
        timeout: Duration,
        /// The command's id.
        id: i32,
        /// Its status when the wait ended.
        status: String,
    },
    /// The command row disappeared while waiting (a cleanup removed it).
    #[error("command {0} vanished")]
    Vanished(i32),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fails at once, saying so, when no platform runs on the database: a command filed
/// for the platform to carry out would only wait for nobody.
pub async fn require_platform(state: &SharedState, what: &str) -> Result<(), CommandError> {
    let report = state.liveness().await?;
    if report.platform_running() {
        return Ok(());
    }
    let database = state.store().config().describe();
    Err(CommandError::NoPlatform(format!(
        "{}; start `vigil run` there before {what}",
        report.no_platform_message(&database)
    )))
}

/// Files `action` for `agent_id` on behalf of `requester` and waits up to `timeout`
/// for the platform's outcome, which it returns.
pub async fn carry_out(
    state: &SharedState,
    action: CommandAction,
    agent_id: &str,
    requester: &str,
    timeout: Duration,
) -> Result<String, CommandError> {
    if state.get_agent(agent_id).await?.is_none() {
        return Err(CommandError::UnknownAgent(agent_id.to_owned()));
    }
    require_platform(state, &format!("asking it to {}", action.as_str())).await?;
    let id = state.submit_agent_command(agent_id, action, Some(requester)).await?;
    let started = Instant::now();
    loop {
        let command = state.get_agent_command(id).await?.ok_or(CommandError::Vanished(id))?;
        if command.is_finished() {
            let outcome = command.outcome.unwrap_or_default();
            return if command.status == "done" {
                Ok(outcome)
            } else {
                Err(CommandError::Failed { action: action.as_str(), agent_id: agent_id.to_owned(), outcome })
            };
        }
        if started.elapsed() > timeout {
            return Err(CommandError::TimedOut {
                action: action.as_str(),
                agent_id: agent_id.to_owned(),
                timeout,
                id,
                status: command.status,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
