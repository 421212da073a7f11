//! The schema migrations, embedded at build time, and how a [`Store`] applies them.
//!
//! PostgreSQL is migrated over a connection of its own, under an advisory lock so that
//! concurrent starts do not race; SQLite over a pooled connection. `Store::connect`
//! migrates before returning, so a store's schema is always current.

use diesel_async::AsyncPgConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::executor::Store;
use crate::backend::Backend;
use crate::config::{DatabaseConfig, DatabaseUrl, PoolConfig};
use crate::connect::{Purpose, connect_pg};
use crate::error::StoreError;

/// The PostgreSQL migrations, embedded at build time.
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
/// The SQLite migrations, embedded at build time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

impl Store {
    /// The migration versions [`connect`](Self::connect) applied to bring the schema up
    /// to date (empty when it already was).
    pub fn migrations_applied_at_connect(&self) -> &[String] {
        self.inner.applied_at_connect.get().map_or(&[], Vec::as_slice)
    }

    /// Applies pending migrations; returns the versions applied (empty when up to date).
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.clone();
        self.spawn(async move {
            match &inner.backend {
                Backend::Pg(_) => {
                    let DatabaseConfig::Postgres { url, pool, .. } = &inner.config else {
                        unreachable!("a PostgreSQL pool comes from a PostgreSQL config")
                    };
                    migrate_pg(url, pool).await
                }
                Backend::Sqlite(pool) => {
                    let mut conn = inner.checkout(pool).await?;
                    conn.spawn_blocking(|c| {
                        Ok(c.run_pending_migrations(SQLITE_MIGRATIONS)
                            .map(|done| done.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                            .map_err(|e| e.to_string()))
                    })
                    .await?
                    .map_err(StoreError::Migration)
                }
            }
        })
        .await
    }
}

impl Store {
    /// The SQLite migrations the database lacks, read without writing anything.
    pub(super) async fn pending_sqlite_migrations(&self) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.clone();
        self.spawn(async move {
            let Backend::Sqlite(pool) = &inner.backend else { return Ok(Vec::new()) };
            let mut conn = inner.checkout(pool).await?;
            conn.spawn_blocking(|c| Ok(super::sqlite_file::pending_migrations(c, &SQLITE_MIGRATIONS)))
                .await?
                .map_err(StoreError::Migration)
        })
        .await
    }
}

pub(super) async fn migrate_pg(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Vec<String>, StoreError> {
    let conn = connect_pg(url, pool, Purpose::Migrate).await?;
    tokio::task::spawn_blocking(move || migrate_pg_blocking(conn))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Applies the PostgreSQL migrations on a blocking thread, through diesel-async's sync
/// wrapper (no libpq), under an advisory lock so concurrent starts do not race.
fn migrate_pg_blocking(conn: AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    use diesel::RunQueryDsl;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
    // 0x5649_4749 = "VIGI": one lock id for every Vigil migration.
    diesel::sql_query("SELECT pg_advisory_lock(1447642953)").execute(&mut conn)?;
    let outcome = conn
        .run_pending_migrations(PG_MIGRATIONS)
        .map(|done| done.iter().map(|v| v.to_string()).collect())
        .map_err(|e| StoreError::Migration(e.to_string()));
    diesel::sql_query("SELECT pg_advisory_unlock(1447642953)").execute(&mut conn)?;
    outcome
}
