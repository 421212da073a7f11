//! The bounded queue the handles fill and the writer drains, and the state both share.
//!
//! The queue is not the actor's mailbox: it is a `Mutex<VecDeque>` in [`Shared`], so a
//! burst never grows memory past `queue_capacity` (data writes are refused or wait;
//! lifecycle writes are admitted past it, see [`Lane`]). Each [`Entry`] carries its
//! sender's acknowledgement channel, answered once its batch has committed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, oneshot, watch};

use super::config::PersistenceConfig;
use super::stats::{Counters, WriterShutdownReport};
use crate::commit::{CommitFault, Marker};
use crate::error::StoreError;
use crate::nodes::fence::FenceSlot;
use crate::requests::Reply;
use crate::writes::Write;

/// Which admission rule a queued write follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Refused when the queue holds `queue_capacity` writes.
    Data,
    /// Admitted past the capacity ([`PersistenceHandle::enqueue_lifecycle`](crate::PersistenceHandle::enqueue_lifecycle)).
    Lifecycle,
}

/// A write [`PersistenceHandle::enqueue`](crate::PersistenceHandle::enqueue) did not queue, handed back with the reason
/// (as actix's `SendError<M>` hands back its message). Boxed: the error stays small,
/// and only a refusal pays for the box.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue is full; the refusal was counted in
    /// [`PersistenceStats::refused_writes`](crate::PersistenceStats::refused_writes).
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

/// Where a write's answer goes once its batch has committed.
pub(super) type Ack = oneshot::Sender<Result<Reply, StoreError>>;

/// A write waiting in the queue.
pub(super) struct Entry {
    pub(super) write: Write,
    /// The fence of the handle that queued it ([`PersistenceHandle::fenced`](crate::PersistenceHandle::fenced)):
    /// checked in the transaction that applies the write.
    pub(super) fence: FenceSlot,
    /// Resolved when the write's batch commits; `None` for fire-and-forget.
    pub(super) ack: Option<Ack>,
    /// Position in the queue's history, for [`Flush`](crate::persistence_actor::Flush).
    pub(super) seq: u64,
    /// [`Write::approx_bytes`], for `max_batch_bytes`.
    pub(super) bytes: usize,
    /// When it was queued, for `max_batch_age`.
    pub(super) queued: Instant,
}

pub(super) struct Queue {
    pub(super) entries: VecDeque<Entry>,
    /// Set by shutdown: no new writes.
    pub(super) closed: bool,
    /// When the final flush must end.
    pub(super) deadline: Option<Instant>,
    pub(super) next_seq: u64,
}

/// State shared by the handles and the actor.
pub(super) struct Shared {
    pub(super) config: PersistenceConfig,
    /// What a write may carry: the store's configuration, checked at the edge.
    pub(super) limits: crate::limits::PayloadLimits,
    pub(super) queue: Mutex<Queue>,
    /// Signalled when a write is queued or the queue closes.
    pub(super) work: Notify,
    /// Signalled when writes leave the queue.
    pub(super) space: Notify,
    /// The highest sequence number whose outcome is known.
    pub(super) done_seq: watch::Sender<u64>,
    /// The final report, once the actor has finished.
    pub(super) finished: watch::Sender<Option<WriterShutdownReport>>,
    pub(super) counters: Mutex<Counters>,
    /// Flush attempts still to fail on purpose (fault injection).
    pub(super) fail_next: AtomicU32,
    pub(super) refused: AtomicU64,
    /// This writer's key in `vigil_write_batches`: random, so that writers of several
    /// processes (or restarts of one) never share markers.
    pub(super) writer_id: i64,
    /// The next transaction's number.
    pub(super) batch_seq: AtomicI64,
    /// Injected commit faults, for the next transactions on PostgreSQL.
    pub(super) commit_faults: Mutex<VecDeque<CommitFault>>,
    /// Injected poison: writes that cannot be sent.
    pub(super) poison: Mutex<Option<PoisonPredicate>>,
}

/// Which writes `PersistenceHandle::poison_writes` makes unsendable.
pub(super) type PoisonPredicate = Arc<dyn Fn(&Write) -> bool + Send + Sync>;

impl Shared {
    pub(super) fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every operation
        // on it is a single push or drain), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, queue: &mut Queue, write: Write, fence: FenceSlot, ack: Option<Ack>) {
        let seq = queue.next_seq;
        queue.next_seq += 1;
        let bytes = write.approx_bytes();
        queue.entries.push_back(Entry { write, fence, ack, seq, bytes, queued: Instant::now() });
    }

    /// The marker of this writer's next transaction.
    pub(super) fn next_marker(&self) -> Marker {
        Marker { writer_id: self.writer_id, batch_seq: self.batch_seq.fetch_add(1, Ordering::Relaxed) }
    }

    pub(super) fn take_injected_fault(&self) -> bool {
        self.fail_next.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    pub(super) fn holds_injected_poison(&self, writes: &[Write]) -> bool {
        let poison = self.poison.lock().unwrap_or_else(|e| e.into_inner()).clone();
        poison.is_some_and(|poison| writes.iter().any(|w| poison(w)))
    }
}
