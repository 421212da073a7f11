//! [`DatabaseConfig`]: which database to use, and how — its constructors
//! ([`DatabaseConfig::postgres`], [`DatabaseConfig::sqlite`], ...), accessors and
//! `with_*` adjustments. Where a configuration comes from (the environment, the file)
//! is in `resolve.rs` and `file.rs`.

use std::path::Path;

use super::error::{ConfigSource, DatabaseConfigError};
use super::pool::PoolConfig;
use super::sqlite::{SqliteLocation, SqliteSynchronous};
use super::url::DatabaseUrl;
use crate::limits::PayloadLimits;

/// Which database to use, and how.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DatabaseConfig {
    /// A PostgreSQL server.
    Postgres {
        /// The connection URL (password hidden in output).
        url: DatabaseUrl,
        /// Where the settings came from.
        source: ConfigSource,
        /// Pool settings.
        pool: PoolConfig,
        /// What a write may carry.
        limits: PayloadLimits,
    },
    /// An embedded SQLite database.
    Sqlite {
        /// The file, or a named in-memory database.
        location: SqliteLocation,
        /// Pool settings (SQLite has one writer; a small pool serves reads).
        pool: PoolConfig,
        /// Durability of an acknowledged write (default [`SqliteSynchronous::Full`]).
        synchronous: SqliteSynchronous,
        /// What a write may carry.
        limits: PayloadLimits,
    },
}

impl DatabaseConfig {
    /// PostgreSQL at `url` with default pool settings.
    pub fn postgres(url: &str) -> Result<Self, DatabaseConfigError> {
        Ok(Self::postgres_with(
            DatabaseUrl::parse(url, ConfigSource::Explicit)?,
            ConfigSource::Explicit,
            PoolConfig::default(),
        ))
    }

    pub(super) fn postgres_with(url: DatabaseUrl, source: ConfigSource, pool: PoolConfig) -> Self {
        DatabaseConfig::Postgres { url, source, pool, limits: PayloadLimits::default() }
    }

    /// An SQLite file (created if missing). `:memory:` gives a private in-memory database.
    pub fn sqlite(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        if path.as_os_str() == ":memory:" {
            return Self::sqlite_memory();
        }
        Self::sqlite_at(SqliteLocation::File(path.to_owned()))
    }

    /// A private in-memory SQLite database, unique to this call.
    pub fn sqlite_memory() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("vigil-mem-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Self::sqlite_at(SqliteLocation::Memory(name))
    }

    pub(super) fn sqlite_at(location: SqliteLocation) -> Self {
        DatabaseConfig::Sqlite {
            location,
            pool: Self::sqlite_pool(),
            synchronous: SqliteSynchronous::default(),
            limits: PayloadLimits::default(),
        }
    }

    pub(super) fn sqlite_pool() -> PoolConfig {
        // One file, one writer at a time: a handful of connections serves the readers.
        PoolConfig { max_connections: 4, min_connections: 1, ..PoolConfig::default() }
    }

    /// Whether this is a PostgreSQL configuration.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseConfig::Postgres { .. })
    }

    /// The pool settings.
    pub fn pool(&self) -> &PoolConfig {
        match self {
            DatabaseConfig::Postgres { pool, .. } | DatabaseConfig::Sqlite { pool, .. } => pool,
        }
    }

    /// Replaces the pool settings.
    pub fn with_pool(mut self, new_pool: PoolConfig) -> Result<Self, DatabaseConfigError> {
        new_pool.validate()?;
        match &mut self {
            DatabaseConfig::Postgres { pool, .. } | DatabaseConfig::Sqlite { pool, .. } => *pool = new_pool,
        }
        Ok(self)
    }

    /// The limits every write is checked against.
    pub fn payload_limits(&self) -> &PayloadLimits {
        match self {
            DatabaseConfig::Postgres { limits, .. } | DatabaseConfig::Sqlite { limits, .. } => limits,
        }
    }

    /// Replaces the payload limits; refuses limits that would accept what cannot be
    /// read back (see [`PayloadLimits::validate`]).
    pub fn with_payload_limits(mut self, new_limits: PayloadLimits) -> Result<Self, DatabaseConfigError> {
        new_limits.validate()?;
        match &mut self {
            DatabaseConfig::Postgres { limits, .. } | DatabaseConfig::Sqlite { limits, .. } => {
                *limits = new_limits
            }
        }
        Ok(self)
    }

    /// SQLite's durability setting; `None` for PostgreSQL.
    pub fn sqlite_synchronous(&self) -> Option<SqliteSynchronous> {
        match self {
            DatabaseConfig::Sqlite { synchronous, .. } => Some(*synchronous),
            DatabaseConfig::Postgres { .. } => None,
        }
    }

    /// Sets SQLite's durability setting (ignored for PostgreSQL). An in-memory database
    /// has no file to sync, so it ignores the setting too.
    #[must_use]
    pub fn with_sqlite_synchronous(mut self, value: SqliteSynchronous) -> Self {
        if let DatabaseConfig::Sqlite { synchronous, .. } = &mut self {
            *synchronous = value;
        }
        self
    }

    /// A one-line description safe to log (`postgresql://app:***@db/agents`, `sqlite:vigil.db`).
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Postgres { url, .. } => url.redacted(),
            DatabaseConfig::Sqlite { location: SqliteLocation::File(path), .. } => {
                format!("sqlite:{}", path.display())
            }
            DatabaseConfig::Sqlite { location: SqliteLocation::Memory(name), .. } => {
                format!("sqlite::memory:{name}")
            }
        }
    }
}
