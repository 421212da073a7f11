//! The values of the cluster model: what a node says about itself, what a reader sees
//! of it, an agent's lease, the fence a write carries, a renewal's answer and an
//! ownership interval.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::Ts;

/// Where an agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// One instance in the whole cluster, on whichever node holds its lease.
    Singleton,
    /// One instance per node. Its agent id names the node (say `health@<node>`), so
    /// each node claims its own; the lease and the fence work as for a singleton.
    PerNode,
}

impl Placement {
    /// The database spelling: `singleton` or `per_node`.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Singleton => "singleton",
            Placement::PerNode => "per_node",
        }
    }
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "singleton" => Ok(Placement::Singleton),
            "per_node" => Ok(Placement::PerNode),
            other => Err(format!("unknown placement `{other}`")),
        }
    }
}

/// What a node says about itself when it joins. The times (started, renewed, expiry)
/// are the server's, set by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id, unique in the cluster (`Presence::new_node_id` gives
    /// `host/pid/n`).
    pub node_id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The Vigil version it runs.
    pub version: String,
}

impl NodeRecord {
    /// This process, as node `node_id`.
    pub fn this_process(node_id: impl Into<String>) -> Self {
        let process = crate::presence::ProcessIdentity::current();
        Self {
            node_id: node_id.into(),
            host: process.host,
            pid: process.pid,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A node as a reader sees it, with its liveness computed at read time from the
/// server's `now()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// What the node said about itself.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// When it (last) joined.
    pub started_at: Ts,
    /// When it last renewed its lease.
    pub renewed_at: Ts,
    /// When its lease expires (or expired).
    pub lease_expires_at: Ts,
    /// When it left, if it did.
    pub stopped_at: Option<Ts>,
    /// How long ago it renewed, by the server's clock.
    pub lease_age: Duration,
    /// Whether it is a member now: it did not leave and its lease has not expired.
    pub alive: bool,
}

/// An agent's ownership lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentLease {
    /// The agent.
    pub agent_id: String,
    /// Its owner; `None` when released (claimable at once).
    pub node_id: Option<String>,
    /// The fencing token: raised on every change of owner.
    pub epoch: i64,
    /// Until when the owner holds it, unless it renews.
    pub lease_expires_at: Ts,
    /// Where the agent runs.
    pub placement: Placement,
    /// When the current owner acquired it (`None` before the first claim).
    pub acquired_at: Option<Ts>,
}

impl AgentLease {
    /// The fence the owner's writes for this agent carry; `None` when released.
    pub fn fence(&self) -> Option<Fence> {
        Some(Fence { agent_id: self.agent_id.clone(), node_id: self.node_id.clone()?, epoch: self.epoch })
    }
}

/// What a write of an agent carries so that the writer commits it only while its
/// node still owns the agent at that epoch ([`crate::SharedState::fenced`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The agent whose lease decides.
    pub agent_id: String,
    /// The node that believes it owns the agent.
    pub node_id: String,
    /// The epoch of its lease.
    pub epoch: i64,
}

/// What became of a node's own row at a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeRenewal {
    /// Renewed; its lease had not expired.
    Renewed,
    /// Renewed, but its lease had expired: others saw it dead meanwhile and may have
    /// taken agents over ([`Renewal::lost`] says which).
    RenewedAfterExpiry,
    /// Not renewed: the node never joined, or it left. It must join again.
    NotAMember,
}

/// The answer of [`Store::renew_node`](crate::Store::renew_node).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Renewal {
    /// The node's own row.
    pub node: NodeRenewal,
    /// Every agent lease the node still holds, renewed (sorted by agent id).
    pub held: Vec<AgentLease>,
}

impl Renewal {
    /// Whether the node still holds the agent at the fence's epoch.
    pub fn holds(&self, fence: &Fence) -> bool {
        self.held.iter().any(|lease| {
            lease.agent_id == fence.agent_id
                && lease.epoch == fence.epoch
                && lease.node_id.as_deref() == Some(fence.node_id.as_str())
        })
    }

    /// Of the agents the node runs (their fences), those it no longer holds at their
    /// epoch: taken over after its lease expired. Their writes are refused; the node
    /// should stop them.
    pub fn lost<'a>(&self, running: &'a [Fence]) -> Vec<&'a Fence> {
        running.iter().filter(|fence| !self.holds(fence)).collect()
    }
}

/// Why an ownership interval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// Handed over gracefully ([`Store::release_agents`](crate::Store::release_agents),
    /// [`Store::leave_cluster`](crate::Store::leave_cluster)).
    Released,
    /// Taken over by a claim after the owner's lease expired.
    Expired,
    /// The owner joined again under the same node id: what its earlier life held ended
    /// without a handover ([`Store::join_cluster`](crate::Store::join_cluster)).
    Lost,
}

impl EndReason {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Released => "released",
            EndReason::Expired => "expired",
            EndReason::Lost => "lost",
        }
    }
}

impl FromStr for EndReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "released" => Ok(EndReason::Released),
            "expired" => Ok(EndReason::Expired),
            "lost" => Ok(EndReason::Lost),
            other => Err(format!("unknown end reason `{other}`")),
        }
    }
}

/// One interval during which one node owned one agent at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnershipInterval {
    /// The log row's id.
    pub id: i64,
    /// The agent.
    pub agent_id: String,
    /// Its owner during the interval.
    pub node_id: String,
    /// The epoch of the interval.
    pub epoch: i64,
    /// When it began (server time).
    pub acquired_at: Ts,
    /// When it ended; `None` while open.
    pub ended_at: Option<Ts>,
    /// Why it ended.
    pub end_reason: Option<EndReason>,
}
