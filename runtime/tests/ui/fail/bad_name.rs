use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(name = "Loud Agent")]
struct Loud;

#[derive(Agent)]
#[agent(name = "")]
struct Empty;

impl vigil_runtime::Agent for Loud {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

impl vigil_runtime::Agent for Empty {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
