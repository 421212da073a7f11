//! The two backends as one type: [`Backend`] holds a pool of PostgreSQL or of SQLite
//! connections, and `with_conn!` writes a query once for both.
//!
//! This module sits below [`crate::store`] (which owns the pools) and [`crate::writes`]
//! (which applies batches on a connection): both need the connection types, so they
//! live here, and neither of the two has to import the other to name them.

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

/// An SQLite connection usable through diesel-async.
pub type SqliteConn = SyncConnectionWrapper<diesel::SqliteConnection>;

#[derive(Clone)]
pub(crate) enum Backend {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// Runs `$body` with `$conn` bound to a connection of the PostgreSQL `$pool`, within the
/// store's read deadline. A backend that stopped answering fails with
/// [`StoreError::DeadlineExceeded`](crate::StoreError::DeadlineExceeded), and the pool
/// must not hand its connection out again: it is marked broken.
macro_rules! with_pg_conn {
    ($inner:expr, $pool:expr, |$conn:ident| $body:expr) => {{
        let mut pooled = $inner.checkout($pool).await?;
        let deadline = $inner.read_deadline();
        let answered = {
            let $conn: &mut ::diesel_async::AsyncPgConnection = &mut *pooled;
            ::tokio::time::timeout(deadline, async { $body }).await
        };
        match answered {
            Ok(result) => result,
            Err(_) => {
                $crate::backend::mark_broken(&mut pooled);
                Err($crate::error::StoreError::DeadlineExceeded(deadline))
            }
        }
    }};
}
pub(crate) use with_pg_conn;

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend the
/// store holds. The body is compiled once per backend, so it must type-check for both.
macro_rules! with_conn {
    ($inner:expr, |$conn:ident| $body:expr) => {{
        match &$inner.backend {
            $crate::backend::Backend::Pg(pool) => $crate::backend::with_pg_conn!($inner, pool, |$conn| $body),
            $crate::backend::Backend::Sqlite(pool) => {
                let mut pooled = $inner.checkout(pool).await?;
                let $conn: &mut $crate::backend::SqliteConn = &mut *pooled;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// Marks a pooled PostgreSQL connection as broken, so that the pool drops it instead
/// of handing it out again (its transaction manager reports itself in error, which is
/// what diesel-async's pool checks on return).
pub(crate) fn mark_broken(conn: &mut AsyncPgConnection) {
    use diesel_async::TransactionManager;
    diesel_async::AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
}
