//! The bodies of the `vigil` subcommands.

use std::io::Write as _;

use chrono::Utc;
use vigil_persistence::{DatabaseConfig, SharedState, Store};

use super::CliError;

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    writeln!(std::io::stdout(), "{text}").map_err(|e| CliError::Output(e.to_string()))
}

/// `vigil migrate`.
pub(super) async fn migrate(config: DatabaseConfig) -> Result<(), CliError> {
    let description = config.describe();
    let store = Store::connect(config).await?; // applies pending migrations
    let pending = store.migrate().await?;
    println!("schema of {description} is up to date ({} migration(s) applied now)", pending.len());
    Ok(())
}

/// `vigil health [--json]`.
pub(super) async fn health(state: &SharedState, json: bool) -> Result<(), CliError> {
    let report = state.get_database_health().await?;
    if json {
        return print_json(&report);
    }
    println!("database   {} ({})", report.database, report.backend);
    println!("status     {:?} in {:.1} ms", report.status, report.response_time_ms);
    if let Some(version) = &report.server_version {
        println!("version    {version}");
    }
    if let Some(size) = report.database_size_bytes {
        println!("size       {:.1} MiB", size as f64 / (1024.0 * 1024.0));
    }
    if let Some(connections) = &report.connections {
        println!("server     {} active, {} idle connections", connections.active, connections.idle);
    }
    let pool = &report.pool;
    println!(
        "pool       {} open ({} idle), min {}, max {}",
        pool.size, pool.idle, pool.min_size, pool.max_size
    );
    let q = &report.queries;
    println!(
        "queries    {} total, {} errors, {} connection errors, {:.3} ms average",
        q.total_queries,
        q.query_errors,
        q.connection_errors,
        q.average_query_time * 1e3
    );
    for table in &report.tables {
        println!("  {:<22} {:>10} rows", table.table, table.rows);
    }
    if let Some(error) = &report.error {
        println!("error      {error}");
    }
    Ok(())
}

/// `vigil status [--json]`.
pub(super) async fn status(state: &SharedState, json: bool) -> Result<(), CliError> {
    let agents = state.get_registered_agents().await?;
    if json {
        return print_json(&agents);
    }
    if agents.is_empty() {
        println!("no agents registered");
        return Ok(());
    }
    let now = Utc::now();
    println!("{:<32} {:<14} {:>14}", "AGENT", "STATE", "HEARTBEAT AGE");
    for agent in agents {
        let age = agent
            .last_heartbeat
            .map(|beat| format!("{:.1}s", (now - beat.get()).num_milliseconds() as f64 / 1e3))
            .unwrap_or_else(|| "never".into());
        println!("{:<32} {:<14} {:>14}", agent.agent_id, agent.status.as_deref().unwrap_or("-"), age);
    }
    Ok(())
}
