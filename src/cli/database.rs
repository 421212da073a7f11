//! The commands about the database itself: `migrate`, `health`, `slow-queries` and
//! `import` (and the JSON printing every command shares).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use vigil_persistence::config::DatabaseConfigError;
use vigil_persistence::import::{ImportProgress, ImportStage, Importer, SqliteSnapshot};
use vigil_persistence::{DatabaseConfig, SharedState, Store, StoreError};

use super::CliError;
use super::out;

pub(super) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    out!("{text}")
}

/// `vigil migrate`.
pub(super) async fn migrate(config: DatabaseConfig) -> Result<(), CliError> {
    let description = config.describe();
    let store = Store::connect(config).await?; // applies pending migrations
    // `connect` already applied what was pending; `migrate` catches a race with another
    // process migrating the same database in between.
    let mut applied = store.migrations_applied_at_connect().to_vec();
    applied.extend(store.migrate().await?);
    if applied.is_empty() {
        out!("schema of {description} is up to date (no migration was pending)")?;
    } else {
        out!(
            "schema of {description} is up to date: applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        )?;
    }
    Ok(())
}

/// `vigil health [--json]`.
pub(super) async fn health(state: &SharedState, json: bool) -> Result<(), CliError> {
    let health = crate::report::HealthReport::read(state).await?;
    if json {
        return print_json(&health.to_json());
    }
    // `report.pool` and `report.queries` are this command's; `platform`, the platform's.
    let crate::report::HealthReport { database: report, persistence, platform, liveness } = health;
    let running = liveness.platform_running();
    if running {
        let nodes: Vec<String> = liveness
            .running()
            .map(|p| {
                format!(
                    "pid {} on {} (node {})",
                    p.presence.process.pid, p.presence.process.host, p.presence.node
                )
            })
            .collect();
        out!("running    {}", nodes.join(", "))?;
    } else {
        out!("running    {}", liveness.no_platform_message("this database"))?;
        if platform.is_some() || persistence.is_some() {
            out!(
                "           (the platform and writer figures below are the last it published, not the present)"
            )?;
        }
    }
    if let Some(stats) = &platform {
        let (pool, queries) = (&stats["pool"], &stats["queries"]);
        out!(
            "platform   pool {} open ({} idle) of {}, {} checkouts, {:.3} ms mean wait | {} queries, {} errors, {:.3} ms average | as of {}",
            pool["size"],
            pool["idle"],
            pool["max_size"],
            pool["checkouts"],
            pool["average_wait_ms"].as_f64().unwrap_or(0.0),
            queries["total_queries"],
            queries["query_errors"],
            queries["average_query_time"].as_f64().unwrap_or(0.0) * 1e3,
            stats["at"].as_str().unwrap_or("?"),
        )?;
    }
    if let Some(stats) = &persistence {
        out!(
            "writer     queue {} | {} batches, mean {:.1} writes | flush p50 {:.1} ms, p99 {:.1} ms | retries {}, rejected {}, refused {}",
            stats["queue_depth"],
            stats["batches_committed"],
            stats["mean_batch_size"].as_f64().unwrap_or(0.0),
            stats["flush_latency_p50_ms"].as_f64().unwrap_or(0.0),
            stats["flush_latency_p99_ms"].as_f64().unwrap_or(0.0),
            stats["retries"],
            stats["rejected_writes"],
            stats["refused_writes"],
        )?;
    }
    out!("database   {} ({})", report.database, report.backend)?;
    out!("status     {:?} in {:.1} ms", report.status, report.response_time_ms)?;
    if let Some(version) = &report.server_version {
        out!("version    {version}")?;
    }
    if let Some(size) = report.database_size_bytes {
        out!("size       {:.1} MiB", size as f64 / (1024.0 * 1024.0))?;
    }
    if let Some(connections) = &report.connections {
        out!("server     {} active, {} idle connections", connections.active, connections.idle)?;
    }
    let pool = &report.pool;
    out!(
        "this pool  {} open ({} idle), min {}, max {}; {} checkouts, {} waited ({:.3} ms mean wait), {} timed out",
        pool.size,
        pool.idle,
        pool.min_size,
        pool.max_size,
        pool.checkouts,
        pool.waited,
        pool.average_wait_ms,
        pool.timed_out
    )?;
    let q = &report.queries;
    out!(
        "its queries {} total, {} errors, {} connection errors, {:.3} ms average",
        q.total_queries,
        q.query_errors,
        q.connection_errors,
        q.average_query_time * 1e3
    )?;
    for table in &report.tables {
        out!("  {:<22} {:>10} rows", table.table, table.rows)?;
    }
    if let Some(error) = &report.error {
        out!("error      {error}")?;
    }
    Ok(())
}

/// `vigil slow-queries`: pg_stat_statements above a mean time, slowest first.
pub(super) async fn slow_queries(
    state: &SharedState,
    min_ms: f64,
    limit: i64,
    json: bool,
) -> Result<(), CliError> {
    if !(min_ms.is_finite() && min_ms >= 0.0) || limit < 1 {
        return Err(CliError::Usage("--min-ms must be a number ≥ 0 and --limit at least 1".into()));
    }
    let min_mean = std::time::Duration::from_secs_f64(min_ms / 1e3);
    let queries = state.store().slow_queries(min_mean, limit).await.map_err(|e| match e {
        // PostgreSQL says what is missing; say how to fix it.
        StoreError::Query(error) if error.to_string().contains("pg_stat_statements") => {
            CliError::Input(format!(
                "{error} (slow-query statistics need `shared_preload_libraries = 'pg_stat_statements'` in \
             postgresql.conf, a restart, and `CREATE EXTENSION pg_stat_statements` in this database)"
            ))
        }
        other => other.into(),
    })?;
    if json {
        return print_json(&queries);
    }
    if queries.is_empty() {
        out!("no statement with a mean time of {min_ms} ms or more")?;
    }
    for q in &queries {
        let text: String = q.query.split_whitespace().collect::<Vec<_>>().join(" ");
        out!("{:>10.1} ms mean {:>8} calls  {}", q.mean_ms, q.calls, text)?;
    }
    Ok(())
}

/// `vigil import --from sqlite:PATH --to postgresql://... [--append] [--json]`.
pub(super) async fn import(from: &str, to: &str, append: bool, json: bool) -> Result<(), CliError> {
    let path = sqlite_source(from)?;
    let target = postgres_target(to)?;

    // From a snapshot: the file named is only read, never created, migrated or written;
    // a missing file, a directory, or a file that is not a Vigil database is refused.
    let source = SqliteSnapshot::take(&path).await?;
    let target = Store::connect(target).await?;
    // Reports name the file given, not the snapshot.
    let mut importer = Importer::from_snapshot(&source, &target).append(append);
    if std::io::stderr().is_terminal() {
        importer = importer.on_progress(show_progress);
    }
    let report = importer.run().await?;
    if json {
        return print_json(&report);
    }
    out!(
        "imported {} rows from {} into {} in {:.2} s{}",
        report.total_rows,
        report.source,
        report.target,
        report.elapsed.as_secs_f64(),
        if report.append { " (appended)" } else { "" }
    )?;
    out!(
        "{:<22} {:>10} {:>10}  {:<16}  {:<16}  OK",
        "TABLE",
        "SOURCE",
        "TARGET",
        "SOURCE FNV-1a",
        "TARGET FNV-1a"
    )?;
    for t in &report.tables {
        out!(
            "{:<22} {:>10} {:>10}  {}  {}  {}",
            t.table,
            t.rows,
            t.rows_target,
            t.checksum_source,
            t.checksum_target,
            if t.matches { "yes" } else { "NO" }
        )?;
    }
    out!("verified: {}", report.verification)?;
    Ok(())
}

/// The path of `--from`: `sqlite:PATH`, `sqlite://PATH` or a bare path.
pub(super) fn sqlite_source(from: &str) -> Result<PathBuf, CliError> {
    let path = from.strip_prefix("sqlite://").or_else(|| from.strip_prefix("sqlite:")).unwrap_or(from);
    if path.trim().is_empty() {
        return Err(CliError::Usage("--from: the URL is empty: name an SQLite file, sqlite:PATH".into()));
    }
    if path.contains("://") || path == ":memory:" {
        return Err(CliError::Usage("--from must name an SQLite file: sqlite:PATH".into()));
    }
    Ok(PathBuf::from(path))
}

/// The configuration of `--to`, which must be a PostgreSQL URL. The URL itself is never
/// echoed: it may hold a password.
pub(super) fn postgres_target(to: &str) -> Result<DatabaseConfig, CliError> {
    if to.trim().is_empty() {
        return Err(CliError::Usage(
            "--to: the URL is empty: name a PostgreSQL database, postgresql://...".into(),
        ));
    }
    if to.starts_with("sqlite:") {
        return Err(CliError::Usage("--to must be a PostgreSQL URL (postgresql://...)".into()));
    }
    DatabaseConfig::postgres(to).map_err(|e| match e {
        DatabaseConfigError::InvalidUrl { reason, .. } => {
            CliError::Usage(format!("invalid database URL from --to: {reason}"))
        }
        other => CliError::Usage(format!("--to: {other}")),
    })
}

/// One progress line on stderr, rewritten in place; a table's line ends when it is verified.
fn show_progress(p: &ImportProgress) {
    let mut err = std::io::stderr().lock();
    let _ = match p.stage {
        ImportStage::Started => writeln!(err, "copying {} rows", p.all_total),
        ImportStage::Verified => {
            writeln!(err, "\r{:<22} {:>10}/{:<10} verified", p.table, p.rows_copied, p.rows_total)
        }
        _ => write!(err, "\r{:<22} {:>10}/{:<10}", p.table, p.rows_copied, p.rows_total),
    };
}
