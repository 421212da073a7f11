use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(cycle = 5, name = health)]
struct Slow;

impl vigil_runtime::Agent for Slow {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
