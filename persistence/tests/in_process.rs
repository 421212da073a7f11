//! The in-process execution mode ([`Execution::InProcess`]): database futures run on
//! the caller's runtime, so SQLite queries take no virtual time under
//! `tokio::time::pause()`; dropping a caller's future or the whole runtime mid-query
//! is safe.

use std::time::Duration;

use vigil_persistence::shared_state::Heartbeat;
use vigil_persistence::{DatabaseConfig, Execution, SharedState, Store};

use crate::common::TestDb;

/// One statement that keeps SQLite busy for a while (the aggregate needs every row
/// before the first step returns): a few hundred milliseconds on these machines.
const SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
                    SELECT COUNT(*) FROM c";

/// The claim the mode rests on: the paused clock does not auto-advance while an
/// in-process SQLite query runs, so a short timer armed around a slow query does not
/// fire, and many queries take no virtual time.
#[actix_rt::test]
async fn sqlite_queries_take_no_virtual_time() {
    tokio::time::pause();
    let store = Store::connect_in_process(DatabaseConfig::sqlite_memory()).await.unwrap();
    assert_eq!(store.execution(), Execution::InProcess);
    let virtual_start = tokio::time::Instant::now();
    let real_start = std::time::Instant::now();

    tokio::time::timeout(Duration::from_millis(1), store.execute_raw_for_tests(SLOW))
        .await
        .expect("the paused clock stood still while the query ran")
        .unwrap();
    let state = SharedState::direct(store.clone());
    state.register_agent("a", "A").await.unwrap();
    for _ in 0..50 {
        state.update_agent_heartbeat("a", Heartbeat::new()).await.unwrap();
    }
    assert_eq!(state.recent_heartbeats("a", 100).await.unwrap().len(), 50);
    assert!(store.health().await.unwrap().error.is_none());

    assert!(real_start.elapsed() > Duration::from_millis(1), "the work took real time");
    assert_eq!(virtual_start.elapsed(), Duration::ZERO, "and no virtual time");
}

/// The problem the mode solves: with the store's own runtime, the caller's runtime
/// looks idle while it waits, and the paused clock jumps to the next timer.
#[actix_rt::test]
async fn a_dedicated_runtime_lets_the_paused_clock_run_away() {
    tokio::time::pause();
    let store = Store::connect(DatabaseConfig::sqlite_memory()).await.unwrap();
    assert_eq!(store.execution(), Execution::Dedicated);
    let early = tokio::time::timeout(Duration::from_secs(3600), store.execute_raw_for_tests(SLOW)).await;
    assert!(early.is_err(), "an hour of virtual time passed during one query");
}

/// Timers keep their virtual schedule around queries: a sleep of 10 virtual minutes
/// interleaved with queries ends 10 minutes later, to the millisecond.
#[actix_rt::test]
async fn timers_fire_on_schedule_around_queries() {
    tokio::time::pause();
    let state = vigil_persistence::testing::in_memory_shared_state().await;
    state.register_agent("a", "A").await.unwrap();
    let start = tokio::time::Instant::now();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(600)).await;
        tokio::time::Instant::now()
    });
    for _ in 0..20 {
        state.update_agent_heartbeat("a", Heartbeat::new()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    let fired = timer.await.unwrap();
    // tokio's timer wheel rounds a deadline up to the next millisecond.
    let late = (fired - start).saturating_sub(Duration::from_secs(600));
    assert!(fired - start >= Duration::from_secs(600) && late <= Duration::from_millis(1), "{late:?}");
    // The in-memory database outlives any amount of virtual time.
    tokio::time::advance(Duration::from_secs(4 * 3600)).await;
    assert_eq!(state.recent_heartbeats("a", 100).await.unwrap().len(), 20);
}

/// A caller that gives up on a query (here: a real-time timeout) drops only the join
/// handle; the query finishes on its own and the store keeps working.
#[actix_rt::test]
async fn dropping_the_callers_future_does_not_cancel_the_query() {
    let store = vigil_persistence::testing::in_memory_store().await;
    let gave_up = tokio::time::timeout(Duration::from_millis(5), store.execute_raw_for_tests(SLOW)).await;
    assert!(gave_up.is_err(), "the query outlasted the timeout");
    let state = SharedState::direct(store);
    state.register_agent("after", "After").await.unwrap();
    assert!(state.get_agent("after").await.unwrap().is_some());
}

/// Ending the runtime with a query in flight neither panics nor hangs: the blocking
/// query is waited for as the runtime's tasks are dropped.
#[test]
fn ending_the_runtime_mid_query_is_safe() {
    let outcome = std::thread::spawn(|| {
        actix_rt::System::new().block_on(async {
            let store = vigil_persistence::testing::in_memory_store().await;
            let gave_up =
                tokio::time::timeout(Duration::from_millis(5), store.execute_raw_for_tests(SLOW)).await;
            assert!(gave_up.is_err(), "the query is still running as the runtime ends");
        });
    })
    .join();
    assert!(outcome.is_ok(), "the runtime ended cleanly");
}

/// Opening an in-process store outside a runtime is a typed error, not a panic.
#[test]
fn in_process_needs_a_runtime() {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let opening = std::pin::pin!(Store::connect_in_process(DatabaseConfig::sqlite_memory()));
    let std::task::Poll::Ready(opened) = opening.poll(&mut cx) else {
        panic!("refused at once, without a runtime to wait on")
    };
    assert!(matches!(opened, Err(vigil_persistence::StoreError::Task(_))), "{opened:?}");
}

/// PostgreSQL also works in process, on real time (its socket I/O does not hold a
/// paused clock, so it is no use for virtual time).
#[actix_rt::test]
async fn postgres_works_in_process_on_real_time() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store_in_process().await;
    assert_eq!(store.execution(), Execution::InProcess);
    let state = SharedState::direct(store.clone());
    state.register_agent("pg", "Pg").await.unwrap();
    state.update_agent_heartbeat("pg", Heartbeat::new()).await.unwrap();
    assert_eq!(state.recent_heartbeats("pg", 10).await.unwrap().len(), 1);
    assert!(store.health().await.unwrap().error.is_none());
    assert!(store.migrate().await.unwrap().is_empty(), "already migrated at connect");
}
