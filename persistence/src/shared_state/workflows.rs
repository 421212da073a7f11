//! Workflow runs through the shared state: starting, checkpointing and finishing a
//! run, and reading runs back. The records and statuses are in
//! [`crate::workflow_runs`]; the writes that need an answer go through the writer as
//! [`Request`]s.

use super::writer::SharedState;
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::requests::{Reply, Request, expect_reply};
use crate::schema::workflow_runs;
use crate::types::Ts;
use crate::workflow_runs::{Checkpoint, WorkflowRunRecord, WorkflowStatus};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl SharedState {
    /// Submits a run of `graph` under `run_id` with its initial state (status
    /// `pending`, step 0). An id that is already taken is refused.
    pub async fn submit_workflow_run(
        &self,
        graph: &str,
        run_id: &str,
        initial_state: serde_json::Value,
    ) -> Result<WorkflowRunRecord, StoreError> {
        let request = Request::SubmitWorkflowRun {
            graph: graph.to_owned(),
            run_id: run_id.to_owned(),
            state: initial_state,
            at: Ts::now(),
        };
        expect_reply!(self.request(request).await?, Reply::WorkflowRun(run) => run)?
            .ok_or_else(|| StoreError::invalid("run_id", format!("a workflow run `{run_id}` already exists")))
    }

    /// Writes the checkpoint of the step that followed step `from_step`, in one
    /// statement. Applies only if the run is still at `from_step` and not finished;
    /// returns whether it did (`false`: another executor advanced or finished it).
    pub async fn save_workflow_checkpoint(
        &self,
        run_id: &str,
        from_step: i32,
        checkpoint: Checkpoint,
    ) -> Result<bool, StoreError> {
        let request =
            Request::SaveCheckpoint { run_id: run_id.to_owned(), from_step, checkpoint, at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::Applied(applied) => applied)
    }

    /// Moves `run_id` to `to` if its status is one of `from`, replacing its error with
    /// `error`, in one statement; returns whether it did (`false`: no such run, or it
    /// had moved on). Operators approve, reject, cancel and resume runs with it.
    pub async fn set_workflow_status(
        &self,
        run_id: &str,
        from: &[WorkflowStatus],
        to: WorkflowStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let request = Request::SetWorkflowStatus {
            run_id: run_id.to_owned(),
            from: from.to_vec(),
            to,
            error,
            at: Ts::now(),
        };
        expect_reply!(self.request(request).await?, Reply::Applied(applied) => applied)
    }

    /// One run with its last checkpoint.
    pub async fn get_workflow_run(&self, run_id: &str) -> Result<Option<WorkflowRunRecord>, StoreError> {
        let id = run_id.to_owned();
        self.store()
            .run(move |inner| {
                let id = id.clone();
                async move {
                    with_conn!(inner, |conn| Ok(workflow_runs::table
                        .find(&id)
                        .select(WorkflowRunRecord::as_select())
                        .first(conn)
                        .await
                        .optional()?))
                }
            })
            .await
    }

    /// Runs, newest first, optionally only those with `status`; at most `limit`.
    pub async fn list_workflow_runs(
        &self,
        status: Option<WorkflowStatus>,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.store()
            .run(move |inner| async move {
                with_conn!(inner, |conn| {
                    let mut query = workflow_runs::table.into_boxed();
                    if let Some(status) = status {
                        query = query.filter(workflow_runs::status.eq(status.as_str()));
                    }
                    Ok(query
                        .order((workflow_runs::created_at.desc(), workflow_runs::run_id.desc()))
                        .limit(limit)
                        .select(WorkflowRunRecord::as_select())
                        .load(conn)
                        .await?)
                })
            })
            .await
    }

    /// Unfinished runs (`pending` or `running`) of the named graphs, oldest first: the
    /// work an executor picks up, including runs interrupted by a crash.
    pub async fn unfinished_workflow_runs(
        &self,
        graphs: &[String],
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        let graphs = graphs.to_vec();
        self.store()
            .run(move |inner| {
                let graphs = graphs.clone();
                async move {
                    with_conn!(inner, |conn| Ok(workflow_runs::table
                        .filter(workflow_runs::graph.eq_any(&graphs))
                        .filter(
                            workflow_runs::status
                                .eq_any(
                                    [WorkflowStatus::Pending.as_str(), WorkflowStatus::Running.as_str(),]
                                )
                        )
                        .order((workflow_runs::created_at.asc(), workflow_runs::run_id.asc()))
                        .limit(limit)
                        .select(WorkflowRunRecord::as_select())
                        .load(conn)
                        .await?))
                }
            })
            .await
    }
}
