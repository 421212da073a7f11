//! The built-in Vigil agents of the specification (added agent by agent).
//!
//! # The monitoring agents
//!
//! Seven agents keep the platform healthy. Each is a plain `#[derive(Agent)]` agent
//! that reads real data — the shared state and the runtime's own control plane — and
//! takes its thresholds from one config struct ([`config`]) with documented defaults.
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
//! use vigil_actors::{config::MonitoringConfig, monitoring_agents};
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

pub mod config;
pub mod coordinator;
pub mod enhanced_state_monitor;
pub mod heartbeat_health;
pub mod observe;
pub mod performance;
pub mod restart_manager;
pub mod scoring;
pub mod self_healing;
pub mod state_monitor;

pub use coordinator::AgentCoordinator;
pub use enhanced_state_monitor::EnhancedSharedStateMonitorAgent;
pub use heartbeat_health::HeartbeatHealthAgent;
pub use performance::PerformanceMonitor;
pub use restart_manager::AgentRestartManager;
pub use self_healing::SelfHealingAgent;
pub use state_monitor::SharedStateMonitorAgent;

use vigil_runtime::ChildSpec;

/// The seven monitoring agents as child specs, under their default ids, each built
/// from its section of `config` (every restart gets a fresh instance with the same
/// config).
pub fn monitoring_agents(config: &config::MonitoringConfig) -> Vec<ChildSpec> {
    fn spec<A: vigil_runtime::Agent + vigil_runtime::AgentDescriptor>(
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> ChildSpec {
        ChildSpec::agent(A::settings().name, factory)
    }
    vec![
        spec(AgentCoordinator::factory(config.coordinator.clone())),
        spec(HeartbeatHealthAgent::factory(config.heartbeat_health.clone())),
        spec(PerformanceMonitor::factory(config.performance.clone())),
        spec(SharedStateMonitorAgent::factory(config.shared_state.clone())),
        spec(EnhancedSharedStateMonitorAgent::factory(config.enhanced_shared_state.clone())),
        spec(SelfHealingAgent::factory(config.self_healing.clone())),
        spec(AgentRestartManager::factory(config.restart_manager.clone())),
    ]
}

/// Adds the seven monitoring agents to `builder` (see [`monitoring_agents`]).
pub fn with_monitoring(
    mut builder: vigil_runtime::RuntimeBuilder,
    config: &config::MonitoringConfig,
) -> vigil_runtime::RuntimeBuilder {
    for child in monitoring_agents(config) {
        builder = builder.child(child);
    }
    builder
}
