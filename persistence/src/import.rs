//! The SQLite → PostgreSQL migration of the specification's "Migration Guide": copy a
//! Vigil SQLite database into PostgreSQL, keep every id, and prove the copy.
//!
//! ```text
//!  source store (SQLite)                       target store (PostgreSQL)
//!  ──────────────────────                      ─────────────────────────────────────
//!  one read transaction (a snapshot)           one transaction on its own connection
//!   for each table, in key order:              LOCK the nine tables; refuse rows
//!     page of rows ── checksum ── batch ──▶      multi-row INSERT with explicit ids
//!                  (bounded channel)           read the rows back by key; checksum;
//!                                              advance each SERIAL sequence; COMMIT
//! ```
//!
//! | Step         | What happens                                                          |
//! |--------------|-----------------------------------------------------------------------|
//! | order        | `agents` first, then the tables that reference it; `help_requests` before `help_responses` ([`crate::store::TABLES`]) |
//! | batches      | multi-row INSERTs, at most 1,000 rows, 8 MiB of data and 65,535 bind parameters each |
//! | ids          | copied as they are, gaps included; afterwards every SERIAL sequence is set to `MAX(id)`, so the next insert gets `MAX(id) + 1` |
//! | empty target | required: a target where any of the nine tables has rows is refused with [`ImportError::TargetNotEmpty`], unless [`Importer::append`] is set |
//! | append       | the rows are added with their own ids; a key that already exists in the target (an `id`, a `system_state.key`, a `request_id`) is refused with [`ImportError::KeyCollision`] — ids are never remapped, so references between the imported rows stay exactly as they were |
//! | JSON         | copied as the text that was written: read from SQLite as text, sent as JSONB's binary input (which PostgreSQL parses itself), never through an `f64`, so `98.33333333333333` or `12345678901234567890` arrive as they left; a source document that is not JSON is refused ([`ImportError::InvalidJson`]) |
//! | verification | per table, before committing: the row count and a 64-bit FNV-1a checksum of the rows read from the source must equal those of the imported rows read back from the target ([`VERIFICATION`]) |
//!
//! **Atomicity.** The whole copy, the verification and the sequence updates run in one
//! PostgreSQL transaction, on a connection of its own. Any failure — a row PostgreSQL
//! rejects (a NUL character, a value longer than its column, a dangling reference), a
//! key collision, a checksum mismatch, a lost connection — rolls it back, and the target
//! is left as it was. (One caveat from PostgreSQL itself: `setval` is not transactional.
//! The sequences are therefore set last, after the verification, so only a failure of
//! the final `COMMIT` could leave a sequence advanced; rows never are.)
//!
//! While the import runs, the nine target tables are locked in `SHARE ROW EXCLUSIVE`
//! mode: readers go on, writers (and a second import) wait for the commit. The source is
//! read in one SQLite read transaction, so an agent writing to it meanwhile does not
//! tear the copy. `vigil import` goes one step further and imports from a
//! [`SqliteSnapshot`]: a copy taken through a read-only connection and migrated, so the
//! file it is given is never written (nor created), even when an older Vigil created
//! it; a file that is missing, not SQLite, or an SQLite database without Vigil's tables
//! is refused by name before anything is copied. Reports and errors name that file,
//! never the copy ([`Importer::from_snapshot`]). Transient errors are not retried: the
//! import is all or nothing, and running it again after a failure is safe.
//!
//! **Checksums.** Each row is written in a canonical text form — every column in
//! schema order, length-prefixed, NULL distinct from empty; text byte for byte;
//! timestamps as UTC RFC 3339 with microseconds; floats by their `f32` bits; JSON by
//! value, from the text on each side: keys sorted, strings unescaped, every number as
//! its exact decimal value (what JSONB normalises — key order, whitespace, `1e2` printed
//! as `100` — is not a difference; one changed digit is) — and the rows are hashed in
//! key order. Neither side's values pass through a lossy type first, so a change made
//! by the copy cannot cancel out. A mismatch names the first differing row.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_persistence::import::{Importer, SqliteSnapshot};
//! use vigil_persistence::{DatabaseConfig, Store};
//!
//! let source = SqliteSnapshot::take("vigil.db".as_ref()).await?;
//! let target = Store::connect(DatabaseConfig::postgres("postgresql://postgres@localhost/agents")?).await?;
//! let report = Importer::from_snapshot(&source, &target)
//!     .on_progress(|p| eprintln!("{} {}/{}", p.table, p.rows_copied, p.rows_total))
//!     .run()
//!     .await?;
//! for table in &report.tables {
//!     println!("{:<22} {:>8} rows  {}", table.table, table.rows, table.checksum_target);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | module             | what                                                      |
//! |--------------------|-----------------------------------------------------------|
//! | `import/importer`  | [`Importer`]: configure and run                           |
//! | `import/snapshot`  | [`SqliteSnapshot`]: the read-only copy of the source      |
//! | `import/tables`    | the nine row types and how each is read, inserted, read back |
//! | `import/read`      | the SQLite reader                                         |
//! | `import/write`     | the PostgreSQL writer and the verification                |
//! | `import/canonical` | the canonical text form the checksums hash                |
//! | `import/report`    | [`ImportReport`], [`ImportProgress`], [`Checksum`]        |
//! | `import/error`     | [`ImportError`]                                           |

mod canonical;
mod error;
mod importer;
mod read;
mod report;
mod snapshot;
mod tables;
mod write;

pub use error::ImportError;
pub use importer::Importer;
pub use report::{Checksum, ImportProgress, ImportReport, ImportStage, TableImport, VERIFICATION};
pub use snapshot::SqliteSnapshot;
