//! The `vigil` command: argument parsing and the commands themselves.
//!
//! The binary (`src/bin/vigil.rs`) only calls [`main`]. Every command resolves the
//! database the same way (see [`vigil_persistence::config`]): `--database-url`, then
//! `POSTGRES_CONNECTION_STRING`, then `postgres_config.json`, then the default URL
//! under `USE_POSTGRESQL=true`; otherwise the embedded SQLite file `./vigil.db`.
//!
//! Exit codes: 0 success, 1 a runtime failure (one line on stderr), 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_persistence::config::ConfigInputs;
use vigil_persistence::{DatabaseConfig, SharedState, Store, StoreError};

mod commands;

/// Vigil: supervised background agents over a shared-state database.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
pub struct Cli {
    /// Database URL: postgresql://user:pass@host:port/db or sqlite:PATH
    /// (default: environment / postgres_config.json / ./vigil.db).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Apply the schema to the configured database.
    Migrate,
    /// Show the database health report.
    Health {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List registered agents with their state and heartbeat age.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// An error a command reports on one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Output could not be written or encoded.
    #[error("cannot write output: {0}")]
    Output(String),
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // exits with code 2 on bad usage
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut inputs = ConfigInputs::from_env();
    inputs.explicit_url = cli.database_url.clone();
    let config = DatabaseConfig::resolve(&inputs).map_err(StoreError::from)?;
    tracing::debug!(database = %config.describe(), "resolved database");
    match cli.command {
        Command::Migrate => commands::migrate(config).await,
        Command::Health { json } => commands::health(&connect(config).await?, json).await,
        Command::Status { json } => commands::status(&connect(config).await?, json).await,
    }
}

async fn connect(config: DatabaseConfig) -> Result<SharedState, CliError> {
    Ok(SharedState::new(Store::connect(config).await?))
}
