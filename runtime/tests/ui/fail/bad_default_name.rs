use vigil_runtime::Agent;

#[derive(Agent)]
struct Café;

impl vigil_runtime::Agent for Café {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
