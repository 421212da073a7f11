//! Shared helpers of the persistence tests.

pub(crate) use vigil_persistence::testing::TestDb;

/// The [`ParseStateError`](vigil_persistence::lifecycle::ParseStateError) somewhere in
/// `error`'s source chain (diesel wraps it with the field it was reading).
pub(crate) fn unknown_state_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e vigil_persistence::lifecycle::ParseStateError> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
}

#[derive(diesel::QueryableByName)]
struct MessageCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    message: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    copies: i64,
}

/// How many rows of `agent_heartbeats` carry each message.
pub(crate) async fn heartbeat_copies(url: &str) -> std::collections::HashMap<String, i64> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut conn = diesel_async::AsyncPgConnection::establish(url).await.expect("connect");
    let rows: Vec<MessageCount> = diesel::sql_query(
        "SELECT message, count(*) AS copies FROM agent_heartbeats WHERE message IS NOT NULL GROUP BY message",
    )
    .load(&mut conn)
    .await
    .expect("count heartbeats");
    rows.into_iter().map(|r| (r.message, r.copies)).collect()
}
