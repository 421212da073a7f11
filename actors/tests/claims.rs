//! The incident claim: one claimant at a time, re-entrant, lapsing — on both backends.

use std::time::Duration;

use vigil_persistence::SharedState;
use vigil_persistence::testing::TestDb;

use crate::common::eventually;

async fn claims_are_exclusive_until_they_lapse(shared: SharedState) {
    shared.register_agent("worker", "Worker").await.unwrap();
    let long = Duration::from_secs(60);
    assert!(shared.claim_incident("worker", "agent_restart_manager", long).await.unwrap());
    assert!(!shared.claim_incident("worker", "self_healing", long).await.unwrap(), "held by another");
    assert!(shared.claim_incident("worker", "agent_restart_manager", long).await.unwrap(), "re-entrant");
    let claim = shared.incident_claim("worker").await.unwrap().unwrap();
    assert_eq!(claim.claimant, "agent_restart_manager");
    assert!(claim.is_live_at(chrono::Utc::now()));
    // Another agent's incident is another claim.
    assert!(shared.claim_incident("other", "self_healing", long).await.unwrap());

    // Many claimants at once: exactly one wins.
    let contenders: Vec<_> = (0..8)
        .map(|i| {
            let shared = shared.clone();
            async move { shared.claim_incident("race", &format!("claimant-{i}"), long).await.unwrap() }
        })
        .collect();
    // Joined, not awaited in turn: the claims really overlap.
    let wins = futures_util::future::join_all(contenders).await.into_iter().filter(|won| *won).count();
    assert_eq!(wins, 1);

    // A lapsed claim can be taken over.
    assert!(shared.claim_incident("short", "a", Duration::from_millis(1)).await.unwrap());
    eventually("the lapsed claim is taken over", || async {
        shared.claim_incident("short", "b", long).await.unwrap().then_some(())
    })
    .await;
    assert_eq!(shared.incident_claim("short").await.unwrap().unwrap().claimant, "b");
}

#[actix_rt::test]
async fn claims_on_sqlite() {
    let db = TestDb::sqlite();
    claims_are_exclusive_until_they_lapse(db.shared_state().await).await;
}

#[actix_rt::test]
async fn claims_on_postgres() {
    let Some(db) = TestDb::postgres().await else { return };
    claims_are_exclusive_until_they_lapse(db.shared_state().await).await;
}
