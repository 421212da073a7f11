use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(
    name = "full.agent-1",
    cycle = "250ms",
    cycle_timeout = "10s",
    heartbeat = "2m",
    restart = "transient",
    mailbox = 128,
    shutdown_timeout = "1h"
)]
struct Full {
    _ticks: u64,
}

impl vigil_runtime::Agent for Full {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
