//! The names a configuration is read from — environment variables, the config file —
//! and the defaults used when none is given.

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
/// The environment variable that sets [`SqliteSynchronous`](crate::config::SqliteSynchronous) (`full` or `normal`).
pub const ENV_SQLITE_SYNCHRONOUS: &str = "VIGIL_SQLITE_SYNCHRONOUS";
/// The configuration file read from the working directory.
pub const CONFIG_FILE_NAME: &str = "postgres_config.json";
/// The specification's default PostgreSQL URL.
pub const DEFAULT_POSTGRES_URL: &str = "postgresql://postgres:postgres@localhost:5432/background_agents";
/// The embedded default database file.
pub const DEFAULT_SQLITE_PATH: &str = "vigil.db";
