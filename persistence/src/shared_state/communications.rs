//! What agents say to each other and to language models: agent communications and
//! LLM conversations, recorded and read back.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

impl SharedState {
    /// Records a message from one agent to another (status `sent`).
    pub fn record_agent_communication(
        &self,
        from_agent: &str,
        to_agent: &str,
        message_type: &str,
        content: &str,
    ) -> PendingWrite<'_> {
        self.pending(Write::Communication {
            from_agent: from_agent.into(),
            to_agent: to_agent.into(),
            message_type: Some(message_type.into()),
            content: Some(content.into()),
            status: None,
            at: Ts::now(),
        })
    }

    /// Messages sent or received by an agent, oldest first.
    pub async fn agent_communications(&self, agent_id: &str) -> Result<Vec<CommunicationRecord>, StoreError> {
        let agent =
            self.get_agent(agent_id).await?.ok_or_else(|| StoreError::UnknownAgent(agent_id.into()))?;
        read!(self.store, [], |conn| agent_communications::table
            .filter(
                agent_communications::from_agent_id
                    .eq(agent.id)
                    .or(agent_communications::to_agent_id.eq(agent.id)),
            )
            .order(agent_communications::id.asc())
            .select(CommunicationRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Logs one exchange with a language model.
    pub fn log_llm_conversation(
        &self,
        agent_id: Option<&str>,
        conversation_id: &str,
        message: &str,
        response: &str,
        metadata: Option<serde_json::Value>,
    ) -> PendingWrite<'_> {
        self.pending(Write::Conversation {
            agent_id: agent_id.map(Into::into),
            conversation_id: Some(conversation_id.into()),
            message: Some(message.into()),
            response: Some(response.into()),
            metadata,
            at: Ts::now(),
        })
    }

    /// The exchanges of one conversation, oldest first.
    pub async fn llm_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let conversation_id = conversation_id.to_owned();
        read!(self.store, [conversation_id], |conn| llm_conversations::table
            .filter(llm_conversations::conversation_id.eq(&conversation_id))
            .order(llm_conversations::id.asc())
            .select(ConversationRecord::as_select())
            .load(conn)
            .await?)
    }

    /// Exchanges with a language model whose row id is above `after_id`, oldest first,
    /// at most `limit`: for following the table (trace export).
    pub async fn llm_conversations_after(
        &self,
        after_id: i32,
        limit: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        read!(self.store, [], |conn| llm_conversations::table
            .filter(llm_conversations::id.gt(after_id))
            .order(llm_conversations::id.asc())
            .limit(limit)
            .select(ConversationRecord::as_select())
            .load(conn)
            .await?)
    }
}
