//! The [`AgentContext`] handed to every hook: who the agent is, the shared state, and
//! the event bus.

use vigil_persistence::SharedState;

use crate::control::RuntimeControl;
use crate::events::EventBus;

/// What a hook can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentContext {
    agent_id: String,
    shared: SharedState,
    events: EventBus,
    control: RuntimeControl,
}

impl AgentContext {
    pub(crate) fn new(
        agent_id: String,
        shared: SharedState,
        events: EventBus,
        control: RuntimeControl,
    ) -> Self {
        Self { agent_id, shared, events, control }
    }

    /// The control plane: statuses of other agents, restarts through their
    /// supervisors, fixes of parked agents.
    pub fn control(&self) -> &RuntimeControl {
        &self.control
    }

    /// The agent's id (`agents.agent_id`).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The shared-state API (reads and writes).
    pub fn shared_state(&self) -> &SharedState {
        &self.shared
    }

    /// The lifecycle event bus (subscribe to watch other agents).
    pub fn events(&self) -> &EventBus {
        &self.events
    }
}
