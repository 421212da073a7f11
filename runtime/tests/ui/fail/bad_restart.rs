use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(restart = "always")]
struct Flaky;

impl vigil_runtime::Agent for Flaky {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
