#[derive(vigil_runtime::Agent)]
struct HeartbeatHealthAgent;

impl vigil_runtime::Agent for HeartbeatHealthAgent {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
