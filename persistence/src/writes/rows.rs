//! The statements a batch is made of, per backend: multi-row inserts ([`InsertRows`]),
//! the one update of `agents` per batch ([`UpdateAgents`]) and the system-state upsert.
//!
//! PostgreSQL gets one statement per table (arrays and `UNNEST` for the hottest ones);
//! SQLite, in-process, a statement per chunk or per agent.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::alert_deliveries::NewAlertDelivery;
use crate::backend::SqliteConn;
use crate::lifecycle::State;
use crate::models::*;
use crate::schema::*;
use crate::types::{Json, Ts};

/// Rows per multi-row INSERT: at most 7 columns × 4,000 rows stays under both
/// PostgreSQL's 65,535 and SQLite's 32,766 bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 4_000;

/// Rows per INSERT of `alert_deliveries`, whose 9 columns × 3,000 stay under them too.
const DELIVERIES_PER_STATEMENT: usize = 3_000;

/// Inserts rows with as few statements as the backend allows.
pub(crate) trait InsertRows<T> {
    async fn insert_rows(&mut self, rows: Vec<T>) -> QueryResult<usize>;
}

macro_rules! insert_rows_impl {
    ($($model:ty => $table:path, $rows:expr);* $(;)?) => {$(
        impl InsertRows<$model> for AsyncPgConnection {
            async fn insert_rows(&mut self, rows: Vec<$model>) -> QueryResult<usize> {
                let mut written = 0;
                for chunk in rows.chunks($rows) {
                    written += diesel::insert_into($table).values(chunk).execute(self).await?;
                }
                Ok(written)
            }
        }

        impl InsertRows<$model> for SqliteConn {
            // diesel-async cannot batch-insert through its SQLite wrapper
            // (diesel_async#277): run synchronous diesel on the inner connection.
            async fn insert_rows(&mut self, rows: Vec<$model>) -> QueryResult<usize> {
                if rows.is_empty() {
                    return Ok(0);
                }
                self.spawn_blocking(move |conn| {
                    let mut written = 0;
                    for chunk in rows.chunks($rows) {
                        written += diesel::RunQueryDsl::execute(diesel::insert_into($table).values(chunk), conn)?;
                    }
                    Ok(written)
                })
                .await
            }
        }
    )*};
}

insert_rows_impl! {
    NewMetric => performance_metrics::table, ROWS_PER_STATEMENT;
    NewSystemEvent => system_events::table, ROWS_PER_STATEMENT;
    NewHelpRequest => help_requests::table, ROWS_PER_STATEMENT;
    NewCommunication => agent_communications::table, ROWS_PER_STATEMENT;
    NewConversation => llm_conversations::table, ROWS_PER_STATEMENT;
    NewAlertDelivery => alert_deliveries::table, DELIVERIES_PER_STATEMENT;
}

impl InsertRows<NewHeartbeat> for AsyncPgConnection {
    // The hottest table: one array per column and `INSERT ... SELECT * FROM UNNEST`,
    // so a batch of any size is one statement with five parameters and one prepared
    // statement, reused (diesel's insert DSL binds every value and re-prepares).
    async fn insert_rows(&mut self, rows: Vec<NewHeartbeat>) -> QueryResult<usize> {
        use diesel::sql_types::{Array, Integer, Nullable, Text};

        use crate::types::sql_types::{JsonDoc, TsTz};
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut stamps = Vec::with_capacity(rows.len());
        let mut statuses = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        let mut metadata = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.agent_id);
            // The column default (NOW()) for a row without a timestamp, as the DSL would.
            stamps.push(row.timestamp.unwrap_or_else(Ts::now));
            statuses.push(row.status);
            messages.push(row.message);
            metadata.push(row.metadata);
        }
        diesel::sql_query(
            "INSERT INTO agent_heartbeats (agent_id, timestamp, status, message, metadata) \
             SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::jsonb[])",
        )
        .bind::<Array<Nullable<Integer>>, _>(ids)
        .bind::<Array<TsTz>, _>(stamps)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<Nullable<Text>>, _>(messages)
        .bind::<Array<Nullable<JsonDoc>>, _>(metadata)
        .execute(self)
        .await
    }
}

impl InsertRows<NewHeartbeat> for SqliteConn {
    async fn insert_rows(&mut self, rows: Vec<NewHeartbeat>) -> QueryResult<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.spawn_blocking(move |conn| {
            let mut written = 0;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                written += diesel::RunQueryDsl::execute(
                    diesel::insert_into(agent_heartbeats::table).values(chunk),
                    conn,
                )?;
            }
            Ok(written)
        })
        .await
    }
}

/// The latest agents-row change of one agent within a batch.
#[derive(Default)]
pub(crate) struct AgentUpdate {
    pub(crate) last_heartbeat: Option<Ts>,
    pub(crate) status: Option<(State, Ts)>,
    /// The latest heartbeat's payload and uptime figures.
    pub(crate) metrics: Option<serde_json::Value>,
    pub(crate) uptime: Option<serde_json::Value>,
}

/// `INSERT INTO system_state ... ON CONFLICT (key) DO UPDATE SET value, updated_at`:
/// the upsert of a system-state key, for a batch's `SetState` and for incident claims
/// (which add a `WHERE` to the update).
macro_rules! upsert_system_state {
    ($key:expr, $value:expr, $at:expr) => {
        diesel::insert_into(system_state::table)
            .values((
                system_state::key.eq($key),
                system_state::value.eq($value),
                system_state::created_at.eq(Some($at)),
                system_state::updated_at.eq(Some($at)),
            ))
            .on_conflict(system_state::key)
            .do_update()
            .set((
                system_state::value.eq(diesel::upsert::excluded(system_state::value)),
                system_state::updated_at.eq(diesel::upsert::excluded(system_state::updated_at)),
            ))
    };
}
pub(crate) use upsert_system_state;

/// Writes the per-agent changes of a batch to `agents`.
pub(crate) trait UpdateAgents {
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()>;
}

impl UpdateAgents for AsyncPgConnection {
    // One statement for the whole batch: one array per column, joined with UNNEST. A
    // column an agent did not change keeps its value (COALESCE with the current one).
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()> {
        use diesel::sql_types::{Array, Integer, Nullable, Text};

        use crate::types::sql_types::TsTz;
        if updates.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(updates.len());
        let mut beats = Vec::with_capacity(updates.len());
        let mut statuses = Vec::with_capacity(updates.len());
        let mut changes = Vec::with_capacity(updates.len());
        let mut metrics = Vec::with_capacity(updates.len());
        let mut uptimes = Vec::with_capacity(updates.len());
        for (id, update) in updates {
            ids.push(id);
            beats.push(update.last_heartbeat);
            let (status, changed) = update.status.unzip();
            statuses.push(status);
            changes.push(changed);
            // JSON travels as text and is cast: one array type for any document.
            metrics.push(update.metrics.map(|v| v.to_string()));
            uptimes.push(update.uptime.map(|v| v.to_string()));
        }
        diesel::sql_query(
            "UPDATE agents AS a SET \
               last_heartbeat = COALESCE(u.beat, a.last_heartbeat), \
               status = COALESCE(u.status, a.status), \
               last_state_change = COALESCE(u.changed, a.last_state_change), \
               metrics = COALESCE(u.metrics::jsonb, a.metrics), \
               uptime_details = COALESCE(u.uptime::jsonb, a.uptime_details), \
               updated_at = $5 \
             FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[], $4::timestamptz[], $6::text[], $7::text[]) \
               AS u(id, beat, status, changed, metrics, uptime) \
             WHERE a.id = u.id",
        )
        .bind::<Array<Integer>, _>(ids)
        .bind::<Array<Nullable<TsTz>>, _>(beats)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<Nullable<TsTz>>, _>(changes)
        .bind::<TsTz, _>(now)
        .bind::<Array<Nullable<Text>>, _>(metrics)
        .bind::<Array<Nullable<Text>>, _>(uptimes)
        .execute(self)
        .await?;
        Ok(())
    }
}

/// The columns of one agent's row a batch changes; a `None` is left as it is.
#[derive(AsChangeset)]
#[diesel(table_name = agents)]
struct AgentChanges {
    last_heartbeat: Option<Ts>,
    status: Option<State>,
    last_state_change: Option<Ts>,
    metrics: Option<Json>,
    uptime_details: Option<Json>,
    updated_at: Ts,
}

impl UpdateAgents for SqliteConn {
    // SQLite runs in-process: a statement per agent costs no round trip.
    async fn update_agents(&mut self, updates: Vec<(i32, AgentUpdate)>, now: Ts) -> QueryResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        self.spawn_blocking(move |conn| {
            for (id, update) in updates {
                let (status, last_state_change) = update.status.unzip();
                let changes = AgentChanges {
                    last_heartbeat: update.last_heartbeat,
                    status,
                    last_state_change,
                    metrics: update.metrics.map(Json),
                    uptime_details: update.uptime.map(Json),
                    updated_at: now,
                };
                diesel::RunQueryDsl::execute(
                    diesel::update(agents::table.filter(agents::id.eq(id))).set(changes),
                    conn,
                )?;
            }
            Ok(())
        })
        .await
    }
}
