//! The built-in Vigil agents.
//!
//! Each agent is a plain struct with `#[derive(vigil_runtime::Agent)]`, built from one
//! configuration struct whose fields all have documented serde defaults, and added to
//! a runtime with a factory (called again on every restart, so a restarted agent
//! starts from fresh state and re-reads what it needs from the database):
//!
//! | agent                    | id             | what it does                                               | persists in |
//! |--------------------------|----------------|------------------------------------------------------------|-------------|
//! | [`AIHelpAgent`]          | `ai_help`      | claims pending help requests, answers them (offline from the platform's state, or through an OpenAI-compatible API) | `help_requests`, `help_responses`, `llm_conversations` |
//! | [`LangSmithBridge`]      | `langsmith`    | turns lifecycle transitions and LLM conversations into LangSmith runs; batches them to an endpoint, or records them locally | `system_events` (`langsmith_trace`), `system_state` (`langsmith_export`) |
//! | [`LangGraphExecutor`]    | `langgraph`    | runs graph workflows submitted through the API, checkpointing after every step | `workflow_runs`, `llm_conversations` |
//!
//! All three work offline by default; the network is used only when an endpoint is
//! configured, and then only from the agent's own cycle, so a slow or dead endpoint
//! delays that agent and nothing else.
//!
//! ```no_run
//! use vigil_actors::{AIHelpAgent, LangGraphExecutor, LangSmithBridge};
//! use vigil_actors::langgraph::{END, Graph, START};
//! use vigil_persistence::{DatabaseConfig, SharedState, Store};
//! use vigil_runtime::Runtime;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Count { n: u32 }
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let state = SharedState::new(Store::connect(DatabaseConfig::sqlite("vigil.db")).await?);
//!     let graph = Graph::<Count>::builder("count")
//!         .node("inc", |mut s: Count, _ctx| async move { s.n += 1; Ok(s) })
//!         .edge(START, "inc")
//!         .conditional_edge("inc", |s: &Count| if s.n < 3 { "inc" } else { END })
//!         .build()?;
//!     let executor = LangGraphExecutor::default().graph(graph);
//!     let runtime = Runtime::builder(state.clone())
//!         .agent(AIHelpAgent::default)
//!         .agent(LangSmithBridge::default)
//!         .agent(move || executor.clone())
//!         .start()
//!         .await?;
//!     state.submit_workflow_run("count", "run-1", serde_json::json!({"n": 0})).await?;
//!     state.create_help_request("q1", "how is the system health?", None).await?;
//!     // ...
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```

pub mod ai_help;
pub mod config;
pub mod http;
pub mod langgraph;
pub mod langsmith;

pub use ai_help::{
    AIHelpAgent, AiHelpConfig, Answer, OpenAiConfig, OpenAiResponder, PlatformResponder, Responder,
    ResponderError,
};
pub use config::RetryPolicy;
pub use langgraph::{Graph, GraphError, LangGraphConfig, LangGraphExecutor, NodeContext, NodeError};
pub use langsmith::{LangSmithBridge, LangSmithConfig};
