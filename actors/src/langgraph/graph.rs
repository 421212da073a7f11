//! The typed graph: nodes over a serde state, edges, conditional edges, approval
//! nodes, per-node retry policies, validation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{END, NodeContext, NodeError, START};

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
type NodeFn<S> = Arc<dyn Fn(S, NodeContext) -> LocalFuture<'static, Result<S, NodeError>> + Send + Sync>;
type RouterFn<S> = Arc<dyn Fn(&S) -> String + Send + Sync>;

/// What a node does when the executor reaches it.
enum NodeKind<S> {
    /// Runs the function and goes on.
    Run(NodeFn<S>),
    /// Pauses the run (`waiting`) until an operator approves (the run goes on along
    /// the node's edge) or rejects it (the run ends `rejected`).
    Approval,
}

impl<S> Clone for NodeKind<S> {
    fn clone(&self) -> Self {
        match self {
            NodeKind::Run(run) => NodeKind::Run(run.clone()),
            NodeKind::Approval => NodeKind::Approval,
        }
    }
}

/// How a node is tried: attempts, the backoff between them, a per-attempt timeout.
/// The default is one attempt and no timeout (the executor's `cycle_timeout` bounds it).
///
/// Retries happen within one step, before any checkpoint: a node that succeeds on
/// its third attempt is checkpointed once. Only errors and timeouts are retried, not
/// panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodePolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles before each later one.
    pub backoff: Duration,
    /// The longest one attempt may take.
    pub timeout: Option<Duration>,
}

impl Default for NodePolicy {
    fn default() -> Self {
        Self { attempts: 1, backoff: Duration::from_millis(500), timeout: None }
    }
}

impl NodePolicy {
    /// `attempts` attempts in all, waiting `backoff`, then twice that, ... in between.
    pub fn retry(attempts: u32, backoff: Duration) -> Self {
        Self { attempts: attempts.max(1), backoff, timeout: None }
    }

    /// Bounds each attempt by `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The wait after failed attempt `attempt` (1-based): backoff × 2^(attempt-1),
    /// at most a minute.
    fn wait_after(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(60))
    }
}

/// Where a node (or [`START`]) goes next.
enum Edge<S> {
    /// Always to this node (or [`END`]).
    To(String),
    /// To the node the router names for the state after the step.
    Router(RouterFn<S>),
}

impl<S> Clone for Edge<S> {
    fn clone(&self) -> Self {
        match self {
            Edge::To(to) => Edge::To(to.clone()),
            Edge::Router(router) => Edge::Router(router.clone()),
        }
    }
}

/// Why a graph was not built. Every check runs; the first failure is reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph's name is empty or longer than 255 characters.
    #[error("graph name must be 1 to 255 characters")]
    BadName,
    /// A node was added twice.
    #[error("node `{0}` is defined twice")]
    DuplicateNode(String),
    /// A node was given a reserved name.
    #[error("`{0}` is reserved (START/END) and cannot name a node")]
    ReservedName(String),
    /// A node name is empty or longer than 255 characters.
    #[error("node name `{0}` must be 1 to 255 characters")]
    BadNodeName(String),
    /// An edge starts or ends at a node that does not exist.
    #[error("edge {from} -> {to} refers to unknown node `{unknown}`")]
    UnknownNode {
        /// The edge's source.
        from: String,
        /// The edge's target (`<router>` for a conditional edge).
        to: String,
        /// The name that is not a node.
        unknown: String,
    },
    /// A node (or START) has two outgoing edges.
    #[error("`{0}` has more than one outgoing edge")]
    DuplicateEdge(String),
    /// An edge leaves END or enters START.
    #[error("edge {from} -> {to}: nothing leaves END and nothing enters START")]
    EdgeAtBoundary {
        /// The edge's source.
        from: String,
        /// The edge's target.
        to: String,
    },
    /// Nothing leaves START.
    #[error("no edge from START: add .edge(START, \"first_node\")")]
    NoEntry,
    /// A node has no outgoing edge.
    #[error("node `{0}` has no outgoing edge: add .edge(\"{0}\", END) or another edge")]
    NoOutgoingEdge(String),
    /// A node cannot be reached from START.
    #[error("node `{0}` cannot be reached from START")]
    Unreachable(String),
    /// The step limit is zero.
    #[error("the step limit must be at least 1")]
    ZeroStepLimit,
}

/// Builds a [`Graph`]; see [`Graph::builder`].
#[must_use = "call .build() to validate the graph"]
pub struct GraphBuilder<S> {
    name: String,
    nodes: Vec<(String, NodeKind<S>)>,
    edges: Vec<(String, Edge<S>)>,
    policies: BTreeMap<String, NodePolicy>,
    step_limit: u32,
}

impl<S> fmt::Debug for GraphBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<&str> = self.nodes.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("GraphBuilder")
            .field("name", &self.name)
            .field("nodes", &nodes)
            .finish_non_exhaustive()
    }
}

impl<S: Serialize + DeserializeOwned + 'static> GraphBuilder<S> {
    /// Adds a node: an async function from the state to the next state. An error
    /// fails the run (stored on it); a panic fails the executor, which is restarted and
    /// runs this node again from the last checkpoint.
    pub fn node<F, Fut>(mut self, name: impl Into<String>, node: F) -> Self
    where
        F: Fn(S, NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, NodeError>> + 'static,
    {
        let node: NodeFn<S> = Arc::new(move |state, ctx| Box::pin(node(state, ctx)));
        self.nodes.push((name.into(), NodeKind::Run(node)));
        self
    }

    /// Adds an approval node: a run that reaches it waits (status `waiting`) until an
    /// operator approves it — it then goes on along this node's edge, routed on the
    /// state it paused with — or rejects it (status `rejected`, the end of the run).
    pub fn approval(mut self, name: impl Into<String>) -> Self {
        self.nodes.push((name.into(), NodeKind::Approval));
        self
    }

    /// Sets how node `name` is tried (attempts, backoff, timeout); see [`NodePolicy`].
    pub fn policy(mut self, name: impl Into<String>, policy: NodePolicy) -> Self {
        self.policies.insert(name.into(), policy);
        self
    }

    /// Adds an edge: after `from` (or from [`START`]) comes `to` (or [`END`]).
    pub fn edge(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.edges.push((from.into(), Edge::To(to.into())));
        self
    }

    /// Adds a conditional edge: after `from`, `router` names the next node (or
    /// [`END`]) from the state the step produced. A name that is not a node fails the
    /// run.
    pub fn conditional_edge<R, T>(mut self, from: impl Into<String>, router: R) -> Self
    where
        R: Fn(&S) -> T + Send + Sync + 'static,
        T: Into<String>,
    {
        let router: RouterFn<S> = Arc::new(move |state| router(state).into());
        self.edges.push((from.into(), Edge::Router(router)));
        self
    }

    /// At most this many steps per run (default 25); a run that would take more fails.
    pub fn step_limit(mut self, limit: u32) -> Self {
        self.step_limit = limit;
        self
    }

    /// Validates and builds the graph.
    pub fn build(self) -> Result<Graph<S>, GraphError> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(GraphError::BadName);
        }
        if self.step_limit == 0 {
            return Err(GraphError::ZeroStepLimit);
        }
        let mut nodes = BTreeMap::new();
        for (name, node) in self.nodes {
            if name == START || name == END {
                return Err(GraphError::ReservedName(name));
            }
            if name.is_empty() || name.len() > 255 {
                return Err(GraphError::BadNodeName(name));
            }
            if nodes.insert(name.clone(), node).is_some() {
                return Err(GraphError::DuplicateNode(name));
            }
        }
        let mut edges: BTreeMap<String, Edge<S>> = BTreeMap::new();
        for (from, edge) in self.edges {
            let to = match &edge {
                Edge::To(to) => to.clone(),
                Edge::Router(_) => "<router>".to_owned(),
            };
            if from == END || to == START {
                return Err(GraphError::EdgeAtBoundary { from, to });
            }
            for name in [&from, &to] {
                let known = nodes.contains_key(name) || name == START || name == END || name == "<router>";
                if !known {
                    return Err(GraphError::UnknownNode {
                        from: from.clone(),
                        to: to.clone(),
                        unknown: name.clone(),
                    });
                }
            }
            if edges.insert(from.clone(), edge).is_some() {
                return Err(GraphError::DuplicateEdge(from));
            }
        }
        if !edges.contains_key(START) {
            return Err(GraphError::NoEntry);
        }
        if let Some(name) = nodes.keys().find(|n| !edges.contains_key(*n)) {
            return Err(GraphError::NoOutgoingEdge(name.clone()));
        }
        // Reachability: a conditional edge may lead to any node.
        let mut reached = BTreeSet::new();
        let mut queue = VecDeque::from([START.to_owned()]);
        while let Some(at) = queue.pop_front() {
            let next: Vec<String> = match edges.get(&at) {
                Some(Edge::To(to)) => vec![to.clone()],
                Some(Edge::Router(_)) => nodes.keys().cloned().collect(),
                None => vec![],
            };
            for n in next {
                if n != END && reached.insert(n.clone()) {
                    queue.push_back(n);
                }
            }
        }
        if let Some(name) = nodes.keys().find(|n| !reached.contains(*n)) {
            return Err(GraphError::Unreachable(name.clone()));
        }
        if let Some(name) = self.policies.keys().find(|n| !nodes.contains_key(*n)) {
            return Err(GraphError::UnknownNode {
                from: name.clone(),
                to: name.clone(),
                unknown: name.clone(),
            });
        }
        Ok(Graph {
            inner: Arc::new(GraphInner {
                name: self.name,
                nodes,
                edges,
                policies: self.policies,
                step_limit: self.step_limit,
            }),
        })
    }
}

struct GraphInner<S> {
    name: String,
    nodes: BTreeMap<String, NodeKind<S>>,
    edges: BTreeMap<String, Edge<S>>,
    policies: BTreeMap<String, NodePolicy>,
    step_limit: u32,
}

/// A validated workflow graph over the state `S`. Cheap to clone.
///
/// ```
/// use vigil_actors::langgraph::{END, Graph, GraphError, START};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Ticket { text: String, urgent: bool }
///
/// let graph = Graph::<Ticket>::builder("triage")
///     .node("classify", |mut t: Ticket, _ctx| async move {
///         t.urgent = t.text.contains("down");
///         Ok(t)
///     })
///     .node("page", |t: Ticket, _ctx| async move { Ok(t) })
///     .edge(START, "classify")
///     .conditional_edge("classify", |t: &Ticket| if t.urgent { "page" } else { END })
///     .edge("page", END)
///     .step_limit(10)
///     .build()
///     .unwrap();
/// assert_eq!(graph.name(), "triage");
///
/// let broken = Graph::<Ticket>::builder("broken")
///     .node("a", |t: Ticket, _ctx| async move { Ok(t) })
///     .edge(START, "b")
///     .build();
/// assert!(matches!(broken, Err(GraphError::UnknownNode { .. })));
/// ```
pub struct Graph<S> {
    inner: Arc<GraphInner<S>>,
}

impl<S> Clone for Graph<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<S> fmt::Debug for Graph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.inner.name)
            .field("nodes", &self.inner.nodes.keys().collect::<Vec<_>>())
            .field("step_limit", &self.inner.step_limit)
            .finish()
    }
}

impl<S: Serialize + DeserializeOwned + 'static> Graph<S> {
    /// A builder for a graph named `name` (the `graph` of its runs).
    pub fn builder(name: impl Into<String>) -> GraphBuilder<S> {
        GraphBuilder {
            name: name.into(),
            nodes: Vec::new(),
            edges: Vec::new(),
            policies: BTreeMap::new(),
            step_limit: 25,
        }
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The step limit.
    pub fn step_limit(&self) -> u32 {
        self.inner.step_limit
    }

    /// The node names, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.inner.nodes.keys().map(String::as_str)
    }

    fn route(&self, from: &str, state: &S) -> Result<String, RunError> {
        let next = match self.inner.edges.get(from) {
            Some(Edge::To(to)) => to.clone(),
            Some(Edge::Router(router)) => router(state),
            None => return Err(RunError::UnknownNode(from.to_owned())),
        };
        if next != END && !self.inner.nodes.contains_key(&next) {
            return Err(RunError::BadRoute { from: from.to_owned(), to: next });
        }
        Ok(next)
    }
}

/// Why a run failed (stored in `workflow_runs.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A node returned an error.
    #[error("node `{node}` failed: {message}")]
    Node {
        /// The node.
        node: String,
        /// Its error.
        message: String,
    },
    /// A conditional edge named something that is not a node.
    #[error("the router after `{from}` chose `{to}`, which is not a node")]
    BadRoute {
        /// The node the edge leaves.
        from: String,
        /// What the router returned.
        to: String,
    },
    /// The checkpoint names a node this graph does not have (the graph changed).
    #[error("node `{0}` is not in the graph (was the graph changed?)")]
    UnknownNode(String),
    /// The run needed more steps than allowed.
    #[error("step limit of {0} reached")]
    StepLimit(u32),
    /// The stored state does not fit the graph's state type.
    #[error("state does not match the graph's state type: {0}")]
    State(String),
}

/// What one step did: the new state, the node after it, and whether the run now waits
/// for an operator (an approval node).
pub(crate) struct Stepped {
    /// The state after the step.
    pub(crate) state: serde_json::Value,
    /// The node to run next (or [`END`]).
    pub(crate) next: String,
    /// Whether the run waits for an approval before `next`.
    pub(crate) waits: bool,
}

/// A graph with its state type erased to JSON, as the executor holds it.
pub(crate) trait ErasedGraph: Send + Sync {
    fn step_limit(&self) -> u32;
    /// The first node for this initial state.
    fn entry(&self, state: &serde_json::Value) -> Result<String, RunError>;
    /// Runs `node` on `state` under its policy.
    fn step<'a>(
        &'a self,
        node: &'a str,
        state: serde_json::Value,
        ctx: NodeContext,
    ) -> LocalFuture<'a, Result<Stepped, RunError>>;
}

fn decode<S: DeserializeOwned>(state: &serde_json::Value) -> Result<S, RunError> {
    S::deserialize(state).map_err(|e| RunError::State(e.to_string()))
}

impl<S: Serialize + DeserializeOwned + 'static> ErasedGraph for Graph<S> {
    fn step_limit(&self) -> u32 {
        self.inner.step_limit
    }

    fn entry(&self, state: &serde_json::Value) -> Result<String, RunError> {
        self.route(START, &decode(state)?)
    }

    fn step<'a>(
        &'a self,
        node: &'a str,
        state: serde_json::Value,
        ctx: NodeContext,
    ) -> LocalFuture<'a, Result<Stepped, RunError>> {
        Box::pin(async move {
            let kind =
                self.inner.nodes.get(node).ok_or_else(|| RunError::UnknownNode(node.to_owned()))?.clone();
            let run = match kind {
                NodeKind::Run(run) => run,
                NodeKind::Approval => {
                    let next = self.route(node, &decode::<S>(&state)?)?;
                    return Ok(Stepped { state, next, waits: true });
                }
            };
            let policy = self.inner.policies.get(node).copied().unwrap_or_default();
            let mut attempt = 0;
            let after = loop {
                attempt += 1;
                let attempted = run(decode(&state)?, ctx.clone());
                let outcome = match policy.timeout {
                    Some(limit) => tokio::time::timeout(limit, attempted)
                        .await
                        .unwrap_or_else(|_| Err(NodeError::msg(format!("timed out after {limit:?}")))),
                    None => attempted.await,
                };
                match outcome {
                    Ok(after) => break after,
                    Err(error) if attempt < policy.attempts => {
                        let wait = policy.wait_after(attempt);
                        tracing::info!(node, attempt, ?wait, %error, "workflow node failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    Err(error) => {
                        let message = if attempt > 1 {
                            format!("{error} (after {attempt} attempts)")
                        } else {
                            error.to_string()
                        };
                        return Err(RunError::Node { node: node.to_owned(), message });
                    }
                }
            };
            let next = self.route(node, &after)?;
            let encoded = serde_json::to_value(&after).map_err(|e| RunError::State(e.to_string()))?;
            Ok(Stepped { state: encoded, next, waits: false })
        })
    }
}
