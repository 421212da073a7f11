//! System events: logging them with a [`Severity`], and reading recent events and
//! lifecycle transitions back through an [`EventFilter`].

use crate::lifecycle::TransitionRecord;
use crate::writes::Severity;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

/// A filter for [`SharedState::recent_events`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EventFilter {
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this severity or worse.
    pub min_severity: Option<Severity>,
    /// Only events after this row id (for following a stream).
    pub after_id: Option<i32>,
    /// Only events at or after this time.
    pub since: Option<Ts>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

impl SharedState {
    /// Logs a system event.
    pub fn log_system_event(
        &self,
        event_type: &str,
        data: Option<serde_json::Value>,
        severity: Severity,
    ) -> PendingWrite<'_> {
        self.pending(Write::Event { event_type: event_type.into(), severity, data, at: Ts::now() })
    }

    /// The transitions recorded by `state_transition` events matching `filter` (its
    /// `event_type` is set for you), newest first. An event whose data is not a
    /// [`TransitionRecord`] (written by an older version, or by hand) is skipped and
    /// logged with its typed error, so one bad row cannot blind a monitor.
    pub async fn recent_transitions(&self, filter: EventFilter) -> Result<Vec<TransitionRecord>, StoreError> {
        let filter = EventFilter { event_type: Some(TransitionRecord::EVENT_TYPE.into()), ..filter };
        let events = self.recent_events(filter).await?;
        Ok(events
            .iter()
            .filter_map(|event| {
                TransitionRecord::from_event(event)
                    .inspect_err(
                        |error| tracing::warn!(%error, "skipping an unreadable state_transition event"),
                    )
                    .ok()
            })
            .collect())
    }

    /// Events matching `filter`, newest first.
    pub async fn recent_events(&self, filter: EventFilter) -> Result<Vec<SystemEventRecord>, StoreError> {
        self.store
            .run(move |inner| {
                let filter = filter.clone();
                async move {
                    with_conn!(inner, |conn| {
                        let mut query = system_events::table.into_boxed();
                        if let Some(event_type) = filter.event_type {
                            query = query.filter(system_events::event_type.eq(event_type));
                        }
                        if let Some(min) = filter.min_severity {
                            let allowed: Vec<&str> = [
                                Severity::Debug,
                                Severity::Info,
                                Severity::Warning,
                                Severity::Error,
                                Severity::Critical,
                            ]
                            .into_iter()
                            .filter(|s| *s >= min)
                            .map(Severity::as_str)
                            .collect();
                            query = query.filter(system_events::severity.eq_any(allowed));
                        }
                        if let Some(after) = filter.after_id {
                            query = query.filter(system_events::id.gt(after));
                        }
                        if let Some(since) = filter.since {
                            query = query.filter(system_events::timestamp.ge(since));
                        }
                        Ok(query
                            .order(system_events::id.desc())
                            .limit(filter.limit.unwrap_or(100))
                            .select(SystemEventRecord::as_select())
                            .load(conn)
                            .await?)
                    })
                }
            })
            .await
    }
}
