use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(mailbox = 0)]
struct Tiny;

#[derive(Agent)]
#[agent(mailbox = "64")]
struct Quoted;

impl vigil_runtime::Agent for Tiny {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

impl vigil_runtime::Agent for Quoted {
    async fn cycle(&mut self, _ctx: &vigil_runtime::AgentContext) -> vigil_runtime::AgentResult {
        Ok(())
    }
}

fn main() {}
