//! The `system_state` key-value table: set a JSON value under a key, read it back.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::writer::{PendingWrite, SharedState};
use crate::error::StoreError;
use crate::models::*;
use crate::schema::*;
use crate::types::Ts;
use crate::writes::Write;

impl SharedState {
    /// Sets a system-state key to a JSON value.
    pub fn set_system_state(&self, key: &str, value: serde_json::Value) -> PendingWrite<'_> {
        self.pending(Write::SetState { key: key.into(), value, at: Ts::now() })
    }

    /// The value of a system-state key.
    pub async fn get_system_state(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_owned();
        read!(self.store, [key], |conn| system_state::table
            .find(&key)
            .select(SystemStateEntry::as_select())
            .first(conn)
            .await
            .optional()?
            .map(|entry| entry.value.0))
    }
}
