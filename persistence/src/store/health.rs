//! What a [`Store`] tells about itself: query and pool statistics, the health report,
//! a cheap ping and PostgreSQL's slow queries (the specification's monitoring).
//!
//! Every attempt on the database is counted as it settles (see `executor.rs`); the
//! figures here are read from those counters and from the pool, and the health report
//! adds one probe of the server (version, connections, size, every table's rows).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::executor::{Store, StoreInner};
use crate::backend::{Backend, with_conn};
use crate::error::StoreError;

/// The nine tables of the specification, in dependency order.
pub const TABLES: [&str; 9] = [
    "agents",
    "performance_metrics",
    "system_state",
    "agent_heartbeats",
    "system_events",
    "help_requests",
    "help_responses",
    "agent_communications",
    "llm_conversations",
];

/// Query statistics since the store was opened (the specification's `get_query_stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryStats {
    /// Statements attempted, retries included.
    pub total_queries: u64,
    /// Attempts that failed.
    pub query_errors: u64,
    /// Attempts that failed because the connection did.
    pub connection_errors: u64,
    /// Mean time per attempt, in seconds.
    pub average_query_time: f64,
}

/// Connection pool figures (the specification's pool monitoring).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// Connections open now.
    pub size: u32,
    /// Configured minimum.
    pub min_size: u32,
    /// Configured maximum.
    pub max_size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Open connections in use.
    pub in_use: u32,
    /// Checkouts so far.
    pub checkouts: u64,
    /// Checkouts that had to wait for a free connection.
    pub waited: u64,
    /// Checkouts that gave up waiting (pool timeout).
    pub timed_out: u64,
    /// Mean wait per checkout, in milliseconds (the specification's "connection wait
    /// time"; zero when every checkout found a free connection).
    pub average_wait_ms: f64,
    /// Connections closed because they were found broken.
    pub closed_broken: u64,
}

/// Whether the database answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// It answered.
    Healthy,
    /// It did not; see [`DatabaseHealth::error`].
    Unhealthy,
}

/// Connection counts as the server sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    /// Connections running a statement.
    pub active: i64,
    /// Connections waiting for one.
    pub idle: i64,
}

/// Rows in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, diesel::QueryableByName)]
pub struct TableRows {
    /// Table name.
    #[diesel(sql_type = diesel::sql_types::Text, column_name = table_name)]
    pub table: String,
    /// Row count.
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = row_count)]
    pub rows: i64,
}

/// The database health report (the specification's `get_database_health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseHealth {
    /// Healthy when a round trip succeeded.
    pub status: HealthStatus,
    /// `postgresql` or `sqlite`.
    pub backend: &'static str,
    /// Where the database is, password hidden.
    pub database: String,
    /// Round trip of `SELECT 1`, in milliseconds.
    pub response_time_ms: f64,
    /// Server version string.
    pub server_version: Option<String>,
    /// Connections by state.
    pub connections: Option<ConnectionCounts>,
    /// Size of the database in bytes.
    pub database_size_bytes: Option<i64>,
    /// Row count of each of the nine tables.
    pub tables: Vec<TableRows>,
    /// Pool figures.
    pub pool: PoolStats,
    /// Query statistics.
    pub queries: QueryStats,
    /// Why the database is unhealthy.
    pub error: Option<String>,
}

/// One statement of [`Store::slow_queries`].
#[derive(Debug, Clone, PartialEq, Serialize, diesel::QueryableByName)]
pub struct SlowQuery {
    /// The normalized statement text.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub query: String,
    /// Times it ran.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub calls: i64,
    /// Mean execution time, in milliseconds.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub mean_ms: f64,
    /// Total execution time, in milliseconds.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub total_ms: f64,
}

impl Store {
    /// Query statistics since the store was opened.
    pub fn query_stats(&self) -> QueryStats {
        let c = &self.inner.counters;
        let total = c.total.load(Ordering::Relaxed);
        let micros = c.total_micros.load(Ordering::Relaxed);
        QueryStats {
            total_queries: total,
            query_errors: c.errors.load(Ordering::Relaxed),
            connection_errors: c.connection_errors.load(Ordering::Relaxed),
            average_query_time: if total == 0 { 0.0 } else { micros as f64 / total as f64 / 1e6 },
        }
    }

    /// Pool figures now.
    pub fn pool_stats(&self) -> PoolStats {
        let state = match &self.inner.backend {
            Backend::Pg(pool) => pool.state(),
            Backend::Sqlite(pool) => pool.state(),
        };
        let config = self.inner.config.pool();
        // bb8 counts them itself.
        let counts = &state.statistics;
        let checkouts = counts.get_direct + counts.get_waited + counts.get_timed_out;
        PoolStats {
            size: state.connections,
            min_size: config.min_connections.min(config.max_connections),
            max_size: config.max_connections,
            idle: state.idle_connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            checkouts,
            waited: counts.get_waited,
            timed_out: counts.get_timed_out,
            average_wait_ms: if checkouts == 0 {
                0.0
            } else {
                counts.get_wait_time.as_secs_f64() * 1e3 / checkouts as f64
            },
            closed_broken: counts.connections_closed_broken,
        }
    }

    /// One `SELECT 1` round trip on a pooled connection, not retried: the cheap
    /// liveness check for monitors that look every few seconds ([`health`](Self::health)
    /// also counts every table's rows). Resolves to the round trip's duration.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        use diesel::dsl::sql;
        use diesel::sql_types::Integer;
        use diesel_async::RunQueryDsl;
        let inner = self.inner.clone();
        self.spawn(async move {
            let started = Instant::now();
            let mut result: Result<i32, StoreError> = async {
                with_conn!(inner, |conn| Ok(diesel::select(sql::<Integer>("1")).get_result(conn).await?))
            }
            .await;
            let took = started.elapsed();
            inner.settle(took, result.as_mut().err());
            result.map(|_| took)
        })
        .await
    }

    /// The statements whose mean execution time is at least `min_mean`, slowest first
    /// (at most `limit`), from PostgreSQL's `pg_stat_statements` — the specification's
    /// slow-query monitor. The extension must be installed in the database and loaded
    /// through `shared_preload_libraries`; when it is not, PostgreSQL's own error says
    /// which. [`StoreError::Unsupported`] on SQLite.
    pub async fn slow_queries(&self, min_mean: Duration, limit: i64) -> Result<Vec<SlowQuery>, StoreError> {
        if !self.is_postgres() {
            return Err(StoreError::Unsupported {
                backend: "sqlite",
                what: "slow-query statistics (pg_stat_statements)",
            });
        }
        let min_mean_ms = min_mean.as_secs_f64() * 1e3;
        self.run(move |inner| async move {
            use diesel::sql_types::{BigInt, Double};
            use diesel_async::RunQueryDsl;
            let Backend::Pg(pool) = &inner.backend else { unreachable!("checked above") };
            let mut conn = inner.checkout(pool).await?;
            Ok(diesel::sql_query(
                "SELECT query, calls, mean_exec_time AS mean_ms, total_exec_time AS total_ms \
                 FROM pg_stat_statements WHERE mean_exec_time >= $1 \
                 ORDER BY mean_exec_time DESC LIMIT $2",
            )
            .bind::<Double, _>(min_mean_ms)
            .bind::<BigInt, _>(limit)
            .load::<SlowQuery>(&mut *conn)
            .await?)
        })
        .await
    }

    /// Checks the database and gathers the health report. A database that does not
    /// answer gives an `Unhealthy` report, not an error.
    pub async fn health(&self) -> Result<DatabaseHealth, StoreError> {
        let started = Instant::now();
        let probe = self.run(|inner| async move { probe(&inner).await }).await;
        let response_time_ms = started.elapsed().as_secs_f64() * 1e3;
        let backend = if self.is_postgres() { "postgresql" } else { "sqlite" };
        let mut report = DatabaseHealth {
            status: HealthStatus::Unhealthy,
            backend,
            database: self.inner.config.describe(),
            response_time_ms,
            server_version: None,
            connections: None,
            database_size_bytes: None,
            tables: Vec::new(),
            pool: self.pool_stats(),
            queries: self.query_stats(),
            error: None,
        };
        match probe {
            Ok(details) => {
                report.status = HealthStatus::Healthy;
                report.server_version = Some(details.version);
                report.connections = details.connections;
                report.database_size_bytes = Some(details.size_bytes);
                report.tables = details.tables;
                report.queries = self.query_stats();
            }
            Err(e) => report.error = Some(e.to_string()),
        }
        Ok(report)
    }
}

struct ProbeDetails {
    version: String,
    connections: Option<ConnectionCounts>,
    size_bytes: i64,
    tables: Vec<TableRows>,
}

/// `rows` in [`TABLES`] order (SQL does not promise the order of a `UNION ALL`).
fn in_table_order(mut rows: Vec<TableRows>) -> Vec<TableRows> {
    rows.sort_by_key(|r| TABLES.iter().position(|t| *t == r.table));
    rows
}

async fn probe(inner: &StoreInner) -> Result<ProbeDetails, StoreError> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;

    // Every table's count in one statement, the same on both backends.
    let count_all = TABLES
        .iter()
        .map(|table| format!("SELECT '{table}' AS table_name, COUNT(*) AS row_count FROM {table}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    match &inner.backend {
        Backend::Pg(pool) => {
            let mut conn = inner.checkout(pool).await?;
            let version: String = diesel::select(sql::<Text>("current_setting('server_version')"))
                .get_result(&mut *conn)
                .await?;
            let size_bytes: i64 = diesel::select(sql::<BigInt>("pg_database_size(current_database())"))
                .get_result(&mut *conn)
                .await?;
            let active: i64 = diesel::select(sql::<BigInt>(
                "(SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active')",
            ))
            .get_result(&mut *conn)
            .await?;
            let idle: i64 = diesel::select(sql::<BigInt>(
                "(SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle%')",
            ))
            .get_result(&mut *conn)
            .await?;
            let tables = in_table_order(diesel::sql_query(&count_all).load::<TableRows>(&mut *conn).await?);
            Ok(ProbeDetails {
                version,
                connections: Some(ConnectionCounts { active, idle }),
                size_bytes,
                tables,
            })
        }
        Backend::Sqlite(pool) => {
            let mut conn = inner.checkout(pool).await?;
            let version: String =
                diesel::select(sql::<Text>("sqlite_version()")).get_result(&mut *conn).await?;
            let size_bytes: i64 = diesel::select(sql::<BigInt>(
                "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())",
            ))
            .get_result(&mut *conn)
            .await?;
            let tables = in_table_order(diesel::sql_query(&count_all).load::<TableRows>(&mut *conn).await?);
            let state = pool.state();
            let connections = ConnectionCounts {
                active: i64::from(state.connections.saturating_sub(state.idle_connections)),
                idle: i64::from(state.idle_connections),
            };
            Ok(ProbeDetails {
                version: format!("SQLite {version}"),
                connections: Some(connections),
                size_bytes,
                tables,
            })
        }
    }
}
