//! The writer loop: drain a batch from the queue, commit it (splitting it around
//! rejected or unsendable writes, retrying transient failures), answer the senders.
//!
//! One batch is in flight at a time. On PostgreSQL each transaction is a
//! [`marked_transaction`] on the writer's own connection, so a lost `COMMIT` answer is
//! resolved before anything is applied again; on SQLite a batch is applied on a pooled
//! connection. The statistics are updated here, once per drained batch.
//!
//! The writer remembers the internal ids of the agents it has written for
//! ([`AgentIds`], in its [`WriterState`]), so that a batch of known agents makes no
//! lookup. Any failed attempt, and any new connection, forgets them: the retry
//! resolves every agent from the database it is now talking to.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use super::queue::{Entry, Shared};
use super::stats::{LATENCY_RING, WriterShutdownReport};
use crate::backend::Backend;
use crate::commit::{AttemptError, CommitFault, Marker, Unresolved, marked_transaction};
use crate::error::StoreError;
use crate::nodes::fence::FenceSlot;
use crate::requests::Reply;
use crate::store::{Store, StoreInner};
use crate::writes::{AgentIds, BatchInput, BatchOutcome, Write, apply_batch_sqlite};

/// The writer loop: drain a batch, commit it, answer, repeat; ends when the queue is
/// closed and empty (or the shutdown deadline passed).
pub(super) async fn run(store: Store, shared: Arc<Shared>) {
    let conn: WriterSlot = Arc::new(tokio::sync::Mutex::new(WriterState::default()));
    let mut shutdown_failure: Option<String> = None;
    while let Some(batch) = next_batch(&shared).await {
        if let Some(reason) = process(&store, &shared, &conn, batch).await {
            shutdown_failure = Some(reason);
        }
    }
    let c = shared.counters();
    let report = WriterShutdownReport {
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

/// A drained batch's writes and, when any is fenced, the fence of each (else empty).
#[derive(Clone)]
struct Batch {
    writes: Arc<Vec<Write>>,
    fences: Arc<Vec<FenceSlot>>,
}

/// What the writer keeps from one batch to the next.
#[derive(Default)]
pub(super) struct WriterState {
    /// Its own PostgreSQL connection; `None` until opened or after it broke (SQLite
    /// batches use pooled connections).
    conn: Option<AsyncPgConnection>,
    /// The agent ids it has seen committed, since `conn` opened and its last failure.
    ids: AgentIds,
}

/// The [`WriterState`], locked by the attempt in flight.
pub(super) type WriterSlot = Arc<tokio::sync::Mutex<WriterState>>;

/// Commits one drained batch (splitting it around rejected writes), answers its
/// senders and updates the statistics. Returns why writes were given up at shutdown.
async fn process(
    store: &Store,
    shared: &Arc<Shared>,
    conn: &WriterSlot,
    batch: Vec<Entry>,
) -> Option<String> {
    let started = Instant::now();
    let last_seq = batch.last().map_or(0, |e| e.seq);
    let mut acks = Vec::with_capacity(batch.len());
    let mut writes = Vec::with_capacity(batch.len());
    let mut fences = Vec::with_capacity(batch.len());
    for entry in batch {
        acks.push(entry.ack);
        writes.push(entry.write);
        fences.push(entry.fence);
    }
    // Unfenced batches (the common case) carry no fences at all.
    if fences.iter().all(Option::is_none) {
        fences.clear();
    }
    let batch = Batch { writes: Arc::new(writes), fences: Arc::new(fences) };
    let writes = &batch.writes;
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
        match commit_with_retry(store, shared, conn, &batch, range.clone()).await {
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
            Some(Err(StoreError::Fenced { .. })) => c.fenced += 1,
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
    if transactions > 0 {
        c.commit_latency.observe(started.elapsed().as_secs_f64());
        c.batch_size.observe(writes.len() as f64);
    }
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
    conn: &WriterSlot,
    batch: &Batch,
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
            batch.clone(),
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
    slot: WriterSlot,
    batch: Batch,
    range: Range<usize>,
    marker: Marker,
    unresolved: Option<Unresolved>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    let started = Instant::now();
    let writes = &batch.writes;
    let mut state = slot.lock().await;
    let had_ids = !state.ids.is_empty();
    let mut result = if shared.take_injected_fault() {
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
        let fences = batch.fences.get(range.clone()).unwrap_or_default();
        let writes = &writes[range];
        match &inner.backend {
            Backend::Pg(_) => {
                let deadline = shared.config.transaction_timeout;
                let fault = shared.commit_faults.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                attempt_pg(&inner, &mut state, writes, fences, marker, unresolved, deadline, fault).await
            }
            Backend::Sqlite(pool) => match inner.checkout(pool).await {
                Ok(mut conn) => {
                    let batch = BatchInput { writes, fences, ids: &mut state.ids };
                    apply_batch_sqlite(&mut conn, batch).await.map(|o| (o, false)).map_err(AttemptError::of)
                }
                Err(error) => Err(AttemptError::of(error)),
            },
        }
    };
    // Whatever failed (the transaction already cleared the ids if it got that far; an
    // injected fault or a missing connection did not), the retry resolves every agent
    // from the database again.
    if let Err(failure) = &mut result {
        state.ids.clear();
        // A refusal may be the memory's fault (an id the database no longer has, after
        // a failover that lost a registration): try once more afresh before splitting.
        if had_ids && !failure.retry && failure.unresolved.is_none() {
            failure.retry = true;
        }
    }
    let lookups = state.ids.take_lookups();
    drop(state);
    if lookups > 0 {
        shared.counters().agent_id_lookups += lookups;
    }
    inner.settle(started.elapsed(), result.as_mut().err().map(|e| &mut e.error));
    result
}

/// One attempt on PostgreSQL, on the writer's own connection (opened if need be, within
/// `deadline`), as a [`marked_transaction`]. A connection that failed in a way another
/// attempt may cure — dead, frozen, left mid-transaction — is dropped. A new connection
/// starts with no agent ids: the server behind it may be another (a promoted standby).
#[allow(clippy::too_many_arguments)] // one attempt's whole context, passed through as is
async fn attempt_pg(
    inner: &StoreInner,
    state: &mut WriterState,
    writes: &[Write],
    fences: &[FenceSlot],
    marker: Marker,
    unresolved: Option<Unresolved>,
    deadline: Duration,
    fault: Option<CommitFault>,
) -> Result<(BatchOutcome, bool), AttemptError> {
    let WriterState { conn: slot, ids } = state;
    if slot.is_none() {
        ids.clear();
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
    let batch = BatchInput { writes, fences, ids };
    let result = marked_transaction(conn, batch, marker, unresolved, deadline, fault).await;
    if result.as_ref().is_err_and(|failure| failure.retry) {
        // The connection may be dead, frozen or mid-transaction: open a fresh one next.
        *slot = None;
    }
    result
}
