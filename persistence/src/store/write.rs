//! Writing straight through a [`Store`], without a writer actor: one batch, one
//! transaction, retried on transient failures.
//!
//! This is the direct path of `SharedState::direct` and of tools; a running platform
//! writes through the [`PersistenceActor`](crate::PersistenceActor)'s group commit
//! instead. On PostgreSQL the transaction is marked ([`crate::commit`]), so a retry
//! after a lost `COMMIT` answer neither applies the batch twice nor loses it.

use std::sync::Arc;

use super::executor::Store;
use crate::backend::{Backend, mark_broken};
use crate::commit::{Marker, Unresolved, marked_transaction};
use crate::error::StoreError;
use crate::nodes::fence::FenceSlot;
use crate::writes::{AgentIds, BatchInput, Write, apply_batch_sqlite};

impl Store {
    /// Applies a batch of writes in one transaction, retrying transient failures.
    /// The outer error means nothing was committed; otherwise each write has its own
    /// result (a write refused before reaching the database fails alone).
    pub async fn write_batch(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<crate::requests::Reply, StoreError>>, StoreError> {
        self.write_batch_fenced(writes, Vec::new()).await
    }

    /// [`write_batch`](Self::write_batch) with, per write, the fence it carries
    /// (`fences` is empty or as long as `writes`): a write whose fence is not current
    /// fails alone with [`StoreError::Fenced`].
    pub(crate) async fn write_batch_fenced(
        &self,
        writes: Vec<Write>,
        fences: Vec<FenceSlot>,
    ) -> Result<Vec<Result<crate::requests::Reply, StoreError>>, StoreError> {
        let writes = Arc::new(writes);
        let fences = Arc::new(fences);
        // On PostgreSQL the transaction is marked (see `crate::commit`), so a retry after
        // a lost COMMIT answer neither applies the batch twice nor loses it. The marker
        // and what is unresolved carry over from one attempt to the next.
        let progress = Arc::new(std::sync::Mutex::new((Marker::new_writer(), None::<Unresolved>)));
        self.run(move |inner| {
            let (writes, fences, progress) = (writes.clone(), fences.clone(), progress.clone());
            async move {
                match &inner.backend {
                    Backend::Pg(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        let (marker, unresolved) = {
                            let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                            (progress.0, progress.1.take())
                        };
                        let deadline = inner.read_deadline();
                        // One batch, then gone: it resolves every agent it names.
                        let mut ids = AgentIds::default();
                        let batch = BatchInput { writes: &writes, fences: &fences, ids: &mut ids };
                        match marked_transaction(&mut conn, batch, marker, unresolved, deadline, None).await {
                            Ok((outcome, _)) => Ok(outcome),
                            Err(failure) => {
                                if failure.retry {
                                    // Possibly dead, frozen or mid-transaction: not for the pool.
                                    mark_broken(&mut conn);
                                }
                                *progress.lock().unwrap_or_else(|e| e.into_inner()) = match failure.unresolved
                                {
                                    Some(open) => (open.marker, Some(open)),
                                    None => (marker.next(), None),
                                };
                                Err(failure.error)
                            }
                        }
                    }
                    Backend::Sqlite(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        let mut ids = AgentIds::default();
                        apply_batch_sqlite(
                            &mut conn,
                            BatchInput { writes: &writes, fences: &fences, ids: &mut ids },
                        )
                        .await
                    }
                }
            }
        })
        .await
    }

    /// Applies one write in its own transaction and returns its reply once committed.
    pub async fn write(&self, write: Write) -> Result<crate::requests::Reply, StoreError> {
        self.write_fenced(write, None).await
    }

    /// [`write`](Self::write), refused with [`StoreError::Fenced`] unless `fence` (if
    /// any) is current.
    pub(crate) async fn write_fenced(
        &self,
        write: Write,
        fence: FenceSlot,
    ) -> Result<crate::requests::Reply, StoreError> {
        let fences = if fence.is_some() { vec![fence] } else { Vec::new() };
        self.write_batch_fenced(vec![write], fences).await?.pop().expect("one result per write")
    }

    /// Runs one SQL statement (no results) with retries. Meant for tests and
    /// administration; the statement is passed to the database as written.
    #[cfg(feature = "testing")]
    pub async fn execute_raw_for_tests(&self, sql: &str) -> Result<usize, StoreError> {
        let sql = sql.to_owned();
        self.run(move |inner| {
            let sql = sql.clone();
            async move {
                use diesel_async::RunQueryDsl;
                crate::backend::with_conn!(inner, |conn| Ok(diesel::sql_query(sql).execute(conn).await?))
            }
        })
        .await
    }
}
