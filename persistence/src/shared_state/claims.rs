//! Incident claims: which monitor handles an agent's restart, until when, so that
//! several monitors never restart the same agent twice.

use std::time::Duration;

use chrono::Utc;

use crate::requests::{Reply, Request, expect_reply};

use super::writer::SharedState;
use crate::error::StoreError;
use crate::models::{IncidentClaim, incident_claim_key};

impl SharedState {
    /// Claims the incident "agent `agent_id` needs a restart" for `claimant`, for `ttl`.
    ///
    /// Agents that restart other agents (the restart manager, self-healing, the health
    /// agents) call this before acting, so that one incident gets one restart however
    /// many of them notice it. The claim is the system-state key
    /// [`incident_claim_key`]`(agent_id)`, holding an [`IncidentClaim`]; it is taken with
    /// one atomic statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE expired OR
    /// mine`), so two claimants — in one process or several, on either backend — never
    /// both get `true` while a claim is live. The claimant that holds it may claim
    /// again (that extends it). The claim is a [`Request`] to the writer, answered
    /// once committed.
    pub async fn claim_incident(
        &self,
        agent_id: &str,
        claimant: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| StoreError::invalid("ttl", "too large"))?;
        let claim = IncidentClaim {
            agent_id: agent_id.to_owned(),
            claimant: claimant.to_owned(),
            claimed_at: now,
            expires_at_ms: (now + ttl).timestamp_millis(),
        };
        expect_reply!(self.request(Request::ClaimIncident { claim }).await?, Reply::Applied(won) => won)
    }

    /// The live or expired claim on `agent_id`'s incident, if one was ever taken.
    pub async fn incident_claim(&self, agent_id: &str) -> Result<Option<IncidentClaim>, StoreError> {
        Ok(self
            .get_system_state(&incident_claim_key(agent_id))
            .await?
            .and_then(|value| serde_json::from_value(value).ok()))
    }
}
