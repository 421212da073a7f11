use vigil_runtime::Agent;

#[derive(Agent)]
struct Generic<T> {
    _inner: T,
}

fn main() {}
