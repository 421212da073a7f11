//! Failover to a standby: a primary and a streaming standby of the test's own
//! (`pg_basebackup -R`), the persistence actor writing through a two-host URL with
//! `target_session_attrs=read-write` under awaited load, the primary crashed
//! (`pg_ctl stop -m immediate`) and the standby promoted. The writer recovers without a
//! restart, and every write is accounted for:
//!
//! - with a **synchronous** standby (`synchronous_standby_names`, `synchronous_commit =
//!   on`) every acknowledged write is on the new primary, exactly once;
//! - with **asynchronous** replication (PostgreSQL's default) writes acknowledged while
//!   the standby lagged are lost with the old primary: the test makes the lag (it
//!   freezes the primary's WAL sender) and counts them — only those, none twice;
//! - a writer whose URL names a standby gets "cannot execute … in a read-only
//!   transaction" ([`StoreError::ReadOnlyServer`]): it keeps the writes, retries on new
//!   connections and commits them once the standby is promoted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use vigil_persistence::config::{ConnectRetryPolicy, PoolConfig};
use vigil_persistence::testing::{PrivateCluster, Replication};
use vigil_persistence::types::Ts;
use vigil_persistence::{
    DatabaseConfig, PersistenceActor, PersistenceConfig, PersistenceHandle, Store, StoreError, Write,
};

use crate::common::heartbeat_copies;

/// Safety net for anything awaited.
const NET: Duration = Duration::from_secs(120);

fn heartbeat(id: &str) -> Write {
    Write::Heartbeat {
        agent_id: "writer-under-test".into(),
        at: Ts::now(),
        status: None,
        message: Some(id.to_owned()),
        metadata: None,
        uptime: None,
    }
}

/// A store whose connections give up on a dead host quickly and retry often, so the
/// time to recover measures Vigil, not a 30 s connect timeout.
async fn store_on(url: &str) -> Store {
    let pool = PoolConfig::default().with_connection_timeout(Duration::from_millis(500)).with_retry(
        ConnectRetryPolicy::default().with_backoff(Duration::from_millis(5), Duration::from_millis(200)),
    );
    let config = DatabaseConfig::postgres(url).unwrap().with_pool(pool).unwrap();
    Store::connect(config).await.expect("connect")
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The single integer `sql` returns (`NULL` as none).
async fn number(url: &str, sql: &str) -> Option<i64> {
    // In scope here only: its `load` and `first` would shadow the atomics' and slices'.
    use diesel_async::RunQueryDsl;
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let rows: Vec<Number> =
        diesel::sql_query(sql).load(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().next().map(|row| row.n)
}

/// Waits until `sql` returns a row (checked every 20 ms, within [`NET`]).
async fn wait_until(url: &str, sql: &str) {
    tokio::time::timeout(NET, async {
        while number(url, sql).await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never true: {sql}"));
}

/// A primary with the schema and a streaming standby of it, replicating as asked.
async fn primary_and_standby(replication: Replication) -> Option<(PrivateCluster, PrivateCluster)> {
    let (primary, standby) = PrivateCluster::primary_and_standby(replication)?;
    drop(Store::connect(primary.config()).await.expect("migrate the primary"));
    if replication == Replication::Synchronous {
        wait_until(
            &primary.url(),
            "SELECT 1::bigint AS n FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .await;
    }
    // The standby has the schema before anyone connects to it.
    wait_for_replay(&primary).await;
    Some((primary, standby))
}

/// Waits until the standby has replayed everything the primary had flushed when asked.
async fn wait_for_replay(primary: &PrivateCluster) {
    let flushed =
        number(&primary.url(), "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint AS n")
            .await
            .expect("an LSN");
    let replayed = format!(
        "SELECT 1::bigint AS n FROM pg_stat_replication WHERE pg_wal_lsn_diff(replay_lsn, '0/0') >= {flushed}"
    );
    wait_until(&primary.url(), &replayed).await;
}

/// A lane's acknowledged writes (with when each was acknowledged) and its failures.
type LaneResult = (Vec<(String, Instant)>, usize);

/// Writers that each await their acknowledgement before sending the next write, until
/// stopped; every write carries a unique id in its message.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    lanes: Vec<actix_rt::task::JoinHandle<LaneResult>>,
}

impl Load {
    fn start(writer: &PersistenceHandle, lanes: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let lanes = (0..lanes)
            .map(|lane| {
                let (writer, stop, sent) = (writer.clone(), stop.clone(), sent.clone());
                actix_rt::spawn(async move {
                    let (mut acknowledged, mut failed) = (Vec::new(), 0usize);
                    let mut n = 0;
                    while !stop.load(Ordering::Acquire) {
                        let id = format!("{lane}-{n}");
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let answer = tokio::time::timeout(NET, writer.persist(heartbeat(&id))).await;
                        match answer.expect("answered") {
                            Ok(()) => acknowledged.push((id, Instant::now())),
                            Err(_) => failed += 1,
                        }
                    }
                    (acknowledged, failed)
                })
            })
            .collect();
        Load { stop, sent, lanes }
    }

    /// Waits until `more` further writes were sent.
    async fn sent_more(&self, more: usize) {
        let target = self.sent.load(Ordering::Relaxed) + more;
        tokio::time::timeout(NET, async {
            while self.sent.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the load makes progress");
    }

    /// Stops the lanes: every acknowledged write with when it was acknowledged, and how
    /// many writes failed.
    async fn finish(self) -> LaneResult {
        self.stop.store(true, Ordering::Release);
        let (mut acknowledged, mut failed) = (Vec::new(), 0);
        for lane in self.lanes {
            let (acks, fails) = lane.await.expect("lane");
            acknowledged.extend(acks);
            failed += fails;
        }
        (acknowledged, failed)
    }
}

/// What one failover run measured.
struct Figures {
    crashed: Instant,
    recovered: Instant,
    acknowledged: Vec<(String, Instant)>,
    /// The acknowledged writes missing from the new primary.
    lost: Vec<(String, Instant)>,
    duplicated: usize,
    failed: usize,
}

/// Loads the writer through the two-host URL, crashes the primary (after `before_crash`,
/// which may make the standby lag), promotes the standby and measures the recovery.
async fn fail_over<F, Fut>(primary: &PrivateCluster, standby: &PrivateCluster, before_crash: F) -> Figures
where
    F: FnOnce(Load) -> Fut,
    Fut: std::future::Future<Output = Load>,
{
    let writer =
        PersistenceActor::start(store_on(&primary.url_with(standby)).await, PersistenceConfig::default());
    writer
        .persist(Write::RegisterAgent {
            agent_id: "writer-under-test".into(),
            agent_name: "W".into(),
            at: Ts::now(),
        })
        .await
        .expect("register");

    let load = Load::start(&writer, 4);
    load.sent_more(400).await;
    let load = before_crash(load).await;
    primary.crash();
    let crashed = Instant::now();
    standby.promote();
    let promoted = Instant::now();
    // Recovered once writes are acknowledged again after the promotion.
    let recovered = tokio::time::timeout(NET, async {
        loop {
            if writer.persist(heartbeat(&format!("probe-{}", promoted.elapsed().as_micros()))).await.is_ok() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the writer recovers on the promoted standby");
    load.sent_more(400).await;
    let (acknowledged, failed) = load.finish().await;
    assert_eq!(writer.shutdown().await.failed, 0);

    let copies = heartbeat_copies(&standby.url()).await;
    let duplicated = copies.values().filter(|&&n| n > 1).count();
    let lost = acknowledged.iter().filter(|(id, _)| !copies.contains_key(id)).cloned().collect();
    let figures = Figures { crashed, recovered, acknowledged, lost, duplicated, failed };
    println!(
        "failover: recovered {:.0} ms after the crash ({:.0} ms after promote); {} acknowledged, {} lost, \
         {} duplicated, {} failed",
        (recovered - crashed).as_secs_f64() * 1e3,
        (recovered - promoted).as_secs_f64() * 1e3,
        figures.acknowledged.len(),
        figures.lost.len(),
        figures.duplicated,
        figures.failed
    );
    assert_eq!(figures.duplicated, 0, "no write applied twice");
    assert!(
        figures.lost.iter().all(|(_, at)| *at < figures.recovered),
        "nothing acknowledged by the new primary is lost"
    );
    let answered = figures.acknowledged.len() + figures.failed;
    assert!(answered >= 800, "load ran on both sides of the failover: {answered} writes answered");
    figures
}

#[actix_rt::test]
async fn with_a_synchronous_standby_no_acknowledged_write_is_lost() {
    let Some((primary, standby)) = primary_and_standby(Replication::Synchronous).await else { return };
    let figures = fail_over(&primary, &standby, |load| async { load }).await;
    assert_eq!(figures.lost.len(), 0, "a synchronous standby has every acknowledged write");
    assert!(figures.recovered > figures.crashed);
}

#[actix_rt::test]
async fn with_asynchronous_replication_only_writes_of_the_crash_moment_are_lost() {
    let Some((primary, standby)) = primary_and_standby(Replication::Asynchronous).await else { return };
    let figures = fail_over(&primary, &standby, |load| async { load }).await;
    assert!(
        figures.lost.iter().all(|(_, at)| *at + Duration::from_secs(1) > figures.crashed),
        "only writes of the crash's moment"
    );
}

/// Asynchronous replication with a lagging standby: the primary's WAL sender is frozen
/// while writes go on, so what the primary acknowledged meanwhile never reaches the
/// standby. Those writes — and only those — are lost at the failover; the README's
/// warning, measured.
#[actix_rt::test]
async fn with_a_lagging_asynchronous_standby_the_writes_of_the_lag_are_lost() {
    let Some((primary, standby)) = primary_and_standby(Replication::Asynchronous).await else { return };
    let walsender = number(&primary.url(), "SELECT pid::bigint AS n FROM pg_stat_replication")
        .await
        .expect("a WAL sender");
    let walsender = i32::try_from(walsender).expect("a pid");
    let (mut caught_up, mut frozen_at, mut lag_bytes) = (None, None, None);
    let figures = fail_over(&primary, &standby, |load| {
        let (caught_up, frozen_at, lag_bytes) = (&mut caught_up, &mut frozen_at, &mut lag_bytes);
        let primary = &primary;
        async move {
            // Everything acknowledged before `caught_up` is replayed on the standby
            // before the sender freezes: its commit was flushed at or before then.
            *caught_up = Some(Instant::now());
            wait_for_replay(primary).await;
            primary.signal(walsender, "STOP");
            *frozen_at = Some(Instant::now());
            load.sent_more(300).await;
            *lag_bytes = number(
                &primary.url(),
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS n FROM pg_stat_replication",
            )
            .await;
            load
        }
    })
    .await;
    let (caught_up, frozen_at) = (caught_up.expect("caught up"), frozen_at.expect("frozen"));
    println!(
        "lagging standby: {} bytes of WAL behind at the crash; {} writes acknowledged during the lag, {} lost",
        lag_bytes.unwrap_or(-1),
        figures.acknowledged.iter().filter(|(_, at)| *at >= frozen_at && *at < figures.crashed).count(),
        figures.lost.len()
    );
    assert!(!figures.lost.is_empty(), "writes acknowledged while the standby lagged are lost");
    assert!(figures.lost.iter().all(|(_, at)| *at > caught_up), "only writes of the lag are lost");
}

/// A writer pointed at a standby (one host, no `target_session_attrs`): its writes are
/// refused as read-only — a typed, transient [`StoreError::ReadOnlyServer`] — and it
/// keeps them, retrying on new connections, until the standby is promoted; then each
/// is committed once and acknowledged. Nothing is split, rejected or lost.
#[actix_rt::test]
async fn a_writer_on_a_standby_keeps_its_writes_until_the_promotion() {
    let Some((_primary, standby)) = primary_and_standby(Replication::Asynchronous).await else { return };
    let store = store_on(&standby.url()).await;

    // The SharedState API and the direct writer: a typed error that says what is wrong.
    let direct = store.write(heartbeat("direct")).await.expect_err("a standby refuses writes");
    assert!(matches!(direct, StoreError::ReadOnlyServer(_)), "{direct:?}");
    assert!(direct.is_transient());
    let message = direct.to_string();
    assert!(
        message.contains("read-only transaction") && message.contains("target_session_attrs"),
        "{message}"
    );

    let writer = PersistenceActor::start(store, PersistenceConfig::default());
    let writes: Vec<_> = (0..50)
        .map(|n| {
            let writer = writer.clone();
            actix_rt::spawn(async move {
                if n == 0 {
                    let register = Write::RegisterAgent {
                        agent_id: "writer-under-test".into(),
                        agent_name: "W".into(),
                        at: Ts::now(),
                    };
                    return writer.persist(register).await;
                }
                writer.persist(heartbeat(&format!("on-standby-{n}"))).await
            })
        })
        .collect();
    // The writer met the read-only server and is retrying, not failing.
    tokio::time::timeout(NET, async {
        while writer.stats().retries < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the writer retries on the read-only server");
    let stats = writer.stats();
    assert_eq!((stats.writes_committed, stats.rejected_writes), (0, 0), "{stats:?}");

    standby.promote();
    for write in writes {
        let answer = tokio::time::timeout(NET, write).await.expect("answered after the promotion");
        answer.expect("task").expect("committed on the promoted server");
    }
    let copies = heartbeat_copies(&standby.url()).await;
    assert!((1..50).all(|n| copies.get(&format!("on-standby-{n}")) == Some(&1)), "{copies:?}");
    assert_eq!(writer.stats().rejected_writes, 0);
    assert_eq!(writer.shutdown().await.failed, 0);
}
