//! Performance samples: the [`Metric`] to record, and the series and recent samples
//! read back.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

/// A performance sample to record.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Metric {
    name: String,
    value: f32,
    agent_id: Option<String>,
    source_agent: Option<String>,
    metadata: Option<serde_json::Value>,
    at: Option<Ts>,
}

impl Metric {
    /// A sample of `name`.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            value: value as f32,
            agent_id: None,
            source_agent: None,
            metadata: None,
            at: None,
        }
    }
    optional_setters! {
        /// The agent the sample is about (must be registered).
        agent => agent_id: String;
        /// The reporting agent's name.
        source => source_agent: String;
        /// Extra context.
        metadata => metadata: serde_json::Value;
        /// An explicit time (default: now).
        at => at: Ts;
    }

    /// The write this sample becomes.
    pub fn into_write(self) -> Write {
        Write::Metric {
            agent_id: self.agent_id,
            name: self.name,
            value: self.value,
            source_agent: self.source_agent,
            metadata: self.metadata,
            at: self.at.unwrap_or_else(Ts::now),
        }
    }
}

impl SharedState {
    /// Records a performance sample.
    pub fn add_performance_metric(&self, metric: Metric) -> PendingWrite<'_> {
        self.pending(metric.into_write())
    }

    /// Samples of `name` (optionally of one agent) since `since`, oldest first.
    pub async fn metric_series(
        &self,
        name: &str,
        agent_id: Option<&str>,
        since: Ts,
    ) -> Result<Vec<MetricRecord>, StoreError> {
        let (name, agent_id) = (name.to_owned(), agent_id.map(str::to_owned));
        self.store
            .run(move |inner| {
                let (name, agent_id) = (name.clone(), agent_id.clone());
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = performance_metrics::table
                            .filter(performance_metrics::metric_name.eq(name))
                            .filter(performance_metrics::timestamp.ge(since))
                            .into_boxed();
                        if let Some(agent_id) = agent_id {
                            let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                            query =
                                query.filter(performance_metrics::agent_id.nullable().eq_any(ids.nullable()));
                        }
                        Ok(query
                            .order((performance_metrics::timestamp.asc(), performance_metrics::id.asc()))
                            .select(MetricRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }
}

impl SharedState {
    /// Recent performance samples, newest first: optionally of one metric name and/or
    /// one agent, at or after `since`, at most `limit`.
    pub async fn recent_metrics(
        &self,
        name: Option<&str>,
        agent_id: Option<&str>,
        since: Ts,
        limit: i64,
    ) -> Result<Vec<MetricRecord>, StoreError> {
        let (name, agent_id) = (name.map(str::to_owned), agent_id.map(str::to_owned));
        self.store
            .run(move |inner| {
                let (name, agent_id) = (name.clone(), agent_id.clone());
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = performance_metrics::table
                            .filter(performance_metrics::timestamp.ge(since))
                            .into_boxed();
                        if let Some(name) = name {
                            query = query.filter(performance_metrics::metric_name.eq(name));
                        }
                        if let Some(agent_id) = agent_id {
                            let ids = agents::table.filter(agents::agent_id.eq(agent_id)).select(agents::id);
                            query =
                                query.filter(performance_metrics::agent_id.nullable().eq_any(ids.nullable()));
                        }
                        Ok(query
                            .order((performance_metrics::timestamp.desc(), performance_metrics::id.desc()))
                            .limit(limit)
                            .select(MetricRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }
}
