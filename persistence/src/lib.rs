//! Vigil's shared-state database: the schema, the [`Store`] over PostgreSQL or SQLite,
//! the one writer ([`PersistenceActor`]) and the [`SharedState`] API agents use.
//!
//! ## The layers
//!
//! ```text
//!  DatabaseConfig ──▶ Store ──────────────────────────────▶ PostgreSQL / SQLite
//!  (config)           (pool, retries, migrations, health)    ▲
//!                       ▲ reads                              │ one transaction per batch
//!  SharedState ─────────┤                                    │
//!  (typed API)          └─ writes ─▶ Writer ─▶ PersistenceActor (group commit)
//!                                       └────▶ Direct: Store::write_batch
//! ```
//!
//! 1. **[`config`]** decides where the database is: [`DatabaseConfig::resolve`] follows
//!    the specification's priority (an explicit URL, `POSTGRES_CONNECTION_STRING`,
//!    `postgres_config.json`, else the SQLite file `./vigil.db`).
//! 2. **[`store`]**: [`Store::connect`] opens the pool, applies the migrations and runs
//!    every database future on a runtime of its own, so it works from any executor;
//!    transient failures are retried ([`config::ConnectRetryPolicy`]).
//! 3. **[`persistence_actor`]**: the single writer. Handles queue [`Write`]s in a bounded
//!    queue; the actor drains them into few large transactions (group commit).
//! 4. **[`shared_state`]**: [`SharedState`], the specification's API with typed
//!    arguments. Reads go to the store's pool; writes go through its
//!    [`Writer`](shared_state::Writer): the actor in a running platform, or straight
//!    to the store in tools ([`SharedState::direct`]).
//!
//! ## The write path, and what "acknowledged" means
//!
//! Every change is a [`Write`] value ([`writes`]), validated at the edge against the
//! configured [`PayloadLimits`] — a write wrong in itself fails alone, before the
//! database is asked. A write method returns a
//! [`PendingWrite`](shared_state::PendingWrite): `.await` it and it is
//! **acknowledged**, which means the transaction holding it has **committed** (on
//! SQLite with `synchronous = FULL`, is on disk); [`enqueue`](shared_state::PendingWrite::enqueue)
//! it and it is only queued, its outcome showing in the [`PersistenceStats`]. Writes
//! that need an answer (claims, new ids) are [`Request`]s, answered with a [`Reply`]
//! after the commit. On PostgreSQL every transaction is marked ([`commit`]), so a lost
//! `COMMIT` answer is resolved, never guessed: no write is applied twice or lost.
//!
//! ## Where each concept lives
//!
//! | module                | what                                                    |
//! |-----------------------|---------------------------------------------------------|
//! | [`config`]            | [`DatabaseConfig`], its resolution, pool settings       |
//! | [`connect`]           | opening one PostgreSQL connection (timeouts, keepalive) |
//! | [`store`]             | [`Store`]: pool, execution, migrations, health, direct writes |
//! | [`writes`]            | [`Write`], its validation, a batch as one transaction   |
//! | [`commit`]            | marked transactions: the outcome of a lost `COMMIT`     |
//! | [`persistence_actor`] | the writer: queue, batching, retries, shutdown          |
//! | [`requests`]          | [`Request`]s with typed [`Reply`]s                      |
//! | [`shared_state`]      | [`SharedState`], one file per concern                   |
//! | [`lifecycle`]         | agent [`State`]s, transitions and their records         |
//! | [`presence`]          | which runtime node is alive                             |
//! | [`nodes`]             | many nodes on one PostgreSQL: leases, epochs, fencing   |
//! | [`help_queue`], [`agent_commands`], [`workflow_runs`] | queues built on requests      |
//! | [`alert_deliveries`]  | the record of every attempt to deliver an alert         |
//! | [`import`]            | the SQLite → PostgreSQL migration, verified             |
//! | [`limits`]            | [`PayloadLimits`]: what a write may carry               |
//! | [`schema`], [`models`], [`types`] | the tables, their rows, the column types    |
//! | [`error`]             | [`StoreError`]                                          |
//! | [`testing`]           | test databases ([`testing::TestDb`]), [`on_both_backends!`]; hooks with feature `testing` |
pub mod agent_commands;
pub mod alert_deliveries;
mod backend;
pub mod commit;
pub mod config;
pub mod connect;
pub mod duration;
pub mod error;
pub mod help_queue;
pub mod import;
pub mod lifecycle;
pub mod limits;
pub mod models;
pub mod nodes;
pub mod persistence_actor;
pub mod presence;
pub mod requests;
pub mod schema;
pub mod shared_state;
pub mod store;
pub mod testing;
pub mod types;
pub mod workflow_runs;
pub mod writes;

pub use config::DatabaseConfig;
pub use error::StoreError;
pub use lifecycle::{State, TransitionRecord};
pub use limits::PayloadLimits;
#[cfg(feature = "testing")]
pub use persistence_actor::CommitFault;
pub use persistence_actor::{
    EnqueueError, Histogram, PersistenceActor, PersistenceConfig, PersistenceHandle, PersistenceStats,
    WriterShutdownReport,
};
pub use requests::{Reply, Request};
pub use shared_state::SharedState;
pub use store::{Execution, Store};
pub use writes::{HelpStatus, Severity, Write};
