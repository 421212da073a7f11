//! Least privilege on the real server: connecting runs no DDL, so an application role
//! with DML rights only (the README's GRANTs) imports, runs the writer, cleans up and
//! reads; a read-only role reads everything and every write it tries is a clear error;
//! a schema that is behind is refused with "run `vigil migrate` as the schema owner"
//! instead of a permission error, and one that is ahead (an older binary) is refused too.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use vigil_persistence::import::Importer;
use vigil_persistence::shared_state::{Heartbeat, Writer};
use vigil_persistence::testing::{TestDb, admin_url};
use vigil_persistence::{
    DatabaseConfig, PersistenceActor, PersistenceConfig, SharedState, Store, StoreError,
};

/// The README's two roles on database `db`, with unique names; dropped on drop.
struct Roles {
    app: String,
    reader: String,
}

impl Roles {
    async fn create(db: &str) -> Roles {
        let suffix = format!("{:08x}", rand::random::<u32>());
        let roles = Roles { app: format!("vigil_app_{suffix}"), reader: format!("vigil_ro_{suffix}") };
        let (app, reader) = (&roles.app, &roles.reader);
        admin(&format!("CREATE ROLE {app} LOGIN; CREATE ROLE {reader} LOGIN;"), None).await;
        // As in the README ("Roles").
        let grants = format!(
            "GRANT CONNECT ON DATABASE {db} TO {app}, {reader};
             GRANT USAGE ON SCHEMA public TO {app}, {reader};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"
        );
        admin(&grants, Some(db)).await;
        roles
    }

    async fn drop_in(&self, db: &str) {
        let (app, reader) = (&self.app, &self.reader);
        admin(&format!("DROP OWNED BY {app}, {reader};"), Some(db)).await;
        admin(&format!("DROP ROLE {app}; DROP ROLE {reader};"), None).await;
    }
}

/// Runs `sql` as the administrator, in `db` (or the admin database).
async fn admin(sql: &str, db: Option<&str>) {
    let url = match db {
        Some(db) => admin_url().with_database(db),
        None => admin_url(),
    };
    let mut conn = AsyncPgConnection::establish(url.expose()).await.expect("admin connection");
    conn.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `db`'s configuration as `role`.
fn as_role(db: &TestDb, role: &str) -> DatabaseConfig {
    let TestDb::Postgres { url, .. } = db else { unreachable!("a PostgreSQL test database") };
    let mut url = url::Url::parse(url.expose()).unwrap();
    url.set_username(role).unwrap();
    url.set_password(None).unwrap();
    DatabaseConfig::postgres(url.as_str()).unwrap()
}

fn database_name(db: &TestDb) -> String {
    let TestDb::Postgres { name, .. } = db else { unreachable!() };
    name.clone()
}

#[actix_rt::test]
async fn an_application_role_and_a_read_only_role_work_without_ddl_rights() {
    let Some(db) = TestDb::postgres().await else { return };
    drop(db.store().await); // the owner migrates
    let name = database_name(&db);
    let roles = Roles::create(&name).await;

    // The application role: connects (nothing to migrate, so no DDL), writes through
    // the persistence actor (commit markers included), cleans up.
    let store = Store::connect(as_role(&db, &roles.app)).await.expect("the application role connects");
    assert!(store.migrations_applied_at_connect().is_empty());
    // It imports an embedded database into the empty schema (locks, copies, resets the
    // id sequences: DML and sequence rights suffice).
    let sqlite = TestDb::sqlite();
    let source = sqlite.store().await;
    SharedState::direct(source.clone()).register_agent("imported", "Imported").await.unwrap();
    let report = Importer::new(&source, &store).run().await.expect("the application role imports");
    assert!(report.total_rows >= 1 && report.tables.iter().all(|t| t.matches), "{report:?}");
    let writer = PersistenceActor::start(store.clone(), PersistenceConfig::default());
    let app = SharedState::with_writer(store, Writer::Actor(writer.clone()));
    app.register_agent("worker", "Worker").await.unwrap();
    app.update_agent_heartbeat("worker", Heartbeat::new()).await.unwrap();
    app.set_system_state("k", serde_json::json!({"v": 1})).await.unwrap();
    app.cleanup_old_data(1).await.expect("the application role cleans up");
    assert_eq!(writer.shutdown().await.failed, 0);

    // The read-only role: reads everything; every write is refused, saying why.
    let reader = Store::connect_read_only(as_role(&db, &roles.reader)).await.expect("the reader connects");
    let reader = SharedState::direct(reader);
    assert_eq!(reader.get_registered_agents().await.unwrap().len(), 2, "the imported agent and the worker");
    assert!(reader.get_system_state("k").await.unwrap().is_some());
    reader.get_database_health().await.expect("health reads");
    let refused = reader.register_agent("intruder", "Intruder").await.unwrap_err();
    assert!(refused.to_string().contains("permission denied"), "{refused}");
    let refused = reader.cleanup_old_data(1).await.unwrap_err();
    assert!(refused.to_string().contains("permission denied"), "{refused}");

    roles.drop_in(&name).await;
}

#[tokio::test]
async fn a_schema_behind_or_ahead_is_refused_with_what_to_do() {
    let Some(db) = TestDb::postgres().await else { return };
    drop(db.store().await);
    let name = database_name(&db);
    let roles = Roles::create(&name).await;

    // Behind: the last migration is not recorded. The application role may not
    // migrate: it is told to run `vigil migrate` as the owner, not "permission denied".
    let last = "(SELECT max(version) FROM __diesel_schema_migrations)";
    admin(
        &format!(
            "CREATE TABLE saved AS SELECT * FROM __diesel_schema_migrations WHERE version = {last}; \
                  DELETE FROM __diesel_schema_migrations WHERE version = {last};"
        ),
        Some(&name),
    )
    .await;
    for (role, read_only) in [(&roles.app, false), (&roles.reader, true)] {
        let config = as_role(&db, role);
        let started = std::time::Instant::now();
        let error =
            if read_only { Store::connect_read_only(config).await } else { Store::connect(config).await }
                .expect_err("a schema behind is refused");
        assert!(matches!(error, StoreError::SchemaBehind { pending: 1, .. }), "{error:?}");
        assert!(error.to_string().contains("run `vigil migrate` as the schema owner"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    }
    admin("INSERT INTO __diesel_schema_migrations SELECT * FROM saved; DROP TABLE saved;", Some(&name)).await;

    // Ahead: a migration this build does not know.
    admin("INSERT INTO __diesel_schema_migrations (version) VALUES ('99990101000000')", Some(&name)).await;
    let error = Store::connect(as_role(&db, &roles.app)).await.expect_err("a newer schema is refused");
    assert!(
        matches!(&error, StoreError::SchemaAhead { unknown, .. } if unknown == &["99990101000000"]),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade Vigil"), "{error}");
    admin("DELETE FROM __diesel_schema_migrations WHERE version = '99990101000000'", Some(&name)).await;

    roles.drop_in(&name).await;
}
