//! Where the shared state lives, and how to connect to it.
//!
//! PostgreSQL is the production database; an embedded SQLite file is the zero-setup
//! default. The choice and the PostgreSQL settings follow the specification's priority:
//!
//! | priority | source                                   | selects PostgreSQL |
//! |----------|------------------------------------------|--------------------|
//! | 1        | an explicit URL (`--database-url`)       | yes (`sqlite:PATH` selects SQLite) |
//! | 2        | `POSTGRES_CONNECTION_STRING`             | yes, unless `USE_POSTGRESQL=false` |
//! | 3        | `postgres_config.json` in the working directory | yes, unless `USE_POSTGRESQL=false` |
//! | 4        | `postgresql://postgres:postgres@localhost:5432/background_agents` | only with `USE_POSTGRESQL=true` |
//!
//! With none of them the store is the SQLite file `./vigil.db`.
//!
//! **SQLite durability.** The file runs in WAL mode with `PRAGMA synchronous = FULL`
//! by default ([`SqliteSynchronous::Full`]): a write is acknowledged once it is on
//! disk, so it survives a `kill -9`, an OS crash and a power loss.
//! [`SqliteSynchronous::Normal`] (`VIGIL_SQLITE_SYNCHRONOUS=normal`, or
//! [`DatabaseConfig::with_sqlite_synchronous`]) skips the sync at each commit: it still
//! survives the process being killed, but an OS crash or power loss may lose the last
//! acknowledged writes.
//!
//! Every configuration also carries the [`PayloadLimits`] its writes are checked
//! against ([`DatabaseConfig::with_payload_limits`], see [`crate::limits`]).
//!
//! The pool defaults are the specification's: at most 20 connections, at least 5, and
//! a 30 s command timeout. `POSTGRES_MAX_CONNECTIONS`, `POSTGRES_MIN_CONNECTIONS` and
//! `POSTGRES_COMMAND_TIMEOUT` (seconds) set them for PostgreSQL from any of the sources
//! above, and win over the file; `postgres_config.json` may set them too:
//!
//! ```json
//! { "user": "postgres", "password": "secret", "host": "localhost", "port": 5432,
//!   "database": "background_agents", "max_connections": 20, "min_connections": 5,
//!   "command_timeout": 30 }
//! ```
//!
//! Passwords never leave this module in clear: [`DatabaseUrl`]'s `Debug` and
//! `Display` mask them, and no error quotes a URL.
//!
//! ```
//! use vigil_persistence::config::{ConfigInputs, DatabaseConfig};
//!
//! let inputs = ConfigInputs {
//!     connection_string: Some("postgresql://app:hunter2@db:5432/agents".into()),
//!     ..ConfigInputs::default()
//! };
//! let config = DatabaseConfig::resolve(&inputs).unwrap();
//! assert!(config.is_postgres());
//! assert!(!format!("{config:?}").contains("hunter2"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits::PayloadLimits;

/// The environment variables that tune the PostgreSQL pool, whatever the URL's source.
pub const ENV_MAX_CONNECTIONS: &str = "POSTGRES_MAX_CONNECTIONS";
/// See [`ENV_MAX_CONNECTIONS`].
pub const ENV_MIN_CONNECTIONS: &str = "POSTGRES_MIN_CONNECTIONS";
/// See [`ENV_MAX_CONNECTIONS`]; seconds, fractions allowed.
pub const ENV_COMMAND_TIMEOUT: &str = "POSTGRES_COMMAND_TIMEOUT";

/// The environment variable holding a PostgreSQL connection string.
pub const ENV_CONNECTION_STRING: &str = "POSTGRES_CONNECTION_STRING";
/// The environment variable that forces PostgreSQL on (`true`) or off (`false`).
pub const ENV_USE_POSTGRESQL: &str = "USE_POSTGRESQL";
/// The environment variable that sets [`SqliteSynchronous`] (`full` or `normal`).
pub const ENV_SQLITE_SYNCHRONOUS: &str = "VIGIL_SQLITE_SYNCHRONOUS";
/// The configuration file read from the working directory.
pub const CONFIG_FILE_NAME: &str = "postgres_config.json";
/// The specification's default PostgreSQL URL.
pub const DEFAULT_POSTGRES_URL: &str = "postgresql://postgres:postgres@localhost:5432/background_agents";
/// The embedded default database file.
pub const DEFAULT_SQLITE_PATH: &str = "vigil.db";

/// A configuration that cannot be used. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A database URL is malformed.
    #[error("invalid database URL from {origin}: {reason}")]
    InvalidUrl {
        /// Where the URL came from.
        origin: ConfigSource,
        /// What is wrong with it (without the URL itself).
        reason: String,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid value for {name}: {reason}")]
    InvalidValue {
        /// The setting.
        name: &'static str,
        /// Why the value is refused.
        reason: String,
    },
}

/// Where the PostgreSQL settings were taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// An explicit URL given by the caller (`--database-url`).
    Explicit,
    /// The `POSTGRES_CONNECTION_STRING` environment variable.
    Environment,
    /// A `postgres_config.json` file.
    File(PathBuf),
    /// The specification's default URL.
    Default,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Explicit => f.write_str("--database-url"),
            ConfigSource::Environment => f.write_str(ENV_CONNECTION_STRING),
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Default => f.write_str("the default URL"),
        }
    }
}

/// A PostgreSQL connection URL whose password is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

impl DatabaseUrl {
    /// Parses and checks a `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str, origin: ConfigSource) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidUrl { origin: origin.clone(), reason };
        // url's own messages never echo the input, so they are safe to pass on.
        let url = url::Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!("scheme `{}` is not postgres:// or postgresql://", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(invalid("no database name".into()));
        }
        Ok(Self(url))
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.0.path().trim_start_matches('/')
    }

    /// The same server with another database (for admin connections and tests).
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(database);
        Self(url)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host (checked in `parse`).
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Retry policy for transient database errors: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any one delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes `max_attempts` attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the first and the largest delay.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The delay before retry number `retry` (0-based): a random duration between half
    /// and all of `initial * 2^retry`, capped at `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << retry.min(20));
        let ceiling = exp.min(self.max_backoff);
        let half = ceiling / 2;
        let jitter = rand::random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most connections open at once (default 20).
    pub max_connections: u32,
    /// Connections kept open when idle (default 5).
    pub min_connections: u32,
    /// Longest a statement may run (default 30 s).
    pub command_timeout: Duration,
    /// Longest a caller waits for a free connection (default 30 s).
    pub connection_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 20,
            min_connections: 5,
            command_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl PoolConfig {
    /// Sets the pool bounds.
    pub fn with_connections(mut self, min: u32, max: u32) -> Self {
        self.min_connections = min;
        self.max_connections = max;
        self
    }

    /// Sets the command timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the time to wait for a free connection.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::InvalidValue {
                name: "max_connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.min_connections > self.max_connections {
            return Err(ConfigError::InvalidValue {
                name: "min_connections",
                reason: format!(
                    "{} is more than max_connections ({})",
                    self.min_connections, self.max_connections
                ),
            });
        }
        if self.command_timeout.is_zero() {
            return Err(ConfigError::InvalidValue {
                name: "command_timeout",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

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
/// database runs in WAL mode). See the [module documentation](self).
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
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSynchronous::Full),
            "normal" => Ok(SqliteSynchronous::Normal),
            other => Err(ConfigError::InvalidValue {
                name: ENV_SQLITE_SYNCHRONOUS,
                reason: format!("`{other}` is not `full` or `normal`"),
            }),
        }
    }
}

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

/// Everything the resolution reads, gathered so it can be tested without touching the
/// process environment. [`ConfigInputs::from_env`] fills it from the real one.
#[derive(Debug, Clone, Default)]
pub struct ConfigInputs {
    /// An explicit URL (`--database-url`); `sqlite:PATH` selects SQLite.
    pub explicit_url: Option<String>,
    /// `POSTGRES_CONNECTION_STRING`.
    pub connection_string: Option<String>,
    /// `USE_POSTGRESQL`.
    pub use_postgresql: Option<String>,
    /// A `postgres_config.json` to read, if it exists.
    pub config_file: Option<PathBuf>,
    /// The SQLite file used when PostgreSQL is not selected (default `./vigil.db`).
    pub sqlite_path: Option<PathBuf>,
    /// `POSTGRES_MAX_CONNECTIONS`.
    pub max_connections: Option<String>,
    /// `POSTGRES_MIN_CONNECTIONS`.
    pub min_connections: Option<String>,
    /// `POSTGRES_COMMAND_TIMEOUT`, in seconds.
    pub command_timeout: Option<String>,
    /// `VIGIL_SQLITE_SYNCHRONOUS` (`full` or `normal`), for an SQLite database.
    pub sqlite_synchronous: Option<String>,
}

impl ConfigInputs {
    /// Reads the environment and looks for `postgres_config.json` in `dir`.
    pub fn from_env_in(dir: &Path) -> Self {
        let file = dir.join(CONFIG_FILE_NAME);
        let env = |name: &str| std::env::var(name).ok().filter(|s| !s.trim().is_empty());
        Self {
            explicit_url: None,
            connection_string: std::env::var(ENV_CONNECTION_STRING).ok().filter(|s| !s.trim().is_empty()),
            use_postgresql: std::env::var(ENV_USE_POSTGRESQL).ok(),
            config_file: file.exists().then_some(file),
            sqlite_path: None,
            max_connections: env(ENV_MAX_CONNECTIONS),
            min_connections: env(ENV_MIN_CONNECTIONS),
            command_timeout: env(ENV_COMMAND_TIMEOUT),
            sqlite_synchronous: env(ENV_SQLITE_SYNCHRONOUS),
        }
    }

    /// Reads the environment and the working directory.
    pub fn from_env() -> Self {
        Self::from_env_in(Path::new("."))
    }
}

/// The keys of `postgres_config.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    /// Seconds.
    command_timeout: Option<f64>,
}

/// A parse error of `postgres_config.json` that names the key and the position but no
/// value: the file holds a password, and serde's messages quote the offending value
/// ("invalid type: integer `12345`, expected a string"). Only what serde says about
/// keys (unknown, missing, duplicate) and what it expected is kept.
fn describe_without_values(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = error.inner();
    let at = format!("line {} column {}", inner.line(), inner.column());
    let message = inner.to_string();
    // serde_json appends " at line L column C" to its messages.
    let message = message.split(" at line ").next().unwrap_or_default();
    let path = error.path().to_string();
    let key = if path == "." { String::new() } else { format!("`{path}`: ") };
    match inner.classify() {
        serde_json::error::Category::Data => {
            let about_keys = ["unknown field", "missing field", "duplicate field"];
            if about_keys.iter().any(|prefix| message.starts_with(prefix)) {
                format!("{key}{message} ({at})")
            } else {
                // "invalid type: integer `12345`, expected ..." keeps "invalid type" and
                // what was expected.
                let kind =
                    message.split(':').next().filter(|k| k.starts_with("invalid")).unwrap_or("invalid value");
                match message.split_once(", expected ") {
                    Some((_, expected)) => {
                        format!("{key}{kind}, expected {expected} (the value is not shown) ({at})")
                    }
                    None => format!("{key}{kind} (the value is not shown) ({at})"),
                }
            }
        }
        // Syntax errors and a cut-off file say what was expected, never a value.
        _ => format!("not valid JSON: {message} ({at})"),
    }
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(ConfigError::InvalidValue { name, reason: format!("`{other}` is not true or false") }),
    }
}

impl DatabaseConfig {
    /// Resolves the configuration from the environment and the working directory.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::resolve(&ConfigInputs::from_env())
    }

    /// Resolves the configuration from explicit inputs, in the specification's priority,
    /// then applies the pool variables to a PostgreSQL configuration, or
    /// `VIGIL_SQLITE_SYNCHRONOUS` to an SQLite one.
    pub fn resolve(inputs: &ConfigInputs) -> Result<Self, ConfigError> {
        let config = Self::resolve_source(inputs)?;
        if !config.is_postgres() {
            return match &inputs.sqlite_synchronous {
                Some(raw) => Ok(config.with_sqlite_synchronous(SqliteSynchronous::parse(raw)?)),
                None => Ok(config),
            };
        }
        let mut pool = config.pool().clone();
        let number = |name: &'static str, value: &str| {
            value.trim().parse::<u32>().map_err(|_| ConfigError::InvalidValue {
                name,
                reason: format!("`{}` is not a whole number", value.trim()),
            })
        };
        if let Some(max) = &inputs.max_connections {
            pool.max_connections = number(ENV_MAX_CONNECTIONS, max)?;
        }
        if let Some(min) = &inputs.min_connections {
            pool.min_connections = number(ENV_MIN_CONNECTIONS, min)?;
        }
        if let Some(timeout) = &inputs.command_timeout {
            let seconds = timeout.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0);
            let seconds = seconds.ok_or_else(|| ConfigError::InvalidValue {
                name: ENV_COMMAND_TIMEOUT,
                reason: format!("`{}` is not a positive number of seconds", timeout.trim()),
            })?;
            pool.command_timeout = Duration::from_secs_f64(seconds);
        }
        config.with_pool(pool)
    }

    fn resolve_source(inputs: &ConfigInputs) -> Result<Self, ConfigError> {
        if let Some(raw) = &inputs.explicit_url {
            if let Some(path) = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")) {
                return Ok(Self::sqlite(path));
            }
            let url = DatabaseUrl::parse(raw, ConfigSource::Explicit)?;
            return Ok(Self::postgres_with(url, ConfigSource::Explicit, PoolConfig::default()));
        }
        let forced =
            inputs.use_postgresql.as_deref().map(|v| parse_bool(ENV_USE_POSTGRESQL, v)).transpose()?;
        let sqlite =
            || Self::sqlite(inputs.sqlite_path.clone().unwrap_or_else(|| DEFAULT_SQLITE_PATH.into()));
        if forced == Some(false) {
            return Ok(sqlite());
        }
        if let Some(raw) = &inputs.connection_string {
            let url = DatabaseUrl::parse(raw, ConfigSource::Environment)?;
            return Ok(Self::postgres_with(url, ConfigSource::Environment, PoolConfig::default()));
        }
        if let Some(path) = &inputs.config_file {
            return Self::from_file(path);
        }
        if forced == Some(true) {
            let url = DatabaseUrl::parse(DEFAULT_POSTGRES_URL, ConfigSource::Default)?;
            return Ok(Self::postgres_with(url, ConfigSource::Default, PoolConfig::default()));
        }
        Ok(sqlite())
    }

    /// Reads PostgreSQL settings from a `postgres_config.json`-style file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |reason: String| ConfigError::File { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let file: ConfigFile =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|e| file_error(describe_without_values(&e)))?;
        if file.port == Some(0) {
            return Err(file_error("port must be between 1 and 65535".into()));
        }
        let mut url = url::Url::parse("postgresql://localhost/background_agents").expect("static URL parses");
        let origin = ConfigSource::File(path.to_owned());
        let bad = |what: &str| file_error(format!("invalid {what}"));
        url.set_host(Some(file.host.as_deref().unwrap_or("localhost"))).map_err(|_| bad("host"))?;
        url.set_port(Some(file.port.unwrap_or(5432))).map_err(|_| bad("port"))?;
        url.set_username(file.user.as_deref().unwrap_or("postgres")).map_err(|_| bad("user"))?;
        if let Some(password) = &file.password {
            url.set_password(Some(password)).map_err(|_| bad("password"))?;
        }
        url.set_path(file.database.as_deref().unwrap_or("background_agents"));
        let url = DatabaseUrl::parse(url.as_str(), origin.clone())?;
        let mut pool = PoolConfig::default();
        if let Some(max) = file.max_connections {
            pool.max_connections = max;
        }
        if let Some(min) = file.min_connections {
            pool.min_connections = min;
        }
        if let Some(seconds) = file.command_timeout {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(file_error("command_timeout must be a positive number of seconds".into()));
            }
            pool.command_timeout = Duration::from_secs_f64(seconds);
        }
        pool.validate().map_err(|e| file_error(e.to_string()))?;
        Ok(Self::postgres_with(url, origin, pool))
    }

    /// PostgreSQL at `url` with default pool settings.
    pub fn postgres(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::postgres_with(
            DatabaseUrl::parse(url, ConfigSource::Explicit)?,
            ConfigSource::Explicit,
            PoolConfig::default(),
        ))
    }

    fn postgres_with(url: DatabaseUrl, source: ConfigSource, pool: PoolConfig) -> Self {
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

    fn sqlite_at(location: SqliteLocation) -> Self {
        DatabaseConfig::Sqlite {
            location,
            pool: Self::sqlite_pool(),
            synchronous: SqliteSynchronous::default(),
            limits: PayloadLimits::default(),
        }
    }

    fn sqlite_pool() -> PoolConfig {
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
    pub fn with_pool(mut self, new_pool: PoolConfig) -> Result<Self, ConfigError> {
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
    pub fn with_payload_limits(mut self, new_limits: PayloadLimits) -> Result<Self, ConfigError> {
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
