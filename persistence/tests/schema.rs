//! The migrations create exactly the specification's schema, and applying them twice
//! changes nothing.

use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::common::TestDb;

#[derive(QueryableByName, Debug, PartialEq)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    column_default: Option<String>,
}

#[derive(QueryableByName, Debug)]
struct Index {
    #[diesel(sql_type = Text)]
    indexname: String,
}

#[derive(QueryableByName, Debug)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// (table, column, type as information_schema spells it, default contains)
const EXPECTED: &[(&str, &str, &str, &str)] = &[
    ("agent_communications", "from_agent_id", "integer", ""),
    ("agent_communications", "id", "integer", "nextval"),
    ("agent_communications", "message_content", "text", ""),
    ("agent_communications", "message_type", "character varying(100)", ""),
    ("agent_communications", "status", "character varying(50)", "'sent'"),
    ("agent_communications", "timestamp", "timestamp with time zone", "now()"),
    ("agent_communications", "to_agent_id", "integer", ""),
    ("agent_heartbeats", "agent_id", "integer", ""),
    ("agent_heartbeats", "id", "integer", "nextval"),
    ("agent_heartbeats", "message", "text", ""),
    ("agent_heartbeats", "metadata", "jsonb", ""),
    ("agent_heartbeats", "status", "character varying(50)", ""),
    ("agent_heartbeats", "timestamp", "timestamp with time zone", "now()"),
    ("agents", "agent_id", "character varying(255)", ""),
    ("agents", "agent_name", "character varying(255)", ""),
    ("agents", "created_at", "timestamp with time zone", "now()"),
    ("agents", "id", "integer", "nextval"),
    ("agents", "last_heartbeat", "timestamp with time zone", ""),
    ("agents", "last_state_change", "timestamp with time zone", ""),
    ("agents", "metrics", "jsonb", ""),
    ("agents", "status", "character varying(50)", "'initializing'"),
    ("agents", "updated_at", "timestamp with time zone", "now()"),
    ("agents", "uptime_details", "jsonb", ""),
    // claimed_at / claimed_by: migration 2025-01-02-000001_help_request_claims.
    ("help_requests", "claimed_at", "timestamp with time zone", ""),
    ("help_requests", "claimed_by", "character varying(255)", ""),
    ("help_requests", "context", "jsonb", ""),
    ("help_requests", "created_at", "timestamp with time zone", "now()"),
    ("help_requests", "query", "text", ""),
    ("help_requests", "request_id", "character varying(255)", ""),
    ("help_requests", "status", "character varying(50)", "'pending'"),
    ("help_responses", "request_id", "character varying(255)", ""),
    ("help_responses", "response", "text", ""),
    ("help_responses", "status", "character varying(50)", "'complete'"),
    ("help_responses", "timestamp", "timestamp with time zone", "now()"),
    ("llm_conversations", "agent_id", "integer", ""),
    ("llm_conversations", "conversation_id", "character varying(255)", ""),
    ("llm_conversations", "id", "integer", "nextval"),
    ("llm_conversations", "message_content", "text", ""),
    ("llm_conversations", "metadata", "jsonb", ""),
    ("llm_conversations", "response_content", "text", ""),
    ("llm_conversations", "timestamp", "timestamp with time zone", "now()"),
    ("performance_metrics", "agent_id", "integer", ""),
    ("performance_metrics", "id", "integer", "nextval"),
    ("performance_metrics", "metadata", "jsonb", ""),
    ("performance_metrics", "metric_name", "character varying(255)", ""),
    ("performance_metrics", "metric_value", "real", ""),
    ("performance_metrics", "source_agent", "character varying(255)", ""),
    ("performance_metrics", "timestamp", "timestamp with time zone", "now()"),
    ("system_events", "event_data", "jsonb", ""),
    ("system_events", "event_type", "character varying(100)", ""),
    ("system_events", "id", "integer", "nextval"),
    ("system_events", "severity", "character varying(20)", "'info'"),
    ("system_events", "timestamp", "timestamp with time zone", "now()"),
    ("system_state", "created_at", "timestamp with time zone", "now()"),
    ("system_state", "key", "character varying(255)", ""),
    ("system_state", "updated_at", "timestamp with time zone", "now()"),
    ("system_state", "value", "jsonb", ""),
    // Migration 2025-01-02-000000_workflow_checkpoints.
    ("workflow_runs", "created_at", "timestamp with time zone", "now()"),
    ("workflow_runs", "error", "text", ""),
    ("workflow_runs", "graph", "character varying(255)", ""),
    ("workflow_runs", "next_node", "character varying(255)", ""),
    ("workflow_runs", "run_id", "character varying(255)", ""),
    ("workflow_runs", "state", "jsonb", ""),
    ("workflow_runs", "status", "character varying(50)", "'pending'"),
    ("workflow_runs", "step", "integer", "0"),
    ("workflow_runs", "updated_at", "timestamp with time zone", "now()"),
];

/// Tables added after the specification's nine, by later migrations.
const EXTENSION_TABLES: &[&str] = &[
    "agent_commands",
    "alert_deliveries",
    "vigil_agent_leases",
    "vigil_nodes",
    "vigil_ownership_log",
    "vigil_write_batches",
    "workflow_runs",
];

const EXPECTED_INDEXES: &[&str] = &[
    "idx_agents_agent_id",
    "idx_agents_status",
    "idx_agents_last_heartbeat",
    "idx_performance_metrics_agent_id",
    "idx_performance_metrics_timestamp",
    "idx_performance_metrics_metric_name",
    "idx_agent_heartbeats_agent_id",
    "idx_agent_heartbeats_timestamp",
    "idx_system_events_timestamp",
    "idx_system_events_event_type",
    "idx_system_events_severity",
];

#[tokio::test]
async fn postgres_schema_is_the_specification() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await; // migrates
    assert!(store.migrate().await.unwrap().is_empty(), "a second migration run applies nothing");
    let TestDb::Postgres { url, .. } = &db else { unreachable!() };
    let mut conn = AsyncPgConnection::establish(url.expose()).await.unwrap();

    let tables: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_\\_diesel%' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let tables: Vec<String> = tables.into_iter().map(|t| t.name).collect();
    // The specification's nine, plus Vigil's own additions (later migrations).
    let mut expected_tables: Vec<&str> = vigil_persistence::store::TABLES.to_vec();
    expected_tables.extend_from_slice(EXTENSION_TABLES);
    expected_tables.sort();
    assert_eq!(tables, expected_tables);

    let columns: Vec<Column> = diesel::sql_query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name,
                format_type(a.atttypid, a.atttypmod) AS data_type, c.column_default::text AS column_default
         FROM information_schema.columns c
         JOIN pg_attribute a ON a.attrelid = c.table_name::regclass AND a.attname = c.column_name
         WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '\\_\\_diesel%'
           AND c.table_name NOT IN ('agent_commands', 'alert_deliveries', 'vigil_write_batches', 'vigil_nodes',
                                    'vigil_agent_leases', 'vigil_ownership_log')
         ORDER BY 1, 2",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(columns.len(), EXPECTED.len(), "column count: {columns:#?}");
    for (column, (table, name, data_type, default)) in columns.iter().zip(EXPECTED) {
        assert_eq!((column.table_name.as_str(), column.column_name.as_str()), (*table, *name));
        assert_eq!(column.data_type, *data_type, "{table}.{name}");
        let actual_default = column.column_default.clone().unwrap_or_default();
        assert!(
            actual_default.contains(default),
            "{table}.{name} default `{actual_default}` lacks `{default}`"
        );
    }

    let indexes: Vec<Index> =
        diesel::sql_query("SELECT indexname::text AS indexname FROM pg_indexes WHERE schemaname = 'public'")
            .load(&mut conn)
            .await
            .unwrap();
    let names: Vec<&str> = indexes.iter().map(|i| i.indexname.as_str()).collect();
    for expected in EXPECTED_INDEXES {
        assert!(names.contains(expected), "missing index {expected} in {names:?}");
    }
    // Vigil's own, for the monitors' per-pass reads.
    for expected in ["idx_agent_heartbeats_agent_timestamp", "idx_performance_metrics_name_agent_timestamp"] {
        assert!(names.contains(&expected), "missing index {expected} in {names:?}");
    }

    let foreign_keys: Vec<Name> = diesel::sql_query(
        "SELECT conrelid::regclass::text || '->' || confrelid::regclass::text AS name
         FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let foreign_keys: Vec<String> = foreign_keys.into_iter().map(|f| f.name).collect();
    assert_eq!(
        foreign_keys,
        [
            "agent_communications->agents",
            "agent_communications->agents",
            "agent_heartbeats->agents",
            "help_responses->help_requests",
            "llm_conversations->agents",
            "performance_metrics->agents",
        ]
    );
}

#[tokio::test]
async fn sqlite_migrations_are_idempotent_and_create_nine_tables() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    assert!(store.migrate().await.unwrap().is_empty());
    let health = store.health().await.unwrap();
    let tables: Vec<&str> = health.tables.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(tables, vigil_persistence::store::TABLES);
    // Reopening an existing file applies nothing and keeps the data.
    let state = vigil_persistence::SharedState::direct(store);
    state.register_agent("a", "A").await.unwrap();
    drop(state);
    let again = db.store().await;
    assert!(again.migrate().await.unwrap().is_empty());
    assert_eq!(vigil_persistence::SharedState::direct(again).get_registered_agents().await.unwrap().len(), 1);
}
