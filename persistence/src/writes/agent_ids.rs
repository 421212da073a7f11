//! A writer's memory of agents' internal ids: [`AgentIds`], `agents.agent_id` (the name
//! every write carries) to `agents.id` (the key the rows refer to).
//!
//! Without it, every batch asks the database for the ids of every agent it names
//! (`SELECT agent_id, id FROM agents WHERE agent_id = ANY($1)`): one more round trip
//! per batch, and a statement whose cost depends on the plan PostgreSQL chose for it on
//! the writer's long-lived connection. A plan made while `agents` looked small scans the
//! whole table and compares every row with every name of the array — 10,000 idle
//! agents heartbeating cost the server several times the CPU of an index plan.
//!
//! An agent's id never changes and is never handed to another agent: nothing deletes
//! `agents` rows, and a registration that finds its agent updates the row in place. So
//! a writer may remember each id once it has seen it, and a batch asks the database
//! only for the names it has never seen — after the first batches of each agent, no
//! lookup at all.
//!
//! What "never changes" relies on is that the ids come from the database the writer is
//! writing to *now*, as it is *now*. The rules that keep it so:
//!
//! * **Only committed ids are remembered.** The ids a batch learns — from its
//!   registrations (`RETURNING id`), its lookup, and the agents its heartbeats register
//!   implicitly — are [staged](AgentIds::stage) while the transaction runs and
//!   [kept](AgentIds::keep_staged) once `COMMIT` has answered. A transaction rolled back
//!   may have registered an agent that does not exist; its id is never kept.
//! * **Any failure forgets everything.** A failed attempt — the connection lost, a
//!   deadline, a row the database refused, a rollback — [clears](AgentIds::clear) the
//!   memory, and so does opening a new connection: the server on the other end may be a
//!   promoted standby that never received the registrations behind some ids (an
//!   asynchronous replica loses its last commits), or whose sequence handed one of those
//!   ids to another agent. The retry asks the database again; a heartbeat of an agent
//!   whose registration was lost registers it again, as any heartbeat of an unknown
//!   agent does.
//! * **A refusal is not trusted while ids came from memory.** A stale id shows as a
//!   row the database refuses (a foreign key to an agent it does not have): a batch the
//!   database rejects while ids from memory went into it is tried once more, afresh,
//!   before the persistence actor splits it to find a guilty write.
//! * **Bounded.** Past [`AgentIds::CAPACITY`] names the memory starts over (the next
//!   batches look their agents up again): an agent's id costs a lookup once per
//!   connection, not memory forever.
//!
//! Each writer has its own (the persistence actor's lives with its connection); the
//! direct writer ([`crate::Store::write_batch`]) starts each batch with an empty one,
//! which is exactly the lookup of every named agent it always made.

use std::collections::HashMap;

/// Internal ids of agents (`agents.agent_id` → `agents.id`) a writer has seen
/// committed in the database it writes to; see the [module](self) for when they are
/// trusted.
#[derive(Debug, Default)]
pub(crate) struct AgentIds {
    /// Ids known committed.
    known: HashMap<String, i32>,
    /// Ids learned by the transaction in progress, kept once it commits.
    staged: Vec<(String, i32)>,
    /// Lookups (round trips) made since [`take_lookups`](Self::take_lookups) last read
    /// them: the statistics count them.
    lookups: u64,
}

impl AgentIds {
    /// How many ids are remembered at most; past it, the memory starts over.
    pub(crate) const CAPACITY: usize = 1_000_000;

    /// The id of `agent_id`, if known.
    pub(crate) fn get(&self, agent_id: &str) -> Option<i32> {
        self.known.get(agent_id).copied()
    }

    /// Starts a transaction: whatever an earlier one staged and did not keep is dropped.
    pub(crate) fn begin(&mut self) {
        self.staged.clear();
    }

    /// Records that the transaction in progress looked ids up in the database.
    pub(crate) fn count_lookup(&mut self) {
        self.lookups += 1;
    }

    /// Ids the transaction in progress learned: kept only if it commits.
    pub(crate) fn stage(&mut self, learned: impl IntoIterator<Item = (String, i32)>) {
        self.staged.extend(learned);
    }

    /// The transaction in progress committed: its ids are now known.
    pub(crate) fn keep_staged(&mut self) {
        if self.known.len() + self.staged.len() > Self::CAPACITY {
            self.known.clear();
        }
        self.known.extend(self.staged.drain(..));
    }

    /// Whether no id is known: a batch applied now resolves every agent from the
    /// database.
    pub(crate) fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Forgets every id (a failed attempt, a new connection): the next batches look
    /// their agents up again.
    pub(crate) fn clear(&mut self) {
        self.known.clear();
        self.staged.clear();
    }

    /// The lookups made since the last call.
    pub(crate) fn take_lookups(&mut self) -> u64 {
        std::mem::take(&mut self.lookups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kept_ids_are_known_and_a_failure_forgets_them() {
        let mut ids = AgentIds::default();
        ids.begin();
        ids.stage([("a".to_string(), 1)]);
        assert_eq!(ids.get("a"), None, "staged, not committed");
        ids.begin();
        assert_eq!(ids.get("a"), None, "a rolled-back transaction's ids are dropped");
        ids.stage([("a".to_string(), 1)]);
        ids.keep_staged();
        assert_eq!(ids.get("a"), Some(1));
        ids.begin();
        ids.stage([("b".to_string(), 2)]);
        ids.clear();
        ids.keep_staged();
        assert_eq!((ids.get("a"), ids.get("b")), (None, None), "a failure forgets everything");
    }

    #[test]
    fn past_the_capacity_the_memory_starts_over() {
        let mut ids = AgentIds::default();
        ids.stage((0..AgentIds::CAPACITY as i32).map(|i| (i.to_string(), i)));
        ids.keep_staged();
        assert_eq!(ids.known.len(), AgentIds::CAPACITY);
        ids.stage([("new".to_string(), -1)]);
        ids.keep_staged();
        assert_eq!(ids.known.len(), 1);
        assert_eq!(ids.get("new"), Some(-1));
    }
}
