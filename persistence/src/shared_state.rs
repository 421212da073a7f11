//! [`SharedState`]: the high-level API agents use to read and write the shared state.
//!
//! It is the specification's `SharedState` class with typed arguments: every method
//! of the original is here under its Rust name.
//!
//! | specification               | here                                                   |
//! |-----------------------------|--------------------------------------------------------|
//! | `register_agent`            | [`SharedState::register_agent`]                        |
//! | `update_agent_heartbeat`    | [`SharedState::update_agent_heartbeat`]                |
//! | `update_agent_state`        | [`SharedState::update_agent_state`]                    |
//! | `add_performance_metric`    | [`SharedState::add_performance_metric`]                |
//! | `log_system_event`          | [`SharedState::log_system_event`]                      |
//! | system state get / set      | [`SharedState::get_system_state`], [`SharedState::set_system_state`] |
//! | help requests / responses   | [`SharedState::create_help_request`], [`SharedState::get_pending_help_requests`], [`SharedState::respond_to_help_request`] |
//! | agent communications        | [`SharedState::record_agent_communication`]            |
//! | LLM conversations           | [`SharedState::log_llm_conversation`]                  |
//! | `get_registered_agents`     | [`SharedState::get_registered_agents`]                 |
//! | `get_active_agents`         | [`SharedState::get_active_agents`]                     |
//! | `get_stale_agents`          | [`SharedState::get_stale_agents`]                      |
//! | `get_database_health`       | [`SharedState::get_database_health`]                   |
//! | `get_query_stats`           | [`SharedState::get_query_stats`]                       |
//! | pool monitoring             | [`SharedState::get_pool_stats`]                        |
//! | `cleanup_old_data`          | [`SharedState::cleanup_old_data`]                      |
//! | alert delivery records     | [`SharedState::record_alert_delivery`], [`SharedState::recent_alert_deliveries`] |
//! | restart claims (monitors)   | [`SharedState::claim_incident`], [`SharedState::incident_claim`] |
//! | consistency checks          | [`SharedState::orphan_rows`], [`SharedState::help_requests_with_status`] |
//!
//! Reads go straight to the pool. Writes go through the [`Writer`]: in a running
//! platform the [`PersistenceActor`](crate::PersistenceActor)'s group commit
//! (`Runtime::builder` starts one when given a direct shared state); in tools that
//! write without a runtime — the importer, one-off scripts — straight to the store,
//! one transaction per call ([`SharedState::direct`]).
//!
//! **Waiting is chosen by the caller, not by the verb.** Every write method returns a
//! [`PendingWrite`]: `.await` it to wait until the write has committed, or call
//! [`PendingWrite::enqueue`] to hand it to the writer's queue and go on (heartbeats,
//! metrics). Writes that need an answer — claims, new ids — are [`Request`](crate::Request)s with a
//! typed reply (see [`crate::requests`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::{DatabaseConfig, SharedState, State, Store};
//! use vigil_persistence::shared_state::Heartbeat;
//!
//! let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite_memory()).await?);
//! state.register_agent("worker-1", "Worker").await?;
//! state.update_agent_heartbeat("worker-1", Heartbeat::new().status(State::Active)).await?; // committed
//! state.update_agent_heartbeat("worker-1", Heartbeat::new()).enqueue().await?; // queued
//! assert_eq!(state.get_registered_agents().await?.len(), 1);
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | module                         | what                                               |
//! |--------------------------------|----------------------------------------------------|
//! | `shared_state/writer`          | [`SharedState`], [`Writer`], [`PendingWrite`], the generic write verbs |
//! | `shared_state/agents`          | registration, heartbeats ([`Heartbeat`]), states, agent reads |
//! | `shared_state/metrics`         | [`Metric`], metric series                          |
//! | `shared_state/events`          | system events, [`EventFilter`], recent transitions |
//! | `shared_state/system_state`    | the key-value `system_state` table                 |
//! | `shared_state/help`            | help requests and responses                        |
//! | `shared_state/history`         | dashboards' reads: events after a cursor, chart points, recorded metrics, help exchanges |
//! | `shared_state/communications`  | agent communications, LLM conversations            |
//! | `shared_state/alert_deliveries` | the record of alert deliveries ([`crate::alert_deliveries`]) |
//! | `shared_state/claims`          | incident claims ([`IncidentClaim`])                |
//! | `shared_state/upkeep`          | health, statistics, consistency ([`OrphanRows`]), cleanup ([`CleanupReport`]) |

/// Runs a read with retries on either backend: the listed captures are cloned into
/// each attempt, and `$body` runs with `$conn` bound to a pooled connection.
macro_rules! read {
    ($store:expr, [$($var:ident),*], |$conn:ident| $body:expr) => {
        $store
            .run(move |inner| {
                $(let $var = $var.clone();)*
                async move { $crate::backend::with_conn!(inner, |$conn| Ok($body)) }
            })
            .await
    };
}

/// Builder setters for optional fields: `setter => field: Type` gives
/// `fn setter(self, value: impl Into<Type>) -> Self`, setting `field` to `Some`.
macro_rules! optional_setters {
    ($($(#[$doc:meta])* $setter:ident => $field:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $setter(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    )*};
}

mod agents;
mod alert_deliveries;
mod claims;
mod communications;
mod events;
mod help;
mod help_claims;
mod history;
mod metrics;
mod operator_commands;
mod system_state;
mod upkeep;
mod workflows;
mod writer;

pub use crate::models::{IncidentClaim, incident_claim_key};
pub use agents::{DEFAULT_STALE_AFTER, Heartbeat};
pub use events::EventFilter;
pub use history::{HelpExchange, RecordedMetric};
pub use metrics::Metric;
pub use upkeep::{CleanupReport, HelpBacklog, MAX_DAYS_TO_KEEP, OrphanRows};
pub use writer::{PendingWrite, SharedState, Writer};
