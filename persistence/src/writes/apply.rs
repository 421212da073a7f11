//! Applying a batch of [`Write`]s in one transaction, with as few statements as the
//! data allows (the steps are listed in [`crate::writes`]).
//!
//! The body is written once (`define_apply!`) and compiled per connection type:
//! `apply_batch_pg_in_tx` runs inside the marked transaction of [`crate::commit`],
//! [`apply_batch_sqlite`] opens its own `BEGIN IMMEDIATE` transaction.
//!
//! The body resolves agents' names to their internal ids through the writer's
//! [`AgentIds`]: it stages what it learns, and whoever ends the transaction keeps the
//! staged ids once `COMMIT` has answered, or forgets every id when anything failed.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::agent_ids::AgentIds;
use super::rows::{AgentUpdate, InsertRows, UpdateAgents, upsert_system_state};
use super::status::HelpStatus;
use super::write::Write;
use crate::alert_deliveries::NewAlertDelivery;
use crate::backend::SqliteConn;
use crate::error::StoreError;
use crate::lifecycle::State;
use crate::limits::PayloadLimits;
use crate::models::*;
use crate::nodes::fence::{FenceSlot, Refusals, check_sqlite};
use crate::requests::{ApplyRequest, Reply};
use crate::schema::*;
use crate::types::{Json, Ts};

/// The outcome of each write of a batch, in order. The batch committed; a write that
/// was refused before reaching the database carries its error.
pub(crate) type BatchOutcome = Vec<Result<Reply, StoreError>>;

/// A batch to apply: its writes, the fence of each (empty when none is fenced), and
/// the memory of agent ids of the writer applying it.
pub(crate) struct BatchInput<'a> {
    pub(crate) writes: &'a [Write],
    pub(crate) fences: &'a [FenceSlot],
    pub(crate) ids: &'a mut AgentIds,
}

/// The body of a batch — every write of it, in order, as few statements as the backend
/// allows — on either backend. Compiled once per connection type.
macro_rules! define_apply {
    ($in_tx:ident, $conn_ty:ty) => {
        /// The body of the batch, to run inside a transaction the caller opened.
        /// `refused` is empty, or holds per write the refusal of its fence
        /// ([`crate::nodes::fence`]): a refused write fails alone with it. The ids the
        /// batch learns are staged in `ids`, for the caller to keep once committed.
        pub(crate) async fn $in_tx(
            conn: &mut $conn_ty,
            writes: &[Write],
            refused: Refusals,
            ids: &mut AgentIds,
        ) -> Result<BatchOutcome, StoreError> {
            {
                ids.begin();
                // Ids this transaction learned (registrations, lookup, implicit
                // registrations): staged at the end, trusted only once committed.
                let mut learned: HashMap<String, i32> = HashMap::new();
                let mut refused = refused.into_iter();
                let mut outcome: BatchOutcome = writes
                    .iter()
                    .map(|write| match refused.next().flatten() {
                        Some(refusal) => Err(refusal),
                        None => write.validate(&PayloadLimits::CEILING).map(|()| Reply::Done),
                    })
                    .collect();

                // 1. Registrations, each returning its agent's id (the same id when the
                // agent was registered before: the row is updated in place).
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if let (Write::RegisterAgent { agent_id, agent_name, at }, Ok(_)) = (write, &*result) {
                        let row = NewAgent {
                            agent_id: agent_id.clone(),
                            agent_name: agent_name.clone(),
                            status: Some(State::Initializing),
                            last_state_change: Some(*at),
                            created_at: Some(*at),
                            updated_at: Some(*at),
                        };
                        let id: i32 = diesel::insert_into(agents::table)
                            .values(&row)
                            .on_conflict(agents::agent_id)
                            .do_update()
                            .set((
                                agents::agent_name.eq(excluded(agents::agent_name)),
                                agents::status.eq(excluded(agents::status)),
                                agents::last_state_change.eq(excluded(agents::last_state_change)),
                                agents::updated_at.eq(excluded(agents::updated_at)),
                            ))
                            .returning(agents::id)
                            .get_result::<i32>(conn)
                            .await?;
                        learned.insert(agent_id.clone(), id);
                    }
                }

                // 2. Internal ids of the agents named that the writer does not know yet
                // (usually none: no round trip). `= ANY` is planner-sensitive on
                // PostgreSQL, but it now runs once per agent per connection, not per batch.
                let unknown: HashSet<&str> = writes
                    .iter()
                    .flat_map(Write::agent_refs)
                    .filter(|name| ids.get(name).is_none() && !learned.contains_key(*name))
                    .collect();
                if !unknown.is_empty() {
                    ids.count_lookup();
                    learned.extend(
                        agents::table
                            .filter(agents::agent_id.eq_any(unknown.iter().copied()))
                            .select((agents::agent_id, agents::id))
                            .load::<(String, i32)>(conn)
                            .await?,
                    );
                }
                // Heartbeats of agents never registered register them (rare: the lookup
                // above found every other agent, so the common batch pays nothing).
                let mut unregistered: Vec<NewAgent> = Vec::new();
                for (write, result) in writes.iter().zip(&outcome) {
                    if let (Write::Heartbeat { agent_id, at, status, .. }, Ok(_)) = (write, result)
                        && !learned.contains_key(agent_id)
                        && ids.get(agent_id).is_none()
                        && !unregistered.iter().any(|a| &a.agent_id == agent_id)
                    {
                        unregistered.push(NewAgent {
                            agent_id: agent_id.clone(),
                            agent_name: agent_id.clone(),
                            status: status.clone(),
                            last_state_change: Some(*at),
                            created_at: Some(*at),
                            updated_at: Some(*at),
                        });
                    }
                }
                for agent in unregistered {
                    let id: i32 = diesel::insert_into(agents::table)
                        .values(&agent)
                        .on_conflict(agents::agent_id)
                        .do_update()
                        .set(agents::updated_at.eq(excluded(agents::updated_at)))
                        .returning(agents::id)
                        .get_result(conn)
                        .await?;
                    learned.insert(agent.agent_id, id);
                }
                // What this transaction learned first: it is the freshest word.
                let resolve = |name: &str| {
                    learned
                        .get(name)
                        .copied()
                        .or_else(|| ids.get(name))
                        .ok_or_else(|| StoreError::UnknownAgent(name.into()))
                };

                // 3. Rows, in the order sent.
                let mut heartbeats = Vec::new();
                let mut metrics = Vec::new();
                let mut events = Vec::new();
                let mut requests = Vec::new();
                let mut communications = Vec::new();
                let mut conversations = Vec::new();
                let mut deliveries = Vec::new();
                let mut updates: HashMap<i32, AgentUpdate> = HashMap::new();
                let mut state: HashMap<&str, (&serde_json::Value, Ts)> = HashMap::new();
                let mut answers = Vec::new();
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if result.is_err() {
                        continue;
                    }
                    let step: Result<(), StoreError> = (|| {
                        match write {
                            Write::RegisterAgent { .. } | Write::Request(_) => {}
                            Write::Heartbeat { agent_id, at, status, message, metadata, uptime } => {
                                let id = resolve(agent_id)?;
                                heartbeats.push(NewHeartbeat {
                                    agent_id: Some(id),
                                    timestamp: Some(*at),
                                    status: status.clone(),
                                    message: message.clone(),
                                    metadata: metadata.clone().map(Json),
                                });
                                let update = updates.entry(id).or_default();
                                // The newest heartbeat of the batch sets the snapshot.
                                if update.last_heartbeat.is_none_or(|last| *at >= last) {
                                    update.metrics = metadata.clone().or(update.metrics.take());
                                    update.uptime = uptime.clone().or(update.uptime.take());
                                }
                                update.last_heartbeat = update.last_heartbeat.max(Some(*at));
                            }
                            Write::StateChange { agent_id, status, at } => {
                                let id = resolve(agent_id)?;
                                updates.entry(id).or_default().status = Some((*status, *at));
                            }
                            Write::Metric { agent_id, name, value, source_agent, metadata, at } => {
                                let id = agent_id.as_deref().map(resolve).transpose()?;
                                metrics.push(NewMetric {
                                    agent_id: id,
                                    metric_name: name.clone(),
                                    metric_value: *value,
                                    timestamp: Some(*at),
                                    metadata: metadata.clone().map(Json),
                                    source_agent: source_agent.clone(),
                                });
                            }
                            Write::Event { event_type, severity, data, at } => events.push(NewSystemEvent {
                                event_type: event_type.clone(),
                                event_data: data.clone().map(Json),
                                timestamp: Some(*at),
                                severity: Some(severity.as_str().into()),
                            }),
                            Write::SetState { key, value, at } => {
                                state.insert(key, (value, *at));
                            }
                            Write::HelpRequest { request_id, query, context, at } => {
                                requests.push(NewHelpRequest {
                                    request_id: request_id.clone(),
                                    query: query.clone(),
                                    context: context.clone().map(Json),
                                    status: Some(HelpStatus::Pending.as_str().into()),
                                    created_at: Some(*at),
                                })
                            }
                            Write::HelpResponse { request_id, response, status, at } => {
                                answers.push(NewHelpResponse {
                                    request_id: request_id.clone(),
                                    timestamp: Some(*at),
                                    response: response.clone(),
                                    status: Some(status.as_str().into()),
                                })
                            }
                            Write::Communication {
                                from_agent,
                                to_agent,
                                message_type,
                                content,
                                status,
                                at,
                            } => communications.push(NewCommunication {
                                from_agent_id: Some(resolve(from_agent)?),
                                to_agent_id: Some(resolve(to_agent)?),
                                message_type: message_type.clone(),
                                message_content: content.clone(),
                                timestamp: Some(*at),
                                status: Some(status.clone().unwrap_or_else(|| "sent".into())),
                            }),
                            Write::Conversation {
                                agent_id,
                                conversation_id,
                                message,
                                response,
                                metadata,
                                at,
                            } => conversations.push(NewConversation {
                                agent_id: agent_id.as_deref().map(resolve).transpose()?,
                                conversation_id: conversation_id.clone(),
                                message_content: message.clone(),
                                response_content: response.clone(),
                                timestamp: Some(*at),
                                metadata: metadata.clone().map(Json),
                            }),
                            Write::AlertDelivery(delivery) => deliveries.push(NewAlertDelivery::from(delivery)),
                        }
                        Ok(())
                    })();
                    if let Err(error) = step {
                        *result = Err(error);
                    }
                }

                conn.insert_rows(heartbeats).await?;
                conn.insert_rows(metrics).await?;
                conn.insert_rows(events).await?;
                conn.insert_rows(requests).await?;
                conn.insert_rows(communications).await?;
                conn.insert_rows(conversations).await?;
                conn.insert_rows(deliveries).await?;

                // 4. The agents rows: one statement (PostgreSQL) or one per agent (SQLite).
                let mut updates: Vec<(i32, AgentUpdate)> = updates.into_iter().collect();
                // A stable order, so two writers never lock the same rows in opposite orders.
                updates.sort_unstable_by_key(|(id, _)| *id);
                conn.update_agents(updates, Ts::now()).await?;

                // 5. System state (last value per key) and help answers.
                for (key, (value, at)) in state {
                    upsert_system_state!(key, Json(value.clone()), at).execute(conn).await?;
                }
                for answer in answers {
                    let status = answer.status.clone();
                    diesel::insert_into(help_responses::table).values(&answer).execute(conn).await?;
                    diesel::update(
                        help_requests::table.filter(help_requests::request_id.eq(&answer.request_id)),
                    )
                    .set(help_requests::status.eq(status))
                    .execute(conn)
                    .await?;
                }

                // 6. Requests, in the order queued: they see every row of the batch.
                for (write, result) in writes.iter().zip(outcome.iter_mut()) {
                    if let (Write::Request(request), Ok(_)) = (write, &*result) {
                        *result = Ok(conn.apply_request(request).await?);
                    }
                }
                ids.stage(learned);
                Ok::<_, StoreError>(outcome)
            }
        }
    };
}

define_apply!(apply_batch_pg_in_tx, AsyncPgConnection);
define_apply!(apply_batch_sqlite_in_tx, SqliteConn);

/// Applies a batch in one SQLite transaction. (PostgreSQL transactions are marked, so
/// that a lost COMMIT answer can be resolved: see [`crate::commit`].)
///
/// The transaction is `BEGIN IMMEDIATE`: it takes the write lock at once, waiting for
/// it up to the busy timeout. A deferred transaction would start as a reader (the batch
/// looks agents up first) and, in WAL mode, fail at once with "database is locked" when
/// another connection committed before its first write.
///
/// `batch.fences` is empty, or holds per write the [`Fence`](crate::nodes::Fence) it
/// carries: they are checked inside the transaction, whose write lock keeps any claim
/// out. The ids the batch learned are kept in `batch.ids` once committed; any failure
/// clears it.
pub(crate) async fn apply_batch_sqlite(
    conn: &mut SqliteConn,
    batch: BatchInput<'_>,
) -> Result<BatchOutcome, StoreError> {
    let BatchInput { writes, fences, ids } = batch;
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::sqlite::SqliteConnection;
    // Through diesel's transaction manager, so that diesel's own nested transactions
    // (its SQLite batch inserts) become savepoints.
    conn.spawn_blocking(|c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")).await?;
    let applied = match check_sqlite(conn, fences).await {
        Ok(refused) => apply_batch_sqlite_in_tx(conn, writes, refused, ids).await,
        Err(error) => Err(error),
    };
    let ended = if applied.is_ok() {
        conn.spawn_blocking(|c| {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(c)
        })
        .await
    } else {
        conn.spawn_blocking(|c| {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(c)
        })
        .await
    };
    match (applied, ended) {
        (Ok(outcome), Ok(())) => {
            ids.keep_staged();
            Ok(outcome)
        }
        (applied, ended) => {
            ids.clear();
            let outcome = applied?;
            ended?;
            Ok(outcome)
        }
    }
}
