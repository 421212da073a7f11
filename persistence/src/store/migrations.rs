//! The schema migrations, embedded at build time, and how a [`Store`] applies them.
//!
//! PostgreSQL is migrated over a connection of its own, under an advisory lock so that
//! concurrent starts do not race; SQLite over a pooled connection.
//!
//! **Connecting runs no DDL when the schema is current.** Every store first reads which
//! migrations the database has applied ([`SchemaStatus`]) — a plain `SELECT`, which a
//! DML-only or read-only role may run — and then:
//!
//! - the schema is *ahead* (it has migrations this build does not know: an older
//!   binary against a newer schema) — [`StoreError::SchemaAhead`], always;
//! - the schema is *behind* — a store opened for reading refuses with
//!   [`StoreError::SchemaBehind`] ("run `vigil migrate` as the schema owner"); one opened
//!   for writing migrates it (the zero-setup path: the embedded default, or a role that
//!   owns the schema), and when the role may not, refuses with the same error instead
//!   of a permission error;
//! - current — nothing more.
//!
//! [`Store::migrate`] (`vigil migrate`) applies what is pending, as the schema's owner.

use diesel_async::AsyncPgConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::executor::Store;
use super::sqlite_file::Access;
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

/// Where a database's schema stands against this build's migrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations of this build the database has not applied.
    pub pending: Vec<String>,
    /// Migrations the database has applied that this build does not know.
    pub unknown: Vec<String>,
}

impl SchemaStatus {
    fn from_applied<DB: diesel::backend::Backend>(
        applied: Vec<String>,
        known: &EmbeddedMigrations,
    ) -> Result<Self, StoreError> {
        use diesel::migration::MigrationSource;
        let known: Vec<String> = MigrationSource::<DB>::migrations(known)
            .map_err(|e| StoreError::Migration(e.to_string()))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
        Ok(Self {
            pending: known.iter().filter(|v| !applied.contains(v)).cloned().collect(),
            unknown: applied.into_iter().filter(|v| !known.contains(v)).collect(),
        })
    }

    /// Refuses a schema that is ahead, and one that is behind when only reading.
    pub(super) fn check(&self, database: &str, access: Access) -> Result<(), StoreError> {
        if !self.unknown.is_empty() {
            return Err(StoreError::SchemaAhead {
                database: database.to_owned(),
                unknown: self.unknown.clone(),
            });
        }
        if access == Access::ReadOnly && !self.pending.is_empty() {
            return Err(StoreError::SchemaBehind {
                database: database.to_owned(),
                pending: self.pending.len(),
            });
        }
        Ok(())
    }
}

/// The versions recorded in `__diesel_schema_migrations` (none when it does not exist).
#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

const APPLIED_VERSIONS: &str = "SELECT version FROM __diesel_schema_migrations";

/// Whether a query failed only because the migrations table does not exist yet.
fn no_migrations_table(error: &diesel::result::Error) -> bool {
    let text = error.to_string();
    text.contains("no such table") || text.contains("does not exist")
}

impl Store {
    /// Where the schema stands against this build's migrations; reads only.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let inner = self.inner.clone();
        let applied: Vec<String> = self
            .spawn(async move {
                match &inner.backend {
                    Backend::Pg(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        applied_pg(&mut conn).await
                    }
                    Backend::Sqlite(pool) => {
                        let mut conn = inner.checkout(pool).await?;
                        conn.spawn_blocking(|c| {
                            use diesel::RunQueryDsl;
                            Ok(match diesel::sql_query(APPLIED_VERSIONS).load::<AppliedVersion>(c) {
                                Ok(rows) => Ok(rows.into_iter().map(|r| r.version).collect()),
                                Err(e) if no_migrations_table(&e) => Ok(Vec::new()),
                                Err(e) => Err(StoreError::from(e)),
                            })
                        })
                        .await?
                    }
                }
            })
            .await?;
        if self.is_postgres() {
            SchemaStatus::from_applied::<diesel::pg::Pg>(applied, &PG_MIGRATIONS)
        } else {
            SchemaStatus::from_applied::<diesel::sqlite::Sqlite>(applied, &SQLITE_MIGRATIONS)
        }
    }
}

async fn applied_pg(conn: &mut AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    use diesel_async::RunQueryDsl;
    match diesel::sql_query(APPLIED_VERSIONS).load::<AppliedVersion>(conn).await {
        Ok(rows) => Ok(rows.into_iter().map(|r| r.version).collect()),
        Err(e) if no_migrations_table(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// At connect, on PostgreSQL: reads the schema's status over a direct connection and
/// acts on it (see the [module documentation](self)); returns the migrations applied.
pub(super) async fn prepare_pg(
    url: &DatabaseUrl,
    pool: &PoolConfig,
    access: Access,
    database: &str,
) -> Result<Vec<String>, StoreError> {
    let mut conn = connect_pg(url, pool, Purpose::Migrate).await?;
    let status = SchemaStatus::from_applied::<diesel::pg::Pg>(applied_pg(&mut conn).await?, &PG_MIGRATIONS)?;
    status.check(database, access)?;
    if status.pending.is_empty() {
        return Ok(Vec::new());
    }
    let behind = status.pending.len();
    tokio::task::spawn_blocking(move || migrate_pg_blocking(conn))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(|e| match e {
            // A role that may write but not own the schema: say what to do instead.
            e if e.to_string().contains("permission denied") || e.to_string().contains("must be owner") => {
                StoreError::SchemaBehind { database: database.to_owned(), pending: behind }
            }
            e => e,
        })
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
