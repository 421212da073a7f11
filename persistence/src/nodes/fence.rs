//! The writer's fence check: which writes of a batch were sent by a node that no
//! longer owns their agent at their epoch.
//!
//! It runs inside the batch's transaction, before anything is applied, as one query
//! over the batch's distinct fenced agents. On PostgreSQL the rows are read
//! `FOR SHARE`: a claim (`FOR UPDATE SKIP LOCKED`) skips them and a release or renewal
//! waits until the batch commits, so a committed fenced write always came from the
//! owner of that moment. On SQLite the batch holds the database's write lock
//! (`BEGIN IMMEDIATE`), which does the same. A batch without fences costs nothing.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::model::Fence;
use crate::backend::SqliteConn;
use crate::error::StoreError;

/// The fence a queued write carries, shared by every write of one fenced handle.
pub(crate) type FenceSlot = Option<Arc<Fence>>;

/// Per write, the refusal of its fence: `None` to apply it. Empty when no write of
/// the batch is fenced (the common case pays nothing).
pub(crate) type Refusals = Vec<Option<StoreError>>;

#[derive(QueryableByName)]
struct Owner {
    #[diesel(sql_type = Text)]
    agent_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    node_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
}

/// The distinct agents of the fences, sorted (the row locks are taken in this order).
fn fenced_agents(fences: &[FenceSlot]) -> Vec<String> {
    let mut agents: Vec<String> = fences.iter().flatten().map(|fence| fence.agent_id.clone()).collect();
    agents.sort_unstable();
    agents.dedup();
    agents
}

/// Checks the fences of a batch on PostgreSQL, inside its transaction.
pub(crate) async fn check_pg(
    conn: &mut AsyncPgConnection,
    fences: &[FenceSlot],
) -> Result<Refusals, StoreError> {
    let agents = fenced_agents(fences);
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    let owners: Vec<Owner> = diesel::sql_query(
        "SELECT agent_id, node_id, epoch FROM vigil_agent_leases WHERE agent_id = ANY($1) \
         ORDER BY agent_id FOR SHARE",
    )
    .bind::<Array<Text>, _>(agents)
    .load(conn)
    .await?;
    Ok(verdicts(fences, owners))
}

/// Checks the fences of a batch on SQLite, inside its `BEGIN IMMEDIATE` transaction.
pub(crate) async fn check_sqlite(
    conn: &mut SqliteConn,
    fences: &[FenceSlot],
) -> Result<Refusals, StoreError> {
    let agents = fenced_agents(fences);
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; agents.len()].join(", ");
    let mut query = diesel::sql_query(format!(
        "SELECT agent_id, node_id, epoch FROM vigil_agent_leases WHERE agent_id IN ({placeholders})"
    ))
    .into_boxed();
    for agent in agents {
        query = query.bind::<Text, _>(agent);
    }
    let owners: Vec<Owner> = query.load(conn).await?;
    Ok(verdicts(fences, owners))
}

/// A fence is current when its agent's row names its node and its epoch.
fn verdicts(fences: &[FenceSlot], owners: Vec<Owner>) -> Refusals {
    let owners: HashMap<String, (Option<String>, i64)> =
        owners.into_iter().map(|o| (o.agent_id, (o.node_id, o.epoch))).collect();
    fences
        .iter()
        .map(|fence| {
            let fence = fence.as_deref()?;
            match owners.get(&fence.agent_id) {
                Some((Some(node), epoch)) if *node == fence.node_id && *epoch == fence.epoch => None,
                current => Some(StoreError::Fenced {
                    agent_id: fence.agent_id.clone(),
                    epoch: fence.epoch,
                    current_epoch: current.map(|(_, epoch)| *epoch),
                }),
            }
        })
        .collect()
}
