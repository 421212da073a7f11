//! Opening PostgreSQL connections: one place that sets every connection up the same way
//! and turns a failure into an error that says what happened.
//!
//! Every connection Vigil opens — the pool's, the persistence actor's own, a
//! `LISTEN` connection, the migration connection — comes from `connect_pg`, which:
//!
//! * turns on **TCP keepalive** (first probe after 10 s idle, then every 5 s, 3
//!   probes) and a **TCP user timeout** of 30 s, so that a half-open connection (the
//!   server's host vanished, a silent network) is noticed by the kernel instead of
//!   hanging a read for ever;
//! * bounds the connect itself by the pool's `connection_timeout`;
//! * names the connection (`application_name`, unless the URL sets one), so an operator
//!   sees `vigil-writer`, `vigil-pool` or `vigil-listen` in `pg_stat_activity`;
//! * sets the server's `statement_timeout` to the pool's `command_timeout`;
//! * encrypts the connection as the URL's libpq TLS parameters say (`sslmode`,
//!   `sslrootcert`, `sslcert`, `sslkey`; see [`crate::config::TlsSettings`]): rustls
//!   on the `ring` provider, the given CA or the system's roots. The default,
//!   `prefer`, encrypts whenever the server offers TLS. The TLS parameters are taken
//!   out of the URL before tokio-postgres parses it, since it knows neither
//!   `verify-ca`/`verify-full` nor the certificate files (the `tls` submodule).
//!
//! A failure is a [`ConnectError`]: which server (host, port and database — never the
//! password), what kind of failure ([`ConnectFailure`]: refused, unreachable, timed out,
//! authentication failed, database missing, server unavailable, TLS refused or its
//! certificate rejected), and the driver's whole cause chain, with a hint of what to
//! check for a TLS failure. Refused, unreachable, timed out and unavailable are worth
//! retrying; a wrong password, a missing database or a TLS failure is not, and is
//! reported at once.
//!
//! Client-side deadlines on queries (a backend that stops answering) are the callers':
//! the persistence actor bounds each transaction, readers each checkout
//! (see [`crate::store`]).

use std::error::Error as _;
use std::str::FromStr;
use std::time::Duration;

use diesel::ConnectionError;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::config::{DatabaseUrl, PoolConfig, SslMode};

mod tls;

/// Idle time before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the kernel drops the connection.
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest sent data may stay unacknowledged before the kernel drops the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// What kind of failure kept a connection from opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Nothing listens at the address (the server is down, or the port is wrong).
    Refused,
    /// The host or its network cannot be reached.
    Unreachable,
    /// The host name does not resolve (a typo, or a name this network does not know).
    NoSuchHost,
    /// The server did not answer within the connect timeout.
    TimedOut,
    /// The server refused the user or its password.
    AuthenticationFailed,
    /// The server has no database of that name.
    DatabaseMissing,
    /// The server answered but cannot take the connection now (starting up, shutting
    /// down, in recovery, or out of connection slots).
    ServerUnavailable,
    /// SQLite: the file, or the folder it is in, is read-only and the store writes.
    ReadOnly,
    /// SQLite: the file cannot be opened (a missing folder, a permission, not a file).
    CannotOpen,
    /// SQLite: the file is not an SQLite database.
    NotADatabase,
    /// The server does not offer TLS, and `sslmode` demands it (`require`,
    /// `verify-ca`, `verify-full`).
    TlsRequired,
    /// The server's certificate failed verification: not signed by a trusted CA, not
    /// issued for the host connected to, or expired.
    CertificateRejected,
    /// Another TLS failure: the handshake failed (the server refused the client's
    /// certificate, no common protocol), or the TLS files could not be used.
    TlsFailed,
    /// Anything else (a protocol error, a TLS demand the client cannot meet, ...).
    Other,
}

impl ConnectFailure {
    /// Whether trying again later may succeed without anyone changing the
    /// configuration or the server.
    pub fn is_transient(self) -> bool {
        !matches!(
            self,
            ConnectFailure::AuthenticationFailed
                | ConnectFailure::DatabaseMissing
                | ConnectFailure::NoSuchHost
                | ConnectFailure::ReadOnly
                | ConnectFailure::CannotOpen
                | ConnectFailure::NotADatabase
                | ConnectFailure::TlsRequired
                | ConnectFailure::CertificateRejected
                | ConnectFailure::TlsFailed
        )
    }

    fn describe(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused (is the server running, on this port?)",
            ConnectFailure::Unreachable => "host unreachable (check the network)",
            ConnectFailure::NoSuchHost => "no such host (check the host name)",
            ConnectFailure::TimedOut => "timed out (the server did not answer)",
            ConnectFailure::AuthenticationFailed => "authentication failed (check the user and password)",
            ConnectFailure::DatabaseMissing => "the database does not exist",
            ConnectFailure::ServerUnavailable => "the server cannot take connections now",
            ConnectFailure::ReadOnly => "the file or its folder is read-only, and this command writes",
            ConnectFailure::CannotOpen => "cannot open the file (check the path and its permissions)",
            ConnectFailure::NotADatabase => "the file is not an SQLite database",
            ConnectFailure::TlsRequired => "the server does not support TLS",
            ConnectFailure::CertificateRejected => "the server's TLS certificate was rejected",
            ConnectFailure::TlsFailed => "the TLS connection failed",
            ConnectFailure::Other => "connection failed",
        }
    }
}

/// A connection that could not be opened: where, what kind of failure, and the cause
/// chain as the driver reported it. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {target}: {}: {detail}", kind.describe())]
pub struct ConnectError {
    /// What kind of failure.
    pub kind: ConnectFailure,
    /// `host:port/database` (or the file, on SQLite).
    pub target: String,
    /// The driver's error and its causes, joined with `: `.
    pub detail: String,
}

impl ConnectError {
    /// A failure of another kind than the driver's (a directory that cannot be
    /// created, a pool that could not start).
    pub(crate) fn other(target: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: ConnectFailure::Other, target: target.into(), detail: detail.into() }
    }

    /// Wraps the error so that it survives bb8's connection manager, whose errors are
    /// diesel's: [`ConnectError::from_diesel`] gets it back intact.
    pub(crate) fn into_diesel(self) -> ConnectionError {
        ConnectionError::CouldntSetupConfiguration(DieselError::DeserializationError(Box::new(self)))
    }

    /// The [`ConnectError`] inside a diesel error, or one of kind
    /// [`ConnectFailure::Other`] made from its message.
    pub(crate) fn from_diesel(error: ConnectionError, target: &str) -> Self {
        if let ConnectionError::CouldntSetupConfiguration(DieselError::DeserializationError(inner)) = &error
            && let Some(ours) = inner.downcast_ref::<ConnectError>()
        {
            return ours.clone();
        }
        Self::other(target, error.to_string())
    }
}

impl From<diesel_async::pooled_connection::PoolError> for ConnectError {
    fn from(error: diesel_async::pooled_connection::PoolError) -> Self {
        match error {
            diesel_async::pooled_connection::PoolError::ConnectionError(e) => {
                ConnectError::from_diesel(e, "the pool's database")
            }
            diesel_async::pooled_connection::PoolError::QueryError(e) => {
                ConnectError::other("the pool's database", format!("the connection check failed: {e}"))
            }
        }
    }
}

/// What a connection is for; names it in `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A pooled connection (reads, the direct writer).
    Pool,
    /// The persistence actor's own connection.
    Writer,
    /// A `LISTEN` connection.
    Listen,
    /// The migration connection.
    Migrate,
}

impl Purpose {
    fn application_name(self) -> &'static str {
        match self {
            Purpose::Pool => "vigil-pool",
            Purpose::Writer => "vigil-writer",
            Purpose::Listen => "vigil-listen",
            Purpose::Migrate => "vigil-migrate",
        }
    }
}

/// `host:port/database` of a URL, for messages (no user, no password).
pub(crate) fn target_of(url: &DatabaseUrl) -> String {
    format!("{}/{}", url.hosts(), url.database())
}

/// Opens a PostgreSQL connection set up as the [module docs](self) say.
pub(crate) async fn connect_pg(
    url: &DatabaseUrl,
    pool: &PoolConfig,
    purpose: Purpose,
) -> Result<AsyncPgConnection, ConnectError> {
    let target = target_of(url);
    // tokio-postgres's parse errors may quote the offending value; say only that it failed.
    let mut config = tokio_postgres::Config::from_str(&url.driver_url()).map_err(|_| {
        ConnectError::other(&target, "the connection URL has a parameter the driver does not accept")
    })?;
    if config.get_application_name().is_none() {
        config.application_name(purpose.application_name());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(pool.connection_timeout);
    }
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    let settings = &url.tls();
    let connected = match settings.mode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    AsyncPgConnection::try_from_client_and_connection(client, connection).await
                }
                Err(e) => return Err(classify(&e, &target)),
            }
        }
        mode => {
            let client_config = tls::client_config(settings).map_err(|detail| ConnectError {
                kind: ConnectFailure::TlsFailed,
                target: target.clone(),
                detail,
            })?;
            config.ssl_mode(if mode.requires_tls() {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Prefer
            });
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config);
            match config.connect(connector).await {
                Ok((client, connection)) => {
                    AsyncPgConnection::try_from_client_and_connection(client, connection).await
                }
                Err(e) => {
                    let mut error = classify(&e, &target);
                    if let Some((kind, hint)) = tls::classify(&e, settings) {
                        error.kind = kind;
                        if !hint.is_empty() {
                            error.detail = format!("{}; {hint}", error.detail);
                        }
                    }
                    return Err(error);
                }
            }
        }
    };
    let mut conn = connected.map_err(|e| ConnectError::other(&target, e.to_string()))?;
    let statement_timeout = pool.command_timeout.as_millis();
    conn.batch_execute(&format!("SET statement_timeout = {statement_timeout}"))
        .await
        .map_err(|e| ConnectError::other(&target, format!("cannot set statement_timeout: {e}")))?;
    Ok(conn)
}

/// Sorts a driver error into a [`ConnectFailure`] and keeps its cause chain.
fn classify(error: &tokio_postgres::Error, target: &str) -> ConnectError {
    use tokio_postgres::error::SqlState;

    let mut detail = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        cause = inner.source();
    }
    let kind = if let Some(db) = error.as_db_error() {
        match db.code() {
            c if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                ConnectFailure::AuthenticationFailed
            }
            c if *c == SqlState::INVALID_CATALOG_NAME => ConnectFailure::DatabaseMissing,
            c if *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::ADMIN_SHUTDOWN =>
            {
                ConnectFailure::ServerUnavailable
            }
            _ => ConnectFailure::Other,
        }
    } else if let Some(io) = io_cause(error) {
        classify_io(io)
    } else if detail.starts_with("timeout") {
        // tokio-postgres's own connect timeout.
        ConnectFailure::TimedOut
    } else if detail.contains("password") || detail.contains("authentication") {
        ConnectFailure::AuthenticationFailed
    } else {
        ConnectFailure::Other
    };
    ConnectError { kind, target: target.to_owned(), detail }
}

/// The failure an I/O error of the connect stands for.
fn classify_io(io: &std::io::Error) -> ConnectFailure {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        ErrorKind::TimedOut => ConnectFailure::TimedOut,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable | ErrorKind::AddrNotAvailable => {
            ConnectFailure::Unreachable
        }
        // A name that does not resolve comes back as an uncategorised I/O error.
        _ if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
            ConnectFailure::NoSuchHost
        }
        _ => ConnectFailure::Other,
    }
}

fn io_cause(error: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut cause = error.source();
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let cases = [
            (Error::from(ErrorKind::ConnectionRefused), ConnectFailure::Refused),
            (Error::from(ErrorKind::TimedOut), ConnectFailure::TimedOut),
            (Error::from(ErrorKind::HostUnreachable), ConnectFailure::Unreachable),
            (Error::from(ErrorKind::NetworkUnreachable), ConnectFailure::Unreachable),
            (
                Error::other("failed to lookup address information: Name does not resolve"),
                ConnectFailure::NoSuchHost,
            ),
            (Error::from(ErrorKind::PermissionDenied), ConnectFailure::Other),
        ];
        for (error, expected) in cases {
            assert_eq!(classify_io(&error), expected, "{error}");
        }
        assert!(ConnectFailure::Refused.is_transient() && ConnectFailure::TimedOut.is_transient());
        assert!(
            !ConnectFailure::AuthenticationFailed.is_transient()
                && !ConnectFailure::DatabaseMissing.is_transient()
                && !ConnectFailure::NoSuchHost.is_transient()
        );
    }

    #[test]
    fn the_target_names_the_server_and_never_the_password() {
        use crate::config::ConfigSource;
        let url =
            DatabaseUrl::parse("postgres://vigil:hunter2@db.example:6543/agents", ConfigSource::Environment)
                .expect("valid");
        assert_eq!(target_of(&url), "db.example:6543/agents");
        let error =
            ConnectError { kind: ConnectFailure::Refused, target: target_of(&url), detail: "x".into() };
        assert!(!error.to_string().contains("hunter2"));
    }
}
