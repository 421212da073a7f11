use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(name = "split")]
#[agent(cycle = "10s", heartbeat = "1m")]
#[agent(restart = "temporary")]
#[agent()]
struct Split(u32);

impl vigil_runtime::Agent for Split {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
