//! Vigil's shared-state database.
pub mod config;
pub mod error;
pub mod models;
pub mod schema;
pub mod store;
pub mod types;

pub use config::DatabaseConfig;
pub use error::StoreError;
pub use store::Store;
