//! [`SqliteSnapshot`]: a consistent, migrated copy of an SQLite file to import from,
//! taken without ever writing (or creating) the file itself; a file that is missing,
//! not SQLite, or without Vigil's tables is refused by name.

use diesel::Connection;
use diesel::sqlite::SqliteConnection;

use super::error::ImportError;
use crate::store::has_side_files;
use crate::store::{Store, TABLES};

/// A consistent copy of an SQLite file, migrated to this version's schema, to import
/// from. The source itself is only read, through a read-only connection: not migrated,
/// not locked for writing, so agents may go on writing to it, and a database written by
/// an older Vigil is imported without changing it. The copy (`VACUUM INTO`, one read
/// transaction) goes to the temporary directory (`TMPDIR`) and is deleted on drop.
#[derive(Debug)]
pub struct SqliteSnapshot {
    store: Store,
    /// The file the user named: what reports and errors show, never the copy's path.
    origin: std::path::PathBuf,
    // Declared after the store: its pool closes before the file is removed.
    _file: tempfile::TempPath,
}

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

impl SqliteSnapshot {
    /// Copies the Vigil SQLite database at `path` and opens the copy. Nothing is ever
    /// created or written at `path`.
    ///
    /// # Errors
    ///
    /// Each names `path`: [`ImportError::SourceMissing`], [`ImportError::SourceIsDirectory`],
    /// [`ImportError::SourceUnreadable`], [`ImportError::SourceNotSqlite`] (not an SQLite
    /// file), [`ImportError::NotVigilDatabase`] (an SQLite database without Vigil's
    /// tables), and [`ImportError::Snapshot`] if it cannot be opened read-only, copied,
    /// or the copy migrated.
    pub async fn take(path: &std::path::Path) -> Result<Self, ImportError> {
        check_source_file(path)?;
        let origin = path.to_owned();
        let snapshot_error = {
            let origin = origin.clone();
            move |reason: String| ImportError::Snapshot { path: origin.clone(), reason }
        };
        // A reader of a WAL database creates `-wal` and `-shm` files beside it, which a
        // read-only connection cannot remove when it closes. When none exist, nobody has
        // the database open, so its committed data is all in the file: a byte copy of it
        // is read instead, and nothing appears beside the user's file.
        let staged = stage_if_quiescent(path).map_err(|e| snapshot_error(e.to_string()))?;
        let (source, mode) = match &staged {
            // Ours alone: `immutable` takes no locks and creates no side files.
            Some(copy) => (copy.to_path_buf(), "mode=ro&immutable=1"),
            None => (path.to_owned(), "mode=ro"),
        };
        let absolute = std::path::absolute(&source).map_err(|e| snapshot_error(e.to_string()))?;
        // A URI, so SQLite opens the file read-only and never creates it.
        let mut uri =
            url::Url::from_file_path(&absolute).map_err(|()| snapshot_error("not a file path".into()))?;
        uri.set_query(Some(mode));
        let file = tempfile::Builder::new()
            .prefix("vigil-import-")
            .suffix(".db")
            .tempfile()
            .map_err(|e| snapshot_error(format!("temporary file: {e}")))?
            .into_temp_path();
        let into = file.to_path_buf();
        let blocking_origin = origin.clone();
        let blocking_error = snapshot_error.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
            use diesel::RunQueryDsl;
            let mut conn =
                SqliteConnection::establish(uri.as_str()).map_err(|e| blocking_error(e.to_string()))?;
            // Before anything is migrated: a database without Vigil's tables would
            // otherwise get them, empty, and "import" nothing.
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                name: String,
            }
            let names = diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
                .load::<Name>(&mut conn)
                .map_err(|e| blocking_error(e.to_string()))?;
            let missing: Vec<&'static str> =
                TABLES.into_iter().filter(|table| !names.iter().any(|n| n.name == *table)).collect();
            if !missing.is_empty() {
                return Err(ImportError::NotVigilDatabase { path: blocking_origin, missing });
            }
            diesel::sql_query("VACUUM INTO ?")
                .bind::<diesel::sql_types::Text, _>(into.to_string_lossy().into_owned())
                .execute(&mut conn)
                .map(drop)
                .map_err(|e| blocking_error(e.to_string()))
        })
        .await
        .map_err(|e| snapshot_error(e.to_string()))??;
        // Errors from here on are about the copy: name the user's file, not the copy's.
        let copy = file.to_string_lossy().into_owned();
        let store = Store::connect(crate::DatabaseConfig::sqlite(&file))
            .await
            .map_err(|e| snapshot_error(e.to_string().replace(&copy, "(its snapshot)")))?;
        Ok(Self { store, origin, _file: file })
    }

    /// The store over the copy. [`Importer::from_snapshot`](crate::import::Importer::from_snapshot) is the way to import from
    /// it: reports then name [`path`](Self::path), not the copy.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The file the snapshot was taken of.
    pub fn path(&self) -> &std::path::Path {
        &self.origin
    }

    /// The source as reports show it: `sqlite:` and the path given.
    pub fn describe(&self) -> String {
        format!("sqlite:{}", self.origin.display())
    }
}

/// A byte copy of the database at `path` in the temporary directory when nobody has it
/// open (no side files before and after the copy, and the file unchanged by it); `None`
/// when it is in use, and must be read through SQLite's locks.
fn stage_if_quiescent(path: &std::path::Path) -> std::io::Result<Option<tempfile::TempPath>> {
    let fingerprint = |path: &std::path::Path| -> std::io::Result<_> {
        let metadata = std::fs::metadata(path)?;
        Ok((metadata.len(), metadata.modified()?))
    };
    if has_side_files(path) {
        return Ok(None);
    }
    let before = fingerprint(path)?;
    let copy =
        tempfile::Builder::new().prefix("vigil-import-source-").suffix(".db").tempfile()?.into_temp_path();
    std::fs::copy(path, &copy)?;
    if has_side_files(path) || fingerprint(path)? != before {
        return Ok(None); // somebody opened it meanwhile: read it properly
    }
    Ok(Some(copy))
}

/// Refuses a source path that is missing, a directory, unreadable or not SQLite, by the
/// file system alone: nothing is opened through SQLite yet, so nothing can be created.
fn check_source_file(path: &std::path::Path) -> Result<(), ImportError> {
    use std::io::Read as _;
    let path_buf = || path.to_owned();
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ImportError::SourceMissing { path: path_buf() },
        _ => ImportError::SourceUnreadable { path: path_buf(), source },
    })?;
    if metadata.is_dir() {
        return Err(ImportError::SourceIsDirectory { path: path_buf() });
    }
    if !metadata.is_file() {
        // A FIFO or a device: reading its "header" could block, and it is no database.
        return Err(ImportError::SourceNotSqlite { path: path_buf() });
    }
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(path)
        .map_err(|source| ImportError::SourceUnreadable { path: path_buf(), source })?;
    match file.read_exact(&mut header) {
        Ok(()) if &header == SQLITE_HEADER => Ok(()),
        Ok(()) => Err(ImportError::SourceNotSqlite { path: path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ImportError::SourceNotSqlite { path: path_buf() })
        }
        Err(source) => Err(ImportError::SourceUnreadable { path: path_buf(), source }),
    }
}
