//! The unit of writing: a [`Write`], and how a batch of them becomes one transaction.
//!
//! Every change to the shared state is described by a `Write` value. A batch of writes
//! is applied in one transaction with as few statements as the data allows:
//!
//! 1. agent registrations first (an upsert each), so later writes of the same batch can
//!    refer to a newly registered agent;
//! 2. one lookup of the internal ids of the agents the batch names that the writer has
//!    not seen yet — usually none, so no round trip (`writes/agent_ids`);
//! 3. one multi-row `INSERT` per table (chunked under the bind-parameter limits);
//! 4. one `UPDATE agents` per agent, carrying its latest heartbeat and latest state;
//! 5. system-state upserts (last value per key wins) and help answers (response row +
//!    request status);
//! 6. [`Request`](crate::Request)s, in the order queued, each answered with its [`Reply`](crate::Reply).
//!
//! A heartbeat from an agent that was never registered registers it (the
//! specification's `update_agent_heartbeat` does "INSERT/UPDATE agents"): the agent's
//! id stands in for its name until it registers itself.
//!
//! A write that is wrong in itself and can be seen to be so before the database is
//! asked (an unknown agent, an over-long value) is refused alone: its result is an
//! error, and the rest of the batch goes on. The database may still reject a batch as
//! a whole (a constraint it alone can check); the [`crate::PersistenceActor`] then
//! splits the batch to find the offending write.
//!
//! | module          | what                                                       |
//! |-----------------|------------------------------------------------------------|
//! | `writes/write`  | [`Write`], [`WriteKind`]                                   |
//! | `writes/status` | [`Severity`], [`HelpStatus`]                               |
//! | `writes/validate` | [`Write::validate`], [`Write::approx_bytes`], [`Write::drop_deep`] |
//! | `writes/rows`   | the per-backend statements (inserts, the `agents` update)  |
//! | `writes/apply`  | a batch as one transaction                                 |
//! | `writes/agent_ids` | a writer's memory of agents' internal ids, and when it is trusted |

mod agent_ids;
mod apply;
pub(crate) mod rows;
pub(crate) mod status;
mod validate;
mod write;

pub(crate) use agent_ids::AgentIds;
pub(crate) use apply::{BatchInput, BatchOutcome, apply_batch_pg_in_tx, apply_batch_sqlite};
pub use status::{HelpStatus, Severity};
pub use write::{Write, WriteKind};
