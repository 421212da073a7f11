//! The `vigil` command: argument parsing and the commands themselves.
//!
//! The binary (`src/bin/vigil.rs`) only calls [`main`]. Every command resolves the
//! database the same way (see [`vigil_persistence::config`]): `--database-url`, then
//! `POSTGRES_CONNECTION_STRING`, then `postgres_config.json`, then the default URL
//! under `USE_POSTGRESQL=true`; otherwise the embedded SQLite file `./vigil.db`.
//!
//! `vigil import --from sqlite:PATH --to postgresql://...` is the exception: it names
//! both databases itself and ignores that resolution (see
//! [`vigil_persistence::import`]).
//!
//! Exit codes: 0 success, 1 a runtime failure (one line on stderr), 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_persistence::config::ConfigInputs;
use vigil_persistence::import::ImportError;
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
    /// Copy a Vigil SQLite database into PostgreSQL, keeping ids, in one transaction,
    /// and verify every table (row counts and checksums). The target must be empty
    /// unless --append is given; on any failure it is left as it was.
    Import {
        /// The SQLite database to read: sqlite:PATH (an existing file; never created;
        /// pending Vigil migrations are applied to it before reading).
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The PostgreSQL database to fill: postgresql://user:pass@host:port/db
        /// (its schema is created if missing).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Add to a target that already has rows; ids are kept, and a key present on
        /// both sides fails the import.
        #[arg(long)]
        append: bool,
        /// Print the report as JSON instead of a table.
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
    /// The import failed; the target is unchanged.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// An input named on the command line cannot be used (a missing file, ...).
    #[error("{0}")]
    Input(String),
    /// The arguments are wrong in a way clap cannot see (exit code 2).
    #[error("{0}")]
    Usage(String),
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
            match e {
                CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let explicit_url = cli.database_url;
    match cli.command {
        Command::Migrate => commands::migrate(resolve(explicit_url)?).await,
        Command::Health { json } => commands::health(&connect(resolve(explicit_url)?).await?, json).await,
        Command::Status { json } => commands::status(&connect(resolve(explicit_url)?).await?, json).await,
        // Names both of its databases; the usual resolution does not apply.
        Command::Import { from, to, append, json } => commands::import(&from, &to, append, json).await,
    }
}

/// The configured database: `--database-url`, the environment, then the defaults.
fn resolve(explicit_url: Option<String>) -> Result<DatabaseConfig, CliError> {
    let mut inputs = ConfigInputs::from_env();
    inputs.explicit_url = explicit_url;
    let config = DatabaseConfig::resolve(&inputs).map_err(StoreError::from)?;
    tracing::debug!(database = %config.describe(), "resolved database");
    Ok(config)
}

async fn connect(config: DatabaseConfig) -> Result<SharedState, CliError> {
    Ok(SharedState::new(Store::connect(config).await?))
}
