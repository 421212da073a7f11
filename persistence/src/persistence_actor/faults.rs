//! Fault injection for tests (cargo feature `testing`): failing flushes, lost `COMMIT`
//! answers, writes that can never be sent. Never part of a production build.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::actor::PersistenceHandle;
use crate::commit::CommitFault;
use crate::writes::Write;

impl PersistenceHandle {
    /// Makes the next `n` flush attempts fail with a transient error before they touch
    /// the database (fault injection for tests; the batches are retried).
    pub fn fail_next_flushes(&self, n: u32) {
        self.shared.fail_next.store(n, Ordering::Release);
    }

    /// Makes the next PostgreSQL transactions end with `fault` instead of a plain
    /// `COMMIT` (fault injection for tests of the commit-outcome resolution).
    pub fn inject_commit_fault(&self, fault: CommitFault) {
        self.shared.commit_faults.lock().unwrap_or_else(|e| e.into_inner()).push_back(fault);
    }

    /// Makes every attempt whose batch holds a write matching `poison` fail as if the
    /// connection died while sending it (fault injection for tests of poison batches:
    /// such a write can never be sent).
    pub fn poison_writes(&self, poison: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.shared.poison.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(poison));
    }
}
