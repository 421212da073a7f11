//! Reads of the recent past for dashboards: events in commit order after a cursor (to
//! follow the table), the points of a metric or of the heartbeats over a window (to
//! chart them), which metrics were recorded, and help requests with their answers.
//!
//! Each read is bounded by a `limit` the caller chooses, and each reads only the
//! columns it needs: a chart wants `(time, value)` pairs, not every sample's metadata.

use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::SharedState;
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::HelpStatus;

/// A metric name recorded in a window, for one agent (or none), with how many samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMetric {
    /// The metric's name.
    pub name: String,
    /// The agent the samples are about (`agents.agent_id`); `None`: not about an agent.
    pub agent_id: Option<String>,
    /// Samples in the window.
    pub samples: i64,
}

/// A help request and its answer, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpExchange {
    /// The request.
    pub request: HelpRequestRecord,
    /// Its answer.
    pub response: Option<HelpResponseRecord>,
}

impl SharedState {
    /// Events with an id above `after_id`, oldest first, at most `limit`: the next page
    /// of the table for a reader that follows it (an SSE stream, `events --follow`).
    /// Unlike [`SharedState::recent_events`] (newest first), a backlog larger than
    /// `limit` is read from its start, so a follower skips nothing.
    pub async fn events_after(
        &self,
        after_id: i32,
        limit: i64,
    ) -> Result<Vec<SystemEventRecord>, StoreError> {
        read!(self.store, [], |conn| system_events::table
            .filter(system_events::id.gt(after_id))
            .order(system_events::id.asc())
            .limit(limit)
            .select(SystemEventRecord::as_select())
            .load(conn)
            .await?)
    }

    /// The id of the newest event (0 when there is none): where a follower that wants
    /// only what comes next starts.
    pub async fn newest_event_id(&self) -> Result<i32, StoreError> {
        read!(self.store, [], |conn| system_events::table
            .select(diesel::dsl::max(system_events::id))
            .first::<Option<i32>>(conn)
            .await?
            .unwrap_or(0))
    }

    /// `(time, value)` of the samples of metric `name` at or after `since`, oldest
    /// first, at most `limit`; only those about `agent_id` when given.
    pub async fn metric_points(
        &self,
        name: &str,
        agent_id: Option<&str>,
        since: Ts,
        limit: i64,
    ) -> Result<Vec<(Ts, f32)>, StoreError> {
        let (name, agent_id) = (name.to_owned(), agent_id.map(str::to_owned));
        read!(self.store, [name, agent_id], |conn| {
            let mut query = performance_metrics::table
                .filter(performance_metrics::metric_name.eq(name))
                .filter(performance_metrics::timestamp.ge(since))
                .into_boxed();
            if let Some(agent_id) = agent_id {
                let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                query = query.filter(performance_metrics::agent_id.nullable().eq_any(ids.nullable()));
            }
            query
                .order((performance_metrics::timestamp.asc(), performance_metrics::id.asc()))
                .limit(limit)
                .select((performance_metrics::timestamp, performance_metrics::metric_value))
                .load::<(Option<Ts>, f32)>(conn)
                .await?
                .into_iter()
                .filter_map(|(at, value)| Some((at?, value)))
                .collect()
        })
    }

    /// The times of the heartbeats at or after `since`, oldest first, at most `limit`;
    /// only those of `agent_id` when given.
    pub async fn heartbeat_times(
        &self,
        agent_id: Option<&str>,
        since: Ts,
        limit: i64,
    ) -> Result<Vec<Ts>, StoreError> {
        let agent_id = agent_id.map(str::to_owned);
        read!(self.store, [agent_id], |conn| {
            let mut query =
                agent_heartbeats::table.filter(agent_heartbeats::timestamp.ge(since)).into_boxed();
            if let Some(agent_id) = agent_id {
                let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                query = query.filter(agent_heartbeats::agent_id.eq_any(ids.nullable()));
            }
            query
                .order((agent_heartbeats::timestamp.asc(), agent_heartbeats::id.asc()))
                .limit(limit)
                .select(agent_heartbeats::timestamp)
                .load::<Option<Ts>>(conn)
                .await?
                .into_iter()
                .flatten()
                .collect()
        })
    }

    /// The metrics recorded at or after `since`, by name and agent, with their sample
    /// counts, ordered by name (counted by the database; no sample is read).
    pub async fn recorded_metrics(&self, since: Ts) -> Result<Vec<RecordedMetric>, StoreError> {
        let rows: Vec<(String, Option<i32>, i64)> = read!(self.store, [], |conn| performance_metrics::table
            .filter(performance_metrics::timestamp.ge(since))
            .group_by((performance_metrics::metric_name, performance_metrics::agent_id))
            .select((performance_metrics::metric_name, performance_metrics::agent_id, count_star()))
            .order((performance_metrics::metric_name.asc(), performance_metrics::agent_id.asc()))
            .load(conn)
            .await?)?;
        let names: std::collections::HashMap<i32, String> =
            self.get_registered_agents().await?.into_iter().map(|a| (a.id, a.agent_id)).collect();
        Ok(rows
            .into_iter()
            .map(|(name, agent, samples)| RecordedMetric {
                name,
                agent_id: agent.and_then(|id| names.get(&id).cloned()),
                samples,
            })
            .collect())
    }

    /// The most recent help requests, newest first, at most `limit` (only those in
    /// `status` when given), each with its answer if it has one.
    pub async fn recent_help_exchanges(
        &self,
        status: Option<HelpStatus>,
        limit: i64,
    ) -> Result<Vec<HelpExchange>, StoreError> {
        let rows: Vec<(HelpRequestRecord, Option<HelpResponseRecord>)> = read!(self.store, [], |conn| {
            let mut query = help_requests::table.left_join(help_responses::table).into_boxed();
            if let Some(status) = status {
                query = query.filter(help_requests::status.eq(status.as_str()));
            }
            query
                .order((help_requests::created_at.desc(), help_requests::request_id.desc()))
                .limit(limit)
                .select((HelpRequestRecord::as_select(), Option::<HelpResponseRecord>::as_select()))
                .load(conn)
                .await?
        })?;
        Ok(rows.into_iter().map(|(request, response)| HelpExchange { request, response }).collect())
    }
}
