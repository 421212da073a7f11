//! The persistence actor (placeholder until group commit lands).

use crate::error::StoreError;
use crate::writes::Write;

/// A handle to the persistence actor.
#[derive(Clone, Debug)]
pub struct PersistenceHandle {
    store: crate::Store,
}

impl PersistenceHandle {
    /// Persists a write and waits for its commit.
    pub async fn persist(&self, write: Write) -> Result<(), StoreError> {
        self.store.write(write).await
    }

    /// Enqueues a write.
    pub fn enqueue(&self, _write: Write) -> Result<(), StoreError> {
        Err(StoreError::Closed)
    }
}
