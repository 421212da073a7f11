//! Several runtimes — nodes — on one PostgreSQL database, in one test process: each
//! agent runs on exactly one node (read from the leases and from each node's own
//! tree), a cluster started one node at a time spreads out, a node that shuts down
//! hands its agents over at once, and a node that stops renewing (frozen, cut off) has
//! its agents taken over with a new epoch while its late writes are refused.
//!
//! Process-level faults (`kill -9`, `SIGSTOP`) of `vigil run` nodes are in the facade's
//! end-to-end tests.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

mod common;

use vigil_persistence::shared_state::{Metric, Writer};
use vigil_persistence::testing::{TestDb, assert_no_overlapping_ownership};
use vigil_persistence::{SharedState, Store};
use vigil_runtime::testkit::eventually;
use vigil_runtime::{Agent, AgentContext, AgentResult, ChildSpec, ClusterConfig, Runtime, State};

/// Safety net of every wait.
const LIMIT: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(2);
const AGENTS: usize = 10;

/// A sample number unique in the test process, so that samples of every instance of
/// every agent can be told apart.
static NEXT_SAMPLE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Writes a numbered sample every cycle, awaits its acknowledgement and reports it.
#[derive(vigil_runtime::Agent)]
#[agent(name = "sampler", cycle = "50ms", heartbeat = "200ms")]
struct Sampler {
    acknowledged: tokio::sync::mpsc::UnboundedSender<(String, u32)>,
}

impl Agent for Sampler {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        let n = NEXT_SAMPLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sample = Metric::new("sample", f64::from(n)).agent(ctx.agent_id());
        ctx.shared_state().add_performance_metric(sample).await?;
        let _ = self.acknowledged.send((ctx.agent_id().to_owned(), n));
        Ok(())
    }
}

/// Writes a metric every cycle: an agent whose writes fencing can refuse.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "worker", cycle = "100ms", heartbeat = "200ms")]
struct Worker {
    cycles: u32,
}

impl Agent for Worker {
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        self.cycles += 1;
        ctx.shared_state()
            .add_performance_metric(Metric::new("cycles", f64::from(self.cycles)).agent(ctx.agent_id()))
            .await?;
        Ok(())
    }
}

fn ids() -> Vec<String> {
    (0..AGENTS).map(|n| format!("worker-{n}")).collect()
}

/// A node: its own store (pool, writer) on the database, the same ten agents.
async fn node(db: &TestDb, name: &str) -> Runtime {
    let store = Store::connect(db.config()).await.expect("connect");
    let mut builder = Runtime::builder(SharedState::direct(store))
        .cluster(ClusterConfig::new().with_lease(LEASE).with_node_id(name));
    for id in ids() {
        builder = builder.child(ChildSpec::agent(id, Worker::default));
    }
    builder.start().await.expect("the node starts")
}

/// A node of [`Sampler`]s reporting what was acknowledged on `acknowledged`.
async fn sampling_node(
    db: &TestDb,
    name: &str,
    acknowledged: &tokio::sync::mpsc::UnboundedSender<(String, u32)>,
) -> Runtime {
    let store = Store::connect(db.config()).await.expect("connect");
    let mut builder = Runtime::builder(SharedState::direct(store))
        .cluster(ClusterConfig::new().with_lease(LEASE).with_node_id(name));
    for id in ids() {
        let acknowledged = acknowledged.clone();
        builder = builder.child(ChildSpec::agent(id, move || Sampler { acknowledged: acknowledged.clone() }));
    }
    builder.start().await.expect("the node starts")
}

/// Which node each agent's lease names (owned agents only).
async fn owners(store: &Store) -> HashMap<String, String> {
    store
        .agent_leases()
        .await
        .expect("leases")
        .into_iter()
        .filter_map(|lease| Some((lease.agent_id, lease.node_id?)))
        .collect()
}

/// The agents a node runs, by its own tree: `active` ones.
async fn running(node: &Runtime) -> HashSet<String> {
    node.statuses().await.into_iter().filter(|s| s.state == State::Active).map(|s| s.agent_id).collect()
}

/// Waits until every agent is owned once, by the nodes' own trees as by the leases,
/// each node running at least `min_each`.
async fn wait_for_placement(store: &Store, nodes: &[&Runtime], min_each: usize) -> HashMap<String, String> {
    eventually("every agent placed once, spread over the nodes", LIMIT, || async {
        let owners = owners(store).await;
        let mut seen = HashSet::new();
        for node in nodes {
            let mine = running(node).await;
            if mine.len() < min_each
                || mine.iter().any(|id| owners.get(id).map(String::as_str) != Some(node.node_id()))
            {
                return None;
            }
            if mine.iter().any(|id| !seen.insert(id.clone())) {
                return None; // running twice
            }
        }
        (seen.len() == AGENTS).then_some(owners)
    })
    .await
}

#[actix_rt::test]
async fn nodes_started_one_after_another_spread_the_agents_each_once() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    let a = node(&db, "node-a").await;
    assert_eq!(running(&a).await.len(), AGENTS, "alone, the first node runs everything");
    let b = node(&db, "node-b").await;
    let c = node(&db, "node-c").await;
    let placed = wait_for_placement(&store, &[&a, &b, &c], 3).await;
    let per_node: HashMap<&str, usize> = placed.values().fold(HashMap::new(), |mut counts, node| {
        *counts.entry(node.as_str()).or_default() += 1;
        counts
    });
    eprintln!("placement over three nodes: {per_node:?}");
    assert_no_overlapping_ownership(&store.ownership_log(None).await.unwrap());
    for node in [&c, &b, &a] {
        assert!(node.shutdown().await.failed.is_empty());
    }
}

#[actix_rt::test]
async fn a_node_that_shuts_down_hands_its_agents_over_at_once() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    let a = node(&db, "node-a").await;
    let b = node(&db, "node-b").await;
    wait_for_placement(&store, &[&a, &b], 5).await;
    let report = a.shutdown().await;
    assert!(report.failed.is_empty(), "{report:?}");
    let started = std::time::Instant::now();
    wait_for_placement(&store, &[&b], AGENTS).await;
    // Released at shutdown, claimed at b's next renewal: well within one lease.
    let took = started.elapsed();
    eprintln!("handover after a clean shutdown: {took:?}");
    assert!(took < LEASE, "handed over at once, not after the lease expired: {took:?}");
    assert_no_overlapping_ownership(&store.ownership_log(None).await.unwrap());
    assert!(b.shutdown().await.failed.is_empty());
}

#[actix_rt::test]
async fn a_node_that_stops_renewing_is_fenced_and_stops_its_agents() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    let a = node(&db, "node-a").await;
    let b = node(&db, "node-b").await;
    let before = wait_for_placement(&store, &[&a, &b], 5).await;
    let taken: HashSet<String> =
        before.iter().filter(|(_, n)| *n == "node-a").map(|(id, _)| id.clone()).collect();

    // `a` stops renewing, as a node frozen or cut off from the database; its agents go
    // on running and writing.
    a.pause_lease_renewal(true);
    let paused = std::time::Instant::now();
    eventually("b owns every agent", LIMIT, || async {
        let owners = owners(&store).await;
        owners.values().all(|n| n == "node-b").then_some(())
    })
    .await;
    eprintln!("taken over {:?} after the renewals stopped (lease {LEASE:?})", paused.elapsed());
    let Writer::Actor(writer) = a.shared_state().writer() else { unreachable!("the runtime's own writer") };
    let fenced = eventually("a's late writes are refused", LIMIT, || async {
        let fenced = writer.stats().fenced_writes;
        (fenced > 0).then_some(fenced)
    })
    .await;

    // Renewing again, `a` learns what it lost and stops those agents at once.
    a.pause_lease_renewal(false);
    eventually("a stopped the agents it lost", LIMIT, || async {
        running(&a).await.is_disjoint(&taken).then_some(())
    })
    .await;
    wait_for_placement(&store, &[&a, &b], 0).await;
    eprintln!("fenced writes of the paused node: {fenced}");
    let log = store.ownership_log(None).await.unwrap();
    assert_no_overlapping_ownership(&log);
    for id in &taken {
        let epochs: Vec<i64> = log.iter().filter(|i| &i.agent_id == id).map(|i| i.epoch).collect();
        assert!(epochs.len() >= 2, "{id} changed owner with a new epoch: {epochs:?}");
    }
    a.shutdown().await;
    assert!(b.shutdown().await.failed.is_empty());
}

/// A rolling restart under load: each of three nodes is shut down and started again in
/// turn while every agent writes awaited samples. After each restart every agent runs
/// once somewhere, and at the end every acknowledged sample is in the database.
#[actix_rt::test]
async fn a_rolling_restart_keeps_every_agent_running_and_loses_no_acknowledged_write() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    let since = vigil_persistence::types::Ts::now();
    let (acknowledged, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(sampling_node(&db, name, &acknowledged).await);
    }
    wait_for_placement(&store, &nodes.iter().collect::<Vec<_>>(), 3).await;
    for (i, name) in names.iter().enumerate() {
        let report = nodes[i].shutdown().await;
        assert!(report.failed.is_empty(), "{name}: {report:?}");
        // Handed over at once: the other two run everything while it is down.
        let others: Vec<&Runtime> =
            nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n).collect();
        wait_for_placement(&store, &others, 0).await;
        nodes[i] = sampling_node(&db, name, &acknowledged).await;
        wait_for_placement(&store, &nodes.iter().collect::<Vec<_>>(), 0).await;
    }
    for node in &nodes {
        assert!(node.shutdown().await.failed.is_empty());
    }
    drop(acknowledged);
    let mut acked: Vec<(String, u32)> = Vec::new();
    while let Some(ack) = acks.recv().await {
        acked.push(ack);
    }
    // Sample numbers are unique in the process: the value alone identifies a write.
    let stored: HashSet<u32> = SharedState::direct(store.clone())
        .metric_series("sample", None, since)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.metric_value as u32)
        .collect();
    let lost: Vec<&(String, u32)> = acked.iter().filter(|(_, n)| !stored.contains(n)).collect();
    eprintln!("rolling restart: {} samples acknowledged, {} lost", acked.len(), lost.len());
    assert!(acked.len() > 100, "the agents wrote throughout: {}", acked.len());
    assert!(
        lost.is_empty(),
        "{} acknowledged samples missing, first: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_no_overlapping_ownership(&store.ownership_log(None).await.unwrap());
}

/// Cluster mode needs PostgreSQL: on SQLite the runtime refuses to start, saying why,
/// and leaves nothing running.
#[actix_rt::test]
async fn cluster_mode_on_sqlite_is_refused_clearly() {
    let db = TestDb::sqlite();
    let store = Store::connect(db.config()).await.expect("connect");
    let started = Runtime::builder(SharedState::direct(store))
        .cluster(ClusterConfig::new())
        .child(ChildSpec::agent("worker-0", Worker::default))
        .start()
        .await;
    let error = started.expect_err("SQLite has one node");
    assert!(
        matches!(
            &error,
            vigil_runtime::RuntimeError::Cluster(vigil_persistence::StoreError::Unsupported { .. })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("could not join the cluster"), "{error}");
}
