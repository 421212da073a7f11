//! Operator commands to running agents, through the database.
//!
//! `vigil agent restart|stop|fix ID` in one shell reaches a `vigil run` in another —
//! or on another machine — because the command is a row in `agent_commands`:
//!
//! ```text
//!  vigil agent restart worker          runtime (command processor)
//!  ──────────────────────────          ─────────────────────────────────────────
//!  INSERT agent_commands (pending) ──▶ NOTIFY vigil_commands (PostgreSQL) or poll (SQLite)
//!                                      claim: pending -> running (atomic)
//!                                      RuntimeControl::restart(worker)
//!  poll until done / failed       ◀── complete: done|failed + outcome
//! ```
//!
//! Submitting, claiming and completing are [`Request`]s to the group-commit writer (see
//! [`crate::requests`]): the new row's id and the rows a claim won are answered once
//! the batch has committed; each is one atomic statement, so claims stay exclusive
//! across runtimes.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};

use crate::backend::with_conn;
use crate::error::StoreError;
use crate::requests::{Reply, Request, expect_reply};
use crate::schema::agent_commands;
use crate::shared_state::SharedState;
use crate::types::Ts;

/// The PostgreSQL notification channel raised on every new command.
pub const COMMAND_CHANNEL: &str = "vigil_commands";

/// What to do to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandAction {
    /// Restart with fresh state through its supervisor.
    Restart,
    /// Stop it (it is not restarted).
    Stop,
    /// Restart an agent parked in `manual` (ManualFixed).
    Fix,
    /// `active` -> `standby` (StandbyRequest): its cycles pause.
    Standby,
    /// `standby` -> `active` (Activate).
    Activate,
    /// `active` -> `maintenance` (MaintenanceRequest): its cycles pause.
    Maintenance,
    /// `maintenance` -> `active` (MaintenanceComplete).
    EndMaintenance,
    /// `active` -> `optimizing` (OptimizationRequest): its cycles pause.
    Optimize,
    /// `optimizing` -> `active` (OptimizationComplete).
    EndOptimization,
}

impl CommandAction {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandAction::Restart => "restart",
            CommandAction::Stop => "stop",
            CommandAction::Fix => "fix",
            CommandAction::Standby => "standby",
            CommandAction::Activate => "activate",
            CommandAction::Maintenance => "maintenance",
            CommandAction::EndMaintenance => "end_maintenance",
            CommandAction::Optimize => "optimize",
            CommandAction::EndOptimization => "end_optimization",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }

    /// Every action.
    pub const ALL: [CommandAction; 9] = [
        CommandAction::Restart,
        CommandAction::Stop,
        CommandAction::Fix,
        CommandAction::Standby,
        CommandAction::Activate,
        CommandAction::Maintenance,
        CommandAction::EndMaintenance,
        CommandAction::Optimize,
        CommandAction::EndOptimization,
    ];
}

/// Where a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Waiting for a runtime to pick it up.
    Pending,
    /// Claimed by a runtime.
    Running,
    /// Carried out.
    Done,
    /// Refused or failed; the outcome says why.
    Failed,
}

impl CommandStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Running => "running",
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
        }
    }
}

/// A row of `agent_commands`.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = agent_commands)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AgentCommandRecord {
    /// Command id.
    pub id: i32,
    /// The agent it is for.
    pub agent_id: String,
    /// `restart`, `stop` or `fix`.
    pub action: String,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    /// Who asked (user@host, or an agent id).
    pub requested_by: Option<String>,
    /// What happened.
    pub outcome: Option<String>,
    /// When it was asked.
    pub created_at: Option<Ts>,
    /// When it last changed.
    pub updated_at: Option<Ts>,
}

impl AgentCommandRecord {
    /// The action, typed (`None` for an action this version does not know).
    pub fn action(&self) -> Option<CommandAction> {
        CommandAction::parse(&self.action)
    }

    /// Whether the command has finished (done or failed).
    pub fn is_finished(&self) -> bool {
        self.status == CommandStatus::Done.as_str() || self.status == CommandStatus::Failed.as_str()
    }
}

impl SharedState {
    /// Files a command for `agent_id` and returns its id. On PostgreSQL it also
    /// notifies [`COMMAND_CHANNEL`], so a listening runtime picks it up at once.
    pub async fn submit_agent_command(
        &self,
        agent_id: &str,
        action: CommandAction,
        requested_by: Option<&str>,
    ) -> Result<i32, StoreError> {
        let request = Request::SubmitCommand {
            agent_id: agent_id.to_owned(),
            action,
            requested_by: requested_by.map(str::to_owned),
            at: Ts::now(),
        };
        expect_reply!(self.request(request).await?, Reply::CommandId(id) => id)
    }

    /// Claims up to `limit` pending commands for the given agents, oldest first:
    /// marks them `running` and returns them. Two runtimes never claim the same command.
    pub async fn claim_agent_commands_for(
        &self,
        agent_ids: &[String],
        limit: i64,
    ) -> Result<Vec<AgentCommandRecord>, StoreError> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = Request::ClaimCommands { agent_ids: agent_ids.to_vec(), limit, at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::Commands(claimed) => claimed)
    }

    /// Records the outcome of a claimed command.
    pub async fn complete_agent_command(
        &self,
        id: i32,
        succeeded: bool,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let request = Request::CompleteCommand { id, succeeded, outcome: outcome.to_owned(), at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::Done => ())
    }

    /// One command.
    pub async fn get_agent_command(&self, id: i32) -> Result<Option<AgentCommandRecord>, StoreError> {
        self.store()
            .run(move |inner| async move {
                with_conn!(inner, |conn| Ok(agent_commands::table
                    .find(id)
                    .select(AgentCommandRecord::as_select())
                    .first(conn)
                    .await
                    .optional()?))
            })
            .await
    }
}
