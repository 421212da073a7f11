//! The [`PersistenceActor`] and its [`PersistenceHandle`]: starting the writer, the
//! handle's write verbs (`persist`, `request`, `enqueue`), flushing and shutting down.
//!
//! The actor itself does little: it spawns the writer loop (`writer_loop.rs`) when it
//! starts, answers [`Flush`] and [`Shutdown`], and reports what was left when it stops.
//! The handles talk to the queue (`queue.rs`) directly, not through the mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{Notify, oneshot, watch};

use super::config::{MAX_BATCH_BYTES, PersistenceConfig};
use super::queue::{EnqueueError, Entry, Lane, Queue, Shared};
use super::stats::{Counters, PersistenceStats, WriterShutdownReport};
use super::writer_loop::run;
use crate::error::StoreError;
use crate::nodes::Fence;
use crate::nodes::fence::FenceSlot;
use crate::requests::{Reply, Request};
use crate::store::Store;
use crate::writes::Write;

/// Asks the actor to commit everything queued so far; answers when it has.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Asks the actor to flush, then stop; answers with the [`WriterShutdownReport`].
#[derive(Debug, Message)]
#[rtype(result = "WriterShutdownReport")]
pub struct Shutdown;

/// A cloneable handle to the [`PersistenceActor`]; usable from any thread.
///
/// A handle may be **fenced** ([`fenced`](Self::fenced)): every write it queues then
/// carries the [`Fence`] of an agent's lease and commits only while that lease is
/// current (see [`crate::nodes`]).
#[derive(Clone)]
pub struct PersistenceHandle {
    pub(super) shared: Arc<Shared>,
    addr: Addr<PersistenceActor>,
    /// The fence every write of this handle carries; `None` for an unfenced handle.
    fence: FenceSlot,
}

impl std::fmt::Debug for PersistenceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistenceHandle")
            .field("config", &self.shared.config)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl PersistenceHandle {
    /// A handle to the same writer whose writes all carry `fence`: each commits only
    /// if, in the transaction that applies it, the fence's node still owns the agent at
    /// the fence's epoch; otherwise it fails alone with
    /// [`StoreError::Fenced`] (counted in [`PersistenceStats::fenced_writes`]) and the
    /// rest of its batch commits. Fire-and-forget writes
    /// ([`enqueue`](Self::enqueue), [`enqueue_lifecycle`](Self::enqueue_lifecycle)) are
    /// fenced too.
    pub fn fenced(&self, fence: Fence) -> Self {
        self.with_fence(Some(Arc::new(fence)))
    }

    pub(crate) fn with_fence(&self, fence: FenceSlot) -> Self {
        Self { shared: self.shared.clone(), addr: self.addr.clone(), fence }
    }

    /// The fence this handle's writes carry, if it is fenced.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

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
                    let write = write.take().expect("queued once");
                    self.shared.push(&mut queue, write, self.fence.clone(), tx.take());
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
            self.shared.push(&mut queue, write, self.fence.clone(), None);
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
    pub async fn shutdown(&self) -> WriterShutdownReport {
        if self.addr.send(Shutdown).await.is_err() {
            // The actor is gone (stopped with its system); wait for its report.
        }
        let mut finished = self.shared.finished.subscribe();
        match finished.wait_for(Option::is_some).await {
            Ok(report) => report.clone().expect("waited for Some"),
            Err(_) => unreachable!("the sender lives in `Shared`, which this handle holds"),
        }
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
            commit_latency_seconds: c.commit_latency.clone(),
            batch_size: c.batch_size.clone(),
            retries: c.retries,
            rejected_writes: c.rejected,
            fenced_writes: c.fenced,
            refused_writes: self.shared.refused.load(Ordering::Relaxed),
            failed_at_shutdown: c.failed_at_shutdown,
            recovered_commits: c.recovered_commits,
            agent_id_lookups: c.agent_id_lookups,
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
        PersistenceHandle { shared, addr, fence: None }
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
            *report = Some(WriterShutdownReport {
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
    type Result = ResponseFuture<WriterShutdownReport>;

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
