//! The reader: the whole SQLite source in one read transaction, table by table in key
//! order, each row checked and hashed in its canonical form, sent to the writer in
//! batches over a bounded channel.

use std::sync::Arc;

use diesel::Connection;
use diesel::sqlite::SqliteConnection;
use tokio::sync::mpsc;

use super::canonical::Fnv;
use super::error::ImportError;
use super::report::Checksum;
use super::tables::{Chunk, MAX_BIND_PARAMETERS, Table, for_each_table};
use crate::backend::Backend;
use crate::store::{StoreInner, TABLES};

/// Roughly how much row data goes into one INSERT (measured on the canonical form).
const BATCH_BYTES: usize = 8 << 20;

/// What the reader sends the writer, in this order: `Totals`, then per table its
/// `Rows` batches and one `Done`.
#[derive(Debug)]
pub(super) enum Message {
    /// Source row counts, in [`TABLES`] order.
    Totals(Vec<u64>),
    /// One batch: at most one INSERT's worth.
    Rows(Chunk),
    /// The table is read; its row count and checksum.
    Done { table: &'static str, rows: u64, checksum: Checksum },
}

/// A reader failure: the database's, with the table it happened in, or a document
/// that is not JSON.
enum ReadFailure {
    Database { table: &'static str, error: diesel::result::Error },
    Json(ImportError),
}

impl From<diesel::result::Error> for ReadFailure {
    fn from(error: diesel::result::Error) -> Self {
        ReadFailure::Database { table: "(transaction)", error }
    }
}

/// Set when the writer has hung up: stop reading, the writer reports why.
struct Hangup;

/// Reads the whole source in one read transaction, sending batches to `tx`.
pub(super) async fn read_source(
    inner: Arc<StoreInner>,
    tx: mpsc::Sender<Message>,
    batch_rows: usize,
) -> Result<(), ImportError> {
    let Backend::Sqlite(pool) = &inner.backend else {
        return Err(ImportError::NotSqlite(String::from("a PostgreSQL store")));
    };
    let mut conn =
        inner.checkout(pool).await.map_err(|source| ImportError::Read { table: TABLES[0], source })?;
    let outcome = conn
        .spawn_blocking(move |c| {
            use diesel::RunQueryDsl;
            Ok(c.transaction::<_, ReadFailure, _>(|c| {
                let mut totals = Vec::with_capacity(TABLES.len());
                for table in TABLES {
                    let rows: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                        "(SELECT COUNT(*) FROM {table})"
                    )))
                    .get_result(c)
                    .map_err(|error| ReadFailure::Database { table, error })?;
                    totals.push(u64::try_from(rows).unwrap_or(0));
                }
                if tx.blocking_send(Message::Totals(totals)).is_err() {
                    return Ok(Err(Hangup));
                }
                for_each_table!(|T| if let Err(hangup) = read_table::<T>(c, &tx, batch_rows)? {
                    return Ok(Err(hangup));
                });
                Ok(Ok(()))
            }))
        })
        .await;
    match outcome {
        Ok(Ok(_)) => Ok(()), // read everything, or the writer hung up and reports why
        Ok(Err(ReadFailure::Database { table, error })) => {
            Err(ImportError::Read { table, source: error.into() })
        }
        Ok(Err(ReadFailure::Json(error))) => Err(error),
        Err(error) => Err(ImportError::Read { table: "(connection)", source: error.into() }),
    }
}

/// Reads one table in key order, hashing each row and sending it on in batches.
fn read_table<T: Table>(
    conn: &mut SqliteConnection,
    tx: &mpsc::Sender<Message>,
    batch_rows: usize,
) -> Result<Result<(), Hangup>, ReadFailure> {
    let max_rows = batch_rows.min(MAX_BIND_PARAMETERS / T::COLUMNS).max(1);
    let page = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let mut hash = Fnv::new();
    let mut rows = 0u64;
    let mut after: Option<T::Key> = None;
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut text = String::new();
    loop {
        let page_rows = T::read_page(conn, after.as_ref(), page)
            .map_err(|error| ReadFailure::Database { table: T::NAME, error })?;
        let Some(last) = page_rows.last() else { break };
        after = Some(last.key());
        for row in page_rows {
            text.clear();
            // Checked here, so PostgreSQL never sees a document that is not JSON, and
            // the error names the row.
            row.canonical(&mut text).map_err(|(column, fault)| {
                ReadFailure::Json(ImportError::InvalidJson {
                    table: T::NAME,
                    key: format!("{:?}", row.key()),
                    column,
                    reason: fault.to_string(),
                })
            })?;
            hash.update(text.as_bytes());
            bytes += text.len();
            rows += 1;
            batch.push(row);
            if batch.len() >= max_rows || bytes >= BATCH_BYTES {
                if tx.blocking_send(Message::Rows(T::wrap(std::mem::take(&mut batch)))).is_err() {
                    return Ok(Err(Hangup));
                }
                bytes = 0;
            }
        }
    }
    if !batch.is_empty() && tx.blocking_send(Message::Rows(T::wrap(batch))).is_err() {
        return Ok(Err(Hangup));
    }
    if tx.blocking_send(Message::Done { table: T::NAME, rows, checksum: Checksum(hash.0) }).is_err() {
        return Ok(Err(Hangup));
    }
    Ok(Ok(()))
}
