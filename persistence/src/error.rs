//! Errors of the persistence layer, and which of them are worth retrying.
//!
//! Every fallible operation returns [`StoreError`]. [`StoreError::is_transient`] is the
//! single place that decides whether an error is a passing condition of the database
//! (connection lost, pool timeout, serialization failure, deadlock, a busy SQLite
//! file) that a retry may cure, or a verdict on the request itself (constraint
//! violation, unknown agent, bad input) that no retry will change.
//!
//! No variant carries a connection string: errors are safe to log.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::config::DatabaseConfigError;
use crate::connect::ConnectError;

/// An error from the store, the SharedState API or the persistence actor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration could not be resolved.
    #[error(transparent)]
    Config(#[from] DatabaseConfigError),

    /// A connection to the database could not be established: where, why (refused,
    /// unreachable, timed out, authentication, missing database, ...) and the cause.
    #[error(transparent)]
    Connect(#[from] ConnectError),

    /// The database did not answer within a client-side deadline (a frozen backend, a
    /// silent network); the connection was dropped and is not reused.
    #[error("the database did not answer within {0:?}; the connection was dropped")]
    DeadlineExceeded(Duration),

    /// The write could not be sent: the connection died every time a transaction
    /// holding it was sent, even alone (PostgreSQL drops the connection on a message
    /// over 1 GB, for one). Its neighbours were committed without it.
    #[error("the write could not be sent to the database ({bytes} bytes): {reason}")]
    Unsendable {
        /// The write's estimated size.
        bytes: usize,
        /// The last error of the connection.
        reason: String,
    },

    /// No pooled connection became free within the pool's connection timeout. When
    /// the pool could not open connections meanwhile, the last such failure says why.
    #[error("timed out after {waited:?} waiting for a database connection{}", last_connect_error
        .as_ref()
        .map(|e| format!("; the last attempt to open one failed: {e}"))
        .unwrap_or_default())]
    PoolTimeout {
        /// How long the caller waited.
        waited: Duration,
        /// Why the pool's last attempt to open a connection failed, if it did recently.
        last_connect_error: Option<ConnectError>,
    },

    /// The database rejected or failed a statement.
    #[error("database error: {0}")]
    Query(#[source] DieselError),

    /// The server accepts no writes (PostgreSQL's `read_only_sql_transaction`): the
    /// connection reached a standby — a host list without
    /// `target_session_attrs=read-write`, or a primary that was demoted — or the role
    /// defaults to read-only transactions. Transient: a standby may be promoted, and
    /// the next connection may reach the primary; the writer drops the connection and
    /// retries, so nothing it acknowledged is lost.
    #[error(
        "the server accepts no writes ({0}): it is a standby, or the role is read-only; point Vigil at the primary, or list every host with target_session_attrs=read-write"
    )]
    ReadOnlyServer(String),

    /// A statement ran longer than the configured command timeout (PostgreSQL's
    /// `statement_timeout`, set on every connection) and the server cancelled it.
    #[error("database command timed out after {0:?} (the pool's command_timeout)")]
    CommandTimeout(Duration),

    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),

    /// The schema is older than this build's, and this store may not migrate it: it was
    /// opened only for reading, or its role is not allowed to change the schema.
    #[error(
        "the schema of {database} is behind this version of Vigil ({pending} migration(s) pending): run `vigil migrate` as the schema owner"
    )]
    SchemaBehind {
        /// The database, as [`DatabaseConfig::describe`](crate::DatabaseConfig::describe) shows it.
        database: String,
        /// How many migrations it lacks.
        pending: usize,
    },

    /// The schema has migrations this build does not know: an older Vigil against a
    /// database a newer one migrated.
    #[error(
        "the schema of {database} is newer than this version of Vigil (unknown migrations: {}): upgrade Vigil",
        unknown.join(", ")
    )]
    SchemaAhead {
        /// The database, as [`DatabaseConfig::describe`](crate::DatabaseConfig::describe) shows it.
        database: String,
        /// The versions it has that this build does not know.
        unknown: Vec<String>,
    },

    /// The agent is not registered (it has no row in `agents`).
    #[error("unknown agent `{0}`: register it first")]
    UnknownAgent(String),

    /// A help request with this id does not exist.
    #[error("no help request with id `{0}`")]
    UnknownHelpRequest(String),

    /// The request was refused before it reached the database.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument was refused.
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// The persistence queue is full; a fire-and-forget write was refused (and counted).
    #[error("persistence queue is full ({capacity} writes); write refused")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// The persistence actor has stopped; the write was not accepted.
    #[error("persistence actor has stopped; write not accepted")]
    Closed,

    /// The operation does not exist on this backend (e.g. slow-query statistics on
    /// SQLite).
    #[error("not available on {backend}: {what}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// What is not available, and why.
        what: &'static str,
    },

    /// The write was fenced ([`crate::SharedState::fenced`]) and its fence is no longer
    /// current: another node owns the agent now (it claimed it after this node's lease
    /// expired), or this node released it. The write was not applied; the rest of its
    /// batch was. Not transient: the node should stop the agent (see [`crate::nodes`]).
    #[error("{}", fenced_message(agent_id, *epoch, *current_epoch))]
    Fenced {
        /// The agent.
        agent_id: String,
        /// The epoch the write carried.
        epoch: i64,
        /// The agent's epoch now; `None` when it has no lease at all.
        current_epoch: Option<i64>,
    },

    /// A background database task failed to run to completion.
    #[error("database task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed. A command timeout counts:
    /// most are a statement waiting on a lock (an import holds the tables' write
    /// lock until its commit), which a later attempt gets; the retry policy bounds
    /// what a genuinely slow statement costs.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect(error) => error.kind.is_transient(),
            StoreError::PoolTimeout { .. }
            | StoreError::CommandTimeout(_)
            | StoreError::DeadlineExceeded(_)
            | StoreError::ReadOnlyServer(_) => true,
            StoreError::Query(error) => is_transient_diesel(error),
            _ => false,
        }
    }

    /// Whether the error says the connection (rather than a statement) failed.
    pub fn is_connection_error(&self) -> bool {
        match self {
            StoreError::Connect(_) | StoreError::PoolTimeout { .. } | StoreError::DeadlineExceeded(_) => true,
            StoreError::Query(DieselError::DatabaseError(kind, info)) => {
                matches!(kind, DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand)
                    || is_connection_message(info.message())
            }
            StoreError::Query(DieselError::BrokenTransactionManager) => true,
            _ => false,
        }
    }

    /// The server's cancellation at the statement timeout, as [`StoreError::CommandTimeout`]
    /// with the configured `timeout`; any other error as it is.
    pub(crate) fn with_command_timeout(self, timeout: Duration) -> Self {
        match &self {
            StoreError::Query(DieselError::DatabaseError(_, info))
                if info.message().contains("canceling statement due to statement timeout") =>
            {
                StoreError::CommandTimeout(timeout)
            }
            _ => self,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::InvalidInput { field, reason: reason.into() }
    }
}

fn fenced_message(agent_id: &str, epoch: i64, current_epoch: Option<i64>) -> String {
    match current_epoch {
        Some(current) if current != epoch => format!(
            "agent {agent_id} is owned by another node now (epoch {current}); this node's write at epoch {epoch} was refused"
        ),
        Some(_) => format!(
            "agent {agent_id} is no longer held by this node (released at epoch {epoch}); this node's write at epoch {epoch} was refused"
        ),
        None => format!("agent {agent_id} has no lease; this node's write at epoch {epoch} was refused"),
    }
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) => {
                StoreError::ReadOnlyServer(info.message().to_owned())
            }
            error => StoreError::Query(error),
        }
    }
}

fn is_transient_diesel(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure => true,
            // diesel has no kind for these; PostgreSQL and SQLite say it in words.
            _ => {
                let message = info.message();
                is_connection_message(message)
                    || message.contains("deadlock detected")
                    || message.contains("canceling statement due to statement timeout")
                    || message.contains("database is locked")
                    || message.contains("database table is locked")
            }
        },
        // The connection broke inside a transaction; the pool discards it.
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

fn is_connection_message(message: &str) -> bool {
    message.contains("terminating connection")
        || message.contains("connection closed")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
        || message.contains("server closed the connection")
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for StoreError {
    fn from(error: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        use diesel_async::pooled_connection::PoolError;
        match error {
            // The pool's own timeout is reported with its configured value by the caller;
            // zero here means "unknown", replaced in `Store::connection`.
            bb8::RunError::TimedOut => {
                StoreError::PoolTimeout { waited: Duration::ZERO, last_connect_error: None }
            }
            bb8::RunError::User(PoolError::ConnectionError(e)) => {
                StoreError::Connect(ConnectError::from_diesel(e, "the pool's database"))
            }
            bb8::RunError::User(PoolError::QueryError(e)) => StoreError::from(e),
        }
    }
}
