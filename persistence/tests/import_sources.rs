//! The import's source: a snapshot of the user's SQLite file, never written and never
//! left behind; sources that are missing, a directory, not SQLite or not a Vigil
//! database are refused by name; a WAL database is read with what only its WAL holds,
//! and nothing appears beside it.

use vigil_persistence::import::{ImportError, Importer, SqliteSnapshot};
use vigil_persistence::{DatabaseConfig, SharedState, Store};

use crate::common::TestDb;

/// An SQLite file as the first release of the schema left it: only the first migration.
fn old_schema_file(path: &std::path::Path) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, sqlite::SqliteConnection};
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    conn.batch_execute(include_str!("../../migrations/sqlite/2025-01-01-000000_shared_state/up.sql"))
        .unwrap();
    conn.batch_execute(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20250101000000'); \
         INSERT INTO agents (id, agent_id, agent_name, status) VALUES (7, 'old_agent', 'Old', 'active'); \
         INSERT INTO system_events (event_type, event_data, severity) \
         VALUES ('boot', '{\"v\":1}', 'info');",
    )
    .unwrap();
}

#[tokio::test]
async fn an_older_source_is_imported_from_a_snapshot_and_never_written() {
    let Some(pg) = TestDb::postgres().await else { return };
    let dir = std::env::temp_dir().join(format!("vigil-old-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    old_schema_file(&path);
    let before = std::fs::read(&path).unwrap();

    let snapshot = SqliteSnapshot::take(&path).await.expect("snapshot");
    assert_eq!(snapshot.path(), path);
    let target = pg.store().await;
    let report = Importer::from_snapshot(&snapshot, &target).run().await.expect("import");
    assert_eq!(report.total_rows, 2);
    // The report names the file given, not the temporary copy.
    assert_eq!(report.source, format!("sqlite:{}", path.display()));
    let agent = SharedState::direct(target).get_agent("old_agent").await.unwrap().expect("imported");
    assert_eq!(agent.status, Some(vigil_persistence::State::Active));

    // Byte for byte as it was: not migrated, not written. The copy is gone on drop.
    assert_eq!(std::fs::read(&path).unwrap(), before, "the source file changed");
    drop(snapshot);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("old.db")], "nothing new next to the source");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_missing_source_is_refused_by_name_and_is_not_created() {
    let path = std::env::temp_dir().join(format!("vigil-missing-{:016x}.db", rand::random::<u64>()));
    let error = SqliteSnapshot::take(&path).await.unwrap_err();
    assert!(matches!(&error, ImportError::SourceMissing { path: p } if p == &path), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert!(!path.exists(), "a read-only open must not create the file");
}

/// An SQLite file made with plain diesel, not through a Store (which would migrate it).
fn plain_sqlite(path: &std::path::Path, sql: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, sqlite::SqliteConnection};
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    conn.batch_execute(sql).unwrap();
}

#[tokio::test]
async fn sources_that_are_not_vigil_databases_are_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("vigil-bad-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let shown = |error: &ImportError, path: &std::path::Path| {
        let text = error.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains("vigil-import-"), "names the snapshot: {text}");
        text
    };

    // A directory.
    let error = SqliteSnapshot::take(&dir).await.unwrap_err();
    assert!(matches!(&error, ImportError::SourceIsDirectory { path } if path == &dir), "{error:?}");
    assert!(shown(&error, &dir).contains("directory"));

    // Not SQLite at all, and an empty file.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, "not a database at all").unwrap();
    let error = SqliteSnapshot::take(&junk).await.unwrap_err();
    assert!(matches!(&error, ImportError::SourceNotSqlite { path } if path == &junk), "{error:?}");
    assert!(shown(&error, &junk).contains("not an SQLite database"));
    let empty = dir.join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let error = SqliteSnapshot::take(&empty).await.unwrap_err();
    assert!(matches!(&error, ImportError::SourceNotSqlite { .. }), "{error:?}");

    // An SQLite database of some other program: refused, not "imported 0 rows", and
    // left exactly as it was (no Vigil tables created in it).
    let other = dir.join("other.db");
    plain_sqlite(
        &other,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'x');",
    );
    let before = std::fs::read(&other).unwrap();
    let error = SqliteSnapshot::take(&other).await.unwrap_err();
    assert!(
        matches!(&error, ImportError::NotVigilDatabase { path, missing } if path == &other && missing.len() == 9),
        "{error:?}"
    );
    assert!(shown(&error, &other).contains("not a Vigil database"));
    assert_eq!(std::fs::read(&other).unwrap(), before, "the source file changed");

    // Only some of the tables: the missing ones are named.
    plain_sqlite(&other, "CREATE TABLE agents (id INTEGER PRIMARY KEY)");
    let error = SqliteSnapshot::take(&other).await.unwrap_err();
    let ImportError::NotVigilDatabase { missing, .. } = &error else { panic!("{error:?}") };
    assert!(!missing.contains(&"agents") && missing.contains(&"system_state"), "{missing:?}");
    assert!(error.to_string().contains("system_state"), "{error}");

    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 3, "nothing created next to the sources: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Vigil database is in WAL mode. Read while nobody has it open, its snapshot leaves
/// no `-wal` or `-shm` files beside it; read while a platform has it open, the snapshot
/// holds what is committed only in the WAL so far.
#[tokio::test]
async fn a_snapshot_leaves_nothing_beside_a_wal_database_and_sees_its_wal() {
    let dir = std::env::temp_dir().join(format!("vigil-wal-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vigil.db");
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        names.sort();
        names
    };
    {
        let state = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await.unwrap());
        state.register_agent("closed", "Closed").await.unwrap();
    } // the last connection closes: SQLite checkpoints and removes its side files
    assert_eq!(listing(), vec!["vigil.db"], "a closed database has no side files");
    let snapshot = SqliteSnapshot::take(&path).await.expect("snapshot of a closed database");
    let copy = SharedState::direct(snapshot.store().clone());
    assert!(copy.get_agent("closed").await.unwrap().is_some());
    drop((copy, snapshot));
    assert_eq!(listing(), vec!["vigil.db"], "nothing created beside the source");

    // Open, with a write still in the WAL: read through SQLite, and the write is there.
    let live = SharedState::direct(Store::connect(DatabaseConfig::sqlite(&path)).await.unwrap());
    live.register_agent("in_the_wal", "Live").await.unwrap();
    assert!(listing().contains(&"vigil.db-wal".to_string()), "{:?}", listing());
    let snapshot = SqliteSnapshot::take(&path).await.expect("snapshot of an open database");
    let copy = SharedState::direct(snapshot.store().clone());
    assert!(copy.get_agent("in_the_wal").await.unwrap().is_some(), "what only the WAL holds is copied");
    drop((copy, snapshot, live));
    std::fs::remove_dir_all(&dir).unwrap();
}
