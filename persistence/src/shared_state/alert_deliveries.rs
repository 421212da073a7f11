//! The record of alert deliveries: writing one attempt, reading the latest back (see
//! [`crate::alert_deliveries`]).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::alert_deliveries::{AlertDelivery, AlertDeliveryRecord};
use crate::error::StoreError;
use crate::schema::alert_deliveries;
use crate::writes::Write;

impl SharedState {
    /// Records one delivery attempt. Alerters [`enqueue`](PendingWrite::enqueue) it: a
    /// record waits for no commit.
    pub fn record_alert_delivery(&self, delivery: AlertDelivery) -> PendingWrite<'_> {
        self.pending(Write::AlertDelivery(delivery))
    }

    /// The `limit` most recent delivery attempts, newest first.
    pub async fn recent_alert_deliveries(&self, limit: i64) -> Result<Vec<AlertDeliveryRecord>, StoreError> {
        let limit = limit.max(0);
        read!(self.store, [], |conn| alert_deliveries::table
            .order(alert_deliveries::id.desc())
            .limit(limit)
            .select(AlertDeliveryRecord::as_select())
            .load(conn)
            .await?)
    }
}
