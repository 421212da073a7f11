//! The persistence actor on real PostgreSQL and on SQLite: ordering, acknowledgement,
//! faults (killed connections, injected failures, rejected rows), backpressure and
//! shutdown. Outcomes are awaited (acknowledgements, flush, shutdown reports); timeouts
//! are only safety nets.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use vigil_persistence::State;
use vigil_persistence::config::{ConfigSource, ConnectRetryPolicy, DatabaseUrl};
use vigil_persistence::shared_state::Writer;
use vigil_persistence::types::Ts;
use vigil_persistence::{
    DatabaseConfig, EnqueueError, PersistenceActor, PersistenceConfig, PersistenceHandle, SharedState, Store,
    StoreError, Write,
};

/// Safety net for anything awaited.
const NET: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ test databases
// Small and private for now; to be folded into the shared `tests/common` module.

fn admin_url() -> DatabaseUrl {
    let raw = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    DatabaseUrl::parse(&raw, ConfigSource::Environment).expect("TEST_DATABASE_URL is a valid URL")
}

enum TestDb {
    Postgres { admin: DatabaseUrl, url: DatabaseUrl, name: String },
    Sqlite { dir: std::path::PathBuf },
}

impl TestDb {
    async fn postgres() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match AsyncPgConnection::establish(admin.expose()).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                eprintln!(
                    "\n*** SKIPPED: no PostgreSQL at {admin} ({e}); set REQUIRE_POSTGRES=1 to fail instead ***\n"
                );
                return None;
            }
            Err(e) => panic!("REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable: {e}"),
        };
        let name = format!("vigil_t_{:016x}", rand::random::<u64>());
        conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        Some(TestDb::Postgres { url: admin.with_database(&name), admin, name })
    }

    fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("vigil-actor-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TestDb::Sqlite { dir }
    }

    async fn store(&self) -> Store {
        let config = match self {
            TestDb::Postgres { url, .. } => DatabaseConfig::postgres(url.expose()).expect("valid URL"),
            TestDb::Sqlite { dir } => DatabaseConfig::sqlite(dir.join("vigil.db")),
        };
        Store::connect(config).await.expect("connect and migrate")
    }

    /// Kills every connection to the test database but the caller's.
    async fn kill_connections(&self) -> usize {
        let TestDb::Postgres { admin, name, .. } = self else { return 0 };
        let mut conn = AsyncPgConnection::establish(admin.expose()).await.expect("admin connection");
        #[derive(diesel::QueryableByName)]
        struct Killed {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            killed: bool,
        }
        let rows: Vec<Killed> = diesel_async::RunQueryDsl::load(
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )),
            &mut conn,
        )
        .await
        .expect("terminate backends");
        rows.iter().filter(|r| r.killed).count()
    }

    async fn cleanup(self) {
        match self {
            TestDb::Postgres { admin, name, .. } => {
                let mut conn = AsyncPgConnection::establish(admin.expose()).await.expect("admin connection");
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .expect("drop");
            }
            TestDb::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Runs a scenario on PostgreSQL (skipped without a server) and on SQLite.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[actix_rt::test]
            async fn postgres() {
                let Some(db) = super::TestDb::postgres().await else { return };
                super::$scenario(&db).await;
                db.cleanup().await;
            }

            #[actix_rt::test]
            async fn sqlite() {
                let db = super::TestDb::sqlite();
                super::$scenario(&db).await;
                db.cleanup().await;
            }
        }
    )*};
}

on_both!(
    per_agent_order_under_concurrency,
    acknowledged_write_is_readable,
    rejected_write_fails_alone,
    backpressure_when_the_queue_is_full,
    shutdown_flushes_the_queue,
    injected_failures_are_retried_then_committed_once,
    requests_are_answered_through_the_writer,
    heartbeat_registers_an_unknown_agent,
);

// ------------------------------------------------------------------ helpers

async fn setup(
    db: &TestDb,
    config: PersistenceConfig,
    agents: usize,
) -> (Store, PersistenceHandle, SharedState) {
    let store = db.store().await;
    let handle = PersistenceActor::start(store.clone(), config);
    let state = SharedState::with_writer(store.clone(), Writer::Actor(handle.clone()));
    for i in 0..agents {
        state.register_agent(&format!("agent-{i}"), &format!("Agent {i}")).await.expect("register");
    }
    (store, handle, state)
}

fn at(micros: i64) -> Ts {
    Ts::from(Utc.timestamp_opt(1_700_000_000, 0).unwrap() + chrono::Duration::microseconds(micros))
}

fn heartbeat(agent: usize, seq: i64) -> Write {
    Write::Heartbeat {
        agent_id: format!("agent-{agent}"),
        at: at(seq),
        status: Some(State::Active),
        message: Some(format!("{agent}:{seq}")),
        metadata: None,
        uptime: None,
    }
}

async fn heartbeat_count(state: &SharedState) -> i64 {
    state.table_counts().await.expect("counts")["agent_heartbeats"]
}

/// Messages of an agent's heartbeats in insertion (row id) order.
async fn messages_in_row_order(state: &SharedState, agent: usize) -> Vec<String> {
    let mut rows = state.recent_heartbeats(&format!("agent-{agent}"), 1_000_000).await.expect("heartbeats");
    rows.sort_by_key(|r| r.id);
    rows.into_iter().map(|r| r.message.expect("message set")).collect()
}

fn fast_retry() -> ConnectRetryPolicy {
    ConnectRetryPolicy::default().with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

// ------------------------------------------------------------------ scenarios

/// Many concurrent senders, mixing awaited and fire-and-forget writes: every agent's
/// rows land in the order it sent them, and its row ends in its last state.
async fn per_agent_order_under_concurrency(db: &TestDb) {
    const AGENTS: usize = 8;
    const WRITES: i64 = 400;
    let config = PersistenceConfig::default().with_batch(64, Duration::ZERO).with_queue_capacity(128);
    let (_store, handle, state) = setup(db, config, AGENTS).await;
    let tasks: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let handle = handle.clone();
            actix_rt::spawn(async move {
                for seq in 0..WRITES {
                    let write = heartbeat(agent, seq);
                    if seq % 3 == 0 {
                        handle.persist(write).await.expect("persist");
                    } else {
                        // Fire-and-forget, yielding while the queue is full: a refused
                        // write comes back, so nothing is cloned in advance.
                        let mut write = write;
                        loop {
                            match handle.enqueue(write) {
                                Ok(()) => break,
                                Err(EnqueueError::Full { write: refused, .. }) => {
                                    write = *refused;
                                    tokio::task::yield_now().await;
                                }
                                Err(e) => panic!("enqueue: {e}"),
                            }
                        }
                    }
                    if seq % 50 == 49 {
                        let status = nth_state(seq);
                        let change =
                            Write::StateChange { agent_id: format!("agent-{agent}"), status, at: at(seq) };
                        handle.persist(change).await.expect("state change");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(NET, task).await.expect("in time").expect("task");
    }
    handle.flush().await.expect("flush");

    assert_eq!(heartbeat_count(&state).await, AGENTS as i64 * WRITES);
    for agent in 0..AGENTS {
        let expected: Vec<String> = (0..WRITES).map(|seq| format!("{agent}:{seq}")).collect();
        assert_eq!(messages_in_row_order(&state, agent).await, expected, "agent {agent}: rows out of order");
        let row = state.get_agent(&format!("agent-{agent}")).await.unwrap().unwrap();
        assert_eq!(row.last_heartbeat, Some(at(WRITES - 1)));
        assert_eq!(row.status, Some(nth_state(WRITES - 1)));
    }
    let stats = handle.stats();
    assert!(stats.mean_batch_size > 1.0, "writes were grouped: {stats:?}");
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0);
}

/// A state per sequence number, cycling through all eleven: consecutive state changes
/// differ, so the last one is recognisable.
fn nth_state(seq: impl TryInto<usize>) -> State {
    let seq = seq.try_into().unwrap_or(0);
    State::ALL[seq % State::ALL.len()]
}

/// When `persist` returns, a read through the pool sees the write.
async fn acknowledged_write_is_readable(db: &TestDb) {
    let (_store, handle, state) = setup(db, PersistenceConfig::default(), 1).await;
    for seq in 0..20 {
        state
            .write(Write::StateChange { agent_id: "agent-0".into(), status: nth_state(seq), at: at(seq) })
            .await
            .expect("persist");
        let row = state.get_agent("agent-0").await.unwrap().expect("registered");
        assert_eq!(row.status, Some(nth_state(seq)));
        handle.persist(heartbeat(0, seq)).await.expect("persist");
        assert_eq!(state.get_agent("agent-0").await.unwrap().unwrap().last_heartbeat, Some(at(seq)));
    }
    assert_eq!(heartbeat_count(&state).await, 20);
    handle.shutdown().await;
}

/// A duplicate help request and an answer to a missing request share a batch with
/// good writes: only they fail, with the database's error; the rest commits.
async fn rejected_write_fails_alone(db: &TestDb) {
    let (_store, handle, state) = setup(db, PersistenceConfig::default(), 1).await;
    let request =
        |id: &str| Write::HelpRequest { request_id: id.into(), query: "q".into(), context: None, at: at(0) };
    handle.persist(request("r1")).await.expect("first request");

    let mut writes: Vec<Write> = (0..10).map(|seq| heartbeat(0, seq)).collect();
    writes.insert(3, request("r1"));
    writes.insert(
        7,
        Write::HelpResponse {
            request_id: "missing".into(),
            response: "a".into(),
            status: vigil_persistence::HelpStatus::Complete,
            at: at(0),
        },
    );
    writes.push(request("r2"));
    // Polled together, they are queued before the actor drains: one batch.
    let results = futures_util::future::join_all(writes.into_iter().map(|w| handle.persist(w))).await;
    for (i, result) in results.iter().enumerate() {
        match i {
            3 | 7 => {
                assert!(matches!(result, Err(StoreError::Query(_))), "write {i} should fail: {result:?}")
            }
            _ => assert!(result.is_ok(), "write {i} should commit: {result:?}"),
        }
    }
    assert_eq!(heartbeat_count(&state).await, 10);
    assert!(state.get_help_request("r2").await.unwrap().is_some());
    assert!(state.get_help_response("missing").await.unwrap().is_none());
    assert_eq!(handle.stats().rejected_writes, 2);
    handle.shutdown().await;
}

/// A stuck database fills the queue: awaited writes wait, fire-and-forget ones are
/// refused and counted; once it recovers everything accepted is written.
async fn backpressure_when_the_queue_is_full(db: &TestDb) {
    const CAPACITY: usize = 4;
    let config = PersistenceConfig::default()
        .with_batch(CAPACITY, Duration::ZERO)
        .with_queue_capacity(CAPACITY)
        .with_retry(fast_retry());
    let (_store, handle, state) = setup(db, config, 1).await;
    handle.fail_next_flushes(u32::MAX);

    let mut accepted = 0;
    let mut refused = 0;
    for seq in 0..CAPACITY as i64 + 3 {
        match handle.enqueue(heartbeat(0, seq)) {
            Ok(()) => accepted += 1,
            Err(EnqueueError::Full { write, capacity }) => {
                assert_eq!(capacity, CAPACITY);
                assert_eq!(*write, heartbeat(0, seq), "the refused write is handed back");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((accepted, refused), (CAPACITY, 3));
    // A lifecycle write is admitted past the capacity: a stopping platform never
    // waits for room to record its agents' transitions.
    let change = Write::StateChange {
        agent_id: "agent-0".into(),
        status: vigil_persistence::State::Standby,
        at: at(0),
    };
    handle.enqueue_lifecycle(change).expect("admitted past the capacity");
    assert_eq!(handle.stats().queue_depth, CAPACITY + 1, "the lifecycle write is queued beyond it");

    // More awaited writes than the queue holds: some must wait for room.
    let waiting: Vec<_> = (0..3 * CAPACITY as i64)
        .map(|seq| {
            let handle = handle.clone();
            actix_rt::spawn(async move { handle.persist(heartbeat(0, 1_000 + seq)).await })
        })
        .collect();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(waiting.iter().all(|t| !t.is_finished()), "nothing can commit while every flush fails");
    assert_eq!(handle.stats().queue_depth, CAPACITY, "the queue refilled to its capacity");
    match handle.enqueue(heartbeat(0, 99)) {
        Err(EnqueueError::Full { .. }) => refused += 1,
        other => panic!("expected QueueFull, got {other:?}"),
    }

    // Wait (bounded) until a failed flush has been retried at least once, so the
    // recovery below is a real retry on every machine, however loaded.
    let deadline = std::time::Instant::now() + NET;
    while handle.stats().retries == 0 {
        assert!(std::time::Instant::now() < deadline, "no flush was retried");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.fail_next_flushes(0);
    for task in waiting {
        tokio::time::timeout(NET, task).await.expect("in time").expect("task").expect("persisted");
    }
    handle.flush().await.expect("flush");
    let stats = handle.stats();
    assert_eq!(stats.refused_writes, refused);
    assert!(stats.retries > 0);
    assert_eq!(heartbeat_count(&state).await, (accepted + 3 * CAPACITY) as i64);
    handle.shutdown().await;
}

/// Fire-and-forget writes queued before shutdown are all in the database after it;
/// later writes are refused with `Closed`.
async fn shutdown_flushes_the_queue(db: &TestDb) {
    const N: i64 = 2_500;
    let config = PersistenceConfig::default().with_queue_capacity(N as usize);
    let (_store, handle, state) = setup(db, config, 3).await;
    for seq in 0..N {
        handle.enqueue(heartbeat((seq % 3) as usize, seq)).expect("enqueue");
    }
    let report = tokio::time::timeout(NET, handle.shutdown()).await.expect("in time");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.written, N as u64 + 3, "three registrations and the heartbeats");
    assert_eq!(heartbeat_count(&state).await, N);
    assert!(matches!(handle.enqueue(heartbeat(0, 0)), Err(EnqueueError::Closed(_))));
    assert!(matches!(handle.persist(heartbeat(0, 0)).await, Err(StoreError::Closed)));
    assert_eq!(handle.shutdown().await, report, "a second shutdown reports the same");
}

/// Claims, commands and workflow runs are requests to the writer: applied in its
/// batches, answered after commit, exclusive however many ask at once.
async fn requests_are_answered_through_the_writer(db: &TestDb) {
    use vigil_persistence::agent_commands::CommandAction;
    use vigil_persistence::workflow_runs::{Checkpoint, WorkflowStatus};
    use vigil_persistence::writes::WriteKind;

    let (_store, handle, state) = setup(db, PersistenceConfig::default(), 2).await;
    let before = handle.stats().rows_by_kind.get(&WriteKind::Request).copied().unwrap_or(0);

    // Eight claimants of one incident at once (joined, not one after the other): one wins.
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let state = state.clone();
            actix_rt::spawn(async move {
                state.claim_incident("agent-0", &format!("monitor-{i}"), Duration::from_secs(60)).await
            })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(
            tokio::time::timeout(NET, claim).await.expect("in time").expect("task").expect("claim"),
        );
    }
    assert_eq!(won, 1, "exactly one claimant gets the incident");

    // Help requests: two helpers racing share them without overlap.
    for i in 0..6 {
        state.create_help_request(&format!("q{i}"), "why?", None).await.expect("file");
    }
    let helpers: Vec<_> = ["helper-a", "helper-b"]
        .into_iter()
        .map(|helper| {
            let state = state.clone();
            actix_rt::spawn(async move { state.claim_help_requests(helper, 4).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for helper in helpers {
        claimed
            .extend(tokio::time::timeout(NET, helper).await.expect("in time").expect("task").expect("claim"));
    }
    let ids: HashSet<_> = claimed.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!((claimed.len(), ids.len()), (6, 6), "every request handed out exactly once");

    // Commands: the id comes back, a claim takes it once, completion is recorded.
    let id =
        state.submit_agent_command("agent-1", CommandAction::Restart, Some("test")).await.expect("submit");
    let mine = state.claim_agent_commands_for(&["agent-1".into()], 10).await.expect("claim");
    assert_eq!(mine.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
    assert!(state.claim_agent_commands_for(&["agent-1".into()], 10).await.expect("claim").is_empty());
    state.complete_agent_command(id, true, "restarted").await.expect("complete");
    assert!(state.get_agent_command(id).await.expect("read").expect("row").is_finished());

    // Workflow runs: a taken id is refused; a checkpoint applies once.
    let run = state.submit_workflow_run("graph", "run-1", serde_json::json!({"n": 1})).await.expect("submit");
    assert_eq!((run.run_id.as_str(), run.step), ("run-1", 0));
    assert!(state.submit_workflow_run("graph", "run-1", serde_json::json!({})).await.is_err());
    let checkpoint = Checkpoint {
        step: 1,
        next_node: None,
        state: serde_json::json!({"n": 2}),
        status: WorkflowStatus::Completed,
        error: None,
    };
    assert!(state.save_workflow_checkpoint("run-1", 0, checkpoint.clone()).await.expect("save"));
    assert!(!state.save_workflow_checkpoint("run-1", 0, checkpoint).await.expect("save"), "already advanced");

    // Every one of them went through the actor.
    let requests = handle.stats().rows_by_kind.get(&WriteKind::Request).copied().unwrap_or(0) - before;
    assert_eq!(requests, 8 + 2 + 1 + 2 + 1 + 2 + 2, "claims, commands and runs are requests to the writer");
    handle.shutdown().await;
}

/// The specification's `update_agent_heartbeat` does "INSERT/UPDATE agents": a
/// heartbeat of an agent nobody registered registers it, in a batch with others.
async fn heartbeat_registers_an_unknown_agent(db: &TestDb) {
    use vigil_persistence::shared_state::Heartbeat;
    let (_store, handle, state) = setup(db, PersistenceConfig::default(), 1).await;
    state
        .update_agent_heartbeat("stranger", Heartbeat::new().status(vigil_persistence::State::Active))
        .enqueue()
        .await
        .expect("queued");
    state.update_agent_heartbeat("agent-0", Heartbeat::new()).enqueue().await.expect("queued");
    state.update_agent_heartbeat("stranger", Heartbeat::new()).await.expect("committed");
    let agent = state.get_agent("stranger").await.expect("read").expect("registered by its heartbeat");
    assert_eq!(
        (agent.agent_name.as_str(), agent.status),
        ("stranger", Some(vigil_persistence::State::Active))
    );
    assert!(agent.last_heartbeat.is_some());
    assert_eq!(state.recent_heartbeats("stranger", 10).await.expect("read").len(), 2);
    handle.shutdown().await;
}

/// The fault hook fails the next flushes; the batch is retried and written once.
async fn injected_failures_are_retried_then_committed_once(db: &TestDb) {
    let config = PersistenceConfig::default().with_retry(fast_retry());
    let (_store, handle, state) = setup(db, config, 1).await;
    let before = handle.stats();
    handle.fail_next_flushes(3);
    handle.persist(heartbeat(0, 1)).await.expect("committed after the retries");
    let stats = handle.stats();
    assert_eq!(stats.retries - before.retries, 3);
    assert_eq!(stats.batches_committed - before.batches_committed, 1);
    assert_eq!(heartbeat_count(&state).await, 1);
    handle.shutdown().await;
}

/// Connections killed again and again while writers run: every acknowledged write is
/// in the table exactly once.
#[actix_rt::test]
async fn killed_connections_lose_and_duplicate_nothing() {
    const AGENTS: usize = 10;
    const WRITES: i64 = 300;
    let Some(db) = TestDb::postgres().await else { return };
    let config = PersistenceConfig::default().with_batch(50, Duration::ZERO).with_retry(fast_retry());
    let (_store, handle, state) = setup(&db, config, AGENTS).await;

    let writers: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let handle = handle.clone();
            actix_rt::spawn(async move {
                for seq in 0..WRITES {
                    handle.persist(heartbeat(agent, seq)).await.expect("acknowledged despite the kills");
                }
            })
        })
        .collect();
    let mut kills = 0;
    let mut last_committed = 0;
    while !writers.iter().all(|w| w.is_finished()) && kills < 15 {
        // Kill only once the writer made progress since the last kill, so that every
        // kill lands on a working connection.
        let committed = handle.stats().writes_committed;
        if committed > last_committed {
            kills += db.kill_connections().await;
            last_committed = committed;
        }
        tokio::time::sleep(Duration::from_millis(5)).await; // pacing the faults, not waiting for an outcome
    }
    for writer in writers {
        tokio::time::timeout(NET, writer).await.expect("in time").expect("writer");
    }
    assert!(kills > 0, "no connection was killed");
    let stats = handle.stats();
    assert!(stats.retries > 0, "the kills caused retries: {stats:?}");

    assert_eq!(heartbeat_count(&state).await, AGENTS as i64 * WRITES, "{stats:?}");
    for agent in 0..AGENTS {
        let messages = messages_in_row_order(&state, agent).await;
        let distinct: HashSet<&String> = messages.iter().collect();
        assert_eq!(distinct.len(), messages.len(), "agent {agent}: duplicated rows");
        let expected: Vec<String> = (0..WRITES).map(|seq| format!("{agent}:{seq}")).collect();
        assert_eq!(messages, expected, "agent {agent}: rows lost or out of order");
    }
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0);
    drop(state);
    db.cleanup().await;
}
