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
//! Submitting, claiming and completing are [`Request`](crate::Request)s to the group-commit writer (see
//! [`crate::requests`]): the new row's id and the rows a claim won are answered once
//! the batch has committed; each is one atomic statement, so claims stay exclusive
//! across runtimes.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::agent_commands;
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
