use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(cycle = "5s")]
#[agent(heartbeat = "30s", cycle = "10s")]
struct Twice;

impl vigil_runtime::Agent for Twice {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
