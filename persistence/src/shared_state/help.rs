//! Help requests between agents: asking, listing what is pending, answering, and
//! reading a request and its response back.

use crate::writes::HelpStatus;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

impl SharedState {
    /// Files a help request under `request_id` (status `pending`).
    pub fn create_help_request(
        &self,
        request_id: &str,
        query: &str,
        context: Option<serde_json::Value>,
    ) -> PendingWrite<'_> {
        self.pending(Write::HelpRequest {
            request_id: request_id.into(),
            query: query.into(),
            context,
            at: Ts::now(),
        })
    }

    /// Pending help requests, oldest first.
    pub async fn get_pending_help_requests(&self) -> Result<Vec<HelpRequestRecord>, StoreError> {
        self.help_requests_with_status(HelpStatus::Pending).await
    }

    /// Answers a help request: writes the response and sets the request's status, in
    /// one transaction. Answering an unknown or already answered request is an error.
    pub async fn respond_to_help_request(
        &self,
        request_id: &str,
        response: &str,
        status: HelpStatus,
    ) -> Result<(), StoreError> {
        if self.get_help_request(request_id).await?.is_none() {
            return Err(StoreError::UnknownHelpRequest(request_id.into()));
        }
        self.write(Write::HelpResponse {
            request_id: request_id.into(),
            response: response.into(),
            status,
            at: Ts::now(),
        })
        .await
    }

    /// One help request.
    pub async fn get_help_request(&self, request_id: &str) -> Result<Option<HelpRequestRecord>, StoreError> {
        let request_id = request_id.to_owned();
        read!(self.store, [request_id], |conn| help_requests::table
            .find(&request_id)
            .select(HelpRequestRecord::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    /// The answer to a help request, if there is one.
    pub async fn get_help_response(
        &self,
        request_id: &str,
    ) -> Result<Option<HelpResponseRecord>, StoreError> {
        let request_id = request_id.to_owned();
        read!(self.store, [request_id], |conn| help_responses::table
            .find(&request_id)
            .select(HelpResponseRecord::as_select())
            .first(conn)
            .await
            .optional()?)
    }
}
