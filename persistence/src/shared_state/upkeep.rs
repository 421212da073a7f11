//! Keeping the database healthy: health, ping and statistics, row counts, consistency
//! checks ([`OrphanRows`]) and removing old data ([`CleanupReport`]).

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;

use crate::store::{DatabaseHealth, PoolStats, QueryStats};
use crate::writes::HelpStatus;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::SharedState;
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;

/// The longest history [`SharedState::cleanup_old_data`] keeps: a hundred years (a
/// cutoff further back would fall outside the timestamps the backends store).
pub const MAX_DAYS_TO_KEEP: u32 = 36_500;

/// The help requests not answered yet ([`SharedState::help_backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HelpBacklog {
    /// Waiting for the help agent.
    pub pending: i64,
    /// Claimed by the help agent, not answered yet.
    pub processing: i64,
    /// When the oldest pending one was filed; `None` when none is pending.
    pub oldest_pending_at: Option<Ts>,
}

/// Rows removed by [`SharedState::cleanup_old_data`], per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// `agent_heartbeats` rows removed.
    pub heartbeats: usize,
    /// `performance_metrics` rows removed.
    pub metrics: usize,
    /// `system_events` rows removed (error and critical events are kept).
    pub events: usize,
    /// `agent_communications` rows removed.
    pub communications: usize,
    /// `llm_conversations` rows removed.
    pub conversations: usize,
    /// `alert_deliveries` rows removed.
    pub alert_deliveries: usize,
}

impl CleanupReport {
    /// Rows removed in all.
    pub fn total(&self) -> usize {
        self.heartbeats
            + self.metrics
            + self.events
            + self.communications
            + self.conversations
            + self.alert_deliveries
    }
}

impl SharedState {
    /// Heartbeat and metric rows that point at no agent (see [`OrphanRows`]).
    pub async fn orphan_rows(&self) -> Result<OrphanRows, StoreError> {
        self.store
            .run(|inner| async move {
                with_conn!(inner, |conn| {
                    let heartbeats_without_agent = agent_heartbeats::table
                        .filter(agent_heartbeats::agent_id.is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    let dangling_heartbeats = agent_heartbeats::table
                        .left_join(agents::table)
                        .filter(agent_heartbeats::agent_id.is_not_null())
                        .filter(agents::id.nullable().is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    let dangling_metrics = performance_metrics::table
                        .left_join(agents::table)
                        .filter(performance_metrics::agent_id.is_not_null())
                        .filter(agents::id.nullable().is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await?;
                    Ok(OrphanRows { heartbeats_without_agent, dangling_heartbeats, dangling_metrics })
                })
            })
            .await
    }

    /// Help requests in `status`, oldest first.
    pub async fn help_requests_with_status(
        &self,
        status: HelpStatus,
    ) -> Result<Vec<HelpRequestRecord>, StoreError> {
        read!(self.store, [], |conn| help_requests::table
            .filter(help_requests::status.eq(status.as_str()))
            .order((help_requests::created_at.asc(), help_requests::request_id.asc()))
            .select(HelpRequestRecord::as_select())
            .load(conn)
            .await?)
    }

    /// The help-request backlog, counted by the database (no request's text is read):
    /// what the help agent has not answered yet, for dashboards and `/metrics`.
    pub async fn help_backlog(&self) -> Result<HelpBacklog, StoreError> {
        read!(self.store, [], |conn| {
            let count = |status: HelpStatus| {
                help_requests::table.filter(help_requests::status.eq(status.as_str())).count()
            };
            let pending: i64 = count(HelpStatus::Pending).get_result(conn).await?;
            let processing: i64 = count(HelpStatus::Processing).get_result(conn).await?;
            let oldest_pending_at: Option<Ts> = help_requests::table
                .filter(help_requests::status.eq(HelpStatus::Pending.as_str()))
                .order(help_requests::created_at.asc())
                .select(help_requests::created_at)
                .first::<Option<Ts>>(conn)
                .await
                .optional()?
                .flatten();
            HelpBacklog { pending, processing, oldest_pending_at }
        })
    }

    /// The database health report.
    pub async fn get_database_health(&self) -> Result<DatabaseHealth, StoreError> {
        self.store.health().await
    }

    /// A liveness check: one `SELECT 1` round trip, not retried (see [`Store::ping`](crate::Store::ping)).
    pub async fn ping(&self) -> Result<std::time::Duration, StoreError> {
        self.store.ping().await
    }

    /// Query statistics since the store was opened.
    pub fn get_query_stats(&self) -> QueryStats {
        self.store.query_stats()
    }

    /// Pool figures now.
    pub fn get_pool_stats(&self) -> PoolStats {
        self.store.pool_stats()
    }

    /// Row counts of the nine tables.
    pub async fn table_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self.store.health().await?.tables.into_iter().map(|t| (t.table, t.rows)).collect())
    }

    /// Deletes heartbeats, metrics, events (but not error or critical ones),
    /// communications, conversations and alert delivery records older than
    /// `days_to_keep` days, in one
    /// transaction, and says how many rows went from each table. The cluster's history
    /// goes too: ownership intervals that ended and nodes that left before then.
    /// More than [`MAX_DAYS_TO_KEEP`] is [`StoreError::InvalidInput`].
    pub async fn cleanup_old_data(&self, days_to_keep: u32) -> Result<CleanupReport, StoreError> {
        if days_to_keep > MAX_DAYS_TO_KEEP {
            return Err(StoreError::invalid("days_to_keep", format!("at most {MAX_DAYS_TO_KEEP} days")));
        }
        self.cleanup_before(Ts::from(Utc::now() - chrono::Duration::days(i64::from(days_to_keep)))).await
    }

    /// [`cleanup_old_data`](Self::cleanup_old_data) with an explicit cutoff.
    pub async fn cleanup_before(&self, cutoff: Ts) -> Result<CleanupReport, StoreError> {
        self.store
            .run(move |inner| async move {
                with_conn!(inner, |conn| {
                    use diesel_async::AsyncConnection;
                    conn.transaction(async |conn| {
                        let heartbeats = diesel::delete(
                            agent_heartbeats::table.filter(agent_heartbeats::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let metrics = diesel::delete(
                            performance_metrics::table.filter(performance_metrics::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let events = diesel::delete(
                            system_events::table.filter(system_events::timestamp.lt(cutoff)).filter(
                                system_events::severity
                                    .is_null()
                                    .or(system_events::severity.ne_all(["error", "critical"])),
                            ),
                        )
                        .execute(conn)
                        .await?;
                        let communications = diesel::delete(
                            agent_communications::table.filter(agent_communications::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let conversations = diesel::delete(
                            llm_conversations::table.filter(llm_conversations::timestamp.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        let alert_deliveries = diesel::delete(
                            alert_deliveries::table.filter(alert_deliveries::attempted_at.lt(cutoff)),
                        )
                        .execute(conn)
                        .await?;
                        // Commit markers of writers that are gone (a live writer keeps
                        // only its latest); never one younger than a day, which a writer
                        // may still be resolving (see `crate::commit`).
                        let marker_cutoff = cutoff.min(Ts::from(Utc::now() - chrono::Duration::days(1)));
                        diesel::sql_query("DELETE FROM vigil_write_batches WHERE committed_at < $1")
                            .bind::<crate::types::sql_types::TsTz, _>(marker_cutoff)
                            .execute(conn)
                            .await?;
                        // Cluster history (see `crate::nodes`): ownership intervals that
                        // ended, and nodes that left, before the cutoff. Open intervals
                        // and live or dead-but-not-left nodes are kept.
                        for history in [
                            "DELETE FROM vigil_ownership_log WHERE ended_at < $1",
                            "DELETE FROM vigil_nodes WHERE stopped_at < $1",
                        ] {
                            diesel::sql_query(history)
                                .bind::<crate::types::sql_types::TsTz, _>(cutoff)
                                .execute(conn)
                                .await?;
                        }
                        Ok::<_, StoreError>(CleanupReport {
                            heartbeats,
                            metrics,
                            events,
                            communications,
                            conversations,
                            alert_deliveries,
                        })
                    })
                    .await
                })
            })
            .await
    }
}

/// Rows that reference no agent, counted by [`SharedState::orphan_rows`]. Metrics
/// with no agent at all are system-wide samples and are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrphanRows {
    /// Heartbeats with a NULL `agent_id` (a heartbeat always belongs to an agent).
    pub heartbeats_without_agent: i64,
    /// Heartbeats whose `agent_id` names no row of `agents`.
    pub dangling_heartbeats: i64,
    /// Metrics whose `agent_id` names no row of `agents`.
    pub dangling_metrics: i64,
}

impl OrphanRows {
    /// All orphan rows.
    pub fn total(&self) -> i64 {
        self.heartbeats_without_agent + self.dangling_heartbeats + self.dangling_metrics
    }
}
