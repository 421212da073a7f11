//! [`LangGraphExecutor`]: runs graph workflows with a checkpoint after every step.
//!
//! A workflow is a [`Graph`] of async nodes over a serde state `S`. Each node takes the
//! state and returns the next one; edges say which node comes next — always the same
//! one ([`GraphBuilder::edge`]), or the one a router picks from the state
//! ([`GraphBuilder::conditional_edge`]) — from [`START`] until [`END`]. The graph is
//! checked when built (unknown nodes, no edge from START, a node without an outgoing
//! edge, unreachable nodes, duplicates: [`GraphError`]).
//!
//! Graphs can also be files: JSON documents in the folder
//! [`LangGraphConfig::workflows_dir`] names, checked ([`workflow_file`]), compiled into
//! this same model ([`file_nodes`]: `http`, `command`, `llm` and `approval` nodes,
//! conditional edges on state values, per-node [`NodePolicy`]), and registered in the
//! database under `name@version` ([`registry`]) so that `vigil workflow submit NAME`
//! in any shell starts a run, and runs finish on the version they started with.
//!
//! An approval node ([`GraphBuilder::approval`]) checkpoints the run as `waiting`;
//! operators approve (`running` again), reject (`rejected`), cancel (`cancelled`) or
//! resume a `failed` run with
//! [`SharedState::set_workflow_status`](vigil_persistence::SharedState::set_workflow_status).
//! Every node run leaves a [`STEP_EVENT`] system event (timing, outcome, error): the
//! run's history.
//!
//! Runs are submitted through the shared-state API,
//! [`SharedState::submit_workflow_run`](vigil_persistence::SharedState::submit_workflow_run)
//! (graph name, run id, initial state as JSON), and listed with
//! [`list_workflow_runs`](vigil_persistence::SharedState::list_workflow_runs). Every
//! cycle the executor picks up the `pending` and `running` runs of the graphs it knows,
//! oldest first, and advances each:
//!
//! ```text
//!  load checkpoint (step k, next node N, state)
//!    └─▶ run N(state) ─▶ route ─▶ save checkpoint (step k+1, next node, new state) ─▶ ...
//!                                  one UPDATE, only if the row is still at step k
//! ```
//!
//! # Exactly once — and where it ends
//!
//! A *completed step* is never repeated: its checkpoint is written after the node
//! returned, and a resumed run starts at the node the checkpoint names. The boundary is
//! the checkpoint write itself: a node whose side effects happened but whose checkpoint
//! was not written (the process died, the executor panicked or was stopped mid-step)
//! **runs again** on resume. Make node effects idempotent: [`NodeContext::idempotency_key`]
//! (`"{run_id}:{step}"`) is the same on every attempt of one step.
//!
//! | outcome of a node      | what happens                                                    |
//! |------------------------|-----------------------------------------------------------------|
//! | `Ok(state)`            | checkpoint; the next node runs (in this cycle, up to `max_steps_per_cycle`) |
//! | `Err(e)`               | retried per the node's [`NodePolicy`]; then the run is `failed` with the error; its state stays at the last good step |
//! | an approval node       | checkpoint with status `waiting`; the run goes on once approved |
//! | panic                  | the executor fails and is restarted by the runtime; the run resumes at this node |
//! | step limit reached     | the run is `failed` ("step limit of N reached")                |
//!
//! Nodes that call a language model log the exchange with [`NodeContext::log_llm`]
//! (`llm_conversations`, conversation id = run id).
//!
//! Persisted: `workflow_runs` (status, step, next node, state, error), and
//! `llm_conversations` for logged exchanges.
//!
//! One executor per database: two executors over the same runs would each run the
//! step (the checkpoint's step fence lets only one of them advance the run, and the
//! other stops, but both nodes' effects happened).

mod executor;
pub mod file_nodes;
mod graph;
mod graph_checks;
pub mod node_spec;
pub mod registry;
mod template;
pub mod workflow_file;

use std::fmt;

use serde_json::Value;
use vigil_persistence::SharedState;
use vigil_runtime::AgentContext;

pub use executor::{LangGraphConfig, LangGraphExecutor};
pub use graph::{Graph, GraphBuilder, GraphError, NodePolicy, RunError};

/// The system event type of a run's node history: one per node run (see `vigil
/// workflow show`), with `run_id`, `graph`, `node`, `step`, `started_at`,
/// `duration_ms`, `outcome` (`ok`, `waiting`, `failed`) and `error`.
pub const STEP_EVENT: &str = "workflow_step";

/// The virtual node a run starts from.
pub const START: &str = "__start__";
/// The virtual node a run ends at.
pub const END: &str = "__end__";

/// What a node can reach: the run it works on and the shared state.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The executor's context (agent id, shared state, events).
    agent: AgentContext,
    /// The run.
    run_id: String,
    /// The graph.
    graph: String,
    /// The node running.
    node: String,
    /// The step this node is (1-based).
    step: u32,
}

impl NodeContext {
    pub(crate) fn new(agent: AgentContext, run_id: &str, graph: &str, node: &str, step: u32) -> Self {
        Self { agent, run_id: run_id.into(), graph: graph.into(), node: node.into(), step }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The graph's name.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    /// The node running.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The step this node is, from 1.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// `"{run_id}:{step}"`: the same on every attempt of this step, different for every
    /// other step. Use it to make side effects idempotent.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run_id, self.step)
    }

    /// The shared state.
    pub fn shared_state(&self) -> &SharedState {
        self.agent.shared_state()
    }

    /// The executor agent's context.
    pub fn agent(&self) -> &AgentContext {
        &self.agent
    }

    /// Logs an exchange with a language model in `llm_conversations` (conversation id =
    /// run id; the graph, node, step and idempotency key are added to `metadata`).
    pub async fn log_llm(
        &self,
        prompt: &str,
        response: &str,
        metadata: Option<Value>,
    ) -> Result<(), NodeError> {
        let mut meta = match metadata {
            Some(Value::Object(map)) => map,
            Some(other) => [("details".to_owned(), other)].into_iter().collect(),
            None => Default::default(),
        };
        meta.insert("graph".into(), self.graph.clone().into());
        meta.insert("node".into(), self.node.clone().into());
        meta.insert("step".into(), self.step.into());
        meta.insert("idempotency_key".into(), self.idempotency_key().into());
        self.shared_state()
            .log_llm_conversation(
                Some(self.agent.agent_id()),
                &self.run_id,
                prompt,
                response,
                Some(Value::Object(meta)),
            )
            .await?;
        Ok(())
    }
}

/// A node's error: any error converts into it with `?`, or use [`NodeError::msg`].
pub struct NodeError {
    message: String,
}

impl NodeError {
    /// An error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl<E: std::error::Error> From<E> for NodeError {
    fn from(error: E) -> Self {
        Self { message: error.to_string() }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeError({:?})", self.message)
    }
}
