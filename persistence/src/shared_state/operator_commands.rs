//! The operator's command queue through the shared state: filing a command for a
//! running platform (`vigil agent restart ...`), claiming the pending ones, recording
//! the outcome. The table, the actions and the statuses are in
//! [`crate::agent_commands`]; the statements run in the writer's batches as
//! [`Request`]s.

use super::writer::SharedState;
use crate::agent_commands::{AgentCommandRecord, CommandAction};
use crate::backend::with_conn;
use crate::error::StoreError;
use crate::requests::{Reply, Request, expect_reply};
use crate::schema::agent_commands;
use crate::types::Ts;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl SharedState {
    /// Files a command for `agent_id` and returns its id. On PostgreSQL it also
    /// notifies [`COMMAND_CHANNEL`](crate::agent_commands::COMMAND_CHANNEL), so a listening runtime picks it up at once.
    pub async fn submit_agent_command(
        &self,
        agent_id: &str,
        action: CommandAction,
        requested_by: Option<&str>,
    ) -> Result<i32, StoreError> {
        let request = Request::SubmitCommand {
            agent_id: agent_id.to_owned(),
            action,
            requested_by: requested_by.map(str::to_owned),
            at: Ts::now(),
        };
        expect_reply!(self.request(request).await?, Reply::CommandId(id) => id)
    }

    /// Claims up to `limit` pending commands for the given agents, oldest first:
    /// marks them `running` and returns them. Two runtimes never claim the same command.
    pub async fn claim_agent_commands_for(
        &self,
        agent_ids: &[String],
        limit: i64,
    ) -> Result<Vec<AgentCommandRecord>, StoreError> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = Request::ClaimCommands { agent_ids: agent_ids.to_vec(), limit, at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::Commands(claimed) => claimed)
    }

    /// Records the outcome of a claimed command.
    pub async fn complete_agent_command(
        &self,
        id: i32,
        succeeded: bool,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let request = Request::CompleteCommand { id, succeeded, outcome: outcome.to_owned(), at: Ts::now() };
        expect_reply!(self.request(request).await?, Reply::Done => ())
    }

    /// One command.
    pub async fn get_agent_command(&self, id: i32) -> Result<Option<AgentCommandRecord>, StoreError> {
        self.store()
            .run(move |inner| async move {
                with_conn!(inner, |conn| Ok(agent_commands::table
                    .find(id)
                    .select(AgentCommandRecord::as_select())
                    .first(conn)
                    .await
                    .optional()?))
            })
            .await
    }
}
