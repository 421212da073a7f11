//! Claiming help requests through the shared state, safely among several helpers: the
//! queue's design and its claim statements are in [`crate::help_queue`]; the claims
//! run in the writer's batches as [`Request`]s.

use super::writer::SharedState;
use crate::error::StoreError;
use crate::models::HelpRequestRecord;
use crate::requests::{Reply, Request, expect_reply};
use crate::types::Ts;
use std::time::Duration;

impl SharedState {
    /// Claims up to `limit` pending help requests for `claimer`, oldest first: sets
    /// them to `processing` with `claimed_at = now` and `claimed_by = claimer`, and
    /// returns them. A request is handed to exactly one claimer.
    pub async fn claim_help_requests(
        &self,
        claimer: &str,
        limit: i64,
    ) -> Result<Vec<HelpRequestRecord>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let request = Request::ClaimHelpRequests { claimer: claimer.to_owned(), limit, at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::HelpRequests(claimed) => claimed)
    }

    /// Puts back to `pending` every request that has been `processing` for longer than
    /// `older_than` (its helper died or hung), and says how many.
    pub async fn reclaim_stuck_help_requests(&self, older_than: Duration) -> Result<usize, StoreError> {
        self.reclaim_stuck_help_requests_at(Ts::now(), older_than).await
    }

    /// [`reclaim_stuck_help_requests`](Self::reclaim_stuck_help_requests) as seen at `now`.
    pub async fn reclaim_stuck_help_requests_at(
        &self,
        now: Ts,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        let window = chrono::Duration::from_std(older_than)
            .map_err(|_| StoreError::invalid("older_than", "too large"))?;
        let cutoff = Ts::from(now.get() - window);
        expect_reply!(self.request(Request::ReclaimHelpRequests { cutoff }).await?, Reply::Count(n) => n)
    }
}
