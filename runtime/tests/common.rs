//! Helpers shared by the runtime's test files (each includes it with `mod common;`).
//!
//! Waiting helpers live in `vigil_runtime::testkit` (`eventually`, `wait_for_cycle`,
//! `wait_until_active`), since users' tests need them too; what is here is only what
//! these test files had twice.

// Each test file uses some of these, none all.
#![allow(dead_code)]

use std::time::Duration;

use vigil_persistence::shared_state::Writer;
use vigil_persistence::{PersistenceActor, SharedState, Store};

/// Safety net of every wait (virtual time in the tests that pause the clock).
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// A shared state over `store` that writes through a persistence actor of its own,
/// as a platform that owns its writer (the runtime then only flushes it).
pub(crate) fn with_own_writer(store: Store) -> SharedState {
    let writer = PersistenceActor::start(store.clone(), Default::default());
    SharedState::with_writer(store, Writer::Actor(writer))
}
