//! The SQLite side of a configuration: where the file lives ([`SqliteLocation`]) and
//! how hard each commit syncs ([`SqliteSynchronous`], see the parent module's
//! "SQLite durability").

use std::path::PathBuf;

use super::env::ENV_SQLITE_SYNCHRONOUS;
use super::error::DatabaseConfigError;

/// Where an SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A file, created if missing.
    File(PathBuf),
    /// A private in-memory database shared by the store's connections, gone when the
    /// store is dropped. The name keeps stores of one process apart.
    Memory(String),
}

/// How hard SQLite works to keep an acknowledged write (`PRAGMA synchronous`; the
/// database runs in WAL mode). See the [module documentation](crate::config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SqliteSynchronous {
    /// `FULL` (the default): each commit waits for the disk. Acknowledged writes
    /// survive a process kill, an OS crash and a power loss.
    #[default]
    Full,
    /// `NORMAL`: commits do not wait for the disk (WAL is synced at checkpoints).
    /// Acknowledged writes survive a process kill, not an OS crash or power loss.
    Normal,
}

impl SqliteSynchronous {
    /// The pragma's value (`FULL`, `NORMAL`).
    pub fn as_pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        }
    }

    /// What `PRAGMA synchronous` reads back as (2 for `FULL`, 1 for `NORMAL`).
    pub fn pragma_value(self) -> i32 {
        match self {
            SqliteSynchronous::Full => 2,
            SqliteSynchronous::Normal => 1,
        }
    }

    /// Parses `full` or `normal` (any case).
    pub fn parse(text: &str) -> Result<Self, DatabaseConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSynchronous::Full),
            "normal" => Ok(SqliteSynchronous::Normal),
            other => Err(DatabaseConfigError::InvalidValue {
                name: ENV_SQLITE_SYNCHRONOUS,
                reason: format!("`{other}` is not `full` or `normal`"),
            }),
        }
    }
}
