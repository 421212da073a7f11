//! The record of alert deliveries: one row of `alert_deliveries` per attempt to
//! deliver an alert to a webhook.
//!
//! The alerter (the facade's `vigil::alerts`) notifies webhooks of incidents, each one
//! `firing` then `resolved`, retrying failed attempts. Every attempt — delivered,
//! failed and to be retried, or the last one given up — becomes an [`AlertDelivery`]
//! write ([`crate::SharedState::record_alert_delivery`]), sent like any write through the
//! single writer, fire-and-forget: the record must never hold a delivery up. An
//! operator reads them back newest first with [`SharedState::recent_alert_deliveries`](crate::SharedState::recent_alert_deliveries);
//! the retention cleanup removes old ones with the rest of the history.
//!
//! Nothing here may hold a secret: the caller records the webhook's configured *name*,
//! never its URL, and an error text free of the URL and of header values.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::alert_deliveries;
use crate::types::Ts;

/// Which notification of an incident was being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The incident started.
    Firing,
    /// The incident is over.
    Resolved,
}

impl AlertStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The webhook accepted it (a 2xx answer).
    Delivered,
    /// It failed and will be tried again.
    Failed,
    /// It failed and is not tried again: the last attempt, or an answer that another
    /// attempt would not change (a 4xx other than 408 and 429).
    GaveUp,
}

impl DeliveryOutcome {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::GaveUp => "gave_up",
        }
    }
}

/// One delivery attempt, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDelivery {
    /// The webhook's configured name (never its URL).
    pub webhook_name: String,
    /// The incident (`rule:subject`).
    pub incident_key: String,
    /// Which notification.
    pub status: AlertStatus,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// The HTTP status of the answer, if one came.
    pub http_status: Option<u16>,
    /// Why it failed, free of secrets.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// When it started.
    pub attempted_at: Ts,
}

/// A recorded attempt (`alert_deliveries`), as read back.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = alert_deliveries)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AlertDeliveryRecord {
    /// Row id.
    pub id: i32,
    /// The webhook's configured name.
    pub webhook_name: String,
    /// The incident (`rule:subject`).
    pub incident_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// `delivered`, `failed` or `gave_up`.
    pub outcome: String,
    /// The HTTP status of the answer, if one came.
    pub http_status: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: i64,
    /// When it started.
    pub attempted_at: Ts,
}

#[derive(Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = alert_deliveries)]
pub(crate) struct NewAlertDelivery {
    pub(crate) webhook_name: String,
    pub(crate) incident_key: String,
    pub(crate) status: String,
    pub(crate) attempt: i32,
    pub(crate) outcome: String,
    pub(crate) http_status: Option<i32>,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: i64,
    pub(crate) attempted_at: Ts,
}

impl From<&AlertDelivery> for NewAlertDelivery {
    fn from(delivery: &AlertDelivery) -> Self {
        Self {
            webhook_name: delivery.webhook_name.clone(),
            incident_key: delivery.incident_key.clone(),
            status: delivery.status.as_str().into(),
            attempt: i32::try_from(delivery.attempt).unwrap_or(i32::MAX),
            outcome: delivery.outcome.as_str().into(),
            http_status: delivery.http_status.map(i32::from),
            error: delivery.error.clone(),
            duration_ms: i64::try_from(delivery.duration_ms).unwrap_or(i64::MAX),
            attempted_at: delivery.attempted_at,
        }
    }
}
