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
    /// Time from draining each batch to its commit, in seconds, since the writer
    /// started (every batch, not only the recent ones of the percentiles).
    pub commit_latency_seconds: Histogram,
    /// Writes per drained batch, since the writer started.
    pub batch_size: Histogram,
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
    /// Lookups of agents' internal ids, each one round trip: a batch makes one only
    /// for agents the writer has not seen since its connection opened or its last
    /// failed attempt (see `AgentIds` in the `writes` module).
    pub agent_id_lookups: u64,
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

/// A histogram with fixed buckets, as Prometheus exposes one: `counts[i]` is how many
/// observations fell in `(bounds[i-1], bounds[i]]`, the last count those above every
/// bound (`+Inf`). Kept by the writer itself so that `/metrics` can serve real
/// buckets (a scrape sees every batch since the start, not a sample).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending (`+Inf` implied after the last).
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`.
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Commit latency buckets, in seconds: 1 ms to 10 s (a SQLite commit is about a
/// millisecond; a PostgreSQL batch under load tens; a failover seconds).
pub(super) const COMMIT_LATENCY_BOUNDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Batch size buckets, in writes: one write up to the default maximum batch and beyond.
pub(super) const BATCH_SIZE_BOUNDS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    /// Counts `value` in its bucket.
    pub(super) fn observe(&mut self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// `(upper bound, observations)` per bucket, not cumulative; the last bound is
    /// `f64::INFINITY`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds.iter().copied().chain([f64::INFINITY]).zip(self.counts.iter().copied())
    }
}

pub(super) struct Counters {
    pub(super) batches: u64,
    pub(super) writes: u64,
    pub(super) rows_by_kind: BTreeMap<WriteKind, u64>,
    pub(super) latencies: VecDeque<Duration>,
    pub(super) commit_latency: Histogram,
    pub(super) batch_size: Histogram,
    pub(super) retries: u64,
    pub(super) rejected: u64,
    pub(super) fenced: u64,
    pub(super) failed_at_shutdown: u64,
    pub(super) recovered_commits: u64,
    pub(super) agent_id_lookups: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            batches: 0,
            writes: 0,
            rows_by_kind: BTreeMap::new(),
            latencies: VecDeque::new(),
            commit_latency: Histogram::new(COMMIT_LATENCY_BOUNDS),
            batch_size: Histogram::new(BATCH_SIZE_BOUNDS),
            retries: 0,
            rejected: 0,
            fenced: 0,
            failed_at_shutdown: 0,
            recovered_commits: 0,
            agent_id_lookups: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_falls_in_the_first_bucket_whose_bound_is_not_below_it() {
        let mut h = Histogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 1.5, 10.0, 11.0, 1e9] {
            h.observe(value);
        }
        let buckets: Vec<(f64, u64)> = h.buckets().collect();
        assert_eq!(buckets, vec![(1.0, 2), (10.0, 2), (f64::INFINITY, 2)]);
        assert_eq!(h.count, 6);
        assert!((h.sum - (0.5 + 1.0 + 1.5 + 10.0 + 11.0 + 1e9)).abs() < 1e-6);
    }
}
