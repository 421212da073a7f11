//! [`SharedState`] itself and where its writes go: the [`Writer`] (straight to the
//! store, or through the persistence actor), the generic write verbs, and the
//! [`PendingWrite`] every write method returns, so the caller chooses between waiting
//! for the commit (`.await`) and handing the write to the queue ([`PendingWrite::enqueue`]).
//!
//! The read and write methods of each concern are in the sibling modules.

use std::sync::Arc;

use crate::error::StoreError;
use crate::nodes::Fence;
use crate::nodes::fence::FenceSlot;
use crate::requests::{Reply, Request};
use crate::store::Store;
use crate::writes::Write;

/// Where writes go.
#[derive(Clone, Debug)]
pub enum Writer {
    /// Straight to the store, one transaction per write: for tools that write without
    /// a runtime (the importer, one-off scripts). A runtime built over a direct shared
    /// state replaces it with a persistence actor of its own.
    Direct,
    /// Through the persistence actor's group commit.
    Actor(crate::persistence_actor::PersistenceHandle),
}

/// The high-level shared-state API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedState {
    pub(super) store: Store,
    pub(super) writer: Writer,
    /// The fence every write carries ([`SharedState::fenced`]); a fenced actor writer
    /// carries the same one itself.
    fence: FenceSlot,
}

impl SharedState {
    /// The API over `store`, writing straight through it, one transaction per write:
    /// for tools without a runtime. `Runtime::builder` gives a direct shared state a
    /// persistence actor of its own.
    pub fn direct(store: Store) -> Self {
        Self { store, writer: Writer::Direct, fence: None }
    }

    /// The API over `store`, writing through `writer` (fenced if the writer's handle is,
    /// see [`PersistenceHandle::fenced`](crate::PersistenceHandle::fenced)).
    pub fn with_writer(store: Store, writer: Writer) -> Self {
        let fence = match &writer {
            Writer::Direct => None,
            Writer::Actor(handle) => handle.fence().cloned().map(Arc::new),
        };
        Self { store, writer, fence }
    }

    /// A clone whose every write — awaited, enqueued or a [`Request`] — carries
    /// `fence`, the lease of the agent it writes for: the writer commits each only if,
    /// in the transaction that applies it, `fence.node_id` still owns `fence.agent_id`
    /// at `fence.epoch`, and otherwise refuses it with [`StoreError::Fenced`] (see
    /// [`crate::nodes`]). Reads are unchanged. A runtime gives each agent it runs such
    /// a clone, made from the lease it claimed ([`AgentLease::fence`](crate::nodes::AgentLease::fence)).
    pub fn fenced(&self, fence: Fence) -> Self {
        let fence = Some(Arc::new(fence));
        let writer = match &self.writer {
            Writer::Direct => Writer::Direct,
            Writer::Actor(handle) => Writer::Actor(handle.with_fence(fence.clone())),
        };
        Self { store: self.store.clone(), writer, fence }
    }

    /// The fence this shared state's writes carry, if it is fenced.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where writes go.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Applies a write and waits until it has committed.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        match &self.writer {
            // The actor validates on its own way in.
            Writer::Direct => {
                let write = write.validated(self.store.config().payload_limits())?;
                self.store.write_fenced(write, self.fence.clone()).await.map(drop)
            }
            Writer::Actor(handle) => handle.persist(write).await,
        }
    }

    /// Hands a write to the writer's queue without waiting for its commit. With the
    /// direct writer there is no queue: the write is applied and awaited. A full
    /// queue is [`StoreError::QueueFull`]; to get the write back instead, enqueue it on
    /// the [`PersistenceHandle`](crate::PersistenceHandle) itself.
    pub async fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        match &self.writer {
            Writer::Direct => self.write(write).await,
            // A refused write is dismantled iteratively by the conversion.
            Writer::Actor(handle) => handle.enqueue(write).map_err(StoreError::from),
        }
    }

    /// Applies a [`Request`] and returns its [`Reply`] once it has committed.
    pub async fn request(&self, request: Request) -> Result<Reply, StoreError> {
        match &self.writer {
            Writer::Direct => {
                let write = Write::Request(request).validated(self.store.config().payload_limits())?;
                self.store.write_fenced(write, self.fence.clone()).await
            }
            Writer::Actor(handle) => handle.request(request).await,
        }
    }

    /// Waits until every write queued so far has committed (or failed): read-your-
    /// writes after [`PendingWrite::enqueue`]. Immediate with the direct writer.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.writer {
            Writer::Direct => Ok(()),
            Writer::Actor(handle) => handle.flush().await,
        }
    }

    /// The persistence actor's figures, when writes go through one.
    pub fn writer_stats(&self) -> Option<crate::PersistenceStats> {
        match &self.writer {
            Writer::Direct => None,
            Writer::Actor(handle) => Some(handle.stats()),
        }
    }

    pub(super) fn pending(&self, write: Write) -> PendingWrite<'_> {
        PendingWrite { state: self, write }
    }
}

/// A write the caller has not yet decided how to wait for. `.await` it to wait until
/// it has committed; [`enqueue`](Self::enqueue) it to hand it to the writer's queue and
/// go on. Doing neither writes nothing.
#[derive(Debug)]
#[must_use = "a write does nothing until it is awaited (committed) or enqueued"]
pub struct PendingWrite<'a> {
    state: &'a SharedState,
    write: Write,
}

impl PendingWrite<'_> {
    /// Hands the write to the writer's queue and returns without waiting for its
    /// commit (see [`SharedState::enqueue`]).
    pub async fn enqueue(self) -> Result<(), StoreError> {
        self.state.enqueue(self.write).await
    }

    /// The write itself, to batch or queue by other means.
    pub fn into_write(self) -> Write {
        self.write
    }
}

impl<'a> std::future::IntoFuture for PendingWrite<'a> {
    type Output = Result<(), StoreError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>;

    /// Waits until the write has committed.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.state.write(self.write))
    }
}
