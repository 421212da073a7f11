//! Workflow runs and their checkpoints (`workflow_runs`), for graph executors such as
//! vigil-actors' `LangGraphExecutor`.
//!
//! A run is one row. Submitting it stores the initial state with status `pending` and
//! step 0. After every step the executor overwrites the row with the new state, the
//! step number and the next node to run — the *checkpoint* — in one `UPDATE`, so a run
//! interrupted by a crash or a restart resumes from the last step that was saved.
//!
//! ```text
//!  submit ─▶ pending ─▶ running ─(step, step, ...)─▶ completed
//!                        │  ▲ │
//!          approval node │  │ └──────────────────────▶ failed   (error kept, state of the last good step)
//!                        ▼  │ approve                    │ resume: running again from the checkpoint
//!                      waiting ──reject──▶ rejected      ▼
//!  any unfinished or failed run ──cancel──▶ cancelled
//! ```
//!
//! Operators move a run between statuses with
//! [`SharedState::set_workflow_status`](crate::SharedState::set_workflow_status): one
//! `UPDATE` that applies only if the run is still in one of the statuses the move
//! starts from, so an approval and a cancel racing each other cannot both win.
//!
//! | column      | meaning                                                           |
//! |-------------|-------------------------------------------------------------------|
//! | `run_id`    | caller-chosen unique id                                           |
//! | `graph`     | name of the graph that runs it                                    |
//! | `status`    | [`WorkflowStatus`]                                                |
//! | `step`      | steps completed                                                   |
//! | `next_node` | the node to run next; `NULL` before the first step (start of the graph) |
//! | `state`     | the workflow state (JSON) after `step` steps                      |
//! | `error`     | why the run failed                                                |
//!
//! **Fencing.** [`SharedState::save_workflow_checkpoint`](crate::SharedState::save_workflow_checkpoint) only applies when the row is
//! still at the step the executor started from and not finished, so two executors that
//! somehow ran the same step cannot both advance the run: the second is told it lost.
//! Checkpoints are [`Request`](crate::Request)s to the group-commit
//! [`Writer`](crate::shared_state::Writer): the executor gets that answer once the
//! checkpoint has committed, before it runs the next node.
//!
//! ```no_run
//! # async fn demo(state: vigil_persistence::SharedState) -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::workflow_runs::WorkflowStatus;
//!
//! state.submit_workflow_run("triage", "run-1", serde_json::json!({"ticket": 42})).await?;
//! let run = state.get_workflow_run("run-1").await?.expect("just submitted");
//! assert_eq!(run.status(), Some(WorkflowStatus::Pending));
//! # Ok(()) }
//! ```

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::workflow_runs;
use crate::types::{Json, Ts};

/// Status of a workflow run, stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Submitted, not started.
    Pending,
    /// Started; resumes from its checkpoint after a restart.
    Running,
    /// Reached the end of its graph.
    Completed,
    /// Stopped by an error (see the run's `error`); `resume` runs it again from its
    /// checkpoint.
    Failed,
    /// Paused at an approval node until an operator approves or rejects it.
    Waiting,
    /// Stopped by an operator (`cancel`); never resumed.
    Cancelled,
    /// An operator rejected it at an approval node; never resumed.
    Rejected,
}

impl WorkflowStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Waiting => "waiting",
            WorkflowStatus::Cancelled => "cancelled",
            WorkflowStatus::Rejected => "rejected",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Every status.
    pub const ALL: [WorkflowStatus; 7] = [
        WorkflowStatus::Pending,
        WorkflowStatus::Running,
        WorkflowStatus::Completed,
        WorkflowStatus::Failed,
        WorkflowStatus::Waiting,
        WorkflowStatus::Cancelled,
        WorkflowStatus::Rejected,
    ];

    /// Whether the run is finished: completed, failed, cancelled or rejected (a
    /// failed run may still be resumed by an operator).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed
                | WorkflowStatus::Failed
                | WorkflowStatus::Cancelled
                | WorkflowStatus::Rejected
        )
    }
}

impl std::fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow run with its last checkpoint (`workflow_runs`).
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = workflow_runs)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WorkflowRunRecord {
    /// Caller-chosen unique id.
    pub run_id: String,
    /// The graph that runs it.
    pub graph: String,
    /// `pending`, `running`, `completed`, `failed`, `waiting`, `cancelled` or `rejected`
    /// (see [`WorkflowStatus`]).
    pub status: String,
    /// Steps completed.
    pub step: i32,
    /// The node to run next; `None` before the first step.
    pub next_node: Option<String>,
    /// The state after `step` steps.
    pub state: Json,
    /// Why the run failed.
    pub error: Option<String>,
    /// When it was submitted.
    pub created_at: Option<Ts>,
    /// When the last checkpoint was written.
    pub updated_at: Option<Ts>,
}

impl WorkflowRunRecord {
    /// The parsed status (`None` if the stored text is not one of [`WorkflowStatus::ALL`]).
    pub fn status(&self) -> Option<WorkflowStatus> {
        WorkflowStatus::parse(&self.status)
    }
}

/// The checkpoint written after a step: the whole new row content but the ids.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Checkpoint {
    /// Steps completed, this one included.
    pub step: i32,
    /// The node to run next (`None` once the run is finished).
    pub next_node: Option<String>,
    /// The state after the step.
    pub state: serde_json::Value,
    /// The run's status after the step.
    pub status: WorkflowStatus,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}
