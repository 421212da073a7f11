//! Many Vigil processes ("nodes") on one PostgreSQL database: membership, agent
//! ownership leases, and the fencing tokens that keep a node that lost an agent from
//! writing for it.
//!
//! ## The model
//!
//! * **A node** joins ([`Store::join_cluster`]) with a lease, renews it every few
//!   seconds ([`Store::renew_node`]) and leaves ([`Store::leave_cluster`]). Whether it
//!   is alive is decided when read ([`Store::nodes`]): its lease has not expired and it
//!   did not leave.
//! * **Every agent runs on exactly one node at a time.** Ownership is a row of
//!   `vigil_agent_leases`: the owner (`node_id`, `NULL` when released), until when
//!   (`lease_expires_at`), and the **epoch**, a number raised on every change of owner.
//!   A node's renewal renews the leases of every agent it holds, in the same round trip.
//! * **Leases are in the server's time.** Every instant is the database's `now()`,
//!   never a node's clock: two nodes whose clocks disagree by minutes still agree on
//!   who holds what. A node only says *how long* (a [`Duration`]).
//! * **The epoch is a fencing token.** A node that stalls (a long pause, a cut-off
//!   network) may still believe it owns an agent that another node took over. Every
//!   write of an agent carries its [`Fence`] (agent, node, epoch:
//!   [`SharedState::fenced`](crate::SharedState::fenced)); the writer checks it in the
//!   transaction that applies the write, under a row lock that keeps a claim from
//!   passing it, and refuses it with [`StoreError::Fenced`] when it is no longer
//!   current. A lease that expired but that nobody claimed is still current: nobody
//!   else can have written with a newer epoch.
//!
//! ## Claim rules ([`Store::claim_agents`])
//!
//! | the agent's row                         | claimable? | epoch  | previous interval |
//! |-----------------------------------------|------------|--------|-------------------|
//! | none (never owned)                      | yes        | 1      | —                 |
//! | `node_id` `NULL` (released)             | yes, at once | +1   | closed `released` by the release |
//! | owned, lease expired                    | yes        | +1     | closed `expired`  |
//! | owned, lease live (by anyone)           | no         | —      | —                 |
//!
//! A claim is one statement (`SELECT ... FOR UPDATE SKIP LOCKED` feeding an `UPDATE`),
//! so concurrent claimers never get the same agent: each skips the rows the other
//! holds. A node claims at most `limit` agents per call.
//!
//! Every interval of ownership is kept in `vigil_ownership_log`
//! ([`Store::ownership_log`]): at most one open interval per agent (a unique index
//! says so), one per epoch. Intervals end `released` (a graceful handover:
//! [`Store::release_agents`], [`Store::leave_cluster`]), `expired` (taken over after
//! the owner's lease expired) or `lost` (the owner joined again under the same node id:
//! what its earlier life held ended without a handover).
//!
//! ## A node's loop
//!
//! ```no_run
//! # async fn demo(store: vigil_persistence::Store, shared: vigil_persistence::SharedState) -> Result<(), vigil_persistence::StoreError> {
//! use std::time::Duration;
//! use vigil_persistence::nodes::{NodeRecord, Placement};
//! use vigil_persistence::shared_state::Heartbeat;
//!
//! let node = NodeRecord::this_process("host-a/4242/1");
//! let lease = Duration::from_secs(15);
//! store.join_cluster(&node, lease).await?;
//! let wanted = vec![("ingest".to_owned(), Placement::Singleton)];
//! for claimed in store.claim_agents(&node.node_id, &wanted, 10, lease).await? {
//!     let fence = claimed.fence().expect("a claimed lease has an owner");
//!     let agent_state = shared.fenced(fence); // every write of this agent carries it
//!     agent_state.update_agent_heartbeat("ingest", Heartbeat::new()).await?; // refused once taken over
//! }
//! // Every few seconds (well within the lease):
//! let renewal = store.renew_node(&node.node_id, lease).await?;
//! for lease in &renewal.held {
//!     println!("still holding {} at epoch {}", lease.agent_id, lease.epoch);
//! }
//! store.leave_cluster(&node.node_id).await?;
//! # Ok(()) }
//! ```
//!
//! These calls run on the store's pool, not through the persistence actor's queue: a
//! renewal never waits behind a backlog of writes. They need PostgreSQL; on SQLite (one
//! node per database by design) they fail with [`StoreError::Unsupported`]. The
//! writer's fence check works on both.
//!
//! | module             | what                                                 |
//! |--------------------|------------------------------------------------------|
//! | `nodes/model`      | [`Placement`], [`NodeRecord`], [`NodeView`], [`AgentLease`], [`Fence`], [`Renewal`], [`OwnershipInterval`] |
//! | `nodes/membership` | joining, renewing, leaving, listing nodes            |
//! | `nodes/leases`     | claiming, releasing, listing leases and the log      |
//! | `nodes/fence`      | the writer's check of a batch's fences               |

#[cfg(doc)]
use std::time::Duration;

#[cfg(doc)]
use crate::{StoreError, store::Store};

pub(crate) mod fence;
mod leases;
mod membership;
mod model;

pub use model::{
    AgentLease, EndReason, Fence, NodeRecord, NodeRenewal, NodeView, OwnershipInterval, Placement, Renewal,
};

/// Runs `$body` with `$conn` bound to a pooled PostgreSQL connection, with the store's
/// retries and read deadline; on SQLite fails with [`StoreError::Unsupported`]
/// naming `$what`.
macro_rules! on_postgres {
    ($store:expr, $what:expr, [$($var:ident),*], |$conn:ident| $body:expr) => {
        $store
            .run(move |inner| {
                $(let $var = $var.clone();)*
                async move {
                    match &inner.backend {
                        $crate::backend::Backend::Pg(pool) => {
                            $crate::backend::with_pg_conn!(inner, pool, |$conn| $body)
                        }
                        $crate::backend::Backend::Sqlite(_) => Err($crate::error::StoreError::Unsupported {
                            backend: "SQLite",
                            what: $what,
                        }),
                    }
                }
            })
            .await
    };
}
use on_postgres;

/// A lease length as seconds for SQL, refused when zero or absurd.
fn lease_secs(lease: std::time::Duration) -> Result<f64, crate::error::StoreError> {
    // A year is far beyond any sensible lease; it keeps the interval arithmetic finite.
    if lease.is_zero() || lease > std::time::Duration::from_secs(365 * 24 * 3600) {
        return Err(crate::error::StoreError::invalid("lease", format!("{lease:?} is not a usable lease")));
    }
    Ok(lease.as_secs_f64())
}
