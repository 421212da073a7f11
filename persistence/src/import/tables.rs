//! The nine tables as the importer sees them: one row type per table (every column,
//! id included), the [`Table`] trait (read a page from SQLite, insert a batch into
//! PostgreSQL, read it back, find existing keys), and `for_each_table!`, which runs a
//! body for each of them in dependency order ([`TABLES`](crate::store::TABLES)).

use diesel::sqlite::SqliteConnection;
use diesel::{ExpressionMethods, Insertable, QueryDsl, QueryResult, Queryable, Selectable, SelectableHelper};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::canonical::{Canonical, JsonFault, JsonText, fnv};
use crate::lifecycle::State;
use crate::schema;
use crate::types::Ts;

/// PostgreSQL's limit on bind parameters per statement.
pub(super) const MAX_BIND_PARAMETERS: usize = 65_535;

/// The hash of one row's canonical form (`text` is scratch space).
pub(super) fn row_hash<T: Table>(row: &T, text: &mut String) -> u64 {
    text.clear();
    // A source row was checked by the reader; a fault here only changes the hash.
    let _ = row.canonical(text);
    fnv(text.as_bytes())
}

/// One table as the importer sees it: how to read a page from SQLite, insert a batch
/// into PostgreSQL, and read it back. Implemented for the nine row types below.
pub(super) trait Table: Sized + Send + Sync + 'static {
    const NAME: &'static str;
    /// Columns, for the bind-parameter limit.
    const COLUMNS: usize;
    /// Whether `id` is a SERIAL whose sequence must follow the imported ids.
    const SERIAL: bool;
    type Key: Ord + Clone + Send + Sync + std::fmt::Debug + 'static;

    fn key(&self) -> Self::Key;
    /// Writes the row's canonical form; a column that is not JSON is named.
    fn canonical(&self, out: &mut String) -> Result<(), (&'static str, JsonFault)>;
    fn wrap(rows: Vec<Self>) -> Chunk;
    fn unwrap(chunk: Chunk) -> Option<Vec<Self>>;
    /// Up to `limit` rows with a key above `after`, in key order.
    fn read_page(
        conn: &mut SqliteConnection,
        after: Option<&Self::Key>,
        limit: i64,
    ) -> QueryResult<Vec<Self>>;
    fn insert<'a>(conn: &'a mut AsyncPgConnection, rows: &'a [Self]) -> BoxFuture<'a, QueryResult<usize>>;
    /// The rows with these keys, in any order.
    fn read_back<'a>(
        conn: &'a mut AsyncPgConnection,
        keys: &'a [Self::Key],
    ) -> BoxFuture<'a, QueryResult<Vec<Self>>>;
    /// Which of these keys exist already.
    fn existing<'a>(
        conn: &'a mut AsyncPgConnection,
        keys: &'a [Self::Key],
    ) -> BoxFuture<'a, QueryResult<Vec<Self::Key>>>;
}

macro_rules! tables {
    ($(
        $variant:ident => $row:ident in $table:ident, key $key:ident: $key_ty:ty, serial $serial:literal {
            $($field:ident: $ty:ty),* $(,)?
        }
    )*) => {
        $(
            /// A whole row, id included, as read and as inserted.
            #[derive(Queryable, Selectable, Insertable, Debug, Clone)]
            #[diesel(table_name = schema::$table)]
            // A NULL stays NULL: by default diesel would send DEFAULT for `None`, and
            // PostgreSQL would fill in NOW() or 'initializing' (the checksums caught it).
            #[diesel(treat_none_as_default_value = false)]
            #[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
            pub(super) struct $row {
                $($field: $ty,)*
            }

            impl Table for $row {
                const NAME: &'static str = stringify!($table);
                const COLUMNS: usize = [$(stringify!($field)),*].len();
                const SERIAL: bool = $serial;
                type Key = $key_ty;

                fn key(&self) -> $key_ty {
                    self.$key.clone()
                }

                fn canonical(&self, out: &mut String) -> Result<(), (&'static str, JsonFault)> {
                    $(Canonical::canonical(&self.$field, out).map_err(|fault| (stringify!($field), fault))?;)*
                    Ok(())
                }

                fn wrap(rows: Vec<Self>) -> Chunk {
                    Chunk::$variant(rows)
                }

                fn unwrap(chunk: Chunk) -> Option<Vec<Self>> {
                    match chunk {
                        Chunk::$variant(rows) => Some(rows),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }

                fn read_page(
                    conn: &mut SqliteConnection,
                    after: Option<&$key_ty>,
                    limit: i64,
                ) -> QueryResult<Vec<Self>> {
                    use diesel::RunQueryDsl;
                    use schema::$table::dsl as t;
                    match after {
                        Some(after) => t::$table
                            .filter(t::$key.gt(after.clone()))
                            .order(t::$key.asc())
                            .limit(limit)
                            .select(Self::as_select())
                            .load(conn),
                        None => t::$table.order(t::$key.asc()).limit(limit).select(Self::as_select()).load(conn),
                    }
                }

                fn insert<'a>(
                    conn: &'a mut AsyncPgConnection,
                    rows: &'a [Self],
                ) -> BoxFuture<'a, QueryResult<usize>> {
                    use diesel_async::RunQueryDsl;
                    diesel::insert_into(schema::$table::table).values(rows).execute(conn).boxed()
                }

                fn read_back<'a>(
                    conn: &'a mut AsyncPgConnection,
                    keys: &'a [$key_ty],
                ) -> BoxFuture<'a, QueryResult<Vec<Self>>> {
                    use diesel_async::RunQueryDsl;
                    use schema::$table::dsl as t;
                    t::$table.filter(t::$key.eq_any(keys)).select(Self::as_select()).load(conn).boxed()
                }

                fn existing<'a>(
                    conn: &'a mut AsyncPgConnection,
                    keys: &'a [$key_ty],
                ) -> BoxFuture<'a, QueryResult<Vec<$key_ty>>> {
                    use diesel_async::RunQueryDsl;
                    use schema::$table::dsl as t;
                    t::$table.filter(t::$key.eq_any(keys)).select(t::$key).order(t::$key.asc()).limit(1).load(conn).boxed()
                }
            }
        )*

        /// A batch of one table's rows, on its way from the reader to the writer.
        #[derive(Debug)]
        pub(super) enum Chunk {
            $($variant(Vec<$row>),)*
        }
    };
}

tables! {
    Agents => AgentRow in agents, key id: i32, serial true {
        id: i32,
        agent_id: String,
        agent_name: String,
        // Typed: a source row with an unknown state is refused with a typed error,
        // not copied into the target.
        status: Option<State>,
        last_heartbeat: Option<Ts>,
        last_state_change: Option<Ts>,
        uptime_details: Option<JsonText>,
        metrics: Option<JsonText>,
        created_at: Option<Ts>,
        updated_at: Option<Ts>,
    }
    Metrics => MetricRow in performance_metrics, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        metric_name: String,
        metric_value: f32,
        timestamp: Option<Ts>,
        metadata: Option<JsonText>,
        source_agent: Option<String>,
    }
    SystemState => SystemStateRow in system_state, key key: String, serial false {
        key: String,
        value: JsonText,
        created_at: Option<Ts>,
        updated_at: Option<Ts>,
    }
    Heartbeats => HeartbeatRow in agent_heartbeats, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        timestamp: Option<Ts>,
        status: Option<State>,
        message: Option<String>,
        metadata: Option<JsonText>,
    }
    Events => EventRow in system_events, key id: i32, serial true {
        id: i32,
        event_type: String,
        event_data: Option<JsonText>,
        timestamp: Option<Ts>,
        severity: Option<String>,
    }
    HelpRequests => HelpRequestRow in help_requests, key request_id: String, serial false {
        request_id: String,
        query: String,
        context: Option<JsonText>,
        status: Option<String>,
        created_at: Option<Ts>,
    }
    HelpResponses => HelpResponseRow in help_responses, key request_id: String, serial false {
        request_id: String,
        timestamp: Option<Ts>,
        response: String,
        status: Option<String>,
    }
    Communications => CommunicationRow in agent_communications, key id: i32, serial true {
        id: i32,
        from_agent_id: Option<i32>,
        to_agent_id: Option<i32>,
        message_type: Option<String>,
        message_content: Option<String>,
        timestamp: Option<Ts>,
        status: Option<String>,
    }
    Conversations => ConversationRow in llm_conversations, key id: i32, serial true {
        id: i32,
        agent_id: Option<i32>,
        conversation_id: Option<String>,
        message_content: Option<String>,
        response_content: Option<String>,
        timestamp: Option<Ts>,
        metadata: Option<JsonText>,
    }
}

/// Calls `$f::<Row>($args)` for each of the nine tables in dependency order (the order
/// of [`TABLES`]), stopping at the first error.
macro_rules! for_each_table {
    (|$t:ident| $body:expr) => {
        for_each_table!(@rows $t, $body; AgentRow, MetricRow, SystemStateRow, HeartbeatRow, EventRow,
            HelpRequestRow, HelpResponseRow, CommunicationRow, ConversationRow)
    };
    (@rows $t:ident, $body:expr; $($row:ident),*) => {{
        $({
            type $t = super::tables::$row;
            $body
        })*
    }};
}

pub(super) use for_each_table;
