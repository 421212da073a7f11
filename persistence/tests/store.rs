//! Store behaviour: retries of transient failures, timeouts, bad connections.

use std::time::Duration;

use vigil_persistence::config::{ConnectRetryPolicy, PoolConfig};
use vigil_persistence::shared_state::Heartbeat;
use vigil_persistence::{SharedState, Store, StoreError};

use crate::common::TestDb;

#[tokio::test]
async fn killed_connections_are_retried_transparently() {
    let Some(db) = TestDb::postgres().await else { return };
    let config = db
        .config()
        .with_pool(
            PoolConfig::default().with_connections(2, 2).with_retry(
                ConnectRetryPolicy::default()
                    .with_max_attempts(6)
                    .with_backoff(Duration::from_millis(10), Duration::from_millis(200)),
            ),
        )
        .unwrap();
    let state = SharedState::direct(Store::connect(config).await.unwrap());
    state.register_agent("a", "A").await.unwrap();
    let mut written = 0;
    for round in 0..5 {
        // Every pooled connection dies between two writes; the next write must still land.
        assert!(db.kill_connections().await > 0, "round {round}: there were connections to kill");
        state.update_agent_heartbeat("a", Heartbeat::new()).await.unwrap();
        written += 1;
    }
    assert_eq!(
        state.table_counts().await.unwrap()["agent_heartbeats"],
        written,
        "each write landed exactly once"
    );

    // A connection killed while its statement runs fails that attempt; the retry lands.
    let store = state.store().clone();
    let slow = tokio::spawn(async move { store.execute_raw_for_tests("SELECT pg_sleep(0.3)").await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !slow.is_finished() && state.get_query_stats().connection_errors == 0 {
        assert!(std::time::Instant::now() < deadline, "the running statement was never cut");
        db.kill_connections().await;
        tokio::task::yield_now().await;
    }
    slow.await.unwrap().expect("the statement was retried after its connection died");
    let stats = state.get_query_stats();
    assert!(stats.connection_errors >= 1 && stats.query_errors >= 1, "the failure was counted: {stats:?}");
}

#[tokio::test]
async fn unreachable_database_fails_after_bounded_retries() {
    let config = vigil_persistence::DatabaseConfig::postgres("postgresql://postgres@127.0.0.1:1/none")
        .unwrap()
        .with_pool(
            PoolConfig::default().with_connections(0, 1).with_connection_timeout(Duration::from_millis(500)),
        )
        .unwrap();
    let started = std::time::Instant::now();
    let error = Store::connect(config).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded: {:?}", started.elapsed());
}

#[tokio::test]
async fn statements_past_the_command_timeout_are_cancelled() {
    let Some(db) = TestDb::postgres().await else { return };
    let config = db
        .config()
        .with_pool(
            PoolConfig::default()
                .with_connections(1, 1)
                .with_command_timeout(Duration::from_millis(200))
                .with_retry(ConnectRetryPolicy::default().with_max_attempts(1)),
        )
        .unwrap();
    let store = Store::connect(config).await.unwrap();
    let error = store.execute_raw_for_tests("SELECT pg_sleep(2)").await.unwrap_err();
    assert!(matches!(error, StoreError::CommandTimeout(t) if t == Duration::from_millis(200)), "{error:?}");
    assert!(error.to_string().contains("timed out after 200ms"), "{error}");
    // The connection is still usable afterwards.
    store.execute_raw_for_tests("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn sqlite_in_memory_is_private_and_works() {
    let a = SharedState::direct(
        Store::connect(vigil_persistence::DatabaseConfig::sqlite_memory()).await.unwrap(),
    );
    let b = SharedState::direct(
        Store::connect(vigil_persistence::DatabaseConfig::sqlite_memory()).await.unwrap(),
    );
    a.register_agent("only-in-a", "A").await.unwrap();
    assert_eq!(a.get_registered_agents().await.unwrap().len(), 1);
    assert!(b.get_registered_agents().await.unwrap().is_empty());
}

#[test]
fn store_works_under_actix() {
    // actix runs a single-threaded runtime; the store must not care.
    let db = TestDb::sqlite();
    let config = db.config();
    actix_rt::System::new().block_on(async move {
        let state = SharedState::direct(Store::connect(config).await.unwrap());
        state.register_agent("x", "X").await.unwrap();
        state.update_agent_heartbeat("x", Heartbeat::new()).await.unwrap();
        assert_eq!(state.recent_heartbeats("x", 5).await.unwrap().len(), 1);
    });
}

#[tokio::test]
async fn ping_is_one_round_trip_on_both_backends_and_counted() {
    let sqlite = TestDb::sqlite();
    let mut dbs = vec![sqlite.store().await];
    let pg = TestDb::postgres().await;
    if let Some(pg) = &pg {
        dbs.push(pg.store().await);
    }
    for store in dbs {
        let before = store.query_stats().total_queries;
        let round_trip = store.ping().await.expect("the database answers");
        assert!(round_trip < Duration::from_secs(5), "{round_trip:?}");
        assert_eq!(store.query_stats().total_queries, before + 1, "one query, counted");
    }
}

#[tokio::test]
async fn slow_queries_come_from_pg_stat_statements_or_say_what_is_missing() {
    let sqlite = TestDb::sqlite().store().await;
    let refused = sqlite.slow_queries(Duration::from_millis(100), 10).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unsupported { backend: "sqlite", .. }), "{refused:?}");

    let Some(pg) = TestDb::postgres().await else { return };
    let store = pg.store().await;
    store.execute_raw_for_tests("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
    let preloaded = store.execute_raw_for_tests("SELECT 1 FROM pg_stat_statements LIMIT 1").await.is_ok();
    match store.slow_queries(Duration::ZERO, 5).await {
        // Loaded by the server: rows, slowest first.
        Ok(rows) => {
            assert!(preloaded);
            assert!(rows.windows(2).all(|w| w[0].mean_ms >= w[1].mean_ms), "{rows:?}");
        }
        // Not loaded (this machine's default): PostgreSQL's own reason, not a mystery.
        Err(e) => {
            assert!(!preloaded);
            assert!(e.to_string().contains("shared_preload_libraries"), "{e}");
        }
    }
}

/// A URL naming several hosts (libpq's form): the driver tries them in order, so a
/// store connects through the first one that answers, and `target_session_attrs`
/// reaches the driver. The message of a failure names every host.
#[tokio::test]
async fn a_url_with_several_hosts_connects_to_the_first_that_answers() {
    let Some(db) = TestDb::postgres().await else { return };
    let TestDb::Postgres { url, .. } = &db else { unreachable!() };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (scheme_user, rest) = url.expose().split_once('@').expect("a user in the test URL");
    let several = format!("{scheme_user}@127.0.0.1:{closed},{rest}?target_session_attrs=read-write");
    let config = vigil_persistence::DatabaseConfig::postgres(&several).expect("several hosts parse");
    let state = SharedState::direct(Store::connect(config).await.expect("the second host answers"));
    state.register_agent("reached", "Reached").await.unwrap();
    assert!(state.get_agent("reached").await.unwrap().is_some());

    let only_closed = format!("{scheme_user}@127.0.0.1:{closed},127.0.0.1:{closed}/nowhere");
    let pool = PoolConfig::default().with_retry(ConnectRetryPolicy::default().with_max_attempts(1));
    let config = vigil_persistence::DatabaseConfig::postgres(&only_closed).unwrap().with_pool(pool).unwrap();
    let error = Store::connect(config).await.expect_err("no host answers");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{closed},127.0.0.1:{closed}/nowhere")), "{text}");
}
