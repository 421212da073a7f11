//! Integration tests of vigil-persistence against real PostgreSQL and SQLite.
//! One test binary, so diesel-async and friends link once.

mod common;

mod actor;
mod agent_ids;
mod config;
mod failover;
mod harsh_faults;
mod import;
mod import_sources;
mod in_process;
mod leases;
mod payload_limits;
mod roles;
mod schema;
mod shared_state;
mod store;
mod tls;
