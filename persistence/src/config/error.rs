//! [`DatabaseConfigError`]: a configuration that cannot be used, and the
//! [`ConfigSource`] it came from. No error ever quotes a password.

use std::fmt;
use std::path::PathBuf;

use super::env::ENV_CONNECTION_STRING;

/// A configuration that cannot be used. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseConfigError {
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
