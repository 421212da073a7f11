//! Many nodes on one PostgreSQL: membership, agent leases, epochs and the writer's
//! fencing (`vigil_persistence::nodes`). Leases are short (1 s) and every wait is a
//! poll against a deadline, never a sleep followed by an assertion.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use vigil_persistence::nodes::{AgentLease, EndReason, Fence, NodeRecord, NodeRenewal, Placement};
use vigil_persistence::shared_state::{Heartbeat, Writer};
use vigil_persistence::{CommitFault, PersistenceActor, PersistenceConfig, SharedState, Store, StoreError};

use vigil_persistence::testing::assert_no_overlapping_ownership;

use crate::common::{TestDb, heartbeat_copies};

const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);
/// Safety net for every wait.
const NET: Duration = Duration::from_secs(30);

fn node(id: &str) -> NodeRecord {
    NodeRecord::this_process(id)
}

fn wanted(agents: &[String]) -> Vec<(String, Placement)> {
    agents.iter().map(|a| (a.clone(), Placement::Singleton)).collect()
}

fn agents(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

/// Polls `probe` until it yields a value, or panics after [`NET`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + NET;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each of `claimed` (from several nodes) names a distinct agent.
fn assert_distinct(claimed: &[AgentLease]) {
    let mut seen = HashSet::new();
    for lease in claimed {
        assert!(seen.insert(lease.agent_id.clone()), "{} was claimed twice: {claimed:#?}", lease.agent_id);
    }
}

#[tokio::test]
async fn nodes_split_agents_under_a_limit_and_concurrent_claims_never_share_one() {
    let Some(db) = TestDb::postgres().await else { return };
    let stores = [db.store().await, db.store().await, db.store().await];
    let ids = ["node-a", "node-b", "node-c"];
    for (store, id) in stores.iter().zip(ids) {
        store.join_cluster(&node(id), LONG).await.unwrap();
    }

    // One after the other, 4 at most each: 4, 4, then the 2 left.
    let ten = agents("agent", 10);
    let mut claimed = Vec::new();
    for ((store, id), expected) in stores.iter().zip(ids).zip([4, 4, 2]) {
        let started = Instant::now();
        let got = store.claim_agents(id, &wanted(&ten), 4, LONG).await.unwrap();
        eprintln!("claim of {} agents by {id} took {:?}", got.len(), started.elapsed());
        assert_eq!(got.len(), expected, "{id}: {got:#?}");
        assert!(got.iter().all(|l| l.node_id.as_deref() == Some(id) && l.epoch == 1));
        claimed.extend(got);
    }
    assert_distinct(&claimed);
    assert_eq!(claimed.len(), 10);
    // Nothing is left to claim.
    assert!(stores[0].claim_agents("node-a", &wanted(&ten), 10, LONG).await.unwrap().is_empty());
    let leases = stores[0].agent_leases().await.unwrap();
    assert_eq!(leases.len(), 10);
    for lease in &leases {
        let claim = claimed.iter().find(|c| c.agent_id == lease.agent_id).unwrap();
        assert_eq!(lease, claim, "the table says what the claim returned");
    }

    // Concurrently: 3 nodes x 4 tasks, each on its own store (pool), claiming from the
    // same 60 agents, 5 at a time, until none is left.
    let sixty = agents("race", 60);
    let mut tasks = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        for _ in 0..4 {
            let store = stores[n].clone();
            let (id, sixty) = (id.to_string(), sixty.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_agents(&id, &wanted(&sixty), 5, LONG).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    assert!(got.len() <= 5);
                    mine.extend(got);
                }
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(tokio::time::timeout(NET, task).await.expect("claims end").expect("no panic"));
    }
    assert_distinct(&all);
    assert_eq!(all.len(), 60, "every agent claimed once");
    assert!(all.iter().all(|l| l.epoch == 1));
    let log = stores[0].ownership_log(None).await.unwrap();
    assert_eq!(log.len(), 70, "one interval per claim");
    assert!(log.iter().all(|i| i.ended_at.is_none()));
    for lease in &all {
        let interval = log.iter().find(|i| i.agent_id == lease.agent_id).unwrap();
        assert_eq!(Some(interval.node_id.as_str()), lease.node_id.as_deref());
    }

    // What a renewal costs with 30-odd leases held.
    let started = Instant::now();
    let renewal = stores[0].renew_node("node-a", LONG).await.unwrap();
    eprintln!("renewal of node-a holding {} leases took {:?}", renewal.held.len(), started.elapsed());
    assert_eq!(renewal.node, NodeRenewal::Renewed);
    let held_by_a = all.iter().chain(&claimed).filter(|l| l.node_id.as_deref() == Some("node-a")).count();
    assert_eq!(renewal.held.len(), held_by_a);
}

#[tokio::test]
async fn a_node_that_stops_renewing_loses_its_agents_with_a_new_epoch() {
    let Some(db) = TestDb::postgres().await else { return };
    let (a, b) = (db.store().await, db.store().await);
    a.join_cluster(&node("a"), SHORT).await.unwrap();
    b.join_cluster(&node("b"), LONG).await.unwrap();
    let three = agents("job", 3);
    let held = a.claim_agents("a", &wanted(&three), 10, SHORT).await.unwrap();
    assert_eq!(held.len(), 3);
    let fences: Vec<Fence> = held.iter().map(|l| l.fence().unwrap()).collect();
    // While a's lease is live, b gets nothing.
    assert!(b.claim_agents("b", &wanted(&three), 10, LONG).await.unwrap().is_empty());

    // a stops renewing; once its lease expired (server time), b takes all three.
    let taken = eventually("b to take a's agents", || async {
        let got = b.claim_agents("b", &wanted(&three), 10, LONG).await.unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(taken.len(), 3, "all expired together: {taken:#?}");
    assert!(taken.iter().all(|l| l.epoch == 2 && l.node_id.as_deref() == Some("b")));

    // a comes back: its renewal says its lease had expired and it holds nothing.
    let renewal = a.renew_node("a", SHORT).await.unwrap();
    assert_eq!(renewal.node, NodeRenewal::RenewedAfterExpiry);
    assert!(renewal.held.is_empty());
    assert_eq!(renewal.lost(&fences), fences.iter().collect::<Vec<_>>());
    // b's renewal holds them.
    let renewal = b.renew_node("b", LONG).await.unwrap();
    assert_eq!(renewal.node, NodeRenewal::Renewed);
    let b_fences: Vec<Fence> = taken.iter().map(|l| l.fence().unwrap()).collect();
    assert!(renewal.lost(&b_fences).is_empty());

    let log = a.ownership_log(None).await.unwrap();
    assert_eq!(log.len(), 6);
    assert_no_overlapping_ownership(&log);
    for agent in &three {
        let intervals: Vec<_> = log.iter().filter(|i| &i.agent_id == agent).collect();
        assert_eq!((intervals[0].node_id.as_str(), intervals[0].epoch), ("a", 1));
        assert_eq!(intervals[0].end_reason, Some(EndReason::Expired));
        assert_eq!((intervals[1].node_id.as_str(), intervals[1].epoch), ("b", 2));
        assert_eq!((intervals[1].ended_at, intervals[1].end_reason), (None, None));
    }
    assert_eq!(a.ownership_log(Some("job-01")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn release_hands_over_at_once_and_rejoining_ends_the_earlier_life_as_lost() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    store.join_cluster(&node("a"), LONG).await.unwrap();
    store.join_cluster(&node("b"), LONG).await.unwrap();
    let x = vec!["x".to_owned()];
    assert_eq!(store.claim_agents("a", &wanted(&x), 1, LONG).await.unwrap()[0].epoch, 1);
    assert!(store.claim_agents("b", &wanted(&x), 1, LONG).await.unwrap().is_empty());
    // Released by another node than the owner: nothing happens.
    assert_eq!(store.release_agents("b", &x).await.unwrap(), 0);
    assert_eq!(store.release_agents("a", &x).await.unwrap(), 1);
    let taken = store.claim_agents("b", &wanted(&x), 1, LONG).await.unwrap();
    assert_eq!((taken[0].node_id.as_deref(), taken[0].epoch), (Some("b"), 2));

    // b "crashes" and joins again under the same id: x is released as lost, and
    // claimable again with the next epoch.
    store.join_cluster(&node("b"), LONG).await.unwrap();
    let leases = store.agent_leases().await.unwrap();
    assert_eq!((leases[0].node_id.as_deref(), leases[0].epoch), (None, 2));
    let again = store.claim_agents("a", &wanted(&x), 1, LONG).await.unwrap();
    assert_eq!(again[0].epoch, 3);

    let log = store.ownership_log(Some("x")).await.unwrap();
    let reasons: Vec<_> = log.iter().map(|i| (i.node_id.as_str(), i.epoch, i.end_reason)).collect();
    assert_eq!(
        reasons,
        [("a", 1, Some(EndReason::Released)), ("b", 2, Some(EndReason::Lost)), ("a", 3, None)]
    );
    assert_no_overlapping_ownership(&log);

    // Leaving releases everything the node holds.
    store.leave_cluster("a").await.unwrap();
    assert_eq!(store.agent_leases().await.unwrap()[0].node_id, None);
    assert_eq!(store.renew_node("a", LONG).await.unwrap().node, NodeRenewal::NotAMember);
    let last = store.ownership_log(Some("x")).await.unwrap().pop().unwrap();
    assert_eq!(last.end_reason, Some(EndReason::Released));

    // Retention: ended intervals and nodes that left go; an open interval and a node
    // that is still a member stay.
    assert_eq!(store.claim_agents("b", &wanted(&x), 1, LONG).await.unwrap()[0].epoch, 4);
    let state = SharedState::direct(store.clone());
    state
        .cleanup_before(vigil_persistence::types::Ts::from(
            chrono::Utc::now() + chrono::Duration::seconds(60),
        ))
        .await
        .unwrap();
    let log = store.ownership_log(Some("x")).await.unwrap();
    assert_eq!(log.iter().map(|i| (i.epoch, i.ended_at.is_none())).collect::<Vec<_>>(), [(4, true)]);
    let nodes: Vec<String> = store.nodes().await.unwrap().into_iter().map(|n| n.record.node_id).collect();
    assert_eq!(nodes, ["b"], "a left, b is a member");
}

#[tokio::test]
async fn nodes_compute_lease_age_and_liveness_at_read_time() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    store.join_cluster(&node("short"), SHORT).await.unwrap();
    store.join_cluster(&node("long"), LONG).await.unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.alive && n.lease_age < Duration::from_secs(5) && n.stopped_at.is_none()));
    assert_eq!(nodes[0].record.pid, std::process::id());

    // Nothing is written when a lease expires: the next read sees it.
    let short = eventually("the short lease to expire", || async {
        store.nodes().await.unwrap().into_iter().find(|n| n.record.node_id == "short" && !n.alive)
    })
    .await;
    assert!(short.lease_age >= SHORT, "{short:?}");
    assert!(short.lease_expires_at <= short.renewed_at.max(short.lease_expires_at));
    let long = store.nodes().await.unwrap().into_iter().find(|n| n.record.node_id == "long").unwrap();
    assert!(long.alive);

    // Renewing revives it (and says it had expired); leaving stops it for good.
    assert_eq!(store.renew_node("short", SHORT).await.unwrap().node, NodeRenewal::RenewedAfterExpiry);
    store.leave_cluster("long").await.unwrap();
    let nodes = store.nodes().await.unwrap();
    let long = nodes.iter().find(|n| n.record.node_id == "long").unwrap();
    assert!(!long.alive && long.stopped_at.is_some());
}

/// Claims `agent` for `a` with a short lease, lets it expire and claims it for `b`:
/// `a`'s fence (epoch 1) is stale, `b`'s (epoch 2) current.
async fn stale_and_current(store: &Store, agent: &str) -> (Fence, Fence) {
    let one = vec![agent.to_owned()];
    store.join_cluster(&node("a"), SHORT).await.unwrap();
    store.join_cluster(&node("b"), LONG).await.unwrap();
    let stale = store.claim_agents("a", &wanted(&one), 1, SHORT).await.unwrap()[0].fence().unwrap();
    let current = eventually("b to take the agent over", || async {
        store.claim_agents("b", &wanted(&one), 1, LONG).await.unwrap().pop()
    })
    .await
    .fence()
    .unwrap();
    assert_eq!((stale.epoch, current.epoch), (1, 2));
    (stale, current)
}

#[actix_rt::test]
async fn fenced_writes_commit_only_under_the_current_epoch() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    let (stale, current) = stale_and_current(&store, "worker").await;
    let direct = SharedState::direct(store.clone());
    direct.register_agent("worker", "Worker").await.unwrap();
    direct.register_agent("bystander", "Bystander").await.unwrap();

    // One batch: the writer waits 300 ms for more writes before it commits.
    let config = PersistenceConfig::default().with_batch(100, Duration::from_millis(300));
    let writer = PersistenceActor::start(store.clone(), config);
    let shared = SharedState::with_writer(store.clone(), Writer::Actor(writer.clone()));
    let old_owner = shared.fenced(stale.clone());
    let new_owner = shared.fenced(current.clone());
    assert_eq!(new_owner.fence(), Some(&current));
    let beat = |message: &str| Heartbeat::new().message(message.to_owned());
    let (refused, committed, unfenced) = tokio::join!(
        async { old_owner.update_agent_heartbeat("worker", beat("stale")).await },
        async { new_owner.update_agent_heartbeat("worker", beat("current")).await },
        async { shared.update_agent_heartbeat("bystander", beat("unfenced")).await },
    );
    match refused {
        Err(StoreError::Fenced { agent_id, epoch, current_epoch }) => {
            assert_eq!((agent_id.as_str(), epoch, current_epoch), ("worker", 1, Some(2)));
        }
        other => panic!("the stale write must be fenced: {other:?}"),
    }
    committed.unwrap();
    unfenced.unwrap();
    let stats = writer.stats();
    assert_eq!(stats.batches_committed, 1, "one batch held all three: {stats:?}");
    assert_eq!((stats.fenced_writes, stats.rejected_writes, stats.writes_committed), (1, 0, 2));
    let message =
        old_owner.update_agent_heartbeat("worker", beat("stale again")).await.unwrap_err().to_string();
    assert!(
        message.contains("owned by another node now (epoch 2)") && message.contains("epoch 1"),
        "{message}"
    );

    // Fire-and-forget and requests are fenced too; a fence for an agent without a
    // lease is refused.
    old_owner.update_agent_heartbeat("worker", beat("stale queued")).enqueue().await.unwrap();
    let nobody = shared.fenced(Fence { agent_id: "nobody".into(), node_id: "a".into(), epoch: 1 });
    match nobody.set_system_state("k", serde_json::json!(1)).await {
        Err(StoreError::Fenced { current_epoch: None, .. }) => {}
        other => panic!("no lease, no write: {other:?}"),
    }
    writer.flush().await.unwrap();
    assert_eq!(writer.stats().fenced_writes, 4);

    // A batch whose COMMIT answer is lost is resolved with the same verdicts.
    writer.inject_commit_fault(CommitFault::AnswerLost);
    let (refused, committed) = tokio::join!(
        async { old_owner.update_agent_heartbeat("worker", beat("stale, lost commit")).await },
        async { new_owner.update_agent_heartbeat("worker", beat("current, lost commit")).await },
    );
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
    committed.unwrap();
    assert_eq!(writer.stats().recovered_commits, 1);

    // The direct writer checks fences the same way.
    let direct_old = direct.fenced(stale);
    assert!(matches!(
        direct_old.update_agent_heartbeat("worker", beat("stale direct")).await,
        Err(StoreError::Fenced { .. })
    ));
    direct.fenced(current).update_agent_heartbeat("worker", beat("current direct")).await.unwrap();

    let TestDb::Postgres { url, .. } = &db else { unreachable!() };
    let copies = heartbeat_copies(url.expose()).await;
    for committed in ["current", "unfenced", "current, lost commit", "current direct"] {
        assert_eq!(copies.get(committed), Some(&1), "{committed}: {copies:?}");
    }
    for refused in ["stale", "stale again", "stale queued", "stale, lost commit", "stale direct"] {
        assert_eq!(copies.get(refused), None, "{refused}: {copies:?}");
    }
    assert_eq!(writer.shutdown().await.failed, 0);
}

#[actix_rt::test]
async fn sqlite_has_no_cluster_calls_but_checks_fences() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    assert!(matches!(
        store.join_cluster(&node("a"), LONG).await,
        Err(StoreError::Unsupported { backend: "SQLite", .. })
    ));
    assert!(matches!(store.agent_leases().await, Err(StoreError::Unsupported { .. })));
    let shared = SharedState::direct(store.clone());
    shared.register_agent("w", "W").await.unwrap();
    let fenced = shared.fenced(Fence { agent_id: "w".into(), node_id: "a".into(), epoch: 1 });
    assert!(matches!(
        fenced.update_agent_heartbeat("w", Heartbeat::new()).await,
        Err(StoreError::Fenced { current_epoch: None, .. })
    ));
    let writer = PersistenceActor::start(store, PersistenceConfig::default());
    let through_actor = SharedState::with_writer(
        shared.store().clone(),
        Writer::Actor(writer.fenced(Fence { agent_id: "w".into(), node_id: "a".into(), epoch: 1 })),
    );
    assert!(through_actor.fence().is_some());
    assert!(matches!(
        through_actor.update_agent_heartbeat("w", Heartbeat::new()).await,
        Err(StoreError::Fenced { .. })
    ));
    shared.update_agent_heartbeat("w", Heartbeat::new()).await.unwrap();
    assert_eq!(writer.stats().fenced_writes, 1);
    writer.shutdown().await;
}
