//! [`ImportError`]: why an import failed, and what the target looks like afterwards
//! (as it was before, except for the two configuration errors found before anything
//! starts).

use super::report::Checksum;
use crate::error::StoreError;
use crate::store::TABLES;

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
