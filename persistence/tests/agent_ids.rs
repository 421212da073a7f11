//! The persistence actor's memory of agents' internal ids (`AgentIds`): a batch of
//! agents the writer knows makes no lookup, every row lands on its own agent, and no id
//! outlives a failure — a failed attempt, a rolled-back registration, a registration
//! the database lost behind the writer's back.
//!
//! Lookups are counted by [`PersistenceStats::agent_id_lookups`](vigil_persistence::PersistenceStats).

use std::time::Duration;

use vigil_persistence::config::ConnectRetryPolicy;
use vigil_persistence::shared_state::Writer;
use vigil_persistence::testing::TestDb;
use vigil_persistence::types::Ts;
use vigil_persistence::{
    HelpStatus, PersistenceActor, PersistenceConfig, PersistenceHandle, SharedState, Store, Write,
};

/// Runs a scenario on PostgreSQL (skipped without a server) and on SQLite, inside an
/// actix system (the actor needs one).
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[actix_rt::test]
            async fn postgres() {
                let Some(db) = super::TestDb::postgres().await else { return };
                super::$scenario(&db).await;
            }

            #[actix_rt::test]
            async fn sqlite() {
                super::$scenario(&super::TestDb::sqlite()).await;
            }
        }
    )*};
}

on_both!(
    known_agents_need_no_lookup,
    a_failed_attempt_forgets_the_ids,
    a_rolled_back_registration_leaves_no_id,
    a_lost_registration_is_registered_again
);

const AGENTS: usize = 1_000;

fn config() -> PersistenceConfig {
    let retry =
        ConnectRetryPolicy::default().with_backoff(Duration::from_millis(1), Duration::from_millis(5));
    // Batches of 100: a thousand agents' writes take several.
    PersistenceConfig::default().with_retry(retry).with_batch(100, Duration::ZERO)
}

fn start(store: &Store) -> (PersistenceHandle, SharedState) {
    let handle = PersistenceActor::start(store.clone(), config());
    let state = SharedState::with_writer(store.clone(), Writer::Actor(handle.clone()));
    (handle, state)
}

fn name(agent: usize) -> String {
    format!("agent-{agent}")
}

fn register(agent_id: &str) -> Write {
    Write::RegisterAgent { agent_id: agent_id.into(), agent_name: agent_id.into(), at: Ts::now() }
}

/// A heartbeat whose message is its agent's id, so that a row on the wrong agent shows.
fn heartbeat(agent_id: &str) -> Write {
    Write::Heartbeat {
        agent_id: agent_id.into(),
        at: Ts::now(),
        status: None,
        message: Some(agent_id.into()),
        metadata: None,
        uptime: None,
    }
}

/// Sends every write at once (so that they share batches) and awaits every commit.
async fn persist_all(handle: &PersistenceHandle, writes: impl IntoIterator<Item = Write>) {
    let results = futures_util::future::join_all(writes.into_iter().map(|w| handle.persist(w))).await;
    for result in results {
        result.expect("committed");
    }
}

/// Every heartbeat of `agent_id` is on its row: `count` of them, each carrying its id.
async fn assert_heartbeats_on_their_agent(state: &SharedState, agent_id: &str, count: usize) {
    let rows = state.recent_heartbeats(agent_id, 100).await.expect("read heartbeats");
    assert_eq!(rows.len(), count, "{agent_id}: {rows:?}");
    let id = state.get_agent(agent_id).await.expect("read").expect("registered").id;
    for row in rows {
        assert_eq!((row.message.as_deref(), row.agent_id), (Some(agent_id), Some(id)), "{agent_id}");
    }
}

/// Registrations teach the writer their ids; a new writer learns them from one
/// lookup per batch of agents it has not seen; after that, batches of known agents
/// make no lookup, and every heartbeat lands on its own agent.
async fn known_agents_need_no_lookup(db: &TestDb) {
    let store = db.store().await;
    let (handle, state) = start(&store);
    persist_all(&handle, (0..AGENTS).map(|i| register(&name(i)))).await;
    persist_all(&handle, (0..AGENTS).map(|i| heartbeat(&name(i)))).await;
    let stats = handle.stats();
    assert_eq!(stats.agent_id_lookups, 0, "the registrations returned every id");
    assert!(stats.batches_committed >= 20, "batches of 100: {stats:?}");
    handle.shutdown().await;

    // A new writer knows nothing: its first heartbeats look their agents up.
    let (handle, state2) = start(&store);
    persist_all(&handle, (0..AGENTS).map(|i| heartbeat(&name(i)))).await;
    let first = handle.stats().agent_id_lookups;
    assert!(first >= 1, "a new writer looks its agents up");
    persist_all(&handle, (0..AGENTS).map(|i| heartbeat(&name(i)))).await;
    let stats = handle.stats();
    assert_eq!(stats.agent_id_lookups, first, "known agents: no lookup ({stats:?})");
    for i in 0..AGENTS {
        assert_heartbeats_on_their_agent(&state, &name(i), 3).await;
    }
    drop(state2);
    handle.shutdown().await;
}

/// A failed attempt forgets every id: its retry looks the agent up again.
async fn a_failed_attempt_forgets_the_ids(db: &TestDb) {
    let store = db.store().await;
    let (handle, state) = start(&store);
    persist_all(&handle, [register("a"), heartbeat("a")]).await;
    persist_all(&handle, [heartbeat("a")]).await;
    assert_eq!(handle.stats().agent_id_lookups, 0);

    handle.fail_next_flushes(1);
    persist_all(&handle, [heartbeat("a")]).await;
    let stats = handle.stats();
    assert_eq!((stats.retries, stats.agent_id_lookups), (1, 1), "the retry resolved afresh");
    persist_all(&handle, [heartbeat("a")]).await;
    assert_eq!(handle.stats().agent_id_lookups, 1, "and the writer knows it again");
    assert_heartbeats_on_their_agent(&state, "a", 4).await;
    handle.shutdown().await;
}

/// A batch that registers an agent and is then rolled back (another of its writes
/// is refused by the database) keeps nothing of the registration's id: the write is
/// split out, the registration commits again, and the agent's heartbeats land on
/// the row that exists.
async fn a_rolled_back_registration_leaves_no_id(db: &TestDb) {
    let store = db.store().await;
    let (handle, state) = start(&store);
    persist_all(&handle, [register("known"), heartbeat("known")]).await;
    let refused = Write::HelpResponse {
        request_id: "missing".into(),
        response: "no such request".into(),
        status: HelpStatus::Complete,
        at: Ts::now(),
    };
    let writes = [register("fresh"), heartbeat("fresh"), refused, heartbeat("fresh"), heartbeat("known")];
    let results = futures_util::future::join_all(writes.into_iter().map(|w| handle.persist(w))).await;
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), i != 2, "write {i}: {result:?}");
    }
    persist_all(&handle, [heartbeat("fresh")]).await;
    assert_heartbeats_on_their_agent(&state, "fresh", 3).await;
    assert_heartbeats_on_their_agent(&state, "known", 2).await;
    assert_eq!(handle.stats().rejected_writes, 1);
    handle.shutdown().await;
}

/// An agent whose row disappeared behind the writer's back — as a registration an
/// asynchronous standby never received is gone once it is promoted, the writer's
/// connection surviving through a pooler — is registered again by its next
/// heartbeat: the batch refused for the stale id is tried afresh, not refused.
async fn a_lost_registration_is_registered_again(db: &TestDb) {
    let store = db.store().await;
    let (handle, state) = start(&store);
    persist_all(&handle, [register("lost"), heartbeat("lost"), register("kept")]).await;
    store
        .execute_raw_for_tests(
            "DELETE FROM agent_heartbeats WHERE agent_id IN (SELECT id FROM agents WHERE agent_id = 'lost')",
        )
        .await
        .unwrap();
    store.execute_raw_for_tests("DELETE FROM agents WHERE agent_id = 'lost'").await.unwrap();

    persist_all(&handle, [heartbeat("lost"), heartbeat("kept")]).await;
    let stats = handle.stats();
    assert_eq!((stats.rejected_writes, stats.retries), (0, 1), "{stats:?}");
    assert_heartbeats_on_their_agent(&state, "lost", 1).await;
    assert_heartbeats_on_their_agent(&state, "kept", 1).await;
    handle.shutdown().await;
}
