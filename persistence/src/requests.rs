//! Writes that answer: a [`Request`] is a change to the shared state whose caller needs
//! a result — *did I get the claim?*, *which help requests are mine?*, *what id did the
//! command get?* — and its [`Reply`].
//!
//! A request travels the same road as every other [`Write`](crate::Write): it is queued in the
//! [`PersistenceActor`](crate::PersistenceActor), applied inside the next batch's
//! transaction (after that batch's plain rows, in the order requests were queued), and
//! answered only once that transaction has committed. So a claim is never reported
//! as won and then lost to a rollback, and a runtime has one writer, not one writer
//! plus side doors.
//!
//! Exclusivity across processes does not depend on the actor (several processes have
//! several actors): each request is one statement that is atomic by itself —
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE` for incident claims, `FOR UPDATE SKIP
//! LOCKED` for help requests on PostgreSQL, a re-checked `status` for commands and
//! workflow checkpoints. On SQLite one writer holds the file at a time.
//!
//! | request                      | reply                         | called through |
//! |------------------------------|-------------------------------|----------------|
//! | [`Request::ClaimIncident`]   | [`Reply::Applied`] (won?)     | [`SharedState::claim_incident`](crate::SharedState::claim_incident) |
//! | [`Request::ClaimHelpRequests`] | [`Reply::HelpRequests`]     | [`SharedState::claim_help_requests`](crate::SharedState::claim_help_requests) |
//! | [`Request::ReclaimHelpRequests`] | [`Reply::Count`]          | [`SharedState::reclaim_stuck_help_requests`](crate::SharedState::reclaim_stuck_help_requests) |
//! | [`Request::SubmitCommand`]   | [`Reply::CommandId`]          | [`SharedState::submit_agent_command`](crate::SharedState::submit_agent_command) |
//! | [`Request::ClaimCommands`]   | [`Reply::Commands`]           | [`SharedState::claim_agent_commands_for`](crate::SharedState::claim_agent_commands_for) |
//! | [`Request::CompleteCommand`] | [`Reply::Done`]               | [`SharedState::complete_agent_command`](crate::SharedState::complete_agent_command) |
//! | [`Request::SubmitWorkflowRun`] | [`Reply::WorkflowRun`] (`None`: id taken) | [`SharedState::submit_workflow_run`](crate::SharedState::submit_workflow_run) |
//! | [`Request::SaveCheckpoint`]  | [`Reply::Applied`]            | [`SharedState::save_workflow_checkpoint`](crate::SharedState::save_workflow_checkpoint) |
//! | [`Request::SetWorkflowStatus`] | [`Reply::Applied`]          | [`SharedState::set_workflow_status`](crate::SharedState::set_workflow_status) |
//!
//! A request that fails in the database fails its batch like any write; with the
//! persistence actor the batch is then split and the request fails alone with its error.
//!
//! **One thing bypasses the writer: retention cleanup**
//! ([`SharedState::cleanup_old_data`](crate::SharedState::cleanup_old_data)). It is a
//! bulk `DELETE` of days of history that runs for seconds — measured on this 2-core
//! machine's PostgreSQL 15: 0.55 s to delete 600,000 heartbeat rows with the schema's
//! two indexes, so one day of 1,000 agents beating every 30 s (2.9 million rows) takes
//! about 2.6 s. Inside the writer's transaction that would hold every agent's
//! acknowledgement (and every transition) for as long. It only
//! removes rows older than its cutoff, which no queued write creates or changes, so
//! running beside the writer cannot reorder anything.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::agent_commands::{AgentCommandRecord, COMMAND_CHANNEL, CommandAction, CommandStatus};
use crate::backend::SqliteConn;
use crate::error::StoreError;
use crate::help_queue::{CLAIM_PG, CLAIM_SQLITE};
use crate::limits::PayloadLimits;
use crate::models::HelpRequestRecord;
use crate::models::{IncidentClaim, incident_claim_key};
use crate::schema::{agent_commands, help_requests, system_state, workflow_runs};
use crate::types::sql_types::TsTz;
use crate::types::{Json, Ts};
use crate::workflow_runs::{Checkpoint, WorkflowRunRecord, WorkflowStatus};
use crate::writes::rows::upsert_system_state;
use crate::writes::status::HelpStatus;

/// A write whose caller waits for an answer. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// Take or extend the claim on an agent's incident, unless another claimant holds
    /// a live one.
    ClaimIncident {
        /// The claim to write.
        claim: IncidentClaim,
    },
    /// Hand up to `limit` pending help requests to `claimer`.
    ClaimHelpRequests {
        /// Who claims.
        claimer: String,
        /// At most this many.
        limit: i64,
        /// The claim time.
        at: Ts,
    },
    /// Put back to `pending` the requests claimed before `cutoff`.
    ReclaimHelpRequests {
        /// Claims older than this have lapsed.
        cutoff: Ts,
    },
    /// File an operator command.
    SubmitCommand {
        /// The agent it is for.
        agent_id: String,
        /// What to do.
        action: CommandAction,
        /// Who asked.
        requested_by: Option<String>,
        /// When.
        at: Ts,
    },
    /// Claim pending commands for these agents.
    ClaimCommands {
        /// The agents of the claiming runtime.
        agent_ids: Vec<String>,
        /// At most this many.
        limit: i64,
        /// When.
        at: Ts,
    },
    /// Record a claimed command's outcome.
    CompleteCommand {
        /// The command.
        id: i32,
        /// Whether it succeeded.
        succeeded: bool,
        /// What happened.
        outcome: String,
        /// When.
        at: Ts,
    },
    /// Submit a workflow run (refused when the id is taken).
    SubmitWorkflowRun {
        /// The graph.
        graph: String,
        /// The run's id.
        run_id: String,
        /// The initial state.
        state: serde_json::Value,
        /// When.
        at: Ts,
    },
    /// Write a run's checkpoint if it is still at `from_step` and unfinished.
    SaveCheckpoint {
        /// The run.
        run_id: String,
        /// The step the checkpoint follows.
        from_step: i32,
        /// The new row content.
        checkpoint: Checkpoint,
        /// When.
        at: Ts,
    },
    /// Move a run to `to` if its status is one of `from` (an operator's approve,
    /// reject, cancel or resume); the error is replaced by `error`.
    SetWorkflowStatus {
        /// The run.
        run_id: String,
        /// The statuses the move starts from.
        from: Vec<WorkflowStatus>,
        /// The new status.
        to: WorkflowStatus,
        /// The run's error afterwards.
        error: Option<String>,
        /// When.
        at: Ts,
    },
}

/// The answer to a [`Write`](crate::Write): [`Reply::Done`] for a plain write, the
/// result for a [`Request`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// Committed; nothing to report.
    Done,
    /// Whether a conditional change applied (a claim won, a checkpoint written).
    Applied(bool),
    /// Help requests now claimed by the caller, oldest first.
    HelpRequests(Vec<HelpRequestRecord>),
    /// Rows changed.
    Count(usize),
    /// The id given to a new command.
    CommandId(i32),
    /// Commands now claimed by the caller, oldest first.
    Commands(Vec<AgentCommandRecord>),
    /// The submitted run, or `None` when its id was taken.
    WorkflowRun(Option<WorkflowRunRecord>),
}

impl Request {
    /// Checks what can be checked without the database, documents and free text
    /// against `limits`.
    pub(crate) fn validate(&self, limits: &PayloadLimits) -> Result<(), StoreError> {
        let bounded = |field: &'static str, value: &str| {
            if value.is_empty() || value.chars().count() > 255 {
                Err(StoreError::invalid(field, "must be 1 to 255 characters"))
            } else {
                Ok(())
            }
        };
        match self {
            Request::ClaimIncident { claim } => {
                bounded("agent_id", &claim.agent_id)?;
                bounded("claimant", &claim.claimant)
            }
            Request::ClaimHelpRequests { claimer, .. } => bounded("claimer", claimer),
            Request::SubmitCommand { agent_id, .. } => bounded("agent_id", agent_id),
            Request::SubmitWorkflowRun { graph, run_id, state, .. } => {
                bounded("graph", graph)?;
                bounded("run_id", run_id)?;
                limits.check_json("state", state)
            }
            Request::SaveCheckpoint { run_id, checkpoint, .. } => {
                bounded("run_id", run_id)?;
                limits.check_json("state", &checkpoint.state)?;
                limits.check_opt_text("error", checkpoint.error.as_deref())
            }
            Request::CompleteCommand { outcome, .. } => limits.check_text("outcome", outcome),
            Request::SetWorkflowStatus { run_id, error, .. } => {
                bounded("run_id", run_id)?;
                limits.check_opt_text("error", error.as_deref())
            }
            Request::ReclaimHelpRequests { .. } | Request::ClaimCommands { .. } => Ok(()),
        }
    }
}

/// Applies one request inside the caller's transaction. Any error fails the batch.
pub(crate) trait ApplyRequest {
    async fn apply_request(&mut self, request: &Request) -> Result<Reply, StoreError>;
}

/// The request bodies, compiled once per connection type; `$postgres` picks the
/// statements that differ.
macro_rules! define_requests {
    ($conn_ty:ty, postgres = $postgres:expr) => {
        impl ApplyRequest for $conn_ty {
            async fn apply_request(&mut self, request: &Request) -> Result<Reply, StoreError> {
                let conn = self;
                Ok(match request {
                    Request::ClaimIncident { claim } => {
                        use diesel::query_dsl::methods::FilterDsl;
                        let value = serde_json::to_value(claim)
                            .map_err(|e| StoreError::invalid("claim", e.to_string()))?;
                        let now_ms = claim.claimed_at.timestamp_millis();
                        let at = Ts::from(claim.claimed_at);
                        // `->>` reads a JSON member as text on PostgreSQL (JSONB) and on
                        // SQLite (3.38+, TEXT holding JSON) alike. The update applies only
                        // where the old claim lapsed or is the caller's own.
                        let open = diesel::dsl::sql::<Bool>(
                            "(CAST(system_state.value ->> 'expires_at_ms' AS BIGINT) < ",
                        )
                        .bind::<BigInt, _>(now_ms)
                        .sql(" OR system_state.value ->> 'expires_at_ms' IS NULL OR system_state.value ->> 'claimant' = ")
                        .bind::<Text, _>(claim.claimant.clone())
                        .sql(")");
                        let written = upsert_system_state!(incident_claim_key(&claim.agent_id), Json(value), at)
                            .filter(open)
                            .execute(conn)
                            .await?;
                        Reply::Applied(written == 1)
                    }
                    Request::ClaimHelpRequests { claimer, limit, at } => {
                        let sql = if $postgres { CLAIM_PG } else { CLAIM_SQLITE };
                        let mut claimed: Vec<HelpRequestRecord> = diesel::sql_query(sql)
                            .bind::<TsTz, _>(*at)
                            .bind::<Text, _>(claimer.clone())
                            .bind::<BigInt, _>(*limit)
                            .load(conn)
                            .await?;
                        // RETURNING gives no order; hand them out oldest first.
                        claimed.sort_by(|a, b| (a.created_at, &a.request_id).cmp(&(b.created_at, &b.request_id)));
                        Reply::HelpRequests(claimed)
                    }
                    Request::ReclaimHelpRequests { cutoff } => Reply::Count(
                        diesel::update(
                            help_requests::table
                                .filter(help_requests::status.eq(HelpStatus::Processing.as_str()))
                                // A claim without a time predates the claims migration: stuck too.
                                .filter(help_requests::claimed_at.lt(*cutoff).or(help_requests::claimed_at.is_null())),
                        )
                        .set((
                            help_requests::status.eq(HelpStatus::Pending.as_str()),
                            help_requests::claimed_at.eq(None::<Ts>),
                            help_requests::claimed_by.eq(None::<String>),
                        ))
                        .execute(conn)
                        .await?,
                    ),
                    Request::SubmitCommand { agent_id, action, requested_by, at } => {
                        let id: i32 = diesel::insert_into(agent_commands::table)
                            .values((
                                agent_commands::agent_id.eq(agent_id),
                                agent_commands::action.eq(action.as_str()),
                                agent_commands::status.eq(CommandStatus::Pending.as_str()),
                                agent_commands::requested_by.eq(requested_by),
                                agent_commands::created_at.eq(Some(*at)),
                                agent_commands::updated_at.eq(Some(*at)),
                            ))
                            .returning(agent_commands::id)
                            .get_result(conn)
                            .await?;
                        if $postgres {
                            // Delivered at commit, so the listener never sees an uncommitted row.
                            diesel::sql_query(format!("NOTIFY {COMMAND_CHANNEL}")).execute(conn).await?;
                        }
                        Reply::CommandId(id)
                    }
                    Request::ClaimCommands { agent_ids, limit, at } => {
                        // `... AND status = 'pending'`: a row another runtime claimed since
                        // it was picked no longer matches and is not returned.
                        let pending: Vec<i32> = agent_commands::table
                            .filter(agent_commands::status.eq(CommandStatus::Pending.as_str()))
                            .filter(agent_commands::agent_id.eq_any(agent_ids))
                            .order(agent_commands::id.asc())
                            .limit(*limit)
                            .select(agent_commands::id)
                            .load(conn)
                            .await?;
                        if pending.is_empty() {
                            // The common case of an idle poll: one statement, not two.
                            return Ok(Reply::Commands(Vec::new()));
                        }
                        let mut claimed: Vec<AgentCommandRecord> = diesel::update(
                            agent_commands::table
                                .filter(agent_commands::id.eq_any(pending))
                                .filter(agent_commands::status.eq(CommandStatus::Pending.as_str())),
                        )
                        .set((
                            agent_commands::status.eq(CommandStatus::Running.as_str()),
                            agent_commands::updated_at.eq(Some(*at)),
                        ))
                        .returning(AgentCommandRecord::as_returning())
                        .get_results(conn)
                        .await?;
                        claimed.sort_by_key(|c| c.id);
                        Reply::Commands(claimed)
                    }
                    Request::CompleteCommand { id, succeeded, outcome, at } => {
                        let status = if *succeeded { CommandStatus::Done } else { CommandStatus::Failed };
                        diesel::update(agent_commands::table.find(*id))
                            .set((
                                agent_commands::status.eq(status.as_str()),
                                agent_commands::outcome.eq(Some(outcome)),
                                agent_commands::updated_at.eq(Some(*at)),
                            ))
                            .execute(conn)
                            .await?;
                        Reply::Done
                    }
                    Request::SubmitWorkflowRun { graph, run_id, state, at } => Reply::WorkflowRun(
                        diesel::insert_into(workflow_runs::table)
                            .values((
                                workflow_runs::run_id.eq(run_id),
                                workflow_runs::graph.eq(graph),
                                workflow_runs::status.eq(WorkflowStatus::Pending.as_str()),
                                workflow_runs::step.eq(0),
                                workflow_runs::state.eq(Json(state.clone())),
                                workflow_runs::created_at.eq(Some(*at)),
                                workflow_runs::updated_at.eq(Some(*at)),
                            ))
                            .on_conflict_do_nothing()
                            .returning(WorkflowRunRecord::as_returning())
                            .get_result(conn)
                            .await
                            .optional()?,
                    ),
                    Request::SaveCheckpoint { run_id, from_step, checkpoint: cp, at } => {
                        let updated = diesel::update(
                            workflow_runs::table
                                .filter(workflow_runs::run_id.eq(run_id))
                                .filter(workflow_runs::step.eq(*from_step))
                                .filter(workflow_runs::status.eq_any([
                                    WorkflowStatus::Pending.as_str(),
                                    WorkflowStatus::Running.as_str(),
                                ])),
                        )
                        .set((
                            workflow_runs::step.eq(cp.step),
                            workflow_runs::next_node.eq(&cp.next_node),
                            workflow_runs::state.eq(Json(cp.state.clone())),
                            workflow_runs::status.eq(cp.status.as_str()),
                            workflow_runs::error.eq(&cp.error),
                            workflow_runs::updated_at.eq(Some(*at)),
                        ))
                        .execute(conn)
                        .await?;
                        Reply::Applied(updated == 1)
                    }
                    Request::SetWorkflowStatus { run_id, from, to, error, at } => {
                        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
                        let updated = diesel::update(
                            workflow_runs::table
                                .filter(workflow_runs::run_id.eq(run_id))
                                .filter(workflow_runs::status.eq_any(from)),
                        )
                        .set((
                            workflow_runs::status.eq(to.as_str()),
                            workflow_runs::error.eq(error),
                            workflow_runs::updated_at.eq(Some(*at)),
                        ))
                        .execute(conn)
                        .await?;
                        Reply::Applied(updated == 1)
                    }
                })
            }
        }
    };
}

define_requests!(AsyncPgConnection, postgres = true);
define_requests!(SqliteConn, postgres = false);

/// Unpacks the reply a request is documented to get: `expect_reply!(reply,
/// Reply::Applied(won) => won)`. Any other reply is a bug, reported as an error.
macro_rules! expect_reply {
    ($reply:expr, $pattern:pat => $value:expr) => {
        match $reply {
            $pattern => Ok($value),
            other => {
                Err($crate::error::StoreError::Task(format!("unexpected reply to a request: {other:?}")))
            }
        }
    };
}
pub(crate) use expect_reply;
