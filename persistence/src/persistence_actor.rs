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
//!   [`PersistenceHandle::request`] the same, with the [`Request`](crate::Request)'s [`Reply`](crate::Reply).
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
//!   deadlocks — [`StoreError::is_transient`](crate::StoreError::is_transient)) keep the batch and retry it with the
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
//!   fails alone with [`StoreError::Unsendable`](crate::StoreError::Unsendable).
//! * **Shutdown.** [`PersistenceHandle::shutdown`] (the [`Shutdown`] message) refuses new
//!   writes ([`StoreError::Closed`](crate::StoreError::Closed)), flushes everything queued within
//!   `shutdown_timeout`, then stops the actor and returns a [`WriterShutdownReport`] with what
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
//!
//! ## Where things are
//!
//! | module                        | what                                                |
//! |-------------------------------|-----------------------------------------------------|
//! | `persistence_actor/config`    | [`PersistenceConfig`], [`MAX_BATCH_BYTES`]          |
//! | `persistence_actor/queue`     | the bounded queue, [`EnqueueError`]                 |
//! | `persistence_actor/actor`     | [`PersistenceActor`], [`PersistenceHandle`], [`Flush`], [`Shutdown`] |
//! | `persistence_actor/writer_loop` | draining, committing, splitting, retrying         |
//! | `persistence_actor/stats`     | [`PersistenceStats`], [`Histogram`], [`WriterShutdownReport`] |
//! | `persistence_actor/faults`    | test hooks (feature `testing`)                      |

mod actor;
mod config;
#[cfg(feature = "testing")]
mod faults;
mod queue;
mod stats;
mod writer_loop;

#[cfg(feature = "testing")]
pub use crate::commit::CommitFault;
pub use actor::{Flush, PersistenceActor, PersistenceHandle, Shutdown};
pub use config::{MAX_BATCH_BYTES, PersistenceConfig};
pub use queue::EnqueueError;
pub use stats::{Histogram, PersistenceStats, WriterShutdownReport};
