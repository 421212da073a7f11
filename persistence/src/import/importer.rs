//! [`Importer`]: the builder a caller configures (append, batch size, progress) and
//! runs; it checks the two stores' backends and hands the copy to `write.rs`.

use std::time::Instant;

use super::error::ImportError;
use super::report::{ImportProgress, ImportReport, ProgressFn, VERIFICATION};
use super::snapshot::SqliteSnapshot;
use super::write::{Writer, import};
use crate::store::Store;

/// Most rows in one INSERT (fewer when the bind-parameter limit or the byte budget says so).
const DEFAULT_BATCH_ROWS: usize = 1_000;

/// Copies a Vigil SQLite database into PostgreSQL; see the [module docs](crate::import).
#[must_use = "an importer does nothing until `run` is awaited"]
pub struct Importer<'a> {
    source: &'a Store,
    /// The source as reports show it: the user's file, for a snapshot.
    source_name: String,
    target: &'a Store,
    append: bool,
    batch_rows: usize,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("source", &self.source_name)
            .field("target", self.target)
            .field("append", &self.append)
            .field("batch_rows", &self.batch_rows)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl<'a> Importer<'a> {
    /// An import from `source` (an SQLite store) into `target` (a PostgreSQL store),
    /// which must be empty unless [`append`](Self::append) is set.
    pub fn new(source: &'a Store, target: &'a Store) -> Self {
        let source_name = source.config().describe();
        Importer {
            source,
            source_name,
            target,
            append: false,
            batch_rows: DEFAULT_BATCH_ROWS,
            progress: None,
        }
    }

    /// An import from a [`SqliteSnapshot`]: as [`new`](Self::new), but the report and
    /// the log name the file the snapshot was taken of, never the temporary copy.
    pub fn from_snapshot(source: &'a SqliteSnapshot, target: &'a Store) -> Self {
        Importer { source_name: source.describe(), ..Importer::new(source.store(), target) }
    }

    /// Adds the rows to a target that already has some, keeping their ids; a key that
    /// exists on both sides fails the import with [`ImportError::KeyCollision`].
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// At most this many rows per INSERT (default 1,000; clamped to at least 1 and to
    /// PostgreSQL's bind-parameter limit).
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Calls `progress` after the source is counted, after each batch and after each
    /// table's verification. It runs on the store's database thread: keep it short.
    pub fn on_progress(mut self, progress: impl FnMut(&ImportProgress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Runs the import. On error the target is unchanged (see the module docs).
    pub async fn run(self) -> Result<ImportReport, ImportError> {
        if self.source.is_postgres() {
            return Err(ImportError::NotSqlite(self.source.config().describe()));
        }
        if !self.target.is_postgres() {
            return Err(ImportError::NotPostgres(self.target.config().describe()));
        }
        let started = Instant::now();
        let source = self.source.clone();
        let target = self.target.inner.clone();
        let writer = Writer { append: self.append, batch_rows: self.batch_rows, progress: self.progress };
        let tables = self.target.spawn(async move { Ok(import(source, target, writer).await) }).await??;
        let elapsed = started.elapsed();
        let total_rows = tables.iter().map(|t| t.rows).sum();
        tracing::info!(
            source = %self.source_name,
            target = %self.target.config().describe(),
            rows = total_rows,
            ?elapsed,
            "import committed"
        );
        Ok(ImportReport {
            source: self.source_name,
            target: self.target.config().describe(),
            append: self.append,
            tables,
            total_rows,
            elapsed,
            verification: VERIFICATION,
        })
    }
}
