//! What the writer reports: [`PersistenceStats`] while it runs, and the
//! [`WriterShutdownReport`] when it stops, with the counters both are read from.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::writes::WriteKind;

/// How many recent flush latencies the statistics keep.
pub(super) const LATENCY_RING: usize = 1024;

/// Figures of the persistence actor since it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersistenceStats {
    /// Writes queued now (the batch in flight not included).
    pub queue_depth: usize,
    /// The queue's capacity.
    pub queue_capacity: usize,
    /// Transactions committed.
    pub batches_committed: u64,
    /// Writes committed.
    pub writes_committed: u64,
    /// Writes committed, by kind.
    pub rows_by_kind: BTreeMap<WriteKind, u64>,
    /// Mean writes per committed transaction.
    pub mean_batch_size: f64,
    /// Median time from draining a batch to its commit, over recent batches (ms).
    pub flush_latency_p50_ms: f64,
    /// 99th percentile of the same (ms).
    pub flush_latency_p99_ms: f64,
    /// Attempts that failed transiently and were retried.
    pub retries: u64,
    /// Writes that failed with their own error (refused by validation or the database;
    /// fenced writes not included).
    pub rejected_writes: u64,
    /// Fenced writes refused because their fence was no longer current
    /// ([`StoreError::Fenced`](crate::StoreError::Fenced)): another node owns the agent now.
    pub fenced_writes: u64,
    /// Fire-and-forget writes refused because the queue was full.
    pub refused_writes: u64,
    /// Writes that could not be written before shutdown ended.
    pub failed_at_shutdown: u64,
    /// Commits whose outcome was unknown (connection lost during `COMMIT`) and turned
    /// out to have succeeded.
    pub recovered_commits: u64,
}

/// What [`PersistenceHandle::shutdown`](crate::PersistenceHandle::shutdown) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriterShutdownReport {
    /// Writes committed over the actor's life.
    pub written: u64,
    /// Writes still queued or in flight that could not be written.
    pub failed: u64,
    /// Why they could not, when `failed > 0`.
    pub reason: Option<String>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) batches: u64,
    pub(super) writes: u64,
    pub(super) rows_by_kind: BTreeMap<WriteKind, u64>,
    pub(super) latencies: VecDeque<Duration>,
    pub(super) retries: u64,
    pub(super) rejected: u64,
    pub(super) fenced: u64,
    pub(super) failed_at_shutdown: u64,
    pub(super) recovered_commits: u64,
}
