//! The [`PersistenceActor`]: the one writer of the shared state, with group commit.
//!
//! Every write of the runtime goes through one actor, which turns a stream of small
//! writes into few large transactions:
//!
//! ```text
//!  senders (any thread)        bounded queue            actor (actix thread)        store runtime
//!  ────────────────────        ─────────────            ────────────────────        ─────────────
//!  handle.persist(w).await ──▶ [w w w w w ...] ──drain──▶ batch ≤ max_batch ──spawn──▶ BEGIN
//!  handle.enqueue(w)       ──▶   (capacity)             one batch in flight         multi-row INSERTs
//!        ▲                                                     │                     one UPDATE agents
//!        └──────── oneshot: Ok / Err per write ◀───────────────┘◀────────────────── COMMIT
//! ```
//!
//! * **Acknowledgement.** [`PersistenceHandle::persist`] returns once the batch holding
//!   the write has committed (or with the write's own error);
//!   [`PersistenceHandle::request`] the same, with the [`Request`]'s [`Reply`].
//!   [`PersistenceHandle::enqueue`] returns at once; its outcome shows in the
//!   [`PersistenceStats`].
//! * **Bounded queue.** The queue is shared by the handles, not the actor's mailbox, so
//!   a burst never grows memory: when it holds `queue_capacity` writes, `persist` waits
//!   for room (backpressure) and `enqueue` hands the write back in
//!   [`EnqueueError::Full`] (counted in [`PersistenceStats::refused_writes`]).
//!   Lifecycle writes ([`PersistenceHandle::enqueue_lifecycle`]) are admitted past the
//!   capacity — at most one transition per agent is ever waiting to be queued — so a
//!   platform stopping under a full queue records its transitions without waiting.
//! * **Batches.** A batch is flushed when it holds `max_batch` writes or its oldest write
//!   is `max_batch_age` old; while it commits, the queue keeps accepting, and the next
//!   batch is drained as soon as the commit returns. One batch is in flight at a time,
//!   and the queue is FIFO, so the writes of one agent are applied in the order sent.
//! * **Transient failures** (connection lost, timeouts, serialization failures,
//!   deadlocks — [`StoreError::is_transient`]) keep the batch and retry it with the
//!   backoff of [`PersistenceConfig::retry`], **for as long as the actor runs**
//!   (`max_attempts` is not used: giving up would lose acknowledged-to-be writes). During
//!   shutdown, retries stop at the shutdown deadline and what is left is reported.
//! * **Rejected writes.** A batch the database refuses as a whole for a non-transient
//!   reason (a constraint only it can check) is split in halves, recursively, in order;
//!   each offending write fails alone with its error and the rest commits.
//! * **No duplicates, no loss.** On PostgreSQL every transaction writes a marker row
//!   first ([`crate::commit`]). When `COMMIT` was sent but its answer never came (the
//!   connection, the network or the server died under it), the next attempt, on a new
//!   connection, looks the marker up — waiting for the old transaction if it is still
//!   in progress: present means committed (answered with the earlier results, not
//!   applied again), absent means not (applied now). SQLite commits in-process, so an
//!   error there means nothing was written.
//! * **Deadlines.** One transaction on PostgreSQL, from connecting to the answer to
//!   `COMMIT`, has [`PersistenceConfig::transaction_timeout`]; on expiry the connection
//!   is dropped and the outcome resolved as above, so a frozen backend or a silent
//!   network stalls writes for the deadline plus a reconnect, not for as long as it
//!   lasts. Connections have TCP keepalive (see [`crate::connect`]).
//! * **Batches that cannot be sent.** A batch holds at most `max_batch` writes and
//!   [`PersistenceConfig::max_batch_bytes`] bytes. A range whose connection dies every
//!   time it is sent (twice in a row) is a poison batch:
//!   it is split like a rejected one, and a single write that still cannot be sent
//!   fails alone with [`StoreError::Unsendable`].
//! * **Shutdown.** [`PersistenceHandle::shutdown`] (the [`Shutdown`] message) refuses new
//!   writes ([`StoreError::Closed`]), flushes everything queued within
//!   `shutdown_timeout`, then stops the actor and returns a [`ShutdownReport`] with what
//!   could not be written and why.
//!
//! The writer keeps a dedicated PostgreSQL connection (no pool health check per batch,
//! statements stay prepared); reads keep using the pool.
//!
//! ```no_run
//! # #[actix_rt::main]
//! # async fn main() -> Result<(), vigil_persistence::StoreError> {
//! use vigil_persistence::persistence_actor::{PersistenceActor, PersistenceConfig};
//! use vigil_persistence::shared_state::{Heartbeat, Writer};
//! use vigil_persistence::{DatabaseConfig, SharedState, Store};
//!
//! let store = Store::connect(DatabaseConfig::sqlite("vigil.db")).await?;
//! let writer = PersistenceActor::start(store.clone(), PersistenceConfig::default());
//! let state = SharedState::with_writer(store, Writer::Actor(writer.clone()));
//! state.register_agent("worker-1", "Worker").await?; // acknowledged after commit
//! state.update_agent_heartbeat("worker-1", Heartbeat::new()).enqueue().await?; // queued
//! let report = writer.shutdown().await; // flushes the heartbeat
//! assert_eq!(report.failed, 0);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde::Serialize;
use tokio::sync::{Notify, oneshot, watch};

pub use crate::commit::CommitFault;
use crate::commit::{AttemptError, Marker, Unresolved, marked_transaction};
use crate::config::RetryPolicy;
use crate::error::StoreError;
use crate::requests::{Reply, Request};
use crate::store::{Backend, Store, StoreInner};
use crate::writes::{BatchOutcome, Write, WriteKind, apply_batch_sqlite};

/// The largest `max_batch_bytes`: PostgreSQL drops a connection that sends one
/// message over 1 GiB (a multi-row `INSERT` is one message), so batches stay well
/// below it; only a single write larger than that can meet the limit, and it fails
/// alone ([`StoreError::Unsendable`]).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// How many recent flush latencies the statistics keep.
const LATENCY_RING: usize = 1024;

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
    /// Longest the final flush of [`PersistenceHandle::shutdown`] may take (default 10 s).
    pub shutdown_timeout: Duration,
    /// Backoff between retries of a transiently failed batch (default 10 ms to 2 s).
    /// The actor retries until it succeeds or shuts down; `max_attempts` is not used.
    pub retry: RetryPolicy,
    /// Most bytes (estimated, [`Write::approx_bytes`]) in one transaction (default
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
            retry: RetryPolicy::default().with_backoff(Duration::from_millis(10), Duration::from_secs(2)),
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
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

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
    /// Writes that failed with their own error (refused by validation or the database).
    pub rejected_writes: u64,
    /// Fire-and-forget writes refused because the queue was full.
    pub refused_writes: u64,
    /// Writes that could not be written before shutdown ended.
    pub failed_at_shutdown: u64,
    /// Commits whose outcome was unknown (connection lost during `COMMIT`) and turned
    /// out to have succeeded.
    pub recovered_commits: u64,
}

/// What [`PersistenceHandle::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Writes committed over the actor's life.
    pub written: u64,
    /// Writes still queued or in flight that could not be written.
    pub failed: u64,
    /// Why they could not, when `failed > 0`.
    pub reason: Option<String>,
}

/// Which admission rule a queued write follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Refused when the queue holds `queue_capacity` writes.
    Data,
    /// Admitted past the capacity ([`PersistenceHandle::enqueue_lifecycle`]).
    Lifecycle,
}

/// A write [`PersistenceHandle::enqueue`] did not queue, handed back with the reason
/// (as actix's `SendError<M>` hands back its message). Boxed: the error stays small,
/// and only a refusal pays for the box.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue is full; the refusal was counted in
    /// [`PersistenceStats::refused_writes`].
    #[error("persistence queue is full ({capacity} writes); write refused")]
    Full {
        /// The write.
        write: Box<Write>,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The actor has shut down.
    #[error("persistence actor has stopped; write not accepted")]
    Closed(Box<Write>),
    /// The write is invalid in itself.
    #[error("{error}")]
    Invalid {
        /// The write.
        write: Box<Write>,
        /// Why it is invalid.
        #[source]
        error: StoreError,
    },
}

impl EnqueueError {
    /// The write that was not queued.
    pub fn into_write(self) -> Write {
        match self {
            EnqueueError::Full { write, .. }
            | EnqueueError::Closed(write)
            | EnqueueError::Invalid { write, .. } => *write,
        }
    }
}

impl From<EnqueueError> for StoreError {
    fn from(error: EnqueueError) -> Self {
        match error {
            EnqueueError::Full { capacity, .. } => StoreError::QueueFull { capacity },
            EnqueueError::Closed(_) => StoreError::Closed,
            // A refused document may be too deep for an ordinary (recursive) drop.
            EnqueueError::Invalid { write, error } => {
                write.drop_deep();
                error
            }
        }
    }
}

/// Asks the actor to commit everything queued so far; answers when it has.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Asks the actor to flush, then stop; answers with the [`ShutdownReport`].
#[derive(Debug, Message)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown;

/// Where a write's answer goes once its batch has committed.
type Ack = oneshot::Sender<Result<Reply, StoreError>>;

/// A write waiting in the queue.
struct Entry {
    write: Write,
    /// Resolved when the write's batch commits; `None` for fire-and-forget.
    ack: Option<Ack>,
    /// Position in the queue's history, for [`Flush`].
    seq: u64,
    /// [`Write::approx_bytes`], for `max_batch_bytes`.
    bytes: usize,
    /// When it was queued, for `max_batch_age`.
    queued: Instant,
}

struct Queue {
    entries: VecDeque<Entry>,
    /// Set by shutdown: no new writes.
    closed: bool,
    /// When the final flush must end.
    deadline: Option<Instant>,
    next_seq: u64,
}

#[derive(Default)]
struct Counters {
    batches: u64,
    writes: u64,
    rows_by_kind: BTreeMap<WriteKind, u64>,
    latencies: VecDeque<Duration>,
    retries: u64,
    rejected: u64,
    failed_at_shutdown: u64,
    recovered_commits: u64,
}

/// State shared by the handles and the actor.
struct Shared {
    config: PersistenceConfig,
    /// What a write may carry: the store's configuration, checked at the edge.
    limits: crate::limits::PayloadLimits,
    queue: Mutex<Queue>,
    /// Signalled when a write is queued or the queue closes.
    work: Notify,
    /// Signalled when writes leave the queue.
    space: Notify,
    /// The highest sequence number whose outcome is known.
    done_seq: watch::Sender<u64>,
    /// The final report, once the actor has finished.
    finished: watch::Sender<Option<ShutdownReport>>,
    counters: Mutex<Counters>,
    /// Flush attempts still to fail on purpose (fault injection).
    fail_next: AtomicU32,
    refused: AtomicU64,
    /// This writer's key in `vigil_write_batches`: random, so that writers of several
    /// processes (or restarts of one) never share markers.
    writer_id: i64,
    /// The next transaction's number.
    batch_seq: AtomicI64,
    /// Injected commit faults, for the next transactions on PostgreSQL.
    commit_faults: Mutex<VecDeque<CommitFault>>,
    /// Injected poison: writes that cannot be sent.
    poison: Mutex<Option<PoisonPredicate>>,
}

/// Which writes [`PersistenceHandle::poison_writes`] makes unsendable.
type PoisonPredicate = Arc<dyn Fn(&Write) -> bool + Send + Sync>;

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every operation
        // on it is a single push or drain), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, queue: &mut Queue, write: Write, ack: Option<Ack>) {
        let seq = queue.next_seq;
        queue.next_seq += 1;
        let bytes = write.approx_bytes();
        queue.entries.push_back(Entry { write, ack, seq, bytes, queued: Instant::now() });
    }

    /// The marker of this writer's next transaction.
    fn next_marker(&self) -> Marker {
        Marker { writer_id: self.writer_id, batch_seq: self.batch_seq.fetch_add(1, Ordering::Relaxed) }
    }

    fn take_injected_fault(&self) -> bool {
        self.fail_next.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    fn holds_injected_poison(&self, writes: &[Write]) -> bool {
        let poison = self.poison.lock().unwrap_or_else(|e| e.into_inner()).clone();
        poison.is_some_and(|poison| writes.iter().any(|w| poison(w)))
    }
}

/// A cloneable handle to the [`PersistenceActor`]; usable from any thread.
#[derive(Clone)]
pub struct PersistenceHandle {
    shared: Arc<Shared>,
    addr: Addr<PersistenceActor>,
}

impl std::fmt::Debug for PersistenceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistenceHandle").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl PersistenceHandle {
    /// Queues a write and waits until its batch has committed. Waits for room when the
    /// queue is full. Fails with the write's own error if it was rejected, or
    /// [`StoreError::Closed`] after shutdown.
    pub async fn persist(&self, write: Write) -> Result<(), StoreError> {
        self.submit(write).await.map(drop)
    }

    /// Queues a [`Request`] and waits for its [`Reply`], which comes once the batch
    /// that applied it has committed. Waits for room when the queue is full.
    pub async fn request(&self, request: Request) -> Result<Reply, StoreError> {
        self.submit(Write::Request(request)).await
    }

    async fn submit(&self, write: Write) -> Result<Reply, StoreError> {
        let write = write.validated(&self.shared.limits)?;
        let (tx, rx) = oneshot::channel();
        let mut write = Some(write);
        let mut tx = Some(tx);
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut queue = self.shared.queue();
                if queue.closed {
                    return Err(StoreError::Closed);
                }
                if queue.entries.len() < self.shared.config.queue_capacity {
                    // Both are Some: taken only here, right before returning from the loop.
                    self.shared.push(&mut queue, write.take().expect("queued once"), tx.take());
                    break;
                }
            }
            notified.await;
        }
        self.shared.work.notify_one();
        // A dropped sender means the actor stopped without answering.
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Queues a write and returns at once. When the queue is full (the refusal is
    /// counted) or closed, the write comes back in the error, so the caller may wait,
    /// retry or drop it without having cloned it beforehand.
    pub fn enqueue(&self, write: Write) -> Result<(), EnqueueError> {
        self.enqueue_in(write, Lane::Data)
    }

    /// Queues a lifecycle write (a state change, its event) and returns at once,
    /// **past the queue's capacity** if need be. Transitions are few — an agent queues
    /// the next only after the last — so they cannot grow the queue without bound, and
    /// a platform that stops under a full queue does not wait for room to record its
    /// agents' `shutdown`. They keep their place in the one FIFO, behind the agent's
    /// earlier writes.
    pub fn enqueue_lifecycle(&self, write: Write) -> Result<(), EnqueueError> {
        self.enqueue_in(write, Lane::Lifecycle)
    }

    fn enqueue_in(&self, write: Write, lane: Lane) -> Result<(), EnqueueError> {
        if let Err(error) = write.validate(&self.shared.limits) {
            return Err(EnqueueError::Invalid { write: Box::new(write), error });
        }
        {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(EnqueueError::Closed(Box::new(write)));
            }
            if lane == Lane::Data && queue.entries.len() >= self.shared.config.queue_capacity {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(EnqueueError::Full {
                    write: Box::new(write),
                    capacity: self.shared.config.queue_capacity,
                });
            }
            self.shared.push(&mut queue, write, None);
        }
        self.shared.work.notify_one();
        Ok(())
    }

    /// Waits until every write queued before the call has been committed (or failed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.addr.send(Flush).await.map_err(|_| StoreError::Closed)
    }

    /// Refuses new writes, flushes the queue (within `shutdown_timeout`), stops the
    /// actor and reports. Calling it again returns the same report.
    pub async fn shutdown(&self) -> ShutdownReport {
        if self.addr.send(Shutdown).await.is_err() {
            // The actor is gone (stopped with its system); wait for its report.
        }
        let mut finished = self.shared.finished.subscribe();
        match finished.wait_for(Option::is_some).await {
            Ok(report) => report.clone().expect("waited for Some"),
            Err(_) => unreachable!("the sender lives in `Shared`, which this handle holds"),
        }
    }

    /// Makes the next `n` flush attempts fail with a transient error before they touch
    /// the database (fault injection for tests; the batches are retried).
    pub fn fail_next_flushes(&self, n: u32) {
        self.shared.fail_next.store(n, Ordering::Release);
    }

    /// Makes the next PostgreSQL transactions end with `fault` instead of a plain
    /// `COMMIT` (fault injection for tests of the commit-outcome resolution).
    #[doc(hidden)]
    pub fn inject_commit_fault(&self, fault: CommitFault) {
        self.shared.commit_faults.lock().unwrap_or_else(|e| e.into_inner()).push_back(fault);
    }

    /// Makes every attempt whose batch holds a write matching `poison` fail as if the
    /// connection died while sending it (fault injection for tests of poison batches:
    /// such a write can never be sent).
    #[doc(hidden)]
    pub fn poison_writes(&self, poison: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.shared.poison.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(poison));
    }

    /// The actor's figures now.
    pub fn stats(&self) -> PersistenceStats {
        let queue_depth = self.shared.queue().entries.len();
        let c = self.shared.counters();
        let mut latencies: Vec<Duration> = c.latencies.iter().copied().collect();
        latencies.sort_unstable();
        let percentile = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[index].as_secs_f64() * 1e3
        };
        PersistenceStats {
            queue_depth,
            queue_capacity: self.shared.config.queue_capacity,
            batches_committed: c.batches,
            writes_committed: c.writes,
            rows_by_kind: c.rows_by_kind.clone(),
            mean_batch_size: if c.batches == 0 { 0.0 } else { c.writes as f64 / c.batches as f64 },
            flush_latency_p50_ms: percentile(0.50),
            flush_latency_p99_ms: percentile(0.99),
            retries: c.retries,
            rejected_writes: c.rejected,
            refused_writes: self.shared.refused.load(Ordering::Relaxed),
            failed_at_shutdown: c.failed_at_shutdown,
            recovered_commits: c.recovered_commits,
        }
    }
}

/// The single writer of the shared state. Start it with [`PersistenceActor::start`].
pub struct PersistenceActor {
    store: Store,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PersistenceActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistenceActor").field("store", &self.store).finish_non_exhaustive()
    }
}

impl PersistenceActor {
    /// Starts the actor on the current arbiter and returns its handle. Must be called
    /// inside an actix `System`.
    #[allow(clippy::new_ret_no_self)]
    pub fn start(store: Store, config: PersistenceConfig) -> PersistenceHandle {
        let mut config = config;
        config.max_batch = config.max_batch.max(1);
        config.max_batch_bytes = config.max_batch_bytes.clamp(1, MAX_BATCH_BYTES);
        config.queue_capacity = config.queue_capacity.max(1);
        let shared = Arc::new(Shared {
            config,
            limits: store.config().payload_limits().clone(),
            queue: Mutex::new(Queue { entries: VecDeque::new(), closed: false, deadline: None, next_seq: 1 }),
            work: Notify::new(),
            space: Notify::new(),
            done_seq: watch::Sender::new(0),
            finished: watch::Sender::new(None),
            counters: Mutex::new(Counters::default()),
            fail_next: AtomicU32::new(0),
            refused: AtomicU64::new(0),
            writer_id: rand::random::<i64>(),
            batch_seq: AtomicI64::new(1),
            commit_faults: Mutex::new(VecDeque::new()),
            poison: Mutex::new(None),
        });
        let addr = Actor::start(PersistenceActor { store, shared: shared.clone() });
        PersistenceHandle { shared, addr }
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let run = run(self.store.clone(), self.shared.clone());
        ctx.spawn(actix::fut::wrap_future::<_, Self>(run).map(|(), _, ctx: &mut Context<Self>| ctx.stop()));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Stopped with its system before a shutdown: nothing may wait for ever, and what
        // was not written is reported.
        let left: Vec<Entry> = {
            let mut queue = self.shared.queue();
            queue.closed = true;
            queue.entries.drain(..).collect()
        };
        self.shared.space.notify_waiters();
        let failed = left.len() as u64;
        for entry in left {
            if let Some(ack) = entry.ack {
                let _ = ack.send(Err(StoreError::Closed));
            }
        }
        let mut c = self.shared.counters();
        c.failed_at_shutdown += failed;
        let written = c.writes;
        let failed_total = c.failed_at_shutdown;
        drop(c);
        self.shared.finished.send_if_modified(|report| {
            if report.is_some() {
                return false;
            }
            *report = Some(ShutdownReport {
                written,
                failed: failed_total,
                reason: (failed_total > 0).then(|| "the actor stopped before its queue was flushed".into()),
            });
            true
        });
    }
}

impl Handler<Flush> for PersistenceActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let target = self.shared.queue().next_seq - 1;
        let mut done = self.shared.done_seq.subscribe();
        Box::pin(async move {
            let _ = done.wait_for(|seq| *seq >= target).await;
        })
    }
}

impl Handler<Shutdown> for PersistenceActor {
    type Result = ResponseFuture<ShutdownReport>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        {
            let mut queue = self.shared.queue();
            if !queue.closed {
                queue.closed = true;
                queue.deadline = Some(Instant::now() + self.shared.config.shutdown_timeout);
            }
        }
        self.shared.work.notify_one();
        // Writers waiting for room see the queue closed.
        self.shared.space.notify_waiters();
        let mut finished = self.shared.finished.subscribe();
        Box::pin(async move {
            match finished.wait_for(Option::is_some).await {
                Ok(report) => report.clone().expect("waited for Some"),
                Err(_) => unreachable!("the sender lives in `Shared`, which the actor holds"),
            }
        })
    }
}

/// The writer loop: drain a batch, commit it, answer, repeat; ends when the queue is
/// closed and empty (or the shutdown deadline passed).
async fn run(store: Store, shared: Arc<Shared>) {
    let conn: PgSlot = Arc::new(tokio::sync::Mutex::new(None));
    let mut shutdown_failure: Option<String> = None;
    while let Some(batch) = next_batch(&shared).await {
        if let Some(reason) = process(&store, &shared, &conn, batch).await {
            shutdown_failure = Some(reason);
        }
    }
    let c = shared.counters();
    let report = ShutdownReport {
        written: c.writes,
        failed: c.failed_at_shutdown,
        reason: (c.failed_at_shutdown > 0).then(|| shutdown_failure.unwrap_or_else(|| "unknown".into())),
    };
    drop(c);
    if report.failed > 0 {
        tracing::error!(written = report.written, failed = report.failed, reason = ?report.reason, "persistence actor stopped with writes not written");
    } else {
        tracing::info!(written = report.written, "persistence actor stopped; queue flushed");
    }
    shared.finished.send_replace(Some(report));
}

/// Waits for writes and drains the next batch; `None` once closed and empty.
async fn next_batch(shared: &Shared) -> Option<Vec<Entry>> {
    let config = &shared.config;
    loop {
        let notified = shared.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let queue = shared.queue();
            if !queue.entries.is_empty() {
                break;
            }
            if queue.closed {
                return None;
            }
        }
        notified.await;
    }
    // Let senders woken by the last commit queue their next write first: on one
    // thread, this turns a burst of acknowledgements into one full batch.
    tokio::task::yield_now().await;
    if !config.max_batch_age.is_zero() {
        loop {
            let notified = shared.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let queue = shared.queue();
                if queue.entries.len() >= config.max_batch || queue.closed {
                    break;
                }
                queue.entries.front().map(|e| e.queued + config.max_batch_age)
            };
            let Some(deadline) = deadline else { break };
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                break;
            }
        }
    }
    let batch: Vec<Entry> = {
        let mut queue = shared.queue();
        // Up to `max_batch` writes and `max_batch_bytes` bytes, and at least one write.
        let mut bytes = 0usize;
        let n = queue
            .entries
            .iter()
            .take(config.max_batch)
            .take_while(|entry| {
                let fits = bytes == 0 || bytes.saturating_add(entry.bytes) <= config.max_batch_bytes;
                bytes = bytes.saturating_add(entry.bytes);
                fits
            })
            .count()
            .max(1);
        queue.entries.drain(..n).collect()
    };
    shared.space.notify_waiters();
    Some(batch)
}

/// The writer's own PostgreSQL connection, kept across batches; `None` until opened or
/// after it broke.
type PgSlot = Arc<tokio::sync::Mutex<Option<AsyncPgConnection>>>;

/// Commits one drained batch (splitting it around rejected writes), answers its
/// senders and updates the statistics. Returns why writes were given up at shutdown.
async fn process(store: &Store, shared: &Arc<Shared>, conn: &PgSlot, batch: Vec<Entry>) -> Option<String> {
    let started = Instant::now();
    let last_seq = batch.last().map_or(0, |e| e.seq);
    let mut acks = Vec::with_capacity(batch.len());
    let mut writes = Vec::with_capacity(batch.len());
    for entry in batch {
        acks.push(entry.ack);
        writes.push(entry.write);
    }
    let writes = Arc::new(writes);
    let mut results: Vec<Option<Result<Reply, StoreError>>> = (0..writes.len()).map(|_| None).collect();
    let mut given_up: Option<String> = None;
    let mut transactions = 0u64;
    // Ranges still to commit, in order (the next one on top).
    let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
    pending.push(0..writes.len());
    while let Some(range) = pending.pop() {
        if let Some(reason) = &given_up {
            for slot in &mut results[range] {
                *slot = Some(Err(StoreError::Task(reason.clone())));
            }
            continue;
        }
        match commit_with_retry(store, shared, conn, &writes, range.clone()).await {
            Ok(outcome) => {
                transactions += 1;
                for (slot, result) in results[range].iter_mut().zip(outcome) {
                    *slot = Some(result);
                }
            }
            Err(Failure::Rejected(error)) if range.len() == 1 => {
                tracing::warn!(kind = ?writes[range.start].kind(), %error, "write rejected by the database");
                results[range.start] = Some(Err(error));
            }
            Err(Failure::Rejected(error)) => {
                tracing::debug!(writes = range.len(), %error, "batch rejected; splitting it");
                let mid = range.start + range.len() / 2;
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
            Err(Failure::Poisoned(error)) if range.len() == 1 => {
                let write = &writes[range.start];
                tracing::error!(kind = ?write.kind(), bytes = write.approx_bytes(), %error, "write could not be sent: the connection dies every time; it fails alone");
                results[range.start] = Some(Err(StoreError::Unsendable {
                    bytes: write.approx_bytes(),
                    reason: error.to_string(),
                }));
            }
            Err(Failure::Poisoned(error)) => {
                tracing::warn!(writes = range.len(), %error, "the connection dies every time this batch is sent; splitting it");
                let mid = range.start + range.len() / 2;
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
            Err(Failure::GaveUp(reason)) => {
                for slot in &mut results[range] {
                    *slot = Some(Err(StoreError::Task(reason.clone())));
                }
                given_up = Some(reason);
            }
        }
    }

    let mut c = shared.counters();
    let mut committed = 0u64;
    for (write, result) in writes.iter().zip(&results) {
        match result {
            Some(Ok(_)) => {
                committed += 1;
                *c.rows_by_kind.entry(write.kind()).or_default() += 1;
            }
            Some(Err(_)) if given_up.is_some() => {}
            _ => c.rejected += 1,
        }
    }
    if given_up.is_some() {
        c.failed_at_shutdown +=
            results.iter().filter(|r| matches!(r, Some(Err(StoreError::Task(_))))).count() as u64;
    }
    c.writes += committed;
    c.batches += transactions;
    if c.latencies.len() == LATENCY_RING {
        c.latencies.pop_front();
    }
    c.latencies.push_back(started.elapsed());
    drop(c);

    for (ack, result) in acks.into_iter().zip(results) {
        if let Some(ack) = ack {
            // The sender may have stopped waiting; the write is committed all the same.
            let _ = ack.send(result.expect("every write of the batch has an outcome"));
        }
    }
    shared.done_seq.send_replace(last_seq);
    given_up
}

/// Why a range of writes was not committed.
enum Failure {
    /// The database refused it for a non-transient reason: split it.
    Rejected(StoreError),
    /// The connection died every time the range was sent ([`POISON_STRIKES`] times in
    /// a row, on connections that had just opened): split it; a single write fails
    /// with [`StoreError::Unsendable`].
    Poisoned(StoreError),
    /// Shutdown's deadline passed while retrying.
    GaveUp(String),
}

/// Consecutive connection deaths while sending the same range that make it a poison
/// batch. A server that restarts under a batch costs one strike; a message the server
/// can never read (over PostgreSQL's 1 GB) costs one on every attempt.
const POISON_STRIKES: u32 = 2;

/// Commits `writes[range]` in one transaction, retrying transient failures with
/// backoff until it succeeds, is rejected or poisoned, or shutdown's deadline passes.
async fn commit_with_retry(
    store: &Store,
    shared: &Arc<Shared>,
    conn: &PgSlot,
    writes: &Arc<Vec<Write>>,
    range: Range<usize>,
) -> Result<BatchOutcome, Failure> {
    let mut marker = shared.next_marker();
    let mut unresolved: Option<Unresolved> = None;
    let mut retry_number = 0u32;
    let mut strikes = 0u32;
    loop {
        let attempt = attempt(
            store.inner.clone(),
            shared.clone(),
            conn.clone(),
            writes.clone(),
            range.clone(),
            marker,
            unresolved.take(),
        );
        let result = match store.spawn(async move { Ok(attempt.await) }).await {
            Ok(result) => result,
            Err(error) => Err(AttemptError::of(error)),
        };
        let failure = match result {
            Ok((outcome, recovered)) => {
                if recovered {
                    shared.counters().recovered_commits += 1;
                }
                return Ok(outcome);
            }
            Err(failure) => failure,
        };
        // A transaction that may have committed keeps its marker until resolved; one
        // that surely did not (nothing was committed) is retried under a new marker,
        // so that the retry never waits on the dead attempt's uncommitted marker row.
        match failure.unresolved {
            Some(open) => {
                marker = open.marker;
                unresolved = Some(open);
            }
            None => marker = shared.next_marker(),
        }
        // Splitting a range re-applies its writes under new markers: never while an
        // earlier transaction of it may have committed. Such a range is retried until
        // its outcome is known.
        if !failure.retry && unresolved.is_none() {
            return Err(Failure::Rejected(failure.error));
        }
        if failure.died_sending {
            strikes += 1;
            if strikes >= POISON_STRIKES && unresolved.is_none() {
                return Err(Failure::Poisoned(failure.error));
            }
        }
        shared.counters().retries += 1;
        let deadline = shared.queue().deadline;
        let mut delay = shared.config.retry.backoff(retry_number);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::GaveUp(format!(
                    "shutdown timeout ({:?}) passed while retrying: {}",
                    shared.config.shutdown_timeout, failure.error
                )));
            }
            delay = delay.min(left);
        }
        tracing::warn!(retry = retry_number + 1, ?delay, error = %failure.error, writes = range.len(), "batch failed transiently; retrying");
        tokio::time::sleep(delay).await;
        retry_number = retry_number.saturating_add(1);
    }
}

/// One attempt, on the store's runtime. Returns the outcome and whether it came from
/// an earlier `COMMIT` whose answer was lost.
async fn attempt(
    inner: Arc<StoreInner>,
    shared: Arc<Shared>,
    slot: PgSlot,
    writes: Arc<Vec<Write>>,
    range: Range<usize>,
    marker: Marker,
    unresolved: Option<Unresolved>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    let started = Instant::now();
    let result = if shared.take_injected_fault() {
        Err(AttemptError::transient(
            StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(String::from("injected fault: connection closed before the flush")),
            )),
            unresolved,
        ))
    } else if shared.holds_injected_poison(&writes[range.clone()]) {
        Err(AttemptError {
            error: StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UnableToSendCommand,
                Box::new(String::from("injected fault: the connection died while sending the batch")),
            )),
            retry: true,
            unresolved,
            died_sending: true,
        })
    } else {
        let writes = &writes[range];
        match &inner.backend {
            Backend::Pg(_) => {
                let mut slot = slot.lock().await;
                let deadline = shared.config.transaction_timeout;
                let fault = shared.commit_faults.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                attempt_pg(&inner, &mut slot, writes, marker, unresolved, deadline, fault).await
            }
            Backend::Sqlite(pool) => match inner.checkout(pool).await {
                Ok(mut conn) => {
                    apply_batch_sqlite(&mut conn, writes).await.map(|o| (o, false)).map_err(AttemptError::of)
                }
                Err(error) => Err(AttemptError::of(error)),
            },
        }
    };
    let mut result = result;
    inner.settle(started.elapsed(), result.as_mut().err().map(|e| &mut e.error));
    result
}

/// One attempt on PostgreSQL, on the writer's own connection (opened if need be, within
/// `deadline`), as a [`marked_transaction`]. A connection that failed in a way another
/// attempt may cure — dead, frozen, left mid-transaction — is dropped.
async fn attempt_pg(
    inner: &StoreInner,
    slot: &mut Option<AsyncPgConnection>,
    writes: &[Write],
    marker: Marker,
    unresolved: Option<Unresolved>,
    deadline: Duration,
    fault: Option<CommitFault>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    if slot.is_none() {
        let connect = async {
            let mut conn = inner.establish_pg().await.expect("a PostgreSQL store")?;
            // A transaction orphaned by a dropped connection ends on the server too,
            // releasing its locks, instead of waiting for the server to notice.
            let idle = format!("SET idle_in_transaction_session_timeout = {}", deadline.as_millis().max(1));
            conn.batch_execute(&idle).await?;
            Ok::<_, StoreError>(conn)
        };
        match tokio::time::timeout(deadline, connect).await {
            Ok(Ok(conn)) => *slot = Some(conn),
            // Whatever the reason, the range is not at fault: wait for the database.
            Ok(Err(error)) => return Err(AttemptError::transient(error, unresolved)),
            Err(_) => {
                return Err(AttemptError::transient(StoreError::DeadlineExceeded(deadline), unresolved));
            }
        }
    }
    let conn = slot.as_mut().expect("opened above");
    let result = marked_transaction(conn, writes, marker, unresolved, deadline, fault).await;
    if result.as_ref().is_err_and(|failure| failure.retry) {
        // The connection may be dead, frozen or mid-transaction: open a fresh one next.
        *slot = None;
    }
    result
}
