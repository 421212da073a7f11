//! Joining, renewing and leaving the cluster, and listing its nodes. One statement
//! each, in the server's time.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::leases::{LeaseRow, release_ctes};
use super::model::{NodeRecord, NodeRenewal, NodeView, Renewal};
use super::{lease_secs, on_postgres};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::Ts;
use crate::types::sql_types::TsTz;

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    pid: i64,
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = TsTz)]
    started_at: Ts,
    #[diesel(sql_type = TsTz)]
    renewed_at: Ts,
    #[diesel(sql_type = TsTz)]
    lease_expires_at: Ts,
    #[diesel(sql_type = Nullable<TsTz>)]
    stopped_at: Option<Ts>,
    /// The server's `now()` of the read.
    #[diesel(sql_type = TsTz)]
    now: Ts,
}

/// One row of a renewal: the node's verdict, and one held lease (or none).
#[derive(QueryableByName)]
struct RenewalRow {
    /// `NULL`: the node row was not renewed (never joined, or left).
    #[diesel(sql_type = Nullable<Bool>)]
    was_alive: Option<bool>,
    /// `NULL` when the node holds no lease (the row then only carries `was_alive`).
    #[diesel(sql_type = Nullable<Text>)]
    agent_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    node_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    epoch: Option<i64>,
    #[diesel(sql_type = Nullable<TsTz>)]
    lease_expires_at: Option<Ts>,
    #[diesel(sql_type = Nullable<Text>)]
    placement: Option<String>,
    #[diesel(sql_type = Nullable<TsTz>)]
    acquired_at: Option<Ts>,
}

impl RenewalRow {
    /// The held lease of this row, if it carries one.
    fn lease(self) -> Option<LeaseRow> {
        Some(LeaseRow {
            agent_id: self.agent_id?,
            node_id: self.node_id,
            epoch: self.epoch?,
            lease_expires_at: self.lease_expires_at?,
            placement: self.placement?,
            acquired_at: self.acquired_at,
        })
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Store {
    /// Makes `node` a member with a lease of `lease` from the server's `now()`:
    /// inserts its row, or renews and restarts it (a node that left may join again).
    ///
    /// Joining starts a node's life: leases still held under its id by an earlier life
    /// of it (a crash, then a restart under the same id) are released at once, their
    /// intervals ended `lost`, so that they are claimed again with a new epoch.
    pub async fn join_cluster(&self, node: &NodeRecord, lease: Duration) -> Result<(), StoreError> {
        let secs = lease_secs(lease)?;
        let node_id = node.node_id.clone();
        let node = node.clone();
        let sql = format!(
            "WITH node AS ( \
               INSERT INTO vigil_nodes (node_id, host, pid, version, started_at, renewed_at, lease_expires_at, stopped_at) \
               VALUES ($1, $2, $3, $4, now(), now(), now() + make_interval(secs => $5), NULL) \
               ON CONFLICT (node_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, \
                 version = EXCLUDED.version, started_at = EXCLUDED.started_at, renewed_at = EXCLUDED.renewed_at, \
                 lease_expires_at = EXCLUDED.lease_expires_at, stopped_at = NULL \
               RETURNING node_id), \
             {} \
             SELECT count(*) AS n FROM dropped",
            release_ctes("", "lost")
        );
        let lost: Count =
            on_postgres!(self, "cluster membership (one node per SQLite database)", [node, sql], |conn| {
                Ok(diesel::sql_query(sql)
                    .bind::<Text, _>(&node.node_id)
                    .bind::<Text, _>(&node.host)
                    .bind::<BigInt, _>(i64::from(node.pid))
                    .bind::<Text, _>(&node.version)
                    .bind::<Double, _>(secs)
                    .get_result(conn)
                    .await?)
            })?;
        if lost.n > 0 {
            tracing::warn!(node.id = %node_id, leases = lost.n, "node joined again: leases of its earlier life released as lost");
        }
        Ok(())
    }

    /// Renews the node's lease and the lease of every agent it holds, for `lease` from
    /// the server's `now()`, in one round trip. The [`Renewal`] lists the leases it
    /// still holds — compare with what it runs ([`Renewal::lost`]) to learn which were
    /// taken over — and whether its own row was still alive. A node that left (or
    /// never joined) is not renewed ([`NodeRenewal::NotAMember`]).
    ///
    /// A held lease that expired but that nobody claimed is renewed at its epoch:
    /// nobody else can have written for the agent meanwhile.
    pub async fn renew_node(&self, node_id: &str, lease: Duration) -> Result<Renewal, StoreError> {
        let secs = lease_secs(lease)?;
        let node_id = node_id.to_owned();
        let rows: Vec<RenewalRow> = on_postgres!(
            self,
            "cluster membership (one node per SQLite database)",
            [node_id],
            |conn| {
                Ok(diesel::sql_query(
                "WITH node AS ( \
                   UPDATE vigil_nodes n SET renewed_at = now(), lease_expires_at = now() + make_interval(secs => $2) \
                   FROM (SELECT node_id, lease_expires_at AS before FROM vigil_nodes WHERE node_id = $1) b \
                   WHERE n.node_id = b.node_id AND n.stopped_at IS NULL \
                   RETURNING b.before > now() AS was_alive), \
                 locked AS (SELECT agent_id FROM vigil_agent_leases WHERE node_id = $1 ORDER BY agent_id FOR UPDATE), \
                 held AS ( \
                   UPDATE vigil_agent_leases l SET lease_expires_at = now() + make_interval(secs => $2) \
                   FROM locked k WHERE l.agent_id = k.agent_id \
                   RETURNING l.agent_id, l.node_id, l.epoch, l.lease_expires_at, l.placement, l.acquired_at) \
                 SELECT n.was_alive, h.agent_id, h.node_id, h.epoch, h.lease_expires_at, h.placement, h.acquired_at \
                 FROM (SELECT 1) one LEFT JOIN node n ON true LEFT JOIN held h ON true \
                 ORDER BY h.agent_id",
            )
            .bind::<Text, _>(&node_id)
            .bind::<Double, _>(secs)
            .load(conn)
            .await?)
            }
        )?;
        let node = match <[RenewalRow]>::first(&rows).and_then(|row| row.was_alive) {
            Some(true) => NodeRenewal::Renewed,
            Some(false) => NodeRenewal::RenewedAfterExpiry,
            None => NodeRenewal::NotAMember,
        };
        let held = rows
            .into_iter()
            .filter_map(RenewalRow::lease)
            .map(LeaseRow::into_lease)
            .collect::<Result<_, _>>()?;
        Ok(Renewal { node, held })
    }

    /// Leaves the cluster: marks the node stopped and releases every lease it holds
    /// (intervals ended `released`), so other nodes claim its agents at once. Stop the
    /// agents and flush their writes first: a write fenced with a released lease is
    /// refused.
    pub async fn leave_cluster(&self, node_id: &str) -> Result<(), StoreError> {
        let node_id = node_id.to_owned();
        let sql = format!(
            "WITH node AS ( \
               UPDATE vigil_nodes SET stopped_at = now(), lease_expires_at = LEAST(lease_expires_at, now()) \
               WHERE node_id = $1 AND stopped_at IS NULL RETURNING node_id), \
             {} \
             SELECT count(*) AS n FROM dropped",
            release_ctes("", "released")
        );
        let _: Count = on_postgres!(
            self,
            "cluster membership (one node per SQLite database)",
            [node_id, sql],
            |conn| Ok(diesel::sql_query(sql).bind::<Text, _>(&node_id).get_result(conn).await?)
        )?;
        Ok(())
    }

    /// Every node that ever joined, with its liveness computed now from the server's
    /// clock (sorted by node id).
    pub async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        let rows: Vec<NodeRow> =
            on_postgres!(self, "cluster membership (one node per SQLite database)", [], |conn| {
                Ok(diesel::sql_query(
                "SELECT node_id, host, pid, version, started_at, renewed_at, lease_expires_at, stopped_at, \
                 now() AS now FROM vigil_nodes ORDER BY node_id",
            )
            .load(conn)
            .await?)
            })?;
        rows.into_iter()
            .map(|row| {
                let age = (row.now.get() - row.renewed_at.get()).to_std().unwrap_or_default();
                Ok(NodeView {
                    record: NodeRecord {
                        node_id: row.node_id,
                        host: row.host,
                        pid: u32::try_from(row.pid).map_err(|_| {
                            StoreError::Task(format!("vigil_nodes.pid {} is not a process id", row.pid))
                        })?,
                        version: row.version,
                    },
                    started_at: row.started_at,
                    renewed_at: row.renewed_at,
                    lease_expires_at: row.lease_expires_at,
                    alive: row.stopped_at.is_none() && row.lease_expires_at > row.now,
                    stopped_at: row.stopped_at,
                    lease_age: age,
                })
            })
            .collect()
    }
}
