//! The writer: one PostgreSQL transaction on a connection of its own that locks the
//! nine tables, inserts each batch the reader sends with its ids, reads the rows back
//! and compares checksums, advances the SERIAL sequences, and commits — or rolls
//! everything back. `import` runs reader and writer side by side.

use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::mpsc;

use super::canonical::{Fnv, fnv};
use super::error::ImportError;
use super::read::{Message, read_source};
use super::report::{Checksum, ImportProgress, ImportStage, ProgressFn, TableImport};
use super::tables::{Table, for_each_table, row_hash};
use crate::store::{Store, StoreInner, TABLES};

/// Keys per read-back or collision query (one array parameter each).
const KEYS_PER_QUERY: usize = 1_000;
/// Batches in flight between the SQLite reader and the PostgreSQL writer.
const CHANNEL_DEPTH: usize = 4;

/// The writer's settings and the progress callback.
pub(super) struct Writer {
    pub(super) append: bool,
    pub(super) batch_rows: usize,
    pub(super) progress: Option<ProgressFn>,
}

/// Progress bookkeeping across tables.
struct Progress {
    callback: Option<ProgressFn>,
    totals: Vec<u64>,
    all_copied: u64,
    all_total: u64,
}

impl Progress {
    fn report(&mut self, table: &'static str, stage: ImportStage, rows_copied: u64) {
        let Some(callback) = self.callback.as_mut() else { return };
        let rows_total = TABLES.iter().position(|t| *t == table).map_or(0, |i| self.totals[i]);
        callback(&ImportProgress {
            table,
            stage,
            rows_copied,
            rows_total,
            all_copied: self.all_copied,
            all_total: self.all_total,
        });
    }
}

/// Runs reader and writer side by side on the target store's runtime.
pub(super) async fn import(
    source: Store,
    target: Arc<StoreInner>,
    writer: Writer,
) -> Result<Vec<TableImport>, ImportError> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let source_inner = source.inner.clone();
    let batch_rows = writer.batch_rows;
    let reader = source.spawn(async move { Ok(read_source(source_inner, tx, batch_rows).await) });
    let (read, written) = tokio::join!(reader, write_target(target, rx, writer));
    match read {
        // A reader failure explains the writer's (it saw the channel close early).
        Ok(Err(error)) => Err(error),
        Err(error) => Err(ImportError::Read { table: "(task)", source: error }),
        Ok(Ok(())) => written,
    }
}

/// Copies everything the reader sends in one transaction; see the module docs.
async fn write_target(
    inner: Arc<StoreInner>,
    mut rx: mpsc::Receiver<Message>,
    writer: Writer,
) -> Result<Vec<TableImport>, ImportError> {
    let Writer { append, batch_rows: _, progress } = writer;
    let mut conn = match inner.establish_pg().await {
        Some(conn) => conn?,
        None => return Err(ImportError::NotPostgres(String::from("an SQLite store"))),
    };
    let rx = &mut rx;
    conn.transaction(async move |conn: &mut AsyncPgConnection| -> Result<Vec<TableImport>, ImportError> {
            use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
            conn.batch_execute(&format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", TABLES.join(", "))).await?;
            if !append {
                for table in TABLES {
                    let rows: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                        "(SELECT COUNT(*) FROM {table})"
                    )))
                    .get_result(conn)
                    .await?;
                    if rows > 0 {
                        return Err(ImportError::TargetNotEmpty { table, rows });
                    }
                }
            }
            let totals = match rx.recv().await {
                Some(Message::Totals(totals)) => totals,
                _ => return Err(ImportError::SourceEnded(TABLES[0])),
            };
            let all_total = totals.iter().sum();
            let mut progress = Progress { callback: progress, totals, all_copied: 0, all_total };
            progress.report(TABLES[0], ImportStage::Started, 0);

            let mut tables = Vec::with_capacity(TABLES.len());
            for_each_table!(|T| tables.push(copy_table::<T>(conn, rx, append, &mut progress).await?));

            // Last, after every check: `setval` is not undone by a rollback.
            for_each_table!(|T| if T::SERIAL {
                let table = T::NAME;
                diesel::sql_query(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
                ))
                .execute(conn)
                .await?;
            });
            Ok(tables)
    })
    .await
}

/// Inserts one table's batches as they arrive, then reads the rows back and compares.
async fn copy_table<T: Table>(
    conn: &mut AsyncPgConnection,
    rx: &mut mpsc::Receiver<Message>,
    append: bool,
    progress: &mut Progress,
) -> Result<TableImport, ImportError> {
    let write_error =
        |error: diesel::result::Error| ImportError::Write { table: T::NAME, source: error.into() };
    let mut keys: Vec<T::Key> = Vec::new();
    // The hash of each row as received from the source, to name the first row that
    // differs if the checksums do not agree.
    let mut row_hashes: Vec<u64> = Vec::new();
    let mut text = String::new();
    let (rows, checksum_source) = loop {
        match rx.recv().await {
            Some(Message::Rows(chunk)) => {
                let Some(batch) = T::unwrap(chunk) else { return Err(ImportError::SourceEnded(T::NAME)) };
                let first = keys.len();
                for row in &batch {
                    keys.push(row.key());
                    row_hashes.push(row_hash(row, &mut text));
                }
                if append {
                    for chunk in keys[first..].chunks(KEYS_PER_QUERY) {
                        if let Some(key) = T::existing(conn, chunk).await.map_err(write_error)?.pop() {
                            return Err(ImportError::KeyCollision {
                                table: T::NAME,
                                key: format!("{key:?}"),
                            });
                        }
                    }
                }
                T::insert(conn, &batch).await.map_err(write_error)?;
                progress.all_copied += batch.len() as u64;
                progress.report(T::NAME, ImportStage::Copying, keys.len() as u64);
            }
            Some(Message::Done { table, rows, checksum }) if table == T::NAME => break (rows, checksum),
            _ => return Err(ImportError::SourceEnded(T::NAME)),
        }
    };

    // The keys arrived in key order (SQLite's BINARY order, which is Rust's `Ord` on
    // strings), so sorting each read-back slice puts the target rows in the same order.
    let mut hash = Fnv::new();
    let mut rows_target = 0u64;
    let mut first_difference: Option<String> = None;
    for (index, chunk) in keys.chunks(KEYS_PER_QUERY).enumerate() {
        let mut found = T::read_back(conn, chunk).await.map_err(write_error)?;
        found.sort_by_key(T::key);
        let expected = &row_hashes[index * KEYS_PER_QUERY..][..chunk.len()];
        let mut found = found.into_iter().peekable();
        for (key, expected) in chunk.iter().zip(expected) {
            match found.next_if(|row| row.key() == *key) {
                Some(row) => {
                    text.clear();
                    // PostgreSQL prints valid JSON; a fault would only change the hash.
                    let _ = row.canonical(&mut text);
                    hash.update(text.as_bytes());
                    rows_target += 1;
                    if first_difference.is_none() && fnv(text.as_bytes()) != *expected {
                        first_difference = Some(format!("{key:?}"));
                    }
                }
                None if first_difference.is_none() => first_difference = Some(format!("{key:?} (missing)")),
                None => {}
            }
        }
    }
    let checksum_target = Checksum(hash.0);
    let matches = rows == rows_target && rows == keys.len() as u64 && checksum_source == checksum_target;
    if !matches {
        return Err(ImportError::ChecksumMismatch {
            table: T::NAME,
            rows_source: rows,
            rows_target,
            checksum_source,
            checksum_target,
            first_difference,
        });
    }
    progress.report(T::NAME, ImportStage::Verified, rows);
    Ok(TableImport { table: T::NAME, rows, rows_target, checksum_source, checksum_target, matches })
}
