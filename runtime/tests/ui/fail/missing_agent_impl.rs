use vigil_runtime::Agent;

#[derive(Agent)]
#[agent(cycle = "5s")]
struct Forgotten;

fn main() {}
