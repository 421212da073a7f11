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
//! Every configuration also carries the [`PayloadLimits`](crate::PayloadLimits) its writes are checked
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
//!   "command_timeout": 30,
//!   "sslmode": "verify-full", "sslrootcert": "/etc/vigil/ca.pem" }
//! ```
//!
//! PostgreSQL connections use TLS as libpq's `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` say — URL query parameters, or keys of the same names in
//! `postgres_config.json` (see [`TlsSettings`]); the default, `prefer`, encrypts
//! whenever the server offers TLS.
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
//!
//! ## Where things are
//!
//! | module            | what                                                        |
//! |-------------------|-------------------------------------------------------------|
//! | `config/database` | [`DatabaseConfig`]: constructors, accessors, `with_*`       |
//! | `config/resolve`  | [`DatabaseConfig::resolve`], [`ConfigInputs`]                |
//! | `config/env`      | the `ENV_*` names, [`CONFIG_FILE_NAME`], the defaults       |
//! | `config/file`     | [`DatabaseConfig::from_file`]: `postgres_config.json`       |
//! | `config/url`      | [`DatabaseUrl`]                                             |
//! | `config/pool`     | [`PoolConfig`], [`ConnectRetryPolicy`]                      |
//! | `config/sqlite`   | [`SqliteLocation`], [`SqliteSynchronous`]                   |
//! | `config/tls`      | [`TlsSettings`], [`SslMode`]: `sslmode` and the certificates |
//! | `config/error`    | [`DatabaseConfigError`], [`ConfigSource`]                   |

mod database;
mod env;
mod error;
mod file;
mod pool;
mod resolve;
mod sqlite;
mod tls;
mod url;

pub use database::DatabaseConfig;
pub use env::{
    CONFIG_FILE_NAME, DEFAULT_POSTGRES_URL, DEFAULT_SQLITE_PATH, ENV_COMMAND_TIMEOUT, ENV_CONNECTION_STRING,
    ENV_MAX_CONNECTIONS, ENV_MIN_CONNECTIONS, ENV_SQLITE_SYNCHRONOUS, ENV_USE_POSTGRESQL,
};
pub use error::{ConfigSource, DatabaseConfigError};
pub use pool::{ConnectRetryPolicy, PoolConfig};
pub use resolve::ConfigInputs;
pub use sqlite::{SqliteLocation, SqliteSynchronous};
pub use tls::{SslMode, TlsSettings};
pub use url::DatabaseUrl;
