//! The [`AgentContext`] handed to every hook.

/// What a hook can reach: its own identity and the shared state.
#[derive(Debug, Clone)]
pub struct AgentContext {
    agent_id: String,
}

impl AgentContext {
    /// The agent's id.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }
}
