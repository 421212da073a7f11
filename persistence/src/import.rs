//! The SQLite → PostgreSQL migration of the specification's "Migration Guide": copy a
//! Vigil SQLite database into PostgreSQL, keep every id, and prove the copy.
//!
//! ```text
//!  source store (SQLite)                       target store (PostgreSQL)
//!  ──────────────────────                      ─────────────────────────────────────
//!  one read transaction (a snapshot)           one transaction on its own connection
//!   for each table, in key order:              LOCK the nine tables; refuse rows
//!     page of rows ── checksum ── batch ──▶      multi-row INSERT with explicit ids
//!                  (bounded channel)           read the rows back by key; checksum;
//!                                              advance each SERIAL sequence; COMMIT
//! ```
//!
//! | Step         | What happens                                                          |
//! |--------------|-----------------------------------------------------------------------|
//! | order        | `agents` first, then the tables that reference it; `help_requests` before `help_responses` ([`crate::store::TABLES`]) |
//! | batches      | multi-row INSERTs, at most 1,000 rows, 8 MiB of data and 65,535 bind parameters each |
//! | ids          | copied as they are, gaps included; afterwards every SERIAL sequence is set to `MAX(id)`, so the next insert gets `MAX(id) + 1` |
//! | empty target | required: a target where any of the nine tables has rows is refused with [`ImportError::TargetNotEmpty`], unless [`Importer::append`] is set |
//! | append       | the rows are added with their own ids; a key that already exists in the target (an `id`, a `system_state.key`, a `request_id`) is refused with [`ImportError::KeyCollision`] — ids are never remapped, so references between the imported rows stay exactly as they were |
//! | JSON         | copied as the text that was written: read from SQLite as text, sent as JSONB's binary input (which PostgreSQL parses itself), never through an `f64`, so `98.33333333333333` or `12345678901234567890` arrive as they left; a source document that is not JSON is refused ([`ImportError::InvalidJson`]) |
//! | verification | per table, before committing: the row count and a 64-bit FNV-1a checksum of the rows read from the source must equal those of the imported rows read back from the target ([`VERIFICATION`]) |
//!
//! **Atomicity.** The whole copy, the verification and the sequence updates run in one
//! PostgreSQL transaction, on a connection of its own. Any failure — a row PostgreSQL
//! rejects (a NUL character, a value longer than its column, a dangling reference), a
//! key collision, a checksum mismatch, a lost connection — rolls it back, and the target
//! is left as it was. (One caveat from PostgreSQL itself: `setval` is not transactional.
//! The sequences are therefore set last, after the verification, so only a failure of
//! the final `COMMIT` could leave a sequence advanced; rows never are.)
//!
//! While the import runs, the nine target tables are locked in `SHARE ROW EXCLUSIVE`
//! mode: readers go on, writers (and a second import) wait for the commit. The source is
//! read in one SQLite read transaction, so an agent writing to it meanwhile does not
//! tear the copy. `vigil import` goes one step further and imports from a
//! [`SqliteSnapshot`]: a copy taken through a read-only connection and migrated, so the
//! file it is given is never written (nor created), even when an older Vigil created
//! it; a file that is missing, not SQLite, or an SQLite database without Vigil's tables
//! is refused by name before anything is copied. Reports and errors name that file,
//! never the copy ([`Importer::from_snapshot`]). Transient errors are not retried: the
//! import is all or nothing, and running it again after a failure is safe.
//!
//! **Checksums.** Each row is written in a canonical text form — every column in
//! schema order, length-prefixed, NULL distinct from empty; text byte for byte;
//! timestamps as UTC RFC 3339 with microseconds; floats by their `f32` bits; JSON by
//! value, from the text on each side: keys sorted, strings unescaped, every number as
//! its exact decimal value (what JSONB normalises — key order, whitespace, `1e2` printed
//! as `100` — is not a difference; one changed digit is) — and the rows are hashed in
//! key order. Neither side's values pass through a lossy type first, so a change made
//! by the copy cannot cancel out. A mismatch names the first differing row.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_persistence::import::{Importer, SqliteSnapshot};
//! use vigil_persistence::{DatabaseConfig, Store};
//!
//! let source = SqliteSnapshot::take("vigil.db".as_ref()).await?;
//! let target = Store::connect(DatabaseConfig::postgres("postgresql://postgres@localhost/agents")?).await?;
//! let report = Importer::from_snapshot(&source, &target)
//!     .on_progress(|p| eprintln!("{} {}/{}", p.table, p.rows_copied, p.rows_total))
//!     .run()
//!     .await?;
//! for table in &report.tables {
//!     println!("{:<22} {:>8} rows  {}", table.table, table.rows, table.checksum_target);
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sqlite::SqliteConnection;
use diesel::{
    Connection, ExpressionMethods, Insertable, QueryDsl, QueryResult, Queryable, Selectable, SelectableHelper,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::lifecycle::State;
use crate::schema;
use crate::store::{Backend, Store, StoreInner, TABLES};
use crate::types::Ts;

mod canonical;
use canonical::{Canonical, Fnv, JsonFault, JsonText, fnv};

/// Most rows in one INSERT (fewer when the bind-parameter limit or the byte budget says so).
const DEFAULT_BATCH_ROWS: usize = 1_000;
/// PostgreSQL's limit on bind parameters per statement.
const MAX_BIND_PARAMETERS: usize = 65_535;
/// Roughly how much row data goes into one INSERT (measured on the canonical form).
const BATCH_BYTES: usize = 8 << 20;
/// Keys per read-back or collision query (one array parameter each).
const KEYS_PER_QUERY: usize = 1_000;
/// Batches in flight between the SQLite reader and the PostgreSQL writer.
const CHANNEL_DEPTH: usize = 4;

/// Why an import failed. Except for the two configuration errors, which are found
/// before anything starts, every variant means the target transaction was rolled back:
/// the target is as it was before the import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source store is not an SQLite database (its description, password hidden).
    #[error("the import source must be an SQLite database, not {0}")]
    NotSqlite(String),

    /// The target store is not a PostgreSQL database (its description).
    #[error("the import target must be a PostgreSQL database, not {0}")]
    NotPostgres(String),

    /// The target already has rows and append was not requested.
    #[error(
        "the target is not empty: table `{table}` has {rows} row(s); import into an empty database, or append"
    )]
    TargetNotEmpty {
        /// The first non-empty table, in dependency order.
        table: &'static str,
        /// Its row count.
        rows: i64,
    },

    /// Appending: a source key already exists in the target. Ids are never remapped.
    #[error("table `{table}`: key {key} exists in both databases; nothing was imported")]
    KeyCollision {
        /// The table.
        table: &'static str,
        /// The colliding key (an `id`, a `system_state` key or a `request_id`).
        key: String,
    },

    /// Reading the source failed (the database, or a value that does not decode).
    #[error("reading `{table}` from the source failed: {source}")]
    Read {
        /// The table being read.
        table: &'static str,
        /// What failed.
        #[source]
        source: StoreError,
    },

    /// PostgreSQL refused a batch (a constraint, a value it cannot store, ...).
    #[error("writing `{table}` to the target failed, nothing was imported: {source}")]
    Write {
        /// The table being written.
        table: &'static str,
        /// What failed.
        #[source]
        source: StoreError,
    },

    /// The rows read back from the target differ from the rows read from the source.
    #[error(
        "verification of `{table}` failed, nothing was imported: source {rows_source} rows / {checksum_source}, target {rows_target} rows / {checksum_target}{}",
        first_difference.as_deref().map(|key| format!("; first difference at key {key}")).unwrap_or_default()
    )]
    ChecksumMismatch {
        /// The table.
        table: &'static str,
        /// Rows read from the source.
        rows_source: u64,
        /// Imported rows read back from the target.
        rows_target: u64,
        /// Checksum of the source rows.
        checksum_source: Checksum,
        /// Checksum of the target rows.
        checksum_target: Checksum,
        /// The key of the first row that differs, when one was found.
        first_difference: Option<String>,
    },

    /// A JSON column of a source row is not JSON (written by hand, or by an older
    /// program). It is not copied as anything else: the import is exact or nothing.
    #[error(
        "`{table}` row {key}: column `{column}` does not hold valid JSON ({reason}); nothing was imported"
    )]
    InvalidJson {
        /// The table.
        table: &'static str,
        /// The row's key.
        key: String,
        /// The column.
        column: &'static str,
        /// What is wrong, and where in the document (never its content).
        reason: String,
    },

    /// The source reader stopped before the end of the data (its own error comes first
    /// when there is one; this is what remains when there is not).
    #[error("the source stopped sending rows before the end of `{0}`")]
    SourceEnded(&'static str),

    /// There is no file at the source path (and none is created).
    #[error("cannot open the import source {path}: no such file")]
    SourceMissing {
        /// The path given.
        path: std::path::PathBuf,
    },

    /// The source path names a directory, or something else that is not a file.
    #[error("cannot open the import source {path}: it is a directory, not an SQLite file")]
    SourceIsDirectory {
        /// The path given.
        path: std::path::PathBuf,
    },

    /// The source file cannot be read (permissions, an I/O error).
    #[error("cannot open the import source {path}: {source}")]
    SourceUnreadable {
        /// The path given.
        path: std::path::PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },

    /// The source file is not an SQLite database at all (its first 16 bytes are not
    /// SQLite's header), or is not a regular file.
    #[error("the import source {path} is not an SQLite database")]
    SourceNotSqlite {
        /// The path given.
        path: std::path::PathBuf,
    },

    /// The source is an SQLite database but not a Vigil one: it lacks shared-state
    /// tables. Importing it would import nothing, so it is refused.
    #[error(
        "the import source {path} is an SQLite database but not a Vigil database: {}",
        if missing.len() == TABLES.len() {
            String::from("it has none of the shared-state tables (agents, system_state, ...)")
        } else {
            format!("it lacks the shared-state table(s) {}", missing.join(", "))
        }
    )]
    NotVigilDatabase {
        /// The path given.
        path: std::path::PathBuf,
        /// The shared-state tables it does not have, in [`TABLES`] order.
        missing: Vec<&'static str>,
    },

    /// The SQLite source could not be opened read-only or copied.
    #[error("cannot take a snapshot of the SQLite source {path}: {reason}")]
    Snapshot {
        /// The source file.
        path: std::path::PathBuf,
        /// What SQLite or the file system said.
        reason: String,
    },

    /// Any other database failure (connecting, locking, counting, committing).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ImportError {
    fn from(error: diesel::result::Error) -> Self {
        ImportError::Store(StoreError::Query(error))
    }
}

/// A 64-bit FNV-1a checksum, shown and serialized as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum(pub u64);

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The verified copy of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableImport {
    /// Table name.
    pub table: &'static str,
    /// Rows read from the source (and copied).
    pub rows: u64,
    /// Imported rows found again in the target.
    pub rows_target: u64,
    /// Checksum of the source rows, in key order.
    pub checksum_source: Checksum,
    /// Checksum of the imported rows read back from the target, in key order.
    pub checksum_target: Checksum,
    /// Whether counts and checksums are equal (always true in a returned report: a
    /// mismatch fails the import with [`ImportError::ChecksumMismatch`]).
    pub matches: bool,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    /// The source, password-free (`sqlite:vigil.db`).
    pub source: String,
    /// The target, password hidden.
    pub target: String,
    /// Whether rows were appended to a non-empty target.
    pub append: bool,
    /// The nine tables, in the order they were copied.
    pub tables: Vec<TableImport>,
    /// Rows copied, all tables.
    pub total_rows: u64,
    /// Wall time of the whole import, verification included.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// What the verification compared, in one sentence ([`VERIFICATION`]).
    pub verification: &'static str,
}

/// What the verification of each table compares, as the report states it.
pub const VERIFICATION: &str = "per table, the row count and a 64-bit FNV-1a checksum of every column of every \
     row, in key order, read from the source and read back from the target inside the import's transaction; \
     values are compared exactly: text byte for byte, timestamps to the microsecond, REAL by its bits, JSON \
     by value with every number as its exact decimal value (JSONB's key order and whitespace aside)";

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ImportStage {
    /// The source row counts are known; nothing is copied yet.
    Started,
    /// A batch of the table was inserted.
    Copying,
    /// The table was copied and read back; its counts and checksums agree.
    Verified,
}

/// One progress report, given to the [`Importer::on_progress`] callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProgress {
    /// The table (for [`ImportStage::Started`], the first one).
    pub table: &'static str,
    /// What just happened.
    pub stage: ImportStage,
    /// Rows of this table copied so far.
    pub rows_copied: u64,
    /// Rows of this table in the source.
    pub rows_total: u64,
    /// Rows copied so far, all tables.
    pub all_copied: u64,
    /// Rows in the source, all tables.
    pub all_total: u64,
}

type ProgressFn = Box<dyn FnMut(&ImportProgress) + Send>;

/// A consistent copy of an SQLite file, migrated to this version's schema, to import
/// from. The source itself is only read, through a read-only connection: not migrated,
/// not locked for writing, so agents may go on writing to it, and a database written by
/// an older Vigil is imported without changing it. The copy (`VACUUM INTO`, one read
/// transaction) goes to the temporary directory (`TMPDIR`) and is deleted on drop.
#[derive(Debug)]
pub struct SqliteSnapshot {
    store: Store,
    /// The file the user named: what reports and errors show, never the copy's path.
    origin: std::path::PathBuf,
    // Declared after the store: its pool closes before the file is removed.
    _file: tempfile::TempPath,
}

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

impl SqliteSnapshot {
    /// Copies the Vigil SQLite database at `path` and opens the copy. Nothing is ever
    /// created or written at `path`.
    ///
    /// # Errors
    ///
    /// Each names `path`: [`ImportError::SourceMissing`], [`ImportError::SourceIsDirectory`],
    /// [`ImportError::SourceUnreadable`], [`ImportError::SourceNotSqlite`] (not an SQLite
    /// file), [`ImportError::NotVigilDatabase`] (an SQLite database without Vigil's
    /// tables), and [`ImportError::Snapshot`] if it cannot be opened read-only, copied,
    /// or the copy migrated.
    pub async fn take(path: &std::path::Path) -> Result<Self, ImportError> {
        check_source_file(path)?;
        let origin = path.to_owned();
        let snapshot_error = {
            let origin = origin.clone();
            move |reason: String| ImportError::Snapshot { path: origin.clone(), reason }
        };
        // A reader of a WAL database creates `-wal` and `-shm` files beside it, which a
        // read-only connection cannot remove when it closes. When none exist, nobody has
        // the database open, so its committed data is all in the file: a byte copy of it
        // is read instead, and nothing appears beside the user's file.
        let staged = stage_if_quiescent(path).map_err(|e| snapshot_error(e.to_string()))?;
        let (source, mode) = match &staged {
            // Ours alone: `immutable` takes no locks and creates no side files.
            Some(copy) => (copy.to_path_buf(), "mode=ro&immutable=1"),
            None => (path.to_owned(), "mode=ro"),
        };
        let absolute = std::path::absolute(&source).map_err(|e| snapshot_error(e.to_string()))?;
        // A URI, so SQLite opens the file read-only and never creates it.
        let mut uri =
            url::Url::from_file_path(&absolute).map_err(|()| snapshot_error("not a file path".into()))?;
        uri.set_query(Some(mode));
        let file = tempfile::Builder::new()
            .prefix("vigil-import-")
            .suffix(".db")
            .tempfile()
            .map_err(|e| snapshot_error(format!("temporary file: {e}")))?
            .into_temp_path();
        let into = file.to_path_buf();
        let blocking_origin = origin.clone();
        let blocking_error = snapshot_error.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
            use diesel::RunQueryDsl;
            let mut conn =
                SqliteConnection::establish(uri.as_str()).map_err(|e| blocking_error(e.to_string()))?;
            // Before anything is migrated: a database without Vigil's tables would
            // otherwise get them, empty, and "import" nothing.
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                name: String,
            }
            let names = diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
                .load::<Name>(&mut conn)
                .map_err(|e| blocking_error(e.to_string()))?;
            let missing: Vec<&'static str> =
                TABLES.into_iter().filter(|table| !names.iter().any(|n| n.name == *table)).collect();
            if !missing.is_empty() {
                return Err(ImportError::NotVigilDatabase { path: blocking_origin, missing });
            }
            diesel::sql_query("VACUUM INTO ?")
                .bind::<diesel::sql_types::Text, _>(into.to_string_lossy().into_owned())
                .execute(&mut conn)
                .map(drop)
                .map_err(|e| blocking_error(e.to_string()))
        })
        .await
        .map_err(|e| snapshot_error(e.to_string()))??;
        // Errors from here on are about the copy: name the user's file, not the copy's.
        let copy = file.to_string_lossy().into_owned();
        let store = Store::connect(crate::DatabaseConfig::sqlite(&file))
            .await
            .map_err(|e| snapshot_error(e.to_string().replace(&copy, "(its snapshot)")))?;
        Ok(Self { store, origin, _file: file })
    }

    /// The store over the copy. [`Importer::from_snapshot`] is the way to import from
    /// it: reports then name [`path`](Self::path), not the copy.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The file the snapshot was taken of.
    pub fn path(&self) -> &std::path::Path {
        &self.origin
    }

    /// The source as reports show it: `sqlite:` and the path given.
    pub fn describe(&self) -> String {
        format!("sqlite:{}", self.origin.display())
    }
}

/// The files SQLite keeps beside a database while it is open (or after a crash).
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

fn has_side_files(path: &std::path::Path) -> bool {
    SIDE_FILES.iter().any(|suffix| {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        std::path::Path::new(&side).exists()
    })
}

/// A byte copy of the database at `path` in the temporary directory when nobody has it
/// open (no side files before and after the copy, and the file unchanged by it); `None`
/// when it is in use, and must be read through SQLite's locks.
fn stage_if_quiescent(path: &std::path::Path) -> std::io::Result<Option<tempfile::TempPath>> {
    let fingerprint = |path: &std::path::Path| -> std::io::Result<_> {
        let metadata = std::fs::metadata(path)?;
        Ok((metadata.len(), metadata.modified()?))
    };
    if has_side_files(path) {
        return Ok(None);
    }
    let before = fingerprint(path)?;
    let copy =
        tempfile::Builder::new().prefix("vigil-import-source-").suffix(".db").tempfile()?.into_temp_path();
    std::fs::copy(path, &copy)?;
    if has_side_files(path) || fingerprint(path)? != before {
        return Ok(None); // somebody opened it meanwhile: read it properly
    }
    Ok(Some(copy))
}

/// Refuses a source path that is missing, a directory, unreadable or not SQLite, by the
/// file system alone: nothing is opened through SQLite yet, so nothing can be created.
fn check_source_file(path: &std::path::Path) -> Result<(), ImportError> {
    use std::io::Read as _;
    let path_buf = || path.to_owned();
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ImportError::SourceMissing { path: path_buf() },
        _ => ImportError::SourceUnreadable { path: path_buf(), source },
    })?;
    if metadata.is_dir() {
        return Err(ImportError::SourceIsDirectory { path: path_buf() });
    }
    if !metadata.is_file() {
        // A FIFO or a device: reading its "header" could block, and it is no database.
        return Err(ImportError::SourceNotSqlite { path: path_buf() });
    }
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(path)
        .map_err(|source| ImportError::SourceUnreadable { path: path_buf(), source })?;
    match file.read_exact(&mut header) {
        Ok(()) if &header == SQLITE_HEADER => Ok(()),
        Ok(()) => Err(ImportError::SourceNotSqlite { path: path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ImportError::SourceNotSqlite { path: path_buf() })
        }
        Err(source) => Err(ImportError::SourceUnreadable { path: path_buf(), source }),
    }
}

/// Copies a Vigil SQLite database into PostgreSQL; see the [module docs](self).
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

/// The hash of one row's canonical form (`text` is scratch space).
fn row_hash<T: Table>(row: &T, text: &mut String) -> u64 {
    text.clear();
    // A source row was checked by the reader; a fault here only changes the hash.
    let _ = row.canonical(text);
    fnv(text.as_bytes())
}

// ------------------------------------------------------------------ the nine tables

/// One table as the importer sees it: how to read a page from SQLite, insert a batch
/// into PostgreSQL, and read it back. Implemented for the nine row types below.
trait Table: Sized + Send + Sync + 'static {
    const NAME: &'static str;
    /// Columns, for the bind-parameter limit.
    const COLUMNS: usize;
    /// Whether `id` is a SERIAL whose sequence must follow the imported ids.
    const SERIAL: bool;
    type Key: Ord + Clone + Send + Sync + std::fmt::Debug + 'static;

    fn key(&self) -> Self::Key;
    /// Writes the row's canonical form; a column that is not JSON is named.
    fn canonical(&self, out: &mut String) -> Result<(), (&'static str, JsonFault)>;
    fn wrap(rows: Vec<Self>) -> Chunk;
    fn unwrap(chunk: Chunk) -> Option<Vec<Self>>;
    /// Up to `limit` rows with a key above `after`, in key order.
    fn read_page(
        conn: &mut SqliteConnection,
        after: Option<&Self::Key>,
        limit: i64,
    ) -> QueryResult<Vec<Self>>;
    fn insert<'a>(conn: &'a mut AsyncPgConnection, rows: &'a [Self]) -> BoxFuture<'a, QueryResult<usize>>;
    /// The rows with these keys, in any order.
    fn read_back<'a>(
        conn: &'a mut AsyncPgConnection,
        keys: &'a [Self::Key],
    ) -> BoxFuture<'a, QueryResult<Vec<Self>>>;
    /// Which of these keys exist already.
    fn existing<'a>(
        conn: &'a mut AsyncPgConnection,
        keys: &'a [Self::Key],
    ) -> BoxFuture<'a, QueryResult<Vec<Self::Key>>>;
}

macro_rules! tables {
    ($(
        $variant:ident => $row:ident in $table:ident, key $key:ident: $key_ty:ty, serial $serial:literal {
            $($field:ident: $ty:ty),* $(,)?
        }
    )*) => {
        $(
            /// A whole row, id included, as read and as inserted.
            #[derive(Queryable, Selectable, Insertable, Debug, Clone)]
            #[diesel(table_name = schema::$table)]
            // A NULL stays NULL: by default diesel would send DEFAULT for `None`, and
            // PostgreSQL would fill in NOW() or 'initializing' (the checksums caught it).
            #[diesel(treat_none_as_default_value = false)]
            #[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
            struct $row {
                $($field: $ty,)*
            }

            impl Table for $row {
                const NAME: &'static str = stringify!($table);
                const COLUMNS: usize = [$(stringify!($field)),*].len();
                const SERIAL: bool = $serial;
                type Key = $key_ty;

                fn key(&self) -> $key_ty {
                    self.$key.clone()
                }

                fn canonical(&self, out: &mut String) -> Result<(), (&'static str, JsonFault)> {
                    $(Canonical::canonical(&self.$field, out).map_err(|fault| (stringify!($field), fault))?;)*
                    Ok(())
                }

                fn wrap(rows: Vec<Self>) -> Chunk {
                    Chunk::$variant(rows)
                }

                fn unwrap(chunk: Chunk) -> Option<Vec<Self>> {
                    match chunk {
                        Chunk::$variant(rows) => Some(rows),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }

                fn read_page(
                    conn: &mut SqliteConnection,
                    after: Option<&$key_ty>,
                    limit: i64,
                ) -> QueryResult<Vec<Self>> {
                    use diesel::RunQueryDsl;
                    use schema::$table::dsl as t;
                    match after {
                        Some(after) => t::$table
                            .filter(t::$key.gt(after.clone()))
                            .order(t::$key.asc())
                            .limit(limit)
                            .select(Self::as_select())
                            .load(conn),
                        None => t::$table.order(t::$key.asc()).limit(limit).select(Self::as_select()).load(conn),
                    }
                }

                fn insert<'a>(
                    conn: &'a mut AsyncPgConnection,
                    rows: &'a [Self],
                ) -> BoxFuture<'a, QueryResult<usize>> {
                    use diesel_async::RunQueryDsl;
                    diesel::insert_into(schema::$table::table).values(rows).execute(conn).boxed()
                }

                fn read_back<'a>(
                    conn: &'a mut AsyncPgConnection,
                    keys: &'a [$key_ty],
                ) -> BoxFuture<'a, QueryResult<Vec<Self>>> {
                    use diesel_async::RunQueryDsl;
                    use schema::$table::dsl as t;
                    t::$table.filter(t::$key.eq_any(keys)).select(Self::as_select()).load(conn).boxed()
                }

                fn existing<'a>(
                    conn: &'a mut AsyncPgConnection,
                    keys: &'a [$key_ty],
                ) -> BoxFuture<'a, QueryResult<Vec<$key_ty>>> {
                    use diesel_async::RunQueryDsl;
                    use schema::$table::dsl as t;
                    t::$table.filter(t::$key.eq_any(keys)).select(t::$key).order(t::$key.asc()).limit(1).load(conn).boxed()
                }
            }
        )*

        /// A batch of one table's rows, on its way from the reader to the writer.
        #[derive(Debug)]
        enum Chunk {
            $($variant(Vec<$row>),)*
        }
    };
}

tables! {
    Agents => AgentRow in agents, key id: i32, serial true {
        id: i32,
        agent_id: String,
        agent_name: String,
        // Typed: a source row with an unknown state is refused with a typed error,
        // not copied into the target.
        status: Option<State>,
        last_heartbeat: Option<Ts>,
        last_state_change: Option<Ts>,
        uptime_details: Option<JsonText>,
        metrics: Option<JsonText>,
        created_at: Option<Ts>,
        updated_at: Option<Ts>,
    }
    Metrics => MetricRow in performance_metrics, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        metric_name: String,
        metric_value: f32,
        timestamp: Option<Ts>,
        metadata: Option<JsonText>,
        source_agent: Option<String>,
    }
    SystemState => SystemStateRow in system_state, key key: String, serial false {
        key: String,
        value: JsonText,
        created_at: Option<Ts>,
        updated_at: Option<Ts>,
    }
    Heartbeats => HeartbeatRow in agent_heartbeats, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        timestamp: Option<Ts>,
        status: Option<State>,
        message: Option<String>,
        metadata: Option<JsonText>,
    }
    Events => EventRow in system_events, key id: i32, serial true {
        id: i32,
        event_type: String,
        event_data: Option<JsonText>,
        timestamp: Option<Ts>,
        severity: Option<String>,
    }
    HelpRequests => HelpRequestRow in help_requests, key request_id: String, serial false {
        request_id: String,
        query: String,
        context: Option<JsonText>,
        status: Option<String>,
        created_at: Option<Ts>,
    }
    HelpResponses => HelpResponseRow in help_responses, key request_id: String, serial false {
        request_id: String,
        timestamp: Option<Ts>,
        response: String,
        status: Option<String>,
    }
    Communications => CommunicationRow in agent_communications, key id: i32, serial true {
        id: i32,
        from_agent_id: Option<i32>,
        to_agent_id: Option<i32>,
        message_type: Option<String>,
        message_content: Option<String>,
        timestamp: Option<Ts>,
        status: Option<String>,
    }
    Conversations => ConversationRow in llm_conversations, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        conversation_id: Option<String>,
        message_content: Option<String>,
        response_content: Option<String>,
        timestamp: Option<Ts>,
        metadata: Option<JsonText>,
    }
}

/// Calls `$f::<Row>($args)` for each of the nine tables in dependency order (the order
/// of [`TABLES`]), stopping at the first error.
macro_rules! for_each_table {
    (|$t:ident| $body:expr) => {
        for_each_table!(@rows $t, $body; AgentRow, MetricRow, SystemStateRow, HeartbeatRow, EventRow,
            HelpRequestRow, HelpResponseRow, CommunicationRow, ConversationRow)
    };
    (@rows $t:ident, $body:expr; $($row:ty),*) => {{
        $({
            type $t = $row;
            $body
        })*
    }};
}

// ------------------------------------------------------------------ reader (SQLite)

/// What the reader sends the writer, in this order: `Totals`, then per table its
/// `Rows` batches and one `Done`.
#[derive(Debug)]
enum Message {
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
async fn read_source(
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

// ------------------------------------------------------------------ writer (PostgreSQL)

/// The writer's settings and the progress callback.
struct Writer {
    append: bool,
    batch_rows: usize,
    progress: Option<ProgressFn>,
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
async fn import(
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
