//! What can be known about a [`Write`] before the database is asked: its validation
//! against the columns' limits and the [`PayloadLimits`], its size estimate (for sizing
//! batches), and how to drop one whose documents are too deep for an ordinary drop.
//!
//! A write that fails here is refused alone; the rest of its batch goes on.

use super::write::Write;
use crate::error::StoreError;
use crate::limits::{JsonShape, PayloadLimits};
use crate::requests::Request;

impl Write {
    /// Checks what can be checked without the database: lengths of the specification's
    /// `VARCHAR(n)` columns (SQLite does not enforce them), empty ids, non-finite values,
    /// and the depth and size of documents and free text against `limits` (see
    /// [`crate::limits`]). The documents are walked without recursion: any depth is safe.
    pub fn validate(&self, limits: &PayloadLimits) -> Result<(), StoreError> {
        fn text(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
            if value.is_empty() {
                return Err(StoreError::invalid(field, "must not be empty"));
            }
            opt(field, Some(value), max)
        }
        fn opt(field: &'static str, value: Option<&str>, max: usize) -> Result<(), StoreError> {
            match value {
                Some(v) if v.chars().count() > max => Err(StoreError::invalid(
                    field,
                    format!("{} characters, at most {max} allowed", v.chars().count()),
                )),
                _ => Ok(()),
            }
        }
        match self {
            Write::RegisterAgent { agent_id, agent_name, .. } => {
                text("agent_id", agent_id, 255)?;
                text("agent_name", agent_name, 255)
            }
            // A state is typed: it cannot be unknown, empty or too long.
            Write::Heartbeat { agent_id, message, metadata, uptime, .. } => {
                text("agent_id", agent_id, 255)?;
                limits.check_opt_text("message", message.as_deref())?;
                limits.check_opt_json("metadata", metadata.as_ref())?;
                limits.check_opt_json("uptime_details", uptime.as_ref())
            }
            Write::StateChange { agent_id, .. } => text("agent_id", agent_id, 255),
            Write::Metric { name, value, source_agent, metadata, .. } => {
                text("metric_name", name, 255)?;
                opt("source_agent", source_agent.as_deref(), 255)?;
                if !value.is_finite() {
                    return Err(StoreError::invalid("metric_value", "must be a finite number"));
                }
                limits.check_opt_json("metadata", metadata.as_ref())
            }
            Write::Event { event_type, data, .. } => {
                text("event_type", event_type, 100)?;
                limits.check_opt_json("event_data", data.as_ref())
            }
            Write::SetState { key, value, .. } => {
                text("key", key, 255)?;
                limits.check_json("value", value)
            }
            Write::HelpRequest { request_id, query, context, .. } => {
                text("request_id", request_id, 255)?;
                text("query", query, usize::MAX)?;
                limits.check_text("query", query)?;
                limits.check_opt_json("context", context.as_ref())
            }
            Write::HelpResponse { request_id, response, .. } => {
                text("request_id", request_id, 255)?;
                limits.check_text("response", response)
            }
            Write::Communication { message_type, content, status, .. } => {
                opt("message_type", message_type.as_deref(), 100)?;
                opt("status", status.as_deref(), 50)?;
                limits.check_opt_text("message_content", content.as_deref())
            }
            Write::Conversation { conversation_id, message, response, metadata, .. } => {
                opt("conversation_id", conversation_id.as_deref(), 255)?;
                limits.check_opt_text("message_content", message.as_deref())?;
                limits.check_opt_text("response_content", response.as_deref())?;
                limits.check_opt_json("metadata", metadata.as_ref())
            }
            Write::Request(request) => request.validate(limits),
            Write::AlertDelivery(delivery) => {
                text("webhook_name", &delivery.webhook_name, 255)?;
                text("incident_key", &delivery.incident_key, 255)?;
                if delivery.attempt == 0 {
                    return Err(StoreError::invalid("attempt", "attempts count from 1"));
                }
                limits.check_opt_text("error", delivery.error.as_deref())
            }
        }
    }

    /// The write itself if it passes [`Write::validate`]; otherwise the error, the
    /// write having been freed with [`Write::drop_deep`] (a refused document may be
    /// too deep for an ordinary drop).
    pub fn validated(self, limits: &PayloadLimits) -> Result<Self, StoreError> {
        match self.validate(limits) {
            Ok(()) => Ok(self),
            Err(error) => {
                self.drop_deep();
                Err(error)
            }
        }
    }

    /// Drops the write, freeing its documents with an explicit stack
    /// ([`limits::drop_deep`](crate::limits::drop_deep)): use it for a write refused
    /// for its depth (an [`EnqueueError::Invalid`](crate::EnqueueError) hands it back),
    /// whose ordinary drop could overflow the thread's stack.
    pub fn drop_deep(self) {
        let documents: Vec<serde_json::Value> = match self {
            Write::Heartbeat { metadata, uptime, .. } => metadata.into_iter().chain(uptime).collect(),
            Write::Metric { metadata: doc, .. }
            | Write::Event { data: doc, .. }
            | Write::HelpRequest { context: doc, .. }
            | Write::Conversation { metadata: doc, .. } => doc.into_iter().collect(),
            Write::SetState { value, .. } => vec![value],
            Write::Request(Request::SubmitWorkflowRun { state, .. }) => vec![state],
            Write::Request(Request::SaveCheckpoint { checkpoint, .. }) => vec![checkpoint.state],
            _ => Vec::new(),
        };
        documents.into_iter().for_each(crate::limits::drop_deep);
    }

    /// A cheap estimate of the bytes the write sends to the database: its texts, its
    /// documents as serialized (measured by walking them, not serializing), and a few
    /// bytes for each number and timestamp. For sizing batches.
    pub fn approx_bytes(&self) -> usize {
        /// Ids, timestamps, numbers, and the statement's share per row.
        const FIXED: usize = 32;
        fn json(value: Option<&serde_json::Value>) -> usize {
            value.map_or(0, |v| JsonShape::of(v).bytes)
        }
        fn text(value: Option<&str>) -> usize {
            value.map_or(0, str::len)
        }
        FIXED
            + match self {
                Write::RegisterAgent { agent_id, agent_name, .. } => agent_id.len() + agent_name.len(),
                Write::Heartbeat { agent_id, message, metadata, uptime, .. } => {
                    agent_id.len()
                        + text(message.as_deref())
                        + json(metadata.as_ref())
                        + json(uptime.as_ref())
                }
                Write::StateChange { agent_id, .. } => agent_id.len(),
                Write::Metric { agent_id, name, source_agent, metadata, .. } => {
                    text(agent_id.as_deref())
                        + name.len()
                        + text(source_agent.as_deref())
                        + json(metadata.as_ref())
                }
                Write::Event { event_type, data, .. } => event_type.len() + json(data.as_ref()),
                Write::SetState { key, value, .. } => key.len() + json(Some(value)),
                Write::HelpRequest { request_id, query, context, .. } => {
                    request_id.len() + query.len() + json(context.as_ref())
                }
                Write::HelpResponse { request_id, response, .. } => request_id.len() + response.len(),
                Write::Communication { from_agent, to_agent, message_type, content, status, .. } => {
                    from_agent.len()
                        + to_agent.len()
                        + text(message_type.as_deref())
                        + text(content.as_deref())
                        + text(status.as_deref())
                }
                Write::Conversation { agent_id, conversation_id, message, response, metadata, .. } => {
                    text(agent_id.as_deref())
                        + text(conversation_id.as_deref())
                        + text(message.as_deref())
                        + text(response.as_deref())
                        + json(metadata.as_ref())
                }
                Write::AlertDelivery(delivery) => {
                    delivery.webhook_name.len()
                        + delivery.incident_key.len()
                        + text(delivery.error.as_deref())
                }
                Write::Request(request) => match request {
                    Request::ClaimIncident { claim } => claim.agent_id.len() + claim.claimant.len(),
                    Request::ClaimHelpRequests { claimer, .. } => claimer.len(),
                    Request::ReclaimHelpRequests { .. } => 0,
                    Request::SubmitCommand { agent_id, requested_by, .. } => {
                        agent_id.len() + text(requested_by.as_deref())
                    }
                    Request::ClaimCommands { agent_ids, .. } => agent_ids.iter().map(String::len).sum(),
                    Request::CompleteCommand { outcome, .. } => outcome.len(),
                    Request::SubmitWorkflowRun { graph, run_id, state, .. } => {
                        graph.len() + run_id.len() + json(Some(state))
                    }
                    Request::SaveCheckpoint { run_id, checkpoint, .. } => {
                        run_id.len()
                            + text(checkpoint.next_node.as_deref())
                            + json(Some(&checkpoint.state))
                            + text(checkpoint.error.as_deref())
                    }
                    Request::SetWorkflowStatus { run_id, error, .. } => run_id.len() + text(error.as_deref()),
                },
            }
    }
}
