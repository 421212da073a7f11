//! Cluster placement at scale (`cargo bench --bench cluster`, needs the local
//! PostgreSQL): 1,000 agents over three nodes in one process, each node with its own
//! store and writer, started one after another with the default 10 s lease. Measures,
//! three times on a fresh database:
//!
//! - the time from the first node's start until every agent runs exactly once, spread
//!   (each node at least `floor(1000 / 3)`);
//! - what keeping a node's leases costs: the statements of one renewal tick in steady
//!   state (renew the node and its leases, count the live nodes, read the leases to
//!   compare loads — four statements every third of the lease), each timed.
//!
//! Prints medians and `RESULT` lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_persistence::testing::TestDb;
use vigil_persistence::{SharedState, Store};
use vigil_runtime::{Agent, AgentContext, AgentResult, ChildSpec, ClusterConfig, Runtime, State};

const AGENTS: usize = 1_000;
const NODES: usize = 3;
const RUNS: usize = 3;

/// An agent that does nothing often: what is measured is placement, not work.
#[derive(vigil_runtime::Agent, Default)]
#[agent(name = "idle", cycle = "60s", heartbeat = "60s")]
struct Idle;

impl Agent for Idle {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        Ok(())
    }
}

async fn start_node(db: &TestDb, name: &str) -> Runtime {
    let store = Store::connect(db.config()).await.expect("connect");
    let mut builder = Runtime::builder(SharedState::direct(store))
        .cluster(ClusterConfig::new().with_node_id(name))
        .start_timeout(Duration::from_secs(600));
    for n in 0..AGENTS {
        builder = builder.child(ChildSpec::agent(format!("idle-{n:04}"), Idle::default));
    }
    builder.start().await.expect("the node starts")
}

/// Agents each node runs (`active` in its own tree), once every agent runs exactly once.
async fn placed(nodes: &[Runtime]) -> Option<Vec<usize>> {
    let mut seen = std::collections::HashSet::new();
    let mut counts = Vec::new();
    for node in nodes {
        let mine: Vec<String> = node
            .statuses()
            .await
            .into_iter()
            .filter(|s| s.state == State::Active)
            .map(|s| s.agent_id)
            .collect();
        counts.push(mine.len());
        for id in mine {
            if !seen.insert(id) {
                return None;
            }
        }
    }
    (seen.len() == AGENTS && counts.iter().all(|n| *n >= AGENTS / NODES)).then_some(counts)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> f64 {
    let started = Instant::now();
    work.await;
    started.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let system = actix_rt::System::new();
    system.block_on(async {
        let (mut placements, mut renewals, mut counts, mut leases) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=RUNS {
            let db = TestDb::postgres().await.expect("PostgreSQL is needed for this bench");
            let store = db.store().await;
            let started = Instant::now();
            let mut nodes = Vec::new();
            for name in ["node-a", "node-b", "node-c"] {
                nodes.push(start_node(&db, name).await);
            }
            let spread = loop {
                if let Some(spread) = placed(&nodes).await {
                    break spread;
                }
                assert!(started.elapsed() < Duration::from_secs(600), "not placed within 10 minutes");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let placement = started.elapsed().as_secs_f64();
            // One renewal tick's statements, timed for node a, ten times each.
            let lease = ClusterConfig::new().lease();
            let (mut renew, mut live, mut read) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..10 {
                renew.push(timed(async { store.renew_node("node-a", lease).await.expect("renew") }).await);
                live.push(timed(async { store.nodes().await.expect("nodes") }).await);
                read.push(timed(async { store.agent_leases().await.expect("leases") }).await);
            }
            let tick = median(renew.clone()) + median(live.clone()) * 2.0 + median(read.clone());
            println!(
                "run {run}: {AGENTS} agents placed over {NODES} nodes in {placement:.1} s ({spread:?}); \
                 renewal tick {tick:.1} ms (renew {:.1} ms, live nodes {:.1} ms x2, leases {:.1} ms)",
                median(renew.clone()),
                median(live),
                median(read.clone())
            );
            placements.push(placement);
            renewals.push(tick);
            leases.push(median(read));
            counts.push(spread);
            for node in nodes.iter().rev() {
                node.shutdown().await;
            }
        }
        let per_second = 4.0 / (ClusterConfig::new().lease().as_secs_f64() / 3.0);
        let by_node: HashMap<usize, Vec<usize>> = (0..NODES).map(|i| (i, counts.iter().map(|c| c[i]).collect())).collect();
        println!("agents per node by run: {by_node:?}");
        println!(
            "RESULT cluster_place_1000_agents_s={:.1} renewal_tick_ms={:.1} lease_read_1000_ms={:.1} statements_per_node_per_s={per_second:.2}",
            median(placements),
            median(renewals),
            median(leases)
        );
    });
}
