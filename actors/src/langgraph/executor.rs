//! The executor agent: picks up unfinished runs and advances them step by step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_persistence::Severity;
use vigil_persistence::workflow_runs::{Checkpoint, WorkflowRunRecord, WorkflowStatus};
use vigil_runtime::{Agent, AgentContext, AgentResult};

use super::file_nodes::compile;
use super::graph::{ErasedGraph, Graph, RunError, Stepped};
use super::registry::Registry;
use super::workflow_file::{WorkflowErrors, WorkflowSpec, load_dir};
use super::{END, NodeContext, STEP_EVENT};
use crate::ai_help::OpenAiConfig;

/// Settings of the [`LangGraphExecutor`]. Every field has a default (`#[serde(default)]`).
///
/// | field                 | default | meaning                                           |
/// |-----------------------|---------|---------------------------------------------------|
/// | `runs_per_cycle`      | `10`    | unfinished runs picked up per cycle               |
/// | `max_steps_per_cycle` | `100`   | steps run per cycle at most, all runs together; the rest waits for the next cycle |
/// | `workflows_dir`       | none    | a folder of workflow files (`*.json`, see [`super::workflow_file`]) checked at start and run by this executor |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LangGraphConfig {
    /// Unfinished runs picked up per cycle.
    pub runs_per_cycle: i64,
    /// Steps run per cycle at most.
    pub max_steps_per_cycle: u32,
    /// The folder of workflow files (relative to the working directory).
    pub workflows_dir: Option<PathBuf>,
}

impl Default for LangGraphConfig {
    fn default() -> Self {
        Self { runs_per_cycle: 10, max_steps_per_cycle: 100, workflows_dir: None }
    }
}

impl LangGraphConfig {
    /// Sets the steps run per cycle at most.
    #[must_use]
    pub fn max_steps_per_cycle(mut self, n: u32) -> Self {
        self.max_steps_per_cycle = n.max(1);
        self
    }
}

/// Executes workflow runs; see the [module docs](super).
///
/// ```no_run
/// use vigil_actors::langgraph::{END, Graph, LangGraphExecutor, START};
/// # fn demo(builder: vigil_runtime::RuntimeBuilder) -> vigil_runtime::RuntimeBuilder {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Doc { text: String }
///
/// let graph = Graph::<Doc>::builder("shout")
///     .node("upper", |mut d: Doc, _ctx| async move { d.text = d.text.to_uppercase(); Ok(d) })
///     .edge(START, "upper")
///     .edge("upper", END)
///     .build()
///     .expect("a valid graph");
/// let executor = LangGraphExecutor::default().graph(graph);
/// builder.agent(move || executor.clone())
/// # }
/// ```
#[derive(vigil_runtime::Agent, Clone)]
// Nodes may run long; every step is checkpointed, so a cancelled cycle loses none.
#[agent(
    name = "langgraph",
    cycle = "250ms",
    heartbeat = "30s",
    cycle_timeout = "30m",
    shutdown_timeout = "2s"
)]
pub struct LangGraphExecutor {
    /// Settings.
    config: LangGraphConfig,
    /// The graphs this executor runs, by name; shared by the clones a factory makes.
    graphs: Arc<BTreeMap<String, Arc<dyn ErasedGraph>>>,
    /// Steps this instance completed (heartbeat payload).
    steps: u64,
    /// Runs this instance completed.
    completed: u64,
    /// Runs this instance failed.
    failed: u64,
    /// The workflow files loaded at start (registered in `initialize`).
    files: Arc<Vec<WorkflowSpec>>,
    /// The endpoint of `llm` nodes, to rebuild registered older versions.
    llm: Option<OpenAiConfig>,
}

impl fmt::Debug for LangGraphExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LangGraphExecutor")
            .field("config", &self.config)
            .field("graphs", &self.graphs.keys().collect::<Vec<_>>())
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Default for LangGraphExecutor {
    fn default() -> Self {
        Self::new(LangGraphConfig::default())
    }
}

impl LangGraphExecutor {
    /// An executor with no graphs yet.
    pub fn new(config: LangGraphConfig) -> Self {
        Self {
            config,
            graphs: Arc::new(BTreeMap::new()),
            steps: 0,
            completed: 0,
            failed: 0,
            files: Arc::new(Vec::new()),
            llm: None,
        }
    }

    /// An executor for `config` with the workflow files of `config.workflows_dir`,
    /// checked and compiled now (every problem of every file, or the executor); `llm`
    /// is the endpoint of `llm` nodes. In `initialize` it registers them in the
    /// database ([`super::registry`]) and also compiles the older registered versions
    /// that runs may still be on.
    pub fn with_workflow_files(
        config: LangGraphConfig,
        llm: Option<&OpenAiConfig>,
    ) -> Result<Self, WorkflowErrors> {
        let mut executor = Self::new(config.clone());
        let Some(dir) = &config.workflows_dir else { return Ok(executor) };
        let specs = load_dir(dir)?;
        let mut problems = Vec::new();
        for spec in &specs {
            match compile(spec, llm) {
                Ok(graph) => executor = executor.graph(graph),
                Err(WorkflowErrors(found)) => problems.extend(found),
            }
        }
        if !problems.is_empty() {
            return Err(WorkflowErrors(problems));
        }
        executor.files = Arc::new(specs);
        executor.llm = llm.cloned();
        Ok(executor)
    }

    /// Adds a graph (replacing one of the same name).
    #[must_use]
    pub fn graph<S: Serialize + DeserializeOwned + 'static>(mut self, graph: Graph<S>) -> Self {
        let mut graphs = (*self.graphs).clone();
        graphs.insert(graph.name().to_owned(), Arc::new(graph));
        self.graphs = Arc::new(graphs);
        self
    }

    /// The names of the graphs this executor runs.
    pub fn graph_names(&self) -> impl Iterator<Item = &str> {
        self.graphs.keys().map(String::as_str)
    }

    /// Marks `run` failed at its current step; false if another executor moved it.
    async fn fail_run(
        &mut self,
        ctx: &AgentContext,
        run: &WorkflowRunRecord,
        step: i32,
        next: Option<String>,
        state: serde_json::Value,
        error: RunError,
    ) -> AgentResult {
        tracing::warn!(run = %run.run_id, graph = %run.graph, step, %error, "workflow run failed");
        let checkpoint = Checkpoint {
            step,
            next_node: next,
            state,
            status: WorkflowStatus::Failed,
            error: Some(error.to_string()),
        };
        if ctx.shared_state().save_workflow_checkpoint(&run.run_id, step, checkpoint).await? {
            self.failed += 1;
        }
        Ok(())
    }

    /// Advances one run until it ends or the step budget is spent.
    async fn advance(&mut self, ctx: &AgentContext, run: WorkflowRunRecord, budget: &mut u32) -> AgentResult {
        let Some(graph) = self.graphs.get(&run.graph).cloned() else { return Ok(()) };
        let mut step = run.step;
        let mut state = run.state.0.clone();
        let mut next = match run.next_node.clone() {
            Some(node) => node,
            None => match graph.entry(&state) {
                Ok(node) => node,
                Err(error) => return self.fail_run(ctx, &run, step, None, state, error).await,
            },
        };
        while *budget > 0 {
            if next == END {
                // Only reachable for a graph whose START routes straight to END.
                let checkpoint = Checkpoint {
                    step,
                    next_node: None,
                    state,
                    status: WorkflowStatus::Completed,
                    error: None,
                };
                if ctx.shared_state().save_workflow_checkpoint(&run.run_id, step, checkpoint).await? {
                    self.completed += 1;
                }
                return Ok(());
            }
            if step >= graph.step_limit() as i32 {
                let error = RunError::StepLimit(graph.step_limit());
                return self.fail_run(ctx, &run, step, Some(next), state, error).await;
            }
            let node_ctx = NodeContext::new(ctx.clone(), &run.run_id, &run.graph, &next, step as u32 + 1);
            let began = Instant::now();
            // A panic here is not caught: it fails the executor, which the runtime
            // restarts; the run then resumes at this node from the last checkpoint.
            let stepped = graph.step(&next, state.clone(), node_ctx).await;
            let outcome = match &stepped {
                Ok(s) if s.waits => Ok("waiting"),
                Ok(_) => Ok("ok"),
                Err(error) => Err(error.to_string()),
            };
            record_step(ctx, &run, &next, step + 1, began, outcome).await;
            let Stepped { state: after, next: following, waits } = match stepped {
                Ok(done) => done,
                Err(error) => return self.fail_run(ctx, &run, step, Some(next), state, error).await,
            };
            let finished = following == END && !waits;
            let checkpoint = Checkpoint {
                step: step + 1,
                // A run waiting before END keeps END as its next node: `None` means
                // "not started".
                next_node: (!finished).then(|| following.clone()),
                state: after.clone(),
                status: if waits {
                    WorkflowStatus::Waiting
                } else if finished {
                    WorkflowStatus::Completed
                } else {
                    WorkflowStatus::Running
                },
                error: None,
            };
            if !ctx.shared_state().save_workflow_checkpoint(&run.run_id, step, checkpoint).await? {
                tracing::warn!(run = %run.run_id, step, "checkpoint refused: the run was advanced elsewhere");
                return Ok(());
            }
            tracing::debug!(run = %run.run_id, node = %next, step = step + 1, "workflow step checkpointed");
            self.steps += 1;
            *budget -= 1;
            step += 1;
            state = after;
            next = following;
            if finished {
                self.completed += 1;
                return Ok(());
            }
            if waits {
                tracing::info!(run = %run.run_id, node = %next, "workflow run waits for an approval");
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The `workflow_step` event every node leaves behind — run, graph, node, step, when
/// it began, how long it took, `ok`/`waiting` or the error — the history `vigil
/// workflow show` prints. Best effort: a lost event loses a line of history, never a
/// step.
async fn record_step(
    ctx: &AgentContext,
    run: &WorkflowRunRecord,
    node: &str,
    step: i32,
    began: Instant,
    outcome: Result<&str, String>,
) {
    let (result, error) = match outcome {
        Ok(result) => (result, None),
        Err(error) => ("failed", Some(error)),
    };
    let data = json!({
        "run_id": run.run_id,
        "graph": run.graph,
        "node": node,
        "step": step,
        "started_at": (chrono::Utc::now() - began.elapsed()).to_rfc3339(),
        "duration_ms": began.elapsed().as_millis() as u64,
        "outcome": result,
        "error": error,
    });
    let severity = if error.is_some() { Severity::Warning } else { Severity::Info };
    if let Err(e) = ctx.shared_state().log_system_event(STEP_EVENT, Some(data), severity).await {
        tracing::warn!(run = %run.run_id, error = %e, "could not record a workflow step");
    }
}

impl Agent for LangGraphExecutor {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        if self.config.workflows_dir.is_none() {
            return Ok(());
        }
        let registry = Registry::register(ctx.shared_state(), &self.files).await?;
        let mut graphs = (*self.graphs).clone();
        for (key, stored) in &registry.versions {
            if graphs.contains_key(key) {
                continue;
            }
            let rebuilt = Registry::rebuild(key, stored).and_then(|spec| compile(&spec, self.llm.as_ref()));
            match rebuilt {
                Ok(graph) => {
                    graphs.insert(key.clone(), Arc::new(graph));
                }
                Err(e) => {
                    tracing::warn!(workflow = %key, error = %e, "a registered workflow version cannot be rebuilt; its runs wait")
                }
            }
        }
        self.graphs = Arc::new(graphs);
        Ok(())
    }

    #[tracing::instrument(name = "langgraph.cycle", skip_all, fields(agent.id = %ctx.agent_id()))]
    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        if self.graphs.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.graphs.keys().cloned().collect();
        let runs = ctx.shared_state().unfinished_workflow_runs(&names, self.config.runs_per_cycle).await?;
        let mut budget = self.config.max_steps_per_cycle.max(1);
        for run in runs {
            if budget == 0 {
                break;
            }
            self.advance(ctx, run, &mut budget).await?;
        }
        Ok(())
    }

    fn heartbeat_payload(&self) -> Option<serde_json::Value> {
        Some(json!({
            "graphs": self.graphs.keys().collect::<Vec<_>>(),
            "steps": self.steps,
            "completed": self.completed,
            "failed": self.failed,
        }))
    }
}
