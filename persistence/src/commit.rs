//! Transactions whose outcome is never a guess: the commit markers of
//! `vigil_write_batches`.
//!
//! When the answer to `COMMIT` is lost — the connection, the network or the server
//! died under it — the client cannot tell whether the transaction committed. Retrying
//! blindly applies it twice; giving up may lose it. Transaction ids are no answer:
//! after a crash, an id that never reached the disk is handed out again, and
//! `txid_status` then answers "committed" for somebody else's transaction.
//!
//! So every transaction of a writer first inserts its key, a `Marker` (a random id of
//! the writer and the transaction's number), into `vigil_write_batches`, deleting the
//! writer's older keys in the same statement. When a `COMMIT` answer is lost, the next
//! attempt, on a new connection, inserts the same key again:
//!
//! * the key is there: the earlier transaction committed — this one rolls back and the
//!   earlier results are the answer;
//! * it is not: nothing of it committed, and the writes are applied now;
//! * the earlier transaction is still in progress (its backend has not finished the
//!   `COMMIT`): the insert waits on the unique key until it ends, then answers as above.
//!
//! A transaction that failed before `COMMIT` was sent did not commit; it is retried
//! under a new key, so the retry never waits on the dead attempt's uncommitted key.
//! Fenced writes ([`crate::nodes`]) are checked after the marker, before anything is
//! applied; the refusals are part of the batch's outcome, so a transaction resolved
//! after a lost `COMMIT` answers every write exactly as the attempt that committed it.
//!
//! `marked_transaction` is one attempt, bounded by a client-side deadline; the
//! persistence actor and the direct writer ([`crate::Store::write_batch`]) loop over it.

use std::time::Duration;

use diesel::result::Error as DieselError;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::error::StoreError;
use crate::nodes::fence;
use crate::writes::{BatchInput, BatchOutcome, apply_batch_pg_in_tx};

/// How an injected fault ends a transaction whose `COMMIT` answer is then "lost": the
/// writer sees a connection error at `COMMIT` and must find out what happened
/// (`PersistenceHandle::inject_commit_fault`, feature `testing`).
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// The transaction commits; its answer is lost.
    AnswerLost,
    /// `COMMIT` never reaches the server (the transaction is rolled back).
    NeverArrived,
}

/// Without the `testing` feature no fault can be injected: a type with no values, so
/// the production path cannot reach the fault branch.
#[cfg(not(feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitFault {}

/// The key a transaction records in `vigil_write_batches`: which writer, which of its
/// transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) writer_id: i64,
    pub(crate) batch_seq: i64,
}

impl Marker {
    /// The first marker of a new writer, with a random id: writers of several
    /// processes, restarts of one, and one-off transactions never share markers.
    pub(crate) fn new_writer() -> Self {
        Marker { writer_id: rand::random::<i64>(), batch_seq: 1 }
    }

    /// The same writer's next transaction.
    pub(crate) fn next(self) -> Self {
        Marker { batch_seq: self.batch_seq + 1, ..self }
    }
}

/// A transaction whose `COMMIT` was sent but whose answer was lost: it may or may not
/// have committed. Its marker tells on the next connection.
pub(crate) struct Unresolved {
    pub(crate) marker: Marker,
    /// What the writes' results were, should it have committed.
    pub(crate) outcome: BatchOutcome,
}

/// How far an attempt got: decides what a failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started: nothing was sent.
    Connecting,
    /// Inside the transaction, before `COMMIT`: nothing can have committed.
    Sending,
    /// `COMMIT` sent: the transaction may have committed.
    Committing,
}

/// One failed attempt.
pub(crate) struct AttemptError {
    pub(crate) error: StoreError,
    /// Whether another attempt may succeed.
    pub(crate) retry: bool,
    /// Set when the attempt leaves a transaction whose outcome is unknown.
    pub(crate) unresolved: Option<Unresolved>,
    /// Whether the connection died while the range was being sent (a poison strike).
    pub(crate) died_sending: bool,
}

impl AttemptError {
    pub(crate) fn of(error: StoreError) -> Self {
        let retry = error.is_transient();
        Self { error, retry, unresolved: None, died_sending: false }
    }

    /// A failure that is not the range's fault (no connection, a deadline): retried.
    pub(crate) fn transient(error: StoreError, unresolved: Option<Unresolved>) -> Self {
        Self { error, retry: true, unresolved, died_sending: false }
    }
}

/// One attempt at a marked transaction of `batch` on `conn`, within `deadline` (from
/// `BEGIN` to the answer to `COMMIT`). `unresolved` is an earlier transaction of the
/// same marker whose outcome is unknown: it is resolved first. On failure the
/// [`AttemptError`] carries what is still unresolved (that one, or this one if its
/// `COMMIT` was sent), so the caller retries under the same marker; otherwise under
/// [`Marker::next`]. A failed connection may be mid-transaction or frozen: the caller
/// must not reuse it when [`AttemptError::retry`] is set.
///
/// The agent ids the batch learned are kept in `batch.ids` once `COMMIT` has answered;
/// any failure clears it (see [`crate::writes`]'s `agent_ids`): whatever went wrong —
/// a rollback, a lost connection, a server that is now another — no id survives it.
pub(crate) async fn marked_transaction(
    conn: &mut AsyncPgConnection,
    batch: BatchInput<'_>,
    marker: Marker,
    unresolved: Option<Unresolved>,
    deadline: Duration,
    fault: Option<CommitFault>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    let mut phase = Phase::Connecting;
    let mut unresolved = unresolved;
    let BatchInput { writes, fences, ids } = batch;
    let batch = BatchInput { writes, fences, ids: &mut *ids };
    let attempt = transaction_pg(conn, batch, marker, &mut unresolved, &mut phase, fault);
    let result = match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::transient(StoreError::DeadlineExceeded(deadline), None)),
    };
    let mut failure = match result {
        Ok(done) => return Ok(done),
        Err(failure) => failure,
    };
    ids.clear();
    // A transaction that may have committed (an earlier one not yet resolved, or this
    // one, whose COMMIT was sent) stays unresolved, whatever the error.
    if failure.unresolved.is_none() {
        failure.unresolved = unresolved;
    }
    if phase == Phase::Committing {
        failure.retry = true;
    }
    Err(failure)
}

/// `BEGIN`, the marker, the batch, `COMMIT` — with the outcome of `COMMIT` kept apart
/// from every other failure. With `unresolved` set, the marker first tells whether
/// that earlier transaction committed: its marker row present means it did (this
/// transaction is rolled back and the earlier outcome returned); absent means it did
/// not, and the batch is applied now. Inserting a key that an in-progress transaction
/// inserted waits for that transaction to end, so the answer is never a guess.
async fn transaction_pg(
    conn: &mut AsyncPgConnection,
    batch: BatchInput<'_>,
    marker: Marker,
    unresolved: &mut Option<Unresolved>,
    phase: &mut Phase,
    fault: Option<CommitFault>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;

    let BatchInput { writes, fences, ids } = batch;
    *phase = Phase::Sending;
    let sent = |error: StoreError| {
        let died_sending = error.is_connection_error();
        let mut failure = AttemptError::of(error);
        failure.died_sending = died_sending;
        failure
    };
    conn.batch_execute("BEGIN").await.map_err(|e| sent(e.into()))?;
    let marked: Result<usize, StoreError> = diesel::sql_query(
        "WITH earlier AS (DELETE FROM vigil_write_batches WHERE writer_id = $1 AND batch_seq < $2) \
         INSERT INTO vigil_write_batches (writer_id, batch_seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(marker.writer_id)
    .bind::<BigInt, _>(marker.batch_seq)
    .execute(conn)
    .await
    .map_err(StoreError::from);
    let body = match marked {
        Ok(0) => {
            // The marker is there: the earlier transaction committed.
            let _ = conn.batch_execute("ROLLBACK").await;
            return match unresolved.take() {
                Some(earlier) => Ok((earlier.outcome, true)),
                None => Err(AttemptError::of(StoreError::Task(format!(
                    "write batch marker {marker:?} already exists without a transaction of this writer"
                )))),
            };
        }
        Ok(_) => {
            // Absent: whatever was unresolved did not commit; this transaction redoes it,
            // fences included: the fence verdicts are part of the outcome kept below, so
            // a lost COMMIT resolved later answers each write as this attempt decided.
            *unresolved = None;
            match fence::check_pg(conn, fences).await {
                Ok(refused) => apply_batch_pg_in_tx(conn, writes, refused, ids).await,
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    };
    match body {
        Ok(outcome) => {
            // From here the transaction may commit: its outcome is kept where the caller
            // finds it even if the deadline drops this future.
            *phase = Phase::Committing;
            *unresolved = Some(Unresolved { marker, outcome });
            let ended = match fault {
                None => conn.batch_execute("COMMIT").await,
                Some(fault) => end_with_fault(conn, fault).await,
            };
            match ended {
                Ok(()) => {
                    ids.keep_staged();
                    Ok((unresolved.take().expect("set above").outcome, false))
                }
                // Whatever the error, the server may or may not have committed.
                Err(e) => Err(AttemptError::transient(e.into(), None)),
            }
        }
        Err(error) => {
            let mut failure = sent(error);
            if conn.batch_execute("ROLLBACK").await.is_err() {
                // The connection is unusable: replace it and try again.
                failure.retry = true;
            }
            Err(failure)
        }
    }
}

/// Ends the transaction as `fault` says, then reports the answer to `COMMIT` as lost.
#[cfg(feature = "testing")]
async fn end_with_fault(conn: &mut AsyncPgConnection, fault: CommitFault) -> Result<(), DieselError> {
    let end = if fault == CommitFault::AnswerLost { "COMMIT" } else { "ROLLBACK" };
    conn.batch_execute(end).await.and(Err(DieselError::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(format!("injected fault: the answer to COMMIT was lost ({fault:?})")),
    )))
}

#[cfg(not(feature = "testing"))]
async fn end_with_fault(_: &mut AsyncPgConnection, fault: CommitFault) -> Result<(), DieselError> {
    match fault {}
}
