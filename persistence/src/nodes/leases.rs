//! Claiming and releasing agent leases, and reading the leases and the ownership log.
//!
//! Every statement that changes leases locks the rows it changes in agent-id order
//! (`SELECT ... ORDER BY agent_id FOR UPDATE`), as the writer's fence check does
//! (`FOR SHARE`), so two of them never wait on each other in opposite orders.

use std::collections::HashSet;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::model::{AgentLease, EndReason, OwnershipInterval, Placement};
use super::{lease_secs, on_postgres};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::Ts;
use crate::types::sql_types::TsTz;

/// A row of `vigil_agent_leases`.
#[derive(QueryableByName)]
pub(super) struct LeaseRow {
    #[diesel(sql_type = Text)]
    pub(super) agent_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) node_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(super) epoch: i64,
    #[diesel(sql_type = TsTz)]
    pub(super) lease_expires_at: Ts,
    #[diesel(sql_type = Text)]
    pub(super) placement: String,
    #[diesel(sql_type = Nullable<TsTz>)]
    pub(super) acquired_at: Option<Ts>,
}

impl LeaseRow {
    pub(super) fn into_lease(self) -> Result<AgentLease, StoreError> {
        Ok(AgentLease {
            placement: self.placement.parse().map_err(StoreError::Task)?,
            agent_id: self.agent_id,
            node_id: self.node_id,
            epoch: self.epoch,
            lease_expires_at: self.lease_expires_at,
            acquired_at: self.acquired_at,
        })
    }
}

#[derive(QueryableByName)]
struct IntervalRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    agent_id: String,
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = TsTz)]
    acquired_at: Ts,
    #[diesel(sql_type = Nullable<TsTz>)]
    ended_at: Option<Ts>,
    #[diesel(sql_type = Nullable<Text>)]
    end_reason: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The common tail of every release: `locked`, `dropped` (the released leases:
/// `agent_id`, `epoch`) and `closed` (their open intervals, ended with `reason`), as
/// CTEs. The node is `$1`; `filter` narrows the leases further (`AND ...`).
pub(super) fn release_ctes(filter: &str, reason: &'static str) -> String {
    format!(
        "locked AS (SELECT agent_id FROM vigil_agent_leases WHERE node_id = $1 {filter} \
           ORDER BY agent_id FOR UPDATE), \
         dropped AS ( \
           UPDATE vigil_agent_leases l SET node_id = NULL, lease_expires_at = LEAST(l.lease_expires_at, now()) \
           FROM locked k WHERE l.agent_id = k.agent_id RETURNING l.agent_id, l.epoch), \
         closed AS ( \
           UPDATE vigil_ownership_log o SET ended_at = now(), end_reason = '{reason}' \
           FROM dropped d WHERE o.agent_id = d.agent_id AND o.epoch = d.epoch AND o.ended_at IS NULL \
           RETURNING o.id)"
    )
}

const CLAIM_SQL: &str = "\
    WITH wanted AS (SELECT * FROM unnest($2::text[], $3::text[]) AS w(agent_id, placement)), \
    candidates AS ( \
      SELECT l.agent_id, w.placement FROM vigil_agent_leases l JOIN wanted w ON w.agent_id = l.agent_id \
      WHERE l.node_id IS NULL OR l.lease_expires_at <= now() \
      ORDER BY l.agent_id LIMIT $4 \
      FOR UPDATE OF l SKIP LOCKED), \
    claimed AS ( \
      UPDATE vigil_agent_leases l SET node_id = $1, epoch = l.epoch + 1, \
        lease_expires_at = now() + make_interval(secs => $5), placement = c.placement, acquired_at = now() \
      FROM candidates c WHERE l.agent_id = c.agent_id \
      RETURNING l.agent_id, l.node_id, l.epoch, l.lease_expires_at, l.placement, l.acquired_at), \
    closed AS ( \
      UPDATE vigil_ownership_log o SET ended_at = now(), end_reason = 'expired' \
      FROM claimed c WHERE o.agent_id = c.agent_id AND o.ended_at IS NULL RETURNING o.id), \
    opened AS ( \
      INSERT INTO vigil_ownership_log (agent_id, node_id, epoch, acquired_at) \
      SELECT c.agent_id, c.node_id, c.epoch, now() \
      FROM claimed c, (SELECT count(*) FROM closed) done_closing \
      RETURNING id) \
    SELECT agent_id, node_id, epoch, lease_expires_at, placement, acquired_at FROM claimed \
    WHERE (SELECT count(*) FROM opened) >= 0 ORDER BY agent_id";

impl Store {
    /// Claims for `node_id` at most `limit` of the `wanted` agents that are free: never
    /// owned, released, or whose owner's lease expired (see the claim rules in
    /// [`crate::nodes`]). Each claimed lease gets the next epoch and a lease of `lease`
    /// from the server's `now()`; its interval is opened in the ownership log (the
    /// previous owner's, if still open, is closed `expired`). Agents owned by anyone
    /// under a live lease — this node included — are left alone.
    ///
    /// Atomic against concurrent claimers: rows another claim is taking are skipped,
    /// never shared. Returns the leases claimed, sorted by agent id. A claim whose
    /// answer was lost (the connection died after it committed) is not returned again;
    /// the node's next [`Renewal`](super::Renewal) lists it among the held leases.
    pub async fn claim_agents(
        &self,
        node_id: &str,
        wanted: &[(String, Placement)],
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<AgentLease>, StoreError> {
        let secs = lease_secs(lease)?;
        // Sorted and without duplicates: concurrent claimers insert new rows in one
        // order, so they never wait on each other in a cycle.
        let mut seen = HashSet::new();
        let mut wanted: Vec<(String, Placement)> =
            wanted.iter().filter(|(agent, _)| seen.insert(agent.as_str())).cloned().collect();
        wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if limit == 0 || wanted.is_empty() {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let agents: Vec<String> = wanted.iter().map(|(agent, _)| agent.clone()).collect();
        let placements: Vec<String> = wanted.iter().map(|(_, p)| p.as_str().to_owned()).collect();
        let node_id = node_id.to_owned();
        let rows: Vec<LeaseRow> = on_postgres!(
            self,
            "agent leases (one node per SQLite database)",
            [node_id, agents, placements],
            |conn| {
                // Agents never seen get an unowned row (epoch 0) first, in its own short
                // statement, so that the claim below is one UPDATE over existing rows.
                diesel::sql_query(
                "INSERT INTO vigil_agent_leases (agent_id, node_id, epoch, lease_expires_at, placement) \
                 SELECT w.agent_id, NULL, 0, now(), w.placement FROM unnest($1::text[], $2::text[]) AS w(agent_id, placement) \
                 ORDER BY w.agent_id ON CONFLICT (agent_id) DO NOTHING",
            )
            .bind::<Array<Text>, _>(&agents)
            .bind::<Array<Text>, _>(&placements)
            .execute(conn)
            .await?;
                Ok(diesel::sql_query(CLAIM_SQL)
                    .bind::<Text, _>(&node_id)
                    .bind::<Array<Text>, _>(&agents)
                    .bind::<Array<Text>, _>(&placements)
                    .bind::<BigInt, _>(limit)
                    .bind::<Double, _>(secs)
                    .load(conn)
                    .await?)
            }
        )?;
        rows.into_iter().map(LeaseRow::into_lease).collect()
    }

    /// Hands `agent_ids` over at once: the leases `node_id` holds among them are
    /// released (`node_id` `NULL`, claimable by any node now; the epoch stays, the next
    /// owner raises it) and their intervals ended `released`. Returns how many it
    /// released. Stop the agents and flush their writes first: a write fenced with a
    /// released lease is refused.
    pub async fn release_agents(&self, node_id: &str, agent_ids: &[String]) -> Result<usize, StoreError> {
        if agent_ids.is_empty() {
            return Ok(0);
        }
        let node_id = node_id.to_owned();
        let agents = agent_ids.to_vec();
        let sql = format!(
            "WITH {} SELECT count(*) AS n FROM dropped",
            release_ctes("AND agent_id = ANY($2)", EndReason::Released.as_str())
        );
        let released: Count = on_postgres!(
            self,
            "agent leases (one node per SQLite database)",
            [node_id, agents, sql],
            |conn| {
                Ok(diesel::sql_query(sql)
                    .bind::<Text, _>(&node_id)
                    .bind::<Array<Text>, _>(&agents)
                    .get_result(conn)
                    .await?)
            }
        )?;
        Ok(usize::try_from(released.n).unwrap_or(0))
    }

    /// Every agent lease, sorted by agent id.
    pub async fn agent_leases(&self) -> Result<Vec<AgentLease>, StoreError> {
        let rows: Vec<LeaseRow> =
            on_postgres!(self, "agent leases (one node per SQLite database)", [], |conn| {
                Ok(diesel::sql_query(
                    "SELECT agent_id, node_id, epoch, lease_expires_at, placement, acquired_at \
                 FROM vigil_agent_leases ORDER BY agent_id",
                )
                .load(conn)
                .await?)
            })?;
        rows.into_iter().map(LeaseRow::into_lease).collect()
    }

    /// The ownership intervals of `agent_id` (of every agent when `None`), by agent and
    /// epoch.
    pub async fn ownership_log(&self, agent_id: Option<&str>) -> Result<Vec<OwnershipInterval>, StoreError> {
        let agent_id = agent_id.map(str::to_owned);
        let rows: Vec<IntervalRow> = on_postgres!(
            self,
            "agent leases (one node per SQLite database)",
            [agent_id],
            |conn| {
                Ok(diesel::sql_query(
                "SELECT id, agent_id, node_id, epoch, acquired_at, ended_at, end_reason FROM vigil_ownership_log \
                 WHERE $1::text IS NULL OR agent_id = $1 ORDER BY agent_id, epoch",
            )
            .bind::<Nullable<Text>, _>(&agent_id)
            .load(conn)
            .await?)
            }
        )?;
        rows.into_iter()
            .map(|row| {
                Ok(OwnershipInterval {
                    id: row.id,
                    agent_id: row.agent_id,
                    node_id: row.node_id,
                    epoch: row.epoch,
                    acquired_at: row.acquired_at,
                    ended_at: row.ended_at,
                    end_reason: row
                        .end_reason
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(StoreError::Task)?,
                })
            })
            .collect()
    }
}
