//! Resolving a [`DatabaseConfig`] from what the process was given, in the
//! specification's priority (an explicit URL, `POSTGRES_CONNECTION_STRING`,
//! `postgres_config.json`, the default), then the pool and SQLite variables; the
//! inputs are gathered in [`ConfigInputs`] so the resolution can be tested without
//! touching the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::database::DatabaseConfig;
use super::env::*;
use super::error::{ConfigSource, DatabaseConfigError};
use super::pool::PoolConfig;
use super::sqlite::SqliteSynchronous;
use super::url::DatabaseUrl;

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

fn parse_bool(name: &'static str, value: &str) -> Result<bool, DatabaseConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => {
            Err(DatabaseConfigError::InvalidValue { name, reason: format!("`{other}` is not true or false") })
        }
    }
}

impl DatabaseConfig {
    /// Resolves the configuration from the environment and the working directory.
    pub fn from_env() -> Result<Self, DatabaseConfigError> {
        Self::resolve(&ConfigInputs::from_env())
    }

    /// Resolves the configuration from explicit inputs, in the specification's priority,
    /// then applies the pool variables to a PostgreSQL configuration, or
    /// `VIGIL_SQLITE_SYNCHRONOUS` to an SQLite one.
    pub fn resolve(inputs: &ConfigInputs) -> Result<Self, DatabaseConfigError> {
        let config = Self::resolve_source(inputs)?;
        if !config.is_postgres() {
            return match &inputs.sqlite_synchronous {
                Some(raw) => Ok(config.with_sqlite_synchronous(SqliteSynchronous::parse(raw)?)),
                None => Ok(config),
            };
        }
        let mut pool = config.pool().clone();
        let number = |name: &'static str, value: &str| {
            value.trim().parse::<u32>().map_err(|_| DatabaseConfigError::InvalidValue {
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
            let seconds = seconds.ok_or_else(|| DatabaseConfigError::InvalidValue {
                name: ENV_COMMAND_TIMEOUT,
                reason: format!("`{}` is not a positive number of seconds", timeout.trim()),
            })?;
            pool.command_timeout = Duration::from_secs_f64(seconds);
        }
        config.with_pool(pool)
    }

    fn resolve_source(inputs: &ConfigInputs) -> Result<Self, DatabaseConfigError> {
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
}
