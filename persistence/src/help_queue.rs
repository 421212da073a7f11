//! The help-request queue: claiming requests safely when several helpers (in one
//! runtime or in several runtimes over one database) work the same table.
//!
//! A request moves through these statuses (`help_requests.status`):
//!
//! ```text
//!  pending ──claim──▶ processing ──respond_to_help_request──▶ complete | failed
//!     ▲                   │
//!     └──── reclaim ──────┘  (claimed longer ago than the timeout: its helper died)
//! ```
//!
//! | backend    | claim statement                                                        |
//! |------------|------------------------------------------------------------------------|
//! | PostgreSQL | `WITH picked AS MATERIALIZED (SELECT request_id ... WHERE status = 'pending' ORDER BY created_at LIMIT n FOR UPDATE SKIP LOCKED) UPDATE help_requests SET status = 'processing', claimed_at, claimed_by FROM picked ... RETURNING ...` |
//! | SQLite     | `UPDATE ... WHERE request_id IN (SELECT ... LIMIT n) RETURNING ...`: SQLite runs one writer at a time, so the statement is atomic |
//!
//! Two helpers racing therefore never get the same request: on PostgreSQL the second
//! skips rows the first has locked, and the outer `status = 'pending'` re-check drops
//! any row that changed in between.
//!
//! **Claims go through the [`Writer`](crate::shared_state::Writer)** as
//! [`Request`](crate::Request)s: the claim statement runs inside the writer's next batch and the
//! helper learns which rows it got once that batch has committed. Answers go through
//! the writer too ([`SharedState::respond_to_help_request`](crate::SharedState::respond_to_help_request)): the answer row and the
//! status change commit in one transaction, and the primary key of `help_responses`
//! refuses a second answer to the same request.
//!
//! ```no_run
//! # async fn demo(state: vigil_persistence::SharedState) -> Result<(), vigil_persistence::StoreError> {
//! use std::time::Duration;
//! use vigil_persistence::HelpStatus;
//!
//! state.reclaim_stuck_help_requests(Duration::from_secs(300)).await?;
//! for request in state.claim_help_requests("helper-1", 10).await? {
//!     let answer = format!("you asked: {}", request.query);
//!     state.respond_to_help_request(&request.request_id, &answer, HelpStatus::Complete).await?;
//! }
//! # Ok(()) }
//! ```

/// The claim on PostgreSQL: rows another claimer has locked are skipped, not waited
/// for. The pick is a materialized CTE, evaluated exactly once: as a plain `IN
/// (subquery)` the planner may re-run the `LIMIT` subquery per row, and each re-run
/// skips the rows this statement already updated and locks the next ones, so a claim
/// of 2 could take 3.
pub(crate) const CLAIM_PG: &str = "WITH picked AS MATERIALIZED (\
       SELECT request_id FROM help_requests WHERE status = 'pending' \
       ORDER BY created_at, request_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     UPDATE help_requests SET status = 'processing', claimed_at = $1, claimed_by = $2 \
     FROM picked WHERE help_requests.request_id = picked.request_id \
       AND help_requests.status = 'pending' \
     RETURNING help_requests.request_id, help_requests.query, help_requests.context, \
       help_requests.status, help_requests.created_at, help_requests.claimed_at, help_requests.claimed_by";

/// The claim on SQLite: one writer at a time, so the statement alone is atomic.
pub(crate) const CLAIM_SQLITE: &str = "UPDATE help_requests SET status = 'processing', claimed_at = ?, claimed_by = ? \
     WHERE status = 'pending' AND request_id IN (\
       SELECT request_id FROM help_requests WHERE status = 'pending' \
       ORDER BY created_at, request_id LIMIT ?) \
     RETURNING request_id, query, context, status, created_at, claimed_at, claimed_by";
