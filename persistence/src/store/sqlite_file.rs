//! Opening an SQLite file, for writing or only for reading.
//!
//! **For writing** ([`Access::ReadWrite`]: `vigil run`, `migrate`, an embedding
//! application) every connection sets WAL mode and the `synchronous` level, and the
//! schema is migrated. **For reading** ([`Access::ReadOnly`]: `vigil status`, `events`,
//! `health`, ...) the file is opened with `mode=ro`: nothing is created, migrated or
//! written, so a read-only file or folder can be inspected. A WAL database read that way
//! needs its `-shm` file, which a reader in a read-only folder cannot create; then — and
//! only when no `-wal`/`-shm` file exists, which means no process has the database open
//! (and none can write it: it could not create its WAL there either) — it is read
//! `immutable`.
//!
//! Either way a first connection is opened directly, before the pool: bb8 would retry a
//! failing open for its whole connection timeout, while a read-only file, a path that
//! cannot be opened or a file that is not a database will not get better. Those fail at
//! once, each with its own [`ConnectFailure`].

use std::path::Path;

use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::connect::{ConnectError, ConnectFailure};

/// What a store may do to its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read, write and migrate.
    ReadWrite,
    /// Only read: nothing is created, migrated or written (SQLite files; a PostgreSQL
    /// store opened for reading is opened as usual).
    ReadOnly,
}

/// The files SQLite keeps beside a database while it is open (or after a crash).
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Whether any of SQLite's side files exists beside `path`: some process has the
/// database open, or crashed with it open.
pub(crate) fn has_side_files(path: &Path) -> bool {
    SIDE_FILES.iter().any(|suffix| {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        Path::new(&side).exists()
    })
}

/// The failure an SQLite open or setup error stands for.
fn classify(message: &str) -> ConnectFailure {
    if message.contains("readonly database") {
        ConnectFailure::ReadOnly
    } else if message.contains("unable to open database file") {
        ConnectFailure::CannotOpen
    } else if message.contains("file is not a database") {
        ConnectFailure::NotADatabase
    } else {
        ConnectFailure::Other
    }
}

fn error(path: &Path, message: String) -> ConnectError {
    ConnectError { kind: classify(&message), target: format!("sqlite:{}", path.display()), detail: message }
}

/// A `file:` URI for `path` with `query` (`mode=ro`, ...).
fn uri(path: &Path, query: &str) -> Result<String, ConnectError> {
    let absolute = std::path::absolute(path).map_err(|e| error(path, e.to_string()))?;
    let mut uri = url::Url::from_file_path(&absolute)
        .map_err(|()| error(path, "not a file path SQLite can open".into()))?;
    uri.set_query(Some(query));
    Ok(uri.into())
}

/// Opens one connection to `path` the way the pool will and runs `setup` (the
/// pragmas) on it; returns what the pool should connect to. Blocking: call it on a
/// blocking thread.
pub(super) fn probe(path: &Path, access: Access, setup: &str) -> Result<String, ConnectError> {
    if path.is_dir() {
        // SQLite would only say "unable to open database file".
        let shown = path.display();
        let detail = format!(
            "sqlite:{shown} is a directory, not a database file (name a file in it, e.g. sqlite:{shown}/vigil.db)"
        );
        return Err(ConnectError {
            kind: ConnectFailure::CannotOpen,
            target: format!("sqlite:{shown}"),
            detail,
        });
    }
    let try_open = |target: &str| -> Result<(), ConnectError> {
        let mut conn = SqliteConnection::establish(target).map_err(|e| error(path, e.to_string()))?;
        diesel::connection::SimpleConnection::batch_execute(&mut conn, setup)
            .map_err(|e| error(path, e.to_string()))?;
        // Reading the schema is what fails on a WAL database without its `-shm`.
        diesel::sql_query("SELECT name FROM sqlite_master LIMIT 1")
            .execute(&mut conn)
            .map(drop)
            .map_err(|e| error(path, e.to_string()))
    };
    match access {
        Access::ReadWrite => {
            let target = path.to_string_lossy().into_owned();
            try_open(&target)?;
            Ok(target)
        }
        Access::ReadOnly => {
            let read_only = uri(path, "mode=ro")?;
            match try_open(&read_only) {
                Ok(()) => Ok(read_only),
                Err(first) if !has_side_files(path) => {
                    let immutable = uri(path, "mode=ro&immutable=1")?;
                    try_open(&immutable).map_err(|_| first)?;
                    Ok(immutable)
                }
                Err(first) => Err(first),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_open_errors_are_classified() {
        assert_eq!(classify("attempt to write a readonly database"), ConnectFailure::ReadOnly);
        assert_eq!(classify("unable to open database file"), ConnectFailure::CannotOpen);
        assert_eq!(classify("file is not a database"), ConnectFailure::NotADatabase);
        assert_eq!(classify("database is locked"), ConnectFailure::Other);
        for permanent in [ConnectFailure::ReadOnly, ConnectFailure::CannotOpen, ConnectFailure::NotADatabase]
        {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }
}
