//! The persistence actor under harsh faults, on PostgreSQL clusters of the tests' own
//! ([`PrivateCluster`]): server crashes (`pg_ctl stop -m immediate`) under awaited load
//! with another client burning transaction ids, commits whose answer is lost, frozen
//! backends (`SIGSTOP`), batches too large to send, and connection errors that say
//! what happened. Every outcome is awaited; timeouts are only safety nets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use vigil_persistence::agent_commands::CommandAction;
use vigil_persistence::config::{ConnectRetryPolicy, PoolConfig};
use vigil_persistence::connect::ConnectFailure;
use vigil_persistence::testing::{PrivateCluster, admin_url, postgres_required};

use crate::common::heartbeat_copies;
use vigil_persistence::types::Ts;
use vigil_persistence::{
    CommitFault, DatabaseConfig, PayloadLimits, PersistenceActor, PersistenceConfig, PersistenceHandle,
    Reply, Request, Store, StoreError, Write,
};

/// Safety net for anything awaited.
const NET: Duration = Duration::from_secs(120);

fn fast_retry() -> ConnectRetryPolicy {
    ConnectRetryPolicy::default().with_backoff(Duration::from_millis(5), Duration::from_millis(200))
}

/// A store on `cluster` whose pool fails fast while the server is down.
async fn store_on(cluster: &PrivateCluster) -> Store {
    cluster.impatient_store().await
}

/// A heartbeat of `agent` whose message identifies the write.
fn heartbeat(agent: usize, id: &str) -> Write {
    Write::Heartbeat {
        agent_id: format!("agent-{agent}"),
        at: Ts::now(),
        status: None,
        message: Some(id.to_owned()),
        metadata: None,
        uptime: None,
    }
}

async fn register(handle: &PersistenceHandle, agents: usize) {
    for agent in 0..agents {
        let write = Write::RegisterAgent {
            agent_id: format!("agent-{agent}"),
            agent_name: "A".into(),
            at: Ts::now(),
        };
        handle.persist(write).await.expect("register");
    }
}

/// Acknowledged ⇒ present exactly once; also counts what is present without an
/// acknowledgement (a write whose caller got an error may still have committed: it
/// was not acknowledged, so that is allowed — but never twice).
struct Accounting {
    acknowledged: usize,
    present: usize,
    lost: usize,
    duplicated: usize,
}

fn account(acknowledged: &HashSet<String>, copies: &HashMap<String, i64>) -> Accounting {
    Accounting {
        acknowledged: acknowledged.len(),
        present: acknowledged.iter().filter(|id| copies.contains_key(*id)).count(),
        lost: acknowledged.iter().filter(|id| !copies.contains_key(*id)).count(),
        duplicated: copies.values().filter(|n| **n > 1).count(),
    }
}

/// Burns transaction ids on the cluster until `stop`: after a crash, ids that never
/// reached the disk are handed out again, to this client's transactions.
fn spawn_xid_burner(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut burned = 0u64;
        while !AtomicBool::load(&stop, Ordering::Relaxed) {
            let Ok(mut conn) = AsyncPgConnection::establish(&url).await else {
                tokio::time::sleep(Duration::from_millis(20)).await; // the server is down: pace reconnects
                continue;
            };
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                if diesel::sql_query("SELECT txid_current()").execute(&mut conn).await.is_err() {
                    break;
                }
                burned += 1;
            }
        }
        burned
    })
}

/// Crashes the server (`-m immediate`) again and again under awaited load while
/// another client burns transaction ids; every acknowledged write is present exactly
/// once and nothing is left waiting.
#[actix_rt::test]
async fn server_crashes_lose_and_duplicate_nothing() {
    const CRASHES: usize = 6;
    const LOADERS: usize = 8;
    let Some(cluster) = PrivateCluster::start() else { return };
    let cluster = Arc::new(cluster);
    let store = store_on(&cluster).await;
    let config = PersistenceConfig::default()
        .with_batch(200, Duration::ZERO)
        .with_retry(fast_retry())
        .with_transaction_timeout(Duration::from_secs(5));
    let handle = PersistenceActor::start(store.clone(), config);
    register(&handle, LOADERS).await;

    let stop = Arc::new(AtomicBool::new(false));
    let burner = spawn_xid_burner(cluster.url(), stop.clone());
    let loaders: Vec<_> = (0..LOADERS)
        .map(|agent| {
            let (handle, stop) = (handle.clone(), stop.clone());
            actix_rt::spawn(async move {
                let (mut acknowledged, mut failed) = (HashSet::new(), 0usize);
                let mut seq = 0u64;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    let id = format!("{agent}:{seq}");
                    seq += 1;
                    match handle.persist(heartbeat(agent, &id)).await {
                        Ok(()) => {
                            acknowledged.insert(id);
                        }
                        Err(_) => failed += 1,
                    }
                }
                (acknowledged, failed)
            })
        })
        .collect();

    // The direct writer (no actor) too: its transactions are marked the same way.
    let direct_loaders: Vec<_> = (0..2)
        .map(|n| {
            let (store, stop) = (store.clone(), stop.clone());
            actix_rt::spawn(async move {
                let (mut acknowledged, mut failed) = (HashSet::new(), 0usize);
                let mut seq = 0u64;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    let id = format!("direct{n}:{seq}");
                    seq += 1;
                    match store.write(heartbeat(n, &id)).await {
                        Ok(_) => {
                            acknowledged.insert(id);
                        }
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await; // pacing retries of a caller
                        }
                    }
                }
                (acknowledged, failed)
            })
        })
        .collect();

    for crash in 0..CRASHES {
        // Crash only once writes committed since the last restart: every crash lands
        // on a working writer.
        let before = handle.stats().writes_committed;
        let waited = Instant::now();
        while handle.stats().writes_committed < before + 300 {
            assert!(
                waited.elapsed() < NET,
                "crash {crash}: no progress after the restart: {:?}",
                handle.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await; // polling progress, with the net above
        }
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || {
            c.crash();
            c.start_again();
        })
        .await
        .expect("crash and restart");
    }
    // Progress after the last restart, then stop the load.
    let before = handle.stats().writes_committed;
    let waited = Instant::now();
    while handle.stats().writes_committed < before + 300 {
        assert!(waited.elapsed() < NET, "no progress after the last restart: {:?}", handle.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    let mut failed = 0;
    for loader in loaders.into_iter().chain(direct_loaders) {
        let (acks, fails) = tokio::time::timeout(NET, loader)
            .await
            .expect("no write left waiting (stuck writer)")
            .expect("loader");
        acknowledged.extend(acks);
        failed += fails;
    }
    let burned = burner.await.expect("burner");
    tokio::time::timeout(NET, handle.flush()).await.expect("flush returns").expect("flush");

    let copies = heartbeat_copies(&cluster.url()).await;
    let a = account(&acknowledged, &copies);
    let stats = handle.stats();
    eprintln!(
        "RESULT crashes={CRASHES} acknowledged={} present={} lost={} duplicated={} failed_writes={failed} \
         xids_burned={burned} recovered_commits={} retries={}",
        a.acknowledged, a.present, a.lost, a.duplicated, stats.recovered_commits, stats.retries
    );
    assert!(burned > 0, "the burner consumed transaction ids");
    assert!(stats.retries > 0, "the crashes caused retries: {stats:?}");
    assert_eq!(a.lost, 0, "acknowledged writes missing from the table");
    assert_eq!(a.duplicated, 0, "writes present more than once");
    assert_eq!(a.present, a.acknowledged);
    let report = handle.shutdown().await;
    assert_eq!(report.failed, 0, "{report:?}");
}

/// The answer to `COMMIT` is lost after the server committed (the writer must not
/// apply the batch again) and after it did not (the writer must apply it): both end
/// with every write present exactly once, acknowledged with its own reply.
#[actix_rt::test]
async fn a_lost_commit_answer_is_resolved_by_the_marker() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let store = store_on(&cluster).await;
    let handle =
        PersistenceActor::start(store.clone(), PersistenceConfig::default().with_retry(fast_retry()));
    register(&handle, 1).await;

    handle.inject_commit_fault(CommitFault::AnswerLost);
    handle.persist(heartbeat(0, "answer-lost")).await.expect("acknowledged once resolved");
    assert_eq!(handle.stats().recovered_commits, 1, "found committed by its marker");

    handle.inject_commit_fault(CommitFault::NeverArrived);
    handle.persist(heartbeat(0, "never-arrived")).await.expect("acknowledged after the redo");
    assert_eq!(handle.stats().recovered_commits, 1, "not committed: applied again, not recovered");

    // A request's reply survives a lost answer: the command id answered is the one
    // committed, and there is one command.
    handle.inject_commit_fault(CommitFault::AnswerLost);
    let submit = Request::SubmitCommand {
        agent_id: "agent-0".into(),
        action: CommandAction::Restart,
        requested_by: None,
        at: Ts::now(),
    };
    let reply = handle.request(submit).await.expect("answered once resolved");
    assert_eq!(handle.stats().recovered_commits, 2);

    let copies = heartbeat_copies(&cluster.url()).await;
    for id in ["answer-lost", "never-arrived"] {
        assert_eq!(copies.get(id), Some(&1), "{id} present exactly once: {copies:?}");
    }
    #[derive(diesel::QueryableByName)]
    struct CommandRow {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        id: i32,
    }
    let mut conn = AsyncPgConnection::establish(&cluster.url()).await.expect("connect");
    let commands: Vec<CommandRow> =
        diesel::sql_query("SELECT id FROM agent_commands").load(&mut conn).await.expect("commands");
    assert_eq!(commands.len(), 1, "one command row");
    assert_eq!(reply, Reply::CommandId(commands[0].id), "the reply of the committed transaction");
    assert_eq!(handle.shutdown().await.failed, 0);
}

/// A writer whose backend freezes (`SIGSTOP`) resumes on a new connection within its
/// transaction deadline, while the old backend is still frozen.
#[actix_rt::test]
async fn a_frozen_writer_backend_is_left_behind() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let store = store_on(&cluster).await;
    let config = PersistenceConfig::default()
        .with_retry(fast_retry())
        .with_transaction_timeout(Duration::from_secs(2));
    let handle = PersistenceActor::start(store.clone(), config);
    register(&handle, 1).await;
    let writers = cluster.backend_pids("vigil-writer").await;
    assert_eq!(writers.len(), 1, "the writer keeps one connection: {writers:?}");
    cluster.signal(writers[0], "STOP");

    let started = Instant::now();
    let outcome =
        tokio::time::timeout(Duration::from_secs(30), handle.persist(heartbeat(0, "while-frozen"))).await;
    let frozen_for = started.elapsed();
    // Thawed whatever happened, so the cluster can stop.
    cluster.signal(writers[0], "CONT");
    outcome.expect("acknowledged while the old backend was still frozen").expect("acknowledged");
    eprintln!("RESULT frozen writer backend: write acknowledged after {frozen_for:?} (deadline 2 s)");
    assert!(handle.stats().retries >= 1, "the deadline expired once");
    let now = cluster.backend_pids("vigil-writer").await;
    assert!(now.iter().any(|pid| *pid != writers[0]), "a new writer connection: {now:?}");
    assert_eq!(heartbeat_copies(&cluster.url()).await.get("while-frozen"), Some(&1));
    assert_eq!(handle.shutdown().await.failed, 0);
}

/// A reader whose pooled connection freezes gets its answer from another connection;
/// the frozen one is not handed out again.
#[actix_rt::test]
async fn a_frozen_reader_connection_is_dropped() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let pool = PoolConfig::default()
        .with_connections(1, 1)
        .with_command_timeout(Duration::from_secs(1))
        .with_connection_timeout(Duration::from_secs(10))
        .with_retry(fast_retry().with_max_attempts(3));
    let store = Store::connect(cluster.config().with_pool(pool).expect("pool")).await.expect("connect");
    store.health().await.expect("a first read opens the pooled connection");
    let readers = cluster.backend_pids("vigil-pool").await;
    assert_eq!(readers.len(), 1, "{readers:?}");
    cluster.signal(readers[0], "STOP");
    let outcome = tokio::time::timeout(Duration::from_secs(30), store.ping()).await;
    let now = cluster.backend_pids("vigil-pool").await;
    cluster.signal(readers[0], "CONT");
    outcome.expect("answered while the old backend was frozen").expect("a new connection answered");
    assert!(now.iter().any(|pid| *pid != readers[0]), "a new pooled connection: {now:?}");
}

/// A conversation write of `bytes` bytes (in its response).
fn exchange(n: usize, bytes: usize) -> Write {
    Write::Conversation {
        agent_id: None,
        conversation_id: Some(format!("big-{n}")),
        message: Some("q".into()),
        response: Some("x".repeat(bytes)),
        metadata: None,
        at: Ts::now(),
    }
}

/// A write larger than PostgreSQL's 1 GiB message limit (text limit raised to let it
/// through): the server drops the connection every time it is sent, so it fails alone
/// with a typed error, and the writes queued around it commit.
#[actix_rt::test]
async fn a_write_too_large_to_send_fails_alone() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let limits = PayloadLimits::default().with_max_text_bytes(2 << 30);
    let config = cluster.config().with_payload_limits(limits).expect("limits");
    let store = Store::connect(config).await.expect("connect");
    let handle =
        PersistenceActor::start(store.clone(), PersistenceConfig::default().with_retry(fast_retry()));
    register(&handle, 1).await;
    let writes = futures_util::future::join3(
        handle.persist(heartbeat(0, "before")),
        handle.persist(exchange(0, 1_100_000_000)),
        handle.persist(heartbeat(0, "after")),
    );
    let (before, huge, after) = tokio::time::timeout(NET, writes).await.expect("every write answered");
    before.expect("a neighbour commits");
    after.expect("a neighbour commits");
    match huge {
        Err(StoreError::Unsendable { bytes, reason }) => {
            assert!(bytes >= 1_100_000_000, "{bytes}");
            eprintln!("RESULT unsendable write: {bytes} bytes refused: {reason}");
        }
        other => panic!("expected Unsendable, got {other:?}"),
    }
    let copies = heartbeat_copies(&cluster.url()).await;
    assert_eq!((copies.get("before"), copies.get("after")), (Some(&1), Some(&1)));
    assert_eq!(handle.shutdown().await.failed, 0);
}

/// With the default byte cap, large writes are committed in batches that fit.
#[actix_rt::test]
async fn the_byte_cap_keeps_batches_sendable() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let store = store_on(&cluster).await;
    let handle =
        PersistenceActor::start(store.clone(), PersistenceConfig::default().with_retry(fast_retry()));
    for n in 0..100 {
        handle.enqueue(exchange(n, 1_100_000)).expect("queued");
    }
    tokio::time::timeout(NET, handle.flush()).await.expect("flushed").expect("flush");
    let stats = handle.stats();
    assert_eq!(stats.writes_committed, 100);
    // 16 MiB per batch: at most 15 writes of 1.1 MB each.
    assert!(stats.batches_committed >= 7, "{stats:?}");
    assert_eq!(stats.retries, 0, "nothing had to be retried: {stats:?}");
    assert_eq!(handle.shutdown().await.failed, 0);
}

// ------------------------------------------------------------ connection errors

/// The error of a store that cannot connect to `config`.
async fn connect_error(config: DatabaseConfig) -> StoreError {
    let pool = PoolConfig::default()
        .with_connection_timeout(Duration::from_secs(3))
        .with_retry(ConnectRetryPolicy::default().with_max_attempts(1));
    match Store::connect(config.with_pool(pool).expect("pool")).await {
        Ok(_) => panic!("connected"),
        Err(error) => error,
    }
}

fn kind(error: &StoreError) -> ConnectFailure {
    match error {
        StoreError::Connect(e) => e.kind,
        other => panic!("not a connection error: {other:?}"),
    }
}

#[tokio::test]
async fn connection_errors_say_what_happened() {
    // Refused: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://postgres:s3cret-pw@127.0.0.1:{port}/vigil");
    let refused = connect_error(DatabaseConfig::postgres(&url).unwrap()).await;
    let text = refused.to_string();
    assert_eq!(kind(&refused), ConnectFailure::Refused, "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}/vigil")), "names the server: {text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains("s3cret-pw") && !format!("{refused:?}").contains("s3cret-pw"),
        "no password: {text}"
    );
    assert!(refused.is_transient());

    // No such host: a name that does not resolve (`.invalid` never does) fails at once.
    let started = Instant::now();
    let url = "postgres://postgres:s3cret-pw@vigil-no-such-host.invalid/vigil";
    let unknown = connect_error(DatabaseConfig::postgres(url).unwrap()).await;
    let text = unknown.to_string();
    assert_eq!(kind(&unknown), ConnectFailure::NoSuchHost, "{text}");
    assert!(
        text.contains("vigil-no-such-host.invalid:5432/vigil") && text.contains("no such host"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(!unknown.is_transient(), "a name that does not resolve is not retried");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");

    // The shared server: a missing database and an unknown role fail at once.
    let admin = admin_url();
    let probe = AsyncPgConnection::establish(admin.expose()).await;
    if probe.is_err() {
        assert!(!postgres_required(), "REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable");
        eprintln!("\n*** SKIPPED (partly): no PostgreSQL at {admin} ***\n");
        return;
    }
    let missing = admin.with_database("vigil_no_such_database");
    let started = Instant::now();
    let error = connect_error(DatabaseConfig::postgres(missing.expose()).unwrap()).await;
    assert_eq!(kind(&error), ConnectFailure::DatabaseMissing, "{error}");
    assert!(!error.is_transient(), "a missing database is not retried");
    assert!(error.to_string().contains("vigil_no_such_database"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");

    let mut stranger = url::Url::parse(admin.expose()).unwrap();
    stranger.set_username("vigil_no_such_role").unwrap();
    stranger.set_password(Some("hunter2-secret")).unwrap();
    let error = connect_error(DatabaseConfig::postgres(stranger.as_str()).unwrap()).await;
    assert_eq!(kind(&error), ConnectFailure::AuthenticationFailed, "{error}");
    assert!(!error.is_transient());
    assert!(!error.to_string().contains("hunter2-secret"), "{error}");
}

/// A write that can never be sent (the connection dies every time, even alone) fails
/// with a typed error; its neighbours in the same batch commit.
#[actix_rt::test]
async fn an_unsendable_write_fails_alone() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let store = store_on(&cluster).await;
    let config =
        PersistenceConfig::default().with_retry(fast_retry()).with_batch(100, Duration::from_millis(50));
    let handle = PersistenceActor::start(store.clone(), config);
    register(&handle, 1).await;
    handle.poison_writes(|w| matches!(w, Write::Heartbeat { message: Some(m), .. } if m == "poison"));
    let writes = futures_util::future::join3(
        handle.persist(heartbeat(0, "before")),
        handle.persist(heartbeat(0, "poison")),
        handle.persist(heartbeat(0, "after")),
    );
    let (before, poison, after) = tokio::time::timeout(NET, writes).await.expect("every write answered");
    before.expect("a neighbour commits");
    after.expect("a neighbour commits");
    match poison {
        Err(StoreError::Unsendable { bytes, reason }) => {
            assert!(bytes > 0);
            assert!(reason.contains("died while sending"), "{reason}");
        }
        other => panic!("expected Unsendable, got {other:?}"),
    }
    let copies = heartbeat_copies(&cluster.url()).await;
    assert_eq!(copies.get("before"), Some(&1));
    assert_eq!(copies.get("after"), Some(&1));
    assert_eq!(copies.get("poison"), None);
    assert_eq!(handle.shutdown().await.failed, 0);
}

/// A reader that times out waiting for a pooled connection while the server is down
/// says why the pool could not open one.
#[actix_rt::test]
async fn a_pool_timeout_says_why_no_connection_opened() {
    let Some(cluster) = PrivateCluster::start() else { return };
    let store = store_on(&cluster).await;
    store.ping().await.expect("up");
    cluster.stop();
    let error = store.ping().await.expect_err("the server is down");
    cluster.start_again();
    let StoreError::PoolTimeout { last_connect_error: Some(cause), .. } = &error else {
        panic!("expected a pool timeout with its cause, got {error:?}")
    };
    assert_eq!(cause.kind, ConnectFailure::Refused, "{error}");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{}/postgres", cluster.port())), "names the server: {text}");
    store.ping().await.expect("back once the server is");
}

/// The retention cleanup removes commit markers of writers that are gone, and keeps
/// those younger than a day (a writer may still be resolving one).
#[tokio::test]
async fn cleanup_removes_old_commit_markers() {
    use vigil_persistence::testing::TestDb;
    for db in [TestDb::sqlite()].into_iter().chain(TestDb::postgres().await) {
        let store = db.store().await;
        store
            .execute_raw_for_tests(
                "INSERT INTO vigil_write_batches (writer_id, batch_seq, committed_at) \
                 VALUES (1, 1, '2020-01-01 00:00:00.000000+00:00')",
            )
            .await
            .expect("an old marker");
        store
            .execute_raw_for_tests("INSERT INTO vigil_write_batches (writer_id, batch_seq) VALUES (2, 1)")
            .await
            .expect("a fresh marker");
        vigil_persistence::SharedState::direct(store.clone()).cleanup_old_data(0).await.expect("cleanup");
        let delete = |writer: i64| format!("DELETE FROM vigil_write_batches WHERE writer_id = {writer}");
        assert_eq!(store.execute_raw_for_tests(&delete(1)).await.unwrap(), 0, "the old marker was removed");
        assert_eq!(store.execute_raw_for_tests(&delete(2)).await.unwrap(), 1, "the fresh marker was kept");
    }
}
