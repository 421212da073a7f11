use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(name = "typo", cycle_interval = "5s")]
struct Typo;

impl vigil_runtime::Agent for Typo {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
