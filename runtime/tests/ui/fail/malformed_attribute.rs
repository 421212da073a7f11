use vigil_runtime::Agent;

#[derive(Agent)]
#[agent]
struct Bare;

impl vigil_runtime::Agent for Bare {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
