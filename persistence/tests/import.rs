//! The SQLite -> PostgreSQL import: a hand-made SQLite database full of edge cases
//! round-trips with equal counts and checksums; JSON documents arrive exactly as
//! written (numbers digit for digit); one changed value in the target fails the
//! verification; the target's sequences follow the ids; a non-empty target, a key
//! collision and a row PostgreSQL rejects all leave the target exactly as it was; a
//! source that is missing, a directory, not SQLite or not a Vigil database is refused
//! by name, and reports name the user's file, not the snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use vigil_persistence::import::{ImportError, ImportProgress, ImportStage, Importer};
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::{Severity, SharedState, Store};

use crate::common::TestDb;

/// Bytes of the large JSON document (over 1 MB).
const BIG: usize = 1_100_000;

/// Rows of the edge-case database, per table.
fn expected_rows() -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("agents", 3),
        ("performance_metrics", 3),
        ("system_state", 4),
        ("agent_heartbeats", 3),
        ("system_events", 3),
        ("help_requests", 2),
        ("help_responses", 1),
        ("agent_communications", 3),
        ("llm_conversations", 2),
    ])
}

/// Fills a migrated SQLite store by hand: NULL in every nullable column somewhere,
/// unicode, a JSON document over 1 MB, microsecond timestamps (one with an offset),
/// gaps in the ids, keys whose byte order differs from a locale's, a help request with
/// and one without a response, and messages between agents.
async fn fill_edge_cases(store: &Store) {
    let big = format!(
        r#"{{"z_last":1,"blob":"{}","nested":{{"b":[1,2.5,1e20,-0.0,null,true],"a":"é \u00e9 🚀"}}}}"#,
        "x".repeat(BIG)
    );
    let statements = [
        format!(
            "INSERT INTO agents (id, agent_id, agent_name, status, last_heartbeat, last_state_change, \
             uptime_details, metrics, created_at, updated_at) VALUES \
             (1, 'heartbeat_health', 'HeartbeatHealthAgent', 'active', '2024-02-29 23:59:59.123456+00:00', \
              '2024-02-29 23:00:00.000001+00:00', '{{\"b\":1,\"a\":[1,2.5,null,true]}}', '{{\"cpu\":0.25}}', \
              '2024-01-01 00:00:00.000000+00:00', '2024-01-01 00:00:00.999999+00:00'), \
             (5, 'überwacher-監視-🚀', 'Überwacher 監視 🚀 مراقب', NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
             (42, 'big', 'Big JSON', 'monitoring', '2025-06-30T12:34:56.654321+02:00', NULL, '{big}', '{{}}', \
              '2025-06-30T10:00:00.500+00:00', NULL)"
        ),
        "INSERT INTO performance_metrics (id, agent_id, metric_name, metric_value, timestamp, metadata, source_agent) VALUES \
         (3, 1, 'cpu', 3.14159, '2024-03-01 00:00:00.000007+00:00', '{\"k\":\"v\"}', 'heartbeat_health'), \
         (7, 5, 'zero', 0.0, '2024-03-01 00:00:01.000000+00:00', '[]', ''), \
         (1000, NULL, 'орбита', -1.5e10, NULL, NULL, NULL)"
            .into(),
        "INSERT INTO system_state (key, value, created_at, updated_at) VALUES \
         ('config', '{\"threshold\":0.75,\"nested\":{\"b\":[1,2],\"a\":\"ü\"}}', '2024-01-02 03:04:05.060708+00:00', NULL), \
         ('Zed', '\"just a string\"', NULL, NULL), \
         ('apple', 'null', NULL, '2024-01-02 03:04:05.000001+00:00'), \
         ('ünïcode', '[1,\"two\",{\"three\":3}]', NULL, NULL)"
            .into(),
        "INSERT INTO agent_heartbeats (id, agent_id, timestamp, status, message, metadata) VALUES \
         (10, 1, '2024-02-29 23:59:59.123456+00:00', 'active', 'ok', '{\"seq\":1}'), \
         (11, NULL, NULL, NULL, NULL, NULL), \
         (20, 42, '2024-03-01 12:00:00.000001+00:00', 'monitoring', 'multi\nline ''quoted'' ✓', NULL)"
            .into(),
        "INSERT INTO system_events (id, event_type, event_data, timestamp, severity) VALUES \
         (1, 'state_transition', '{\"from\":\"active\",\"to\":\"error\"}', '2024-03-01 00:00:00.000000+00:00', 'warning'), \
         (2, 'bare', NULL, NULL, NULL), \
         (9, 'critical_health_alert', '{\"score\":0.1}', '2024-03-01 00:00:00.100000+00:00', 'critical')"
            .into(),
        "INSERT INTO help_requests (request_id, query, context, status, created_at) VALUES \
         ('req-answered', 'How do I restart?', '{\"agent\":\"big\"}', 'complete', '2024-03-02 00:00:00.000001+00:00'), \
         ('req-pending', 'Warum ü?', NULL, NULL, NULL)"
            .into(),
        "INSERT INTO help_responses (request_id, timestamp, response, status) VALUES \
         ('req-answered', '2024-03-02 00:00:01.000002+00:00', 'Send ManualFixed.', 'complete')"
            .into(),
        "INSERT INTO agent_communications (id, from_agent_id, to_agent_id, message_type, message_content, timestamp, status) VALUES \
         (1, 1, 5, 'ping', 'hello 👋', '2024-03-03 00:00:00.000003+00:00', 'sent'), \
         (2, 5, 1, 'pong', NULL, NULL, NULL), \
         (8, 42, NULL, NULL, NULL, NULL, NULL)"
            .into(),
        "INSERT INTO llm_conversations (id, agent_id, conversation_id, message_content, response_content, timestamp, metadata) VALUES \
         (4, 1, 'conv-1', 'What is wrong?', 'Nothing.', '2024-03-04 00:00:00.000004+00:00', '{\"model\":\"m\",\"tokens\":12}'), \
         (6, NULL, NULL, NULL, NULL, NULL, NULL)"
            .into(),
    ];
    for sql in statements {
        store
            .execute_raw_for_tests(&sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", &sql[..80.min(sql.len())]));
    }
}

/// An SQLite database with the edge cases, and its store.
async fn edge_case_source() -> (TestDb, Store) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    fill_edge_cases(&store).await;
    (db, store)
}

async fn counts(state: &SharedState) -> BTreeMap<String, i64> {
    state.table_counts().await.expect("table counts")
}

fn all_zero(counts: &BTreeMap<String, i64>) -> bool {
    counts.values().all(|rows| *rows == 0)
}

#[tokio::test]
async fn edge_cases_round_trip_with_equal_counts_and_checksums() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    let target = pg.store().await;

    let events = Arc::new(Mutex::new(Vec::<ImportProgress>::new()));
    let seen = events.clone();
    // Two rows per batch: every table is copied in several INSERTs and read in pages.
    let report = Importer::new(&source, &target)
        .batch_rows(2)
        .on_progress(move |p| seen.lock().unwrap().push(p.clone()))
        .run()
        .await
        .expect("import");

    let rows: BTreeMap<_, _> = report.tables.iter().map(|t| (t.table, t.rows)).collect();
    assert_eq!(rows, expected_rows());
    assert_eq!(report.tables.iter().map(|t| t.table).collect::<Vec<_>>(), vigil_persistence::store::TABLES);
    for table in &report.tables {
        assert!(table.matches, "{table:?}");
        assert_eq!(table.rows, table.rows_target, "{table:?}");
        assert_eq!(table.checksum_source, table.checksum_target, "{table:?}");
    }
    assert_eq!(report.total_rows, expected_rows().values().sum::<u64>());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tables"][0]["checksum_source"].as_str().unwrap().len(), 16);

    // Progress: counted first, every row reported, every table verified.
    let events = std::mem::take(&mut *events.lock().unwrap());
    assert_eq!(events.first().unwrap().stage, ImportStage::Started);
    assert_eq!(events.first().unwrap().all_total, report.total_rows);
    let verified: Vec<_> = events
        .iter()
        .filter(|e| e.stage == ImportStage::Verified)
        .map(|e| (e.table, e.rows_copied))
        .collect();
    assert_eq!(verified, report.tables.iter().map(|t| (t.table, t.rows)).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap().all_copied, report.total_rows);
    assert!(events.iter().filter(|e| e.stage == ImportStage::Copying).count() >= 12, "batches of two");

    // Read independently through the public API: the same records on both sides.
    let (from, to) = (SharedState::direct(source.clone()), SharedState::direct(target.clone()));
    let agents = from.get_registered_agents().await.unwrap();
    assert_eq!(agents.len(), 3);
    assert_eq!(to.get_registered_agents().await.unwrap(), agents);
    let big = agents.iter().find(|a| a.id == 42).unwrap();
    assert!(big.uptime_details.as_ref().unwrap().0["blob"].as_str().unwrap().len() == BIG);
    assert_eq!(big.last_heartbeat.unwrap().to_string(), "2025-06-30T10:34:56.654321Z");
    for key in ["config", "Zed", "apple", "ünïcode"] {
        assert_eq!(
            to.get_system_state(key).await.unwrap(),
            from.get_system_state(key).await.unwrap(),
            "{key}"
        );
    }
    assert_eq!(
        to.get_help_response("req-answered").await.unwrap(),
        from.get_help_response("req-answered").await.unwrap()
    );
    assert!(to.get_help_response("req-pending").await.unwrap().is_none());
    assert_eq!(
        to.agent_communications("heartbeat_health").await.unwrap(),
        from.agent_communications("heartbeat_health").await.unwrap()
    );

    // The sequences follow the imported ids: the next rows get MAX(id) + 1.
    let fresh = to.register_agent("after_import", "AfterImport").await.expect("register after import");
    assert_eq!(fresh.id, 43);
    to.log_system_event("after_import", None, Severity::Info).await.unwrap();
    let newest = to.recent_events(EventFilter::default()).await.unwrap();
    assert_eq!(newest.iter().map(|e| e.id).max(), Some(10));
}

#[tokio::test]
async fn many_rows_are_copied_in_batches() {
    let Some(pg) = TestDb::postgres().await else { return };
    let sqlite = TestDb::sqlite();
    let source = sqlite.store().await;
    fill_edge_cases(&source).await;
    // 20,000 more metrics, ids with gaps (even numbers from 2,000).
    source
        .execute_raw_for_tests(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             INSERT INTO performance_metrics (id, agent_id, metric_name, metric_value, timestamp, metadata) \
             SELECT 2000 + 2 * i, 1, 'm' || i, i * 0.25, '2024-01-01 00:00:00.000001+00:00', \
                    '{\"i\":' || i || '}' FROM n",
        )
        .await
        .unwrap();
    let target = pg.store().await;
    let report = Importer::new(&source, &target).run().await.expect("import");
    let metrics = report.tables.iter().find(|t| t.table == "performance_metrics").unwrap();
    assert_eq!(metrics.rows, 20_003);
    assert!(report.tables.iter().all(|t| t.matches));
    eprintln!("imported {} rows in {:?}", report.total_rows, report.elapsed);
}

#[tokio::test]
async fn a_non_empty_target_is_refused_and_left_alone() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    let target = pg.store().await;
    let state = SharedState::direct(target.clone());
    state.set_system_state("resident", serde_json::json!({"keep": true})).await.unwrap();
    let before = counts(&state).await;

    let error = Importer::new(&source, &target).run().await.expect_err("non-empty target");
    assert!(matches!(error, ImportError::TargetNotEmpty { table: "system_state", rows: 1 }), "{error:?}");
    assert!(error.to_string().contains("system_state"), "{error}");
    assert_eq!(counts(&state).await, before);
    assert_eq!(state.get_system_state("resident").await.unwrap(), Some(serde_json::json!({"keep": true})));
}

#[tokio::test]
async fn a_row_postgresql_rejects_part_way_rolls_everything_back() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    // SQLite stores a NUL character in text; PostgreSQL cannot. The last table fails,
    // after the other eight were inserted.
    source
        .execute_raw_for_tests(
            "INSERT INTO llm_conversations (id, agent_id, message_content) VALUES (99, 1, 'nul' || char(0) || 'byte')",
        )
        .await
        .unwrap();
    let target = pg.store().await;
    let state = SharedState::direct(target.clone());

    let error = Importer::new(&source, &target).run().await.expect_err("NUL byte");
    assert!(matches!(error, ImportError::Write { table: "llm_conversations", .. }), "{error:?}");
    assert!(all_zero(&counts(&state).await), "the target is unchanged");
    // Still empty, so a corrected source can be imported now; ids start over at 1.
    assert_eq!(state.register_agent("fresh", "Fresh").await.unwrap().id, 1);
}

#[tokio::test]
async fn a_source_row_with_an_unknown_state_is_refused_not_copied() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    source
        .execute_raw_for_tests(
            "INSERT INTO agents (id, agent_id, agent_name, status) VALUES (77, 'odd', 'Odd', 'Active')",
        )
        .await
        .unwrap();
    let target = pg.store().await;
    let state = SharedState::direct(target.clone());

    let error = Importer::new(&source, &target).run().await.expect_err("an unknown state");
    assert!(matches!(error, ImportError::Read { table: "agents", .. }), "{error:?}");
    assert_eq!(
        crate::common::unknown_state_in(&error).map(|e| e.input.as_str()),
        Some("Active"),
        "{error:?}"
    );
    assert!(all_zero(&counts(&state).await), "the target is unchanged");
}

#[tokio::test]
async fn append_refuses_colliding_ids_and_keeps_the_target() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    let target = pg.store().await;
    let state = SharedState::direct(target.clone());
    // Gets id 1, which the source uses too.
    state.register_agent("resident", "Resident").await.unwrap();
    state.log_system_event("resident_event", None, Severity::Info).await.unwrap();
    let before = counts(&state).await;

    let error = Importer::new(&source, &target).append(true).run().await.expect_err("id 1 collides");
    assert!(matches!(&error, ImportError::KeyCollision { table: "agents", key } if key == "1"), "{error:?}");
    assert_eq!(counts(&state).await, before);
    assert_eq!(state.get_registered_agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn append_adds_rows_next_to_existing_ones() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    let target = pg.store().await;
    target
        .execute_raw_for_tests(
            "INSERT INTO agents (id, agent_id, agent_name) VALUES (100, 'resident', 'Resident')",
        )
        .await
        .unwrap();

    let report = Importer::new(&source, &target).append(true).run().await.expect("append");
    assert!(report.append);
    assert!(report.tables.iter().all(|t| t.matches));
    let state = SharedState::direct(target.clone());
    assert_eq!(counts(&state).await["agents"], 4);
    // The sequence follows the largest id, the resident's.
    assert_eq!(state.register_agent("next", "Next").await.unwrap().id, 101);
}

#[tokio::test]
async fn source_and_target_backends_are_checked() {
    let a = Store::connect(vigil_persistence::DatabaseConfig::sqlite_memory()).await.unwrap();
    let b = Store::connect(vigil_persistence::DatabaseConfig::sqlite_memory()).await.unwrap();
    let error = Importer::new(&a, &b).run().await.expect_err("SQLite target");
    assert!(matches!(error, ImportError::NotPostgres(_)), "{error:?}");
}

/// Every kind of awkward JSON: a float that an `f64` round trip changes, integers
/// beyond `i64`, `u64` and `f64`, exponents beyond `f64`'s range, trailing zeros,
/// escapes, nesting, a duplicate key and odd whitespace.
const AWKWARD_JSON: &str = r#"{ "score": 98.33333333333333, "u64": 12345678901234567890,
  "beyond": 123456789012345678901234567890.12345678901234567890, "huge": 1e400, "tiny": -1E-400,
  "exact": 0.1, "trailing": 2.50, "zero": -0.0, "esc": "\u00e9 \ud83d\ude80 \"q\" \\ \/ \n \t",
  "nested": {"z": [1, {"b": 98.33333333333333, "a": [[], {}]}], "a": null, "ü": true}, "dup": 1, "dup": 2 }"#;

/// The text PostgreSQL returns for `sql` (one column named `t`, one row).
async fn pg_text(db: &TestDb, sql: &str) -> String {
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let TestDb::Postgres { url, .. } = db else { unreachable!("a PostgreSQL database") };
    let mut conn = AsyncPgConnection::establish(url.expose()).await.unwrap();
    let row: Text =
        diesel::sql_query(sql).get_result(&mut conn).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
    row.t
}

#[tokio::test]
async fn json_documents_arrive_exactly_as_written() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    source
        .execute_raw_for_tests(&format!(
            "INSERT INTO performance_metrics (id, agent_id, metric_name, metric_value, metadata) \
             VALUES (500, 1, 'score', 98.33333333333333, '{AWKWARD_JSON}')"
        ))
        .await
        .unwrap();
    source
        .execute_raw_for_tests(&format!(
            "INSERT INTO system_state (key, value) VALUES ('awkward', '{AWKWARD_JSON}'), ('big', '12345678901234567890')"
        ))
        .await
        .unwrap();
    let target = pg.store().await;
    let report = Importer::new(&source, &target).run().await.expect("import");
    assert!(report.tables.iter().all(|t| t.matches), "{report:?}");
    assert!(report.verification.contains("exact decimal value"), "{}", report.verification);

    // What PostgreSQL makes of the text as written is what the target holds: the same
    // JSON value, every number digit for digit (JSONB only orders the keys, drops the
    // whitespace and the first duplicate, and prints `1e400` in full).
    let expected = pg_text(&pg, &format!("SELECT '{AWKWARD_JSON}'::jsonb::text AS t")).await;
    for (sql, what) in [
        ("SELECT metadata::text AS t FROM performance_metrics WHERE id = 500", "metadata"),
        ("SELECT value::text AS t FROM system_state WHERE key = 'awkward'", "system_state"),
    ] {
        let imported = pg_text(&pg, sql).await;
        assert_eq!(imported, expected, "{what}");
        for digits in [
            "98.33333333333333",
            "12345678901234567890",
            "123456789012345678901234567890.12345678901234567890",
            "2.50",
        ] {
            assert!(imported.contains(digits), "{what}: {digits} missing from {imported}");
        }
        assert!(!imported.contains("98.33333333333331"), "{imported}");
        assert!(imported.contains(r#""esc": "é 🚀 \"q\" \\ / \n \t""#), "{imported}");
        assert!(imported.contains(r#""dup": 2"#) && !imported.contains(r#""dup": 1"#), "{imported}");
        assert!(imported.contains(&format!(r#""huge": 1{}"#, "0".repeat(400))), "{imported}");
    }
    assert_eq!(
        pg_text(&pg, "SELECT value::text AS t FROM system_state WHERE key = 'big'").await,
        "12345678901234567890"
    );
}

#[tokio::test]
async fn a_source_document_that_is_not_json_is_refused_by_row_and_column() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    source
        .execute_raw_for_tests(
            r#"INSERT INTO system_events (id, event_type, event_data) VALUES (77, 'odd', '{"secret": 1,}')"#,
        )
        .await
        .unwrap();
    let target = pg.store().await;
    let error = Importer::new(&source, &target).run().await.expect_err("not JSON");
    assert!(
        matches!(&error, ImportError::InvalidJson { table: "system_events", key, column: "event_data", .. } if key == "77"),
        "{error:?}"
    );
    assert!(!error.to_string().contains("secret"), "the content is not shown: {error}");
    assert!(all_zero(&counts(&SharedState::direct(target)).await), "the target is unchanged");
}

/// The verification compares what the target holds with what the source held: a
/// trigger in the target changes one byte of one value on its way in, and the import
/// fails for that table, at that row, and leaves the target empty.
#[tokio::test]
async fn one_changed_byte_in_the_target_fails_the_verification() {
    let Some(pg) = TestDb::postgres().await else { return };
    let (_sqlite, source) = edge_case_source().await;
    source
        .execute_raw_for_tests(&format!(
            "INSERT INTO performance_metrics (id, agent_id, metric_name, metric_value, metadata) \
             VALUES (500, 1, 'score', 1.0, '{AWKWARD_JSON}')"
        ))
        .await
        .unwrap();
    let target = pg.store().await;
    let state = SharedState::direct(target.clone());
    let cases = [
        // The last digit of one JSON number: the change an `f64` round trip makes.
        (
            "performance_metrics",
            "500",
            "IF NEW.id = 500 THEN NEW.metadata := \
             replace(NEW.metadata::text, '98.33333333333333', '98.33333333333331')::jsonb; END IF;",
        ),
        // One digit of a number beyond `f64` precision.
        (
            "performance_metrics",
            "500",
            "IF NEW.id = 500 THEN NEW.metadata := \
             replace(NEW.metadata::text, '12345678901234567890', '12345678901234567891')::jsonb; END IF;",
        ),
        // One character of a JSON string.
        (
            "system_state",
            r#""config""#,
            r#"IF NEW.key = 'config' THEN NEW.value := replace(NEW.value::text, '"ü"', '"u"')::jsonb; END IF;"#,
        ),
        // One character of a text column.
        ("agents", "5", "IF NEW.id = 5 THEN NEW.agent_name := replace(NEW.agent_name, '監', '鑑'); END IF;"),
        // One microsecond of a timestamp.
        (
            "agent_heartbeats",
            "20",
            "IF NEW.id = 20 THEN NEW.timestamp := NEW.timestamp + interval '1 microsecond'; END IF;",
        ),
    ];
    for (table, key, change) in cases {
        target
            .execute_raw_for_tests(&format!(
                "CREATE OR REPLACE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {change} RETURN NEW; END $$"
            ))
            .await
            .unwrap();
        target
            .execute_raw_for_tests(&format!(
                "CREATE TRIGGER tamper BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION tamper()"
            ))
            .await
            .unwrap();

        let error = Importer::new(&source, &target).run().await.expect_err(change);
        match &error {
            ImportError::ChecksumMismatch {
                table: t,
                rows_source,
                rows_target,
                checksum_source,
                checksum_target,
                first_difference,
            } => {
                assert_eq!((*t, rows_source), (table, rows_target), "{error}");
                assert_ne!(checksum_source, checksum_target, "{error}");
                assert_eq!(first_difference.as_deref(), Some(key), "{error}");
            }
            other => panic!("{change}: {other:?}"),
        }
        assert!(error.to_string().contains(table), "{error}");
        assert!(all_zero(&counts(&state).await), "{change}: the target is unchanged");
        target.execute_raw_for_tests(&format!("DROP TRIGGER tamper ON {table}")).await.unwrap();
    }

    // Without the trigger, the same source imports and verifies.
    let report = Importer::new(&source, &target).run().await.expect("import");
    assert!(report.tables.iter().all(|t| t.matches));
}
