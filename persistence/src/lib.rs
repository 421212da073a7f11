//! Vigil's shared-state database.
pub mod commands;
pub mod commit;
pub mod config;
pub mod connect;
pub mod error;
pub mod help_queue;
pub mod import;
pub mod lifecycle;
pub mod limits;
pub mod models;
pub mod persistence_actor;
pub mod presence;
pub mod requests;
pub mod schema;
pub mod shared_state;
pub mod store;
pub mod testing;
pub mod types;
pub mod workflow_runs;
pub mod writes;

pub use config::DatabaseConfig;
pub use error::StoreError;
pub use lifecycle::{State, TransitionRecord};
pub use limits::PayloadLimits;
pub use persistence_actor::{
    CommitFault, EnqueueError, PersistenceActor, PersistenceConfig, PersistenceHandle, PersistenceStats,
    ShutdownReport,
};
pub use requests::{Reply, Request};
pub use shared_state::SharedState;
pub use store::{Execution, Store};
pub use writes::{HelpStatus, Severity, Write};
