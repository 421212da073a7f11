//! A new agent written with `#[derive(Agent)]`, answering a typed message.
//!
//! Run: `cargo run --example custom_agent` (uses an in-memory SQLite database).

use std::time::Duration;

use vigil::prelude::*;

/// Counts words it is sent and reports its total every cycle.
#[derive(Agent, Default)]
#[agent(name = "word_counter", cycle = "200ms", heartbeat = "1s")]
struct WordCounter {
    words: usize,
}

impl Agent for WordCounter {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        ctx.shared_state()
            .add_performance_metric(Metric::new("words", self.words as f64).agent(ctx.agent_id()))
            .enqueue()
            .await?;
        Ok(())
    }
}

/// A typed message: count the words of a text, reply with the new total.
struct Count(String);

impl AgentMessage for Count {
    type Reply = usize;
}

impl Handles<Count> for WordCounter {
    async fn handle(&mut self, Count(text): Count, _ctx: &AgentContext) -> Result<usize, AgentError> {
        self.words += text.split_whitespace().count();
        Ok(self.words)
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite_memory()).await?);
    let runtime = Runtime::builder(state.clone()).agent(WordCounter::default).start().await?;
    println!("started: {:?}", runtime.statuses().await);

    for text in ["the quick brown fox", "jumps over", "the lazy dog"] {
        let total = runtime.ask::<WordCounter, Count>("word_counter", Count(text.into())).await?;
        println!("sent {text:?} -> total {total} words");
    }

    let mut events = runtime.subscribe();
    let report = runtime.shutdown().await;
    events.wait_for_state("word_counter", State::Shutdown, Duration::from_secs(5)).await?;
    println!("shut down: {report:?}");
    let agent = state.get_agent("word_counter").await?.expect("registered");
    println!("persisted state: {}", agent.status.map_or("none", vigil_runtime::State::as_str));
    Ok(())
}
