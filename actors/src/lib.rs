//! The built-in Vigil agents: the ten agents of the specification.
//!
//! Each agent is a plain struct with `#[derive(vigil_runtime::Agent)]`, built from one
//! configuration struct whose fields all have documented serde defaults, and added to
//! a runtime with a factory (called again on every restart, so a restarted agent
//! starts from fresh state and re-reads what it needs from the database):
//!
//! # The AI agents
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
//!     let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite("vigil.db")).await?);
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
//!
//! # The monitoring agents
//!
//! Seven agents keep the platform healthy. Each is a plain `#[derive(Agent)]` agent
//! that reads real data — the shared state and the runtime's own control plane — and
//! takes its thresholds from one config struct ([`monitoring_config`]) with documented defaults.
//! A monitor's cycle is one *pass*: its child spec ([`monitoring_agents`], or each
//! monitor's `child_spec`) sets the cycle interval to the config's `pass_interval`.
//!
//! | agent                                | id                              | does                                                     |
//! |--------------------------------------|---------------------------------|----------------------------------------------------------|
//! | [`AgentCoordinator`]                 | `agent_coordinator`             | health registry, recoveries, `system_health_summary`     |
//! | [`HeartbeatHealthAgent`]             | `heartbeat_health`              | health bands, `critical_health_alert`, `recovery_confirmed` |
//! | [`PerformanceMonitor`]               | `performance_monitor`           | runtime metrics, `performance_anomaly_alert`             |
//! | [`SharedStateMonitorAgent`]          | `shared_state_monitor`          | heartbeat classes, database size, `shared_state_summary` |
//! | [`EnhancedSharedStateMonitorAgent`]  | `enhanced_shared_state_monitor` | consistency checks, state sync, health score             |
//! | [`SelfHealingAgent`]                 | `self_healing`                  | detects and acts, `recovery_action_executed`             |
//! | [`AgentRestartManager`]              | `agent_restart_manager`         | restarts stale agents with cooldown and cap              |
//!
//! **Restarts** go only through [`vigil_runtime::RuntimeControl::restart`], i.e. the
//! owning supervisor: its strategy applies, and every request counts against its
//! restart intensity, so an agent that does not recover ends up parked in `manual`
//! instead of being restarted forever. Nothing here "restarts" by sleeping.
//!
//! **One restart per incident.** Four of the agents may want to restart the same
//! stalled agent. Before acting, each claims the incident with
//! [`vigil_persistence::SharedState::claim_incident`] — an atomic
//! upsert-if-expired of the system-state key `restart_claim:<agent_id>`, valid across
//! processes on both backends — and only the claimant restarts; the others leave it
//! (the heartbeat agent still watches for the recovery). A claim lasts `claim_ttl`
//! (5 min), which covers the time a restarted agent needs to beat again.
//!
//! **Failed passes.** A pass that fails (the database does not answer) is logged and
//! tried again at the next pass; it is not a failure of the monitor. A monitor that
//! restarted whenever the database was down would be parked just when it is needed.
//!
//! ```no_run
//! use vigil_actors::{monitoring_config::MonitoringConfig, monitoring_agents};
//! use vigil_runtime::Runtime;
//! # async fn demo(shared: vigil_persistence::SharedState) -> Result<(), vigil_runtime::RuntimeError> {
//! let config = MonitoringConfig::from_json(r#"{"restart_manager": {"cooldown": "2m"}}"#).unwrap();
//! let mut builder = Runtime::builder(shared);
//! for child in monitoring_agents(&config) {
//!     builder = builder.child(child);
//! }
//! let runtime = builder.start().await?;
//! # Ok(()) }
//! ```

pub mod ai_help;
pub mod config;
pub mod coordinator;
pub mod enhanced_state_monitor;
pub mod heartbeat_health;
pub mod http;
pub mod langgraph;
pub mod langsmith;
pub mod monitoring_config;
pub mod observe;
pub mod performance;
pub mod restart_manager;
pub mod scoring;
pub mod self_healing;
pub mod state_monitor;

pub use ai_help::{
    AIHelpAgent, AiHelpConfig, Answer, OpenAiConfig, OpenAiResponder, PlatformResponder, Responder,
    ResponderError,
};
pub use config::HttpRetryPolicy;
pub use coordinator::AgentCoordinator;
pub use enhanced_state_monitor::EnhancedSharedStateMonitorAgent;
pub use heartbeat_health::HeartbeatHealthAgent;
pub use langgraph::{Graph, GraphError, LangGraphConfig, LangGraphExecutor, NodeContext, NodeError};
pub use langsmith::{LangSmithBridge, LangSmithConfig};
pub use performance::PerformanceMonitor;
pub use restart_manager::AgentRestartManager;
pub use self_healing::SelfHealingAgent;
pub use state_monitor::SharedStateMonitorAgent;

use vigil_runtime::ChildSpec;

/// The seven monitoring agents as child specs, under their default ids, each built
/// from its section of `config` and paced by that section's `pass_interval` (every
/// cycle is one pass; every restart gets a fresh instance with the same config).
pub fn monitoring_agents(config: &monitoring_config::MonitoringConfig) -> Vec<ChildSpec> {
    vec![
        AgentCoordinator::child_spec(config.coordinator.clone()),
        HeartbeatHealthAgent::child_spec(config.heartbeat_health.clone()),
        PerformanceMonitor::child_spec(config.performance.clone()),
        SharedStateMonitorAgent::child_spec(config.shared_state.clone()),
        EnhancedSharedStateMonitorAgent::child_spec(config.enhanced_shared_state.clone()),
        SelfHealingAgent::child_spec(config.self_healing.clone()),
        AgentRestartManager::child_spec(config.restart_manager.clone()),
    ]
}

/// Adds the seven monitoring agents to `builder` (see [`monitoring_agents`]).
pub fn with_monitoring(
    mut builder: vigil_runtime::RuntimeBuilder,
    config: &monitoring_config::MonitoringConfig,
) -> vigil_runtime::RuntimeBuilder {
    for child in monitoring_agents(config) {
        builder = builder.child(child);
    }
    builder
}
