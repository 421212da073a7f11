use vigil_runtime::Agent;

#[derive(Agent)]
enum NotAStruct {
    A,
    B,
}

fn main() {}
