//! Cluster mode: several runtimes — *nodes*, in one process each, on one or many
//! machines — share one PostgreSQL database, and every agent runs on exactly one of
//! them at a time.
//!
//! Each node builds the same tree. Its top-level children are placed
//! ([`ChildSpec::placement`](crate::ChildSpec::placement)):
//!
//! - a [`Placement::Singleton`] child (the default; the built-in monitors are) runs on
//!   the node that holds its **lease** in `vigil_agent_leases`. The other nodes hold it
//!   in their tree without starting it;
//! - a [`Placement::PerNode`] child runs on every node, unleased (its id names the
//!   node).
//!
//! **Leases.** A node joins ([`Store::join_cluster`]) and renews its own lease and the
//! leases of the agents it runs every third of the lease period, in one statement, on
//! its own timer — not behind the write queue. All lease times are the database
//! server's. A node whose lease expired is dead to the cluster: the others claim its
//! agents ([`Store::claim_agents`]), each claim raising the agent's **epoch**.
//!
//! **Fencing.** Every write of an agent carries the fence of the lease it was started
//! under (its node and epoch, [`SharedState::fenced`]); the writer commits it only if
//! that epoch is still current, in the same transaction. A node that was paused or cut
//! off past its lease cannot overwrite the new owner's rows: its late writes are refused
//! with [`StoreError::Fenced`] and counted, and
//! at its next renewal it learns which leases it lost and stops those agents at once.
//!
//! **Placement.** At every renewal a node that runs fewer than its fair share
//! (`ceil(singletons / live nodes)`) claims unowned or orphaned agents up to it; it
//! never takes an agent whose owner is alive. A node that runs at least two more than
//! the least loaded live node for two renewals in a row — nodes joined since it
//! started — hands what it runs beyond its share over (at least one; it stops them,
//! flushes their writes, releases their leases), so a cluster started one node at a
//! time spreads out (10 agents over 3 nodes: 4, 3, 3) within a few renewals, and a
//! difference of one never moves anything. A node that shuts down hands all
//! its agents over at once ([`Store::leave_cluster`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use vigil_persistence::nodes::{Fence, NodeRecord, NodeRenewal, Placement};
use vigil_persistence::{SharedState, Store, StoreError};

use crate::supervisor::{Acquire, Relinquish, Supervisor};

/// How a runtime takes part in a cluster ([`RuntimeBuilder::cluster`](crate::RuntimeBuilder::cluster)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    lease: Duration,
    node_id: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { lease: Duration::from_secs(10), node_id: None }
    }
}

impl ClusterConfig {
    /// The default: a 10 s lease, renewed every 3.3 s; a node id made from the host and
    /// process (`host/pid/n`).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a node's leases last without renewal: a node that stops renewing (it
    /// died, froze or lost the database) has its agents taken over after this long,
    /// and they run elsewhere within about two lease periods. At least one second.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// A fixed node id (default: `host/pid/n`, unique per process).
    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// The lease period.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The configured node id, if any.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }
}

/// The leases of the agents this node runs, by agent id: what their writes are fenced
/// with. Shared with the supervisor's environment, which fences an agent's shared
/// state when it spawns it.
pub(crate) type Fences = Arc<Mutex<HashMap<String, Fence>>>;

/// One node of a cluster: its identity, its singletons, and what it runs.
pub(crate) struct Node {
    shared: SharedState,
    store: Store,
    node_id: String,
    lease: Duration,
    /// The top-level singleton children, in start order.
    singletons: Vec<String>,
    fences: Fences,
    /// Renewals in a row at which it ran more than its share.
    over_share: u32,
    /// Set by tests (`testkit`) to stop renewing, as a frozen or cut-off node would.
    paused: Arc<AtomicBool>,
}

/// Renewals in a row over its share before a node hands its surplus over.
const OVER_SHARE_RENEWALS: u32 = 2;

impl Node {
    /// Joins the cluster and claims this node's share of `singletons`, before the tree
    /// starts. Returns the node and the singletons it does not run (to be held).
    pub(crate) async fn join(
        shared: &SharedState,
        config: &ClusterConfig,
        node_id: String,
        singletons: Vec<String>,
        fences: Fences,
    ) -> Result<(Node, HashSet<String>), StoreError> {
        let store = shared.store().clone();
        store.join_cluster(&NodeRecord::this_process(node_id.clone()), config.lease).await?;
        let mut node = Node {
            shared: shared.clone(),
            store,
            node_id,
            lease: config.lease,
            singletons,
            fences,
            over_share: 0,
            paused: Arc::default(),
        };
        let live = node.live_nodes().await?;
        for lease in node.claim_up_to_share(&live).await? {
            node.fences.lock().expect("fences lock").insert(lease.agent_id.clone(), lease);
        }
        let running = node.running();
        let held = node.singletons.iter().filter(|id| !running.contains(*id)).cloned().collect();
        tracing::info!(node = %node.node_id, running = running.len(), of = node.singletons.len(), "joined the cluster");
        Ok((node, held))
    }

    /// The node's id.
    pub(crate) fn id(&self) -> &str {
        &self.node_id
    }

    /// The switch that stops its renewals (tests: a node frozen past its lease).
    pub(crate) fn pause_switch(&self) -> Arc<AtomicBool> {
        self.paused.clone()
    }

    /// The singletons this node runs (holds a lease for).
    fn running(&self) -> HashSet<String> {
        self.fences.lock().expect("fences lock").keys().cloned().collect()
    }

    /// Claims unowned or orphaned singletons up to this node's fair share among the
    /// live nodes `live`; returns the fences of those claimed.
    async fn claim_up_to_share(&mut self, live: &[String]) -> Result<Vec<Fence>, StoreError> {
        let (share, running) = (self.share(live), self.running());
        if running.len() >= share {
            return Ok(Vec::new());
        }
        let wanted: Vec<(String, Placement)> = self
            .singletons
            .iter()
            .filter(|id| !running.contains(*id))
            .map(|id| (id.clone(), Placement::Singleton))
            .collect();
        let claimed =
            self.store.claim_agents(&self.node_id, &wanted, share - running.len(), self.lease).await?;
        Ok(claimed.iter().filter_map(|lease| lease.fence()).collect())
    }

    /// The ids of the live nodes, read once per renewal so that every decision of one
    /// tick (the share, the least loaded node) sees the same membership.
    async fn live_nodes(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.store.nodes().await?.into_iter().filter(|n| n.alive).map(|n| n.record.node_id).collect())
    }

    /// This node's fair share of the singletons among `live` nodes.
    fn share(&self, live: &[String]) -> usize {
        self.singletons.len().div_ceil(live.len().max(1))
    }

    /// How many singletons the least loaded of the `live` nodes runs (by the leases).
    async fn least_loaded(&self, live: &[String]) -> Result<usize, StoreError> {
        let mut counts: HashMap<&str, usize> = live.iter().map(|id| (id.as_str(), 0)).collect();
        for lease in self.store.agent_leases().await? {
            if let Some(count) = lease.node_id.as_deref().and_then(|node| counts.get_mut(node)) {
                *count += 1;
            }
        }
        Ok(counts.into_values().min().unwrap_or(0))
    }

    /// Renews, stops what it lost, claims up to its share, hands over a surplus.
    async fn renew(&mut self, root: &Addr<Supervisor>) -> Result<(), StoreError> {
        let renewal = self.store.renew_node(&self.node_id, self.lease).await?;
        if renewal.node == NodeRenewal::NotAMember {
            tracing::warn!(node = %self.node_id, "this node was not a member of the cluster any more; joining again");
            self.store.join_cluster(&NodeRecord::this_process(self.node_id.clone()), self.lease).await?;
        }
        let running: Vec<Fence> = self.fences.lock().expect("fences lock").values().cloned().collect();
        for lost in renewal.lost(&running) {
            tracing::warn!(node = %self.node_id, agent.id = %lost.agent_id, epoch = lost.epoch, "lease lost to another node; stopping the agent");
            self.stop(root, &lost.agent_id).await;
        }
        let live = self.live_nodes().await?;
        for fence in self.claim_up_to_share(&live).await? {
            let id = fence.agent_id.clone();
            tracing::info!(node = %self.node_id, agent.id = %id, epoch = fence.epoch, "lease claimed; starting the agent");
            self.fences.lock().expect("fences lock").insert(id.clone(), fence);
            match root.send(Acquire(id.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(agent.id = %id, error = %e, "claimed agent did not start"),
                Err(e) => tracing::warn!(agent.id = %id, error = %e, "supervisor unreachable"),
            }
        }
        // Two more than the least loaded node: one handed over makes it fairer (a
        // difference of one is as even as it gets).
        let running = self.running();
        if running.len() >= self.least_loaded(&live).await? + 2 {
            self.over_share += 1;
        } else {
            self.over_share = 0;
        }
        if self.over_share >= OVER_SHARE_RENEWALS {
            self.over_share = 0;
            // What it runs beyond its fair share (at least one: 4, 4, 2 becomes 3, 4, 3),
            // the ones started last, so the earlier ones keep running where they are.
            let share = self.share(&live);
            let excess = running.len().saturating_sub(share).max(1);
            let handed: Vec<String> = self
                .singletons
                .iter()
                .rev()
                .filter(|id| running.contains(*id))
                .take(excess)
                .cloned()
                .collect();
            tracing::info!(node = %self.node_id, running = running.len(), share, handed = handed.len(), "more than its share; handing agents over");
            for id in &handed {
                self.stop(root, id).await;
            }
            // Their last writes (the `shutdown` transitions) carry the leases: committed
            // before they are released, or they would be refused.
            self.shared.flush().await?;
            self.store.release_agents(&self.node_id, &handed).await?;
        }
        Ok(())
    }

    /// Stops agent `id` and forgets its fence.
    async fn stop(&self, root: &Addr<Supervisor>, id: &str) {
        if let Ok(Err(e)) = root.send(Relinquish(id.to_owned())).await {
            tracing::warn!(agent.id = %id, error = %e, "agent did not stop cleanly");
        }
        self.fences.lock().expect("fences lock").remove(id);
    }

    /// Renews every third of the lease until aborted.
    pub(crate) fn spawn(mut self, root: Addr<Supervisor>) -> actix_rt::task::JoinHandle<()> {
        actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(self.lease / 3);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first is at once; the join just renewed
            loop {
                ticks.tick().await;
                if self.paused.load(Ordering::Acquire) {
                    continue;
                }
                if let Err(e) = self.renew(&root).await {
                    tracing::warn!(node = %self.node_id, error = %e, "lease renewal failed; retrying at the next tick");
                }
            }
        })
    }

    /// Leaves the cluster: every lease it holds is released at once, for the other
    /// nodes to claim. Call after its agents stopped and their writes were flushed.
    pub(crate) async fn leave(store: &Store, node_id: &str) {
        if let Err(e) = store.leave_cluster(node_id).await {
            tracing::warn!(node = %node_id, error = %e, "could not leave the cluster; its leases expire instead");
        }
    }
}
