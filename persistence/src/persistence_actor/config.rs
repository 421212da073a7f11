//! How the writer batches and retries: [`PersistenceConfig`] and its limits.

use std::time::Duration;

use crate::config::ConnectRetryPolicy;

/// The largest `max_batch_bytes`: PostgreSQL drops a connection that sends one
/// message over 1 GiB (a multi-row `INSERT` is one message), so batches stay well
/// below it; only a single write larger than that can meet the limit, and it fails
/// alone ([`StoreError::Unsendable`](crate::StoreError::Unsendable)).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// Settings of the persistence actor. Defaults come from `benches/persistence.rs`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PersistenceConfig {
    /// Most writes in one transaction (default 1,000: larger batches gained nothing
    /// measurable and raise the latency of each acknowledgement).
    pub max_batch: usize,
    /// Longest the first write of a batch waits for others before the batch is flushed
    /// (default 0: flush as soon as the previous batch has committed — while a batch
    /// commits, the next one fills by itself).
    pub max_batch_age: Duration,
    /// Writes the queue holds before `persist` waits and `enqueue` is refused
    /// (default 20,000).
    pub queue_capacity: usize,
    /// Longest the final flush of [`PersistenceHandle::shutdown`](crate::PersistenceHandle::shutdown) may take (default 10 s).
    pub shutdown_timeout: Duration,
    /// Backoff between retries of a transiently failed batch (default 10 ms to 2 s).
    /// The actor retries until it succeeds or shuts down; `max_attempts` is not used.
    pub retry: ConnectRetryPolicy,
    /// Most bytes (estimated, [`Write::approx_bytes`](crate::Write::approx_bytes)) in one transaction (default
    /// 16 MiB, at most [`MAX_BATCH_BYTES`]). A single larger write goes alone.
    pub max_batch_bytes: usize,
    /// Longest one transaction of the writer may take on PostgreSQL, from opening the
    /// connection to the answer to `COMMIT` (default 15 s). On expiry the connection is
    /// dropped (the backend may be frozen, the network silent), a new one is opened and
    /// the transaction's outcome is resolved before anything is applied again. The
    /// same value becomes the writer session's `idle_in_transaction_session_timeout`,
    /// so the server ends an orphaned transaction too.
    pub transaction_timeout: Duration,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            max_batch: 1_000,
            max_batch_age: Duration::ZERO,
            queue_capacity: 20_000,
            shutdown_timeout: Duration::from_secs(10),
            retry: ConnectRetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_secs(2)),
            max_batch_bytes: 16 << 20,
            transaction_timeout: Duration::from_secs(15),
        }
    }
}

impl PersistenceConfig {
    /// Sets the batch limits (a `max_batch` of 0 is taken as 1).
    #[must_use]
    pub fn with_batch(mut self, max_batch: usize, max_batch_age: Duration) -> Self {
        self.max_batch = max_batch.max(1);
        self.max_batch_age = max_batch_age;
        self
    }

    /// Sets the most bytes in one transaction (0 is taken as 1: one write per batch;
    /// more than [`MAX_BATCH_BYTES`] as that).
    #[must_use]
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.clamp(1, MAX_BATCH_BYTES);
        self
    }

    /// Sets the deadline of one transaction on PostgreSQL (at least 1 ms).
    #[must_use]
    pub fn with_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the queue capacity (0 is taken as 1).
    #[must_use]
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets the time the final flush may take.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the backoff between retries.
    #[must_use]
    pub fn with_retry(mut self, retry: ConnectRetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}
