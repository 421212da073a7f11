//! Workflow files: graphs written as JSON instead of Rust, read from the folder
//! `langgraph.workflows_dir` names in vigil.json (every `*.json` in it), checked, and
//! compiled into the same [`Graph`](super::Graph) model Rust graphs use
//! ([`super::file_nodes`]). The format:
//!
//! ```json
//! {
//!   "name": "triage", "version": "1", "description": "optional",
//!   "start": "fetch", "inputs": ["ticket_id"], "max_steps": 25,
//!   "nodes": [
//!     {"name": "fetch", "kind": "http", "url": "http://127.0.0.1:8080/tickets/{{ticket_id}}",
//!      "output": "ticket", "retries": 2, "backoff": "200ms", "timeout": "5s"},
//!     {"name": "classify", "kind": "llm", "prompt": "Classify: {{ticket.body}}", "output": "class", "format": "json"},
//!     {"name": "approve", "kind": "approval"},
//!     {"name": "page", "kind": "command", "program": "./page.sh", "args": ["{{ticket_id}}"], "outputs": ["paged"]}
//!   ],
//!   "edges": [
//!     {"from": "fetch", "to": "classify"},
//!     {"from": "classify", "when": [{"key": "class.urgent", "equals": true, "to": "approve"}], "default": "end"},
//!     {"from": "approve", "to": "page"},
//!     {"from": "page", "to": "end"}
//!   ]
//! }
//! ```
//!
//! Every problem is collected, not just the first, each naming the file, the node and
//! what is wrong ([`WorkflowIssue`]): JSON that does not parse, unknown node kinds and
//! fields, edges to missing nodes, a node with no edge or two, unreachable nodes, nodes
//! that can never reach `end`, and templates naming a key no earlier node can produce
//! (decidable unless a `command` node without `outputs` runs earlier).
//!
//! **Versions.** A file's version is its declared `version` plus a hash of its bytes
//! (`1+4f2a09c1`): a changed file is a new version even if nobody bumped the number.
//! Runs are submitted against `name@version` and keep that version to their end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::template;

/// The name edges and `start` use for the end of the graph.
pub const END_NAME: &str = "end";

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowIssue {
    /// The file.
    pub file: PathBuf,
    /// The node (or edge source) it is about, if any.
    pub node: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for WorkflowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "{}: node `{node}`: {}", self.file.display(), self.problem),
            None => write!(f, "{}: {}", self.file.display(), self.problem),
        }
    }
}

/// Every problem found in one or more workflow files (one per line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkflowErrors(pub Vec<WorkflowIssue>);

impl fmt::Display for WorkflowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A `method`/`url`/... `http` node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The URL, templated (values percent-encoded).
    pub url: String,
    /// Request headers, values templated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body, templated: a string that is exactly `"{{key}}"` becomes the value with
    /// its JSON type; other strings get the values as text.
    #[serde(default)]
    pub body: Option<Value>,
    /// The state key that gets `{"status": code, "body": JSON or text}`.
    pub output: String,
    /// Status codes that fail the node: `"404"`, `"4xx"`, `"5xx"` (default 4xx and 5xx).
    #[serde(default = "default_fail_on")]
    pub fail_on: Vec<String>,
}

/// A `command` node: a program, no shell.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program: a name looked up in `PATH`, or a path (relative to the file's folder).
    pub program: String,
    /// Its arguments, each templated, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// The keys its JSON output may set; without it later templates go unchecked.
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
}

/// An `llm` node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// The user message, templated.
    pub prompt: String,
    /// An optional system message, templated.
    #[serde(default)]
    pub system: Option<String>,
    /// The state key that gets the answer.
    pub output: String,
    /// `text` (default) or `json` (the answer parsed as JSON; a non-JSON answer fails).
    #[serde(default)]
    pub format: LlmFormat,
}

/// How an `llm` node's answer is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmFormat {
    /// As a string.
    #[default]
    Text,
    /// Parsed as JSON.
    Json,
}

/// What a node does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeSpecKind {
    /// An HTTP request.
    Http(HttpSpec),
    /// A program.
    Command(CommandSpec),
    /// A chat completion.
    Llm(LlmSpec),
    /// A pause for an operator.
    Approval,
}

/// One node of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: NodeSpecKind,
    /// Attempts in all (`retries` + 1).
    pub attempts: u32,
    /// The wait before the first retry (doubling after).
    pub backoff: Duration,
    /// The longest one attempt may take.
    pub timeout: Option<Duration>,
}

/// One condition of a conditional edge: exactly one test of the value at `key`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A dotted state path (`class.urgent`).
    pub key: String,
    /// Equal to this JSON value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// Not equal to this JSON value (a missing key is not equal).
    #[serde(default)]
    pub not_equals: Option<Value>,
    /// A number greater than this.
    #[serde(default)]
    pub gt: Option<f64>,
    /// A number at least this.
    #[serde(default)]
    pub gte: Option<f64>,
    /// A number less than this.
    #[serde(default)]
    pub lt: Option<f64>,
    /// A number at most this.
    #[serde(default)]
    pub lte: Option<f64>,
    /// Present (`true`) or absent (`false`; `null` counts as absent).
    #[serde(default)]
    pub exists: Option<bool>,
    /// Where the run goes when the test holds.
    pub to: String,
}

impl Case {
    /// Whether the test holds for `state`.
    pub fn holds(&self, state: &Value) -> bool {
        let path: Vec<&str> = self.key.split('.').collect();
        let value = template::lookup(state, &path).filter(|v| !v.is_null());
        let number = value.and_then(Value::as_f64);
        let compare = |limit: Option<f64>, test: fn(f64, f64) -> bool| {
            limit.is_none_or(|limit| number.is_some_and(|n| test(n, limit)))
        };
        self.equals.as_ref().is_none_or(|want| value == Some(want))
            && self.not_equals.as_ref().is_none_or(|want| value != Some(want))
            && compare(self.gt, |n, l| n > l)
            && compare(self.gte, |n, l| n >= l)
            && compare(self.lt, |n, l| n < l)
            && compare(self.lte, |n, l| n <= l)
            && self.exists.is_none_or(|want| value.is_some() == want)
    }

    fn tests(&self) -> usize {
        [self.equals.is_some(), self.not_equals.is_some(), self.exists.is_some()]
            .iter()
            .filter(|t| **t)
            .count()
            + [self.gt, self.gte, self.lt, self.lte].iter().filter(|t| t.is_some()).count()
    }
}

/// An edge: `to`, or `when` cases tried in order with a `default`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The node it leaves.
    pub from: String,
    /// Where it always goes.
    #[serde(default)]
    pub to: Option<String>,
    /// Conditional: the first case that holds picks the next node.
    #[serde(default)]
    pub when: Vec<Case>,
    /// Conditional: where the run goes when no case holds.
    #[serde(default)]
    pub default: Option<String>,
}

impl EdgeSpec {
    /// Every node this edge may lead to.
    pub fn targets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.to.iter().chain(&self.default).map(String::as_str).collect();
        out.extend(self.when.iter().map(|c| c.to.as_str()));
        out
    }
}

/// A checked workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSpec {
    /// Its name: what `vigil workflow submit NAME` names.
    pub name: String,
    /// Declared version + content hash (`1+4f2a09c1`).
    pub version: String,
    /// What it is for (free text, optional).
    pub description: Option<String>,
    /// The first node.
    pub start: String,
    /// The keys a submitted input is expected to have.
    pub inputs: Vec<String>,
    /// At most this many steps per run.
    pub max_steps: u32,
    /// The nodes, in file order.
    pub nodes: Vec<NodeSpec>,
    /// The edges, one per node.
    pub edges: BTreeMap<String, EdgeSpec>,
    /// The file it came from.
    pub file: PathBuf,
    /// The document as read (stored with the version so old versions can be rebuilt).
    pub document: Value,
}

impl WorkflowSpec {
    /// `name@version`: the `graph` of its runs.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    version: Value,
    #[serde(default)]
    description: Option<String>,
    start: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default = "default_max_steps")]
    max_steps: u32,
    nodes: Vec<Map<String, Value>>,
    edges: Vec<EdgeSpec>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_fail_on() -> Vec<String> {
    vec!["4xx".into(), "5xx".into()]
}
fn default_max_steps() -> u32 {
    25
}

/// FNV-1a, 32 bits: a short, stable content hash (not a security measure).
fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// Reads and checks one file.
pub fn load_file(path: &Path) -> Result<WorkflowSpec, WorkflowErrors> {
    let issue =
        |problem: String| WorkflowErrors(vec![WorkflowIssue { file: path.into(), node: None, problem }]);
    let bytes = std::fs::read(path).map_err(|e| issue(format!("cannot read: {e}")))?;
    let document: Value = serde_json::from_slice(&bytes).map_err(|e| issue(format!("not JSON: {e}")))?;
    parse(path, document, None, &content_hash(&bytes))
}

/// Reads and checks every `*.json` file of `dir` (sorted by name); every problem of
/// every file, or the workflows. Two files with one name are an error.
pub fn load_dir(dir: &Path) -> Result<Vec<WorkflowSpec>, WorkflowErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        WorkflowErrors(vec![WorkflowIssue {
            file: dir.into(),
            node: None,
            problem: format!("cannot read the workflows folder: {e}"),
        }])
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let (mut specs, mut issues) = (Vec::new(), Vec::new());
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        match load_file(&path) {
            Ok(spec) => {
                if let Some(first) = names.insert(spec.name.clone(), path.clone()) {
                    issues.push(WorkflowIssue {
                        file: path.clone(),
                        node: None,
                        problem: format!("workflow `{}` is also defined in {}", spec.name, first.display()),
                    });
                }
                specs.push(spec);
            }
            Err(WorkflowErrors(found)) => issues.extend(found),
        }
    }
    if issues.is_empty() { Ok(specs) } else { Err(WorkflowErrors(issues)) }
}

/// Checks a parsed document. `version` given: the stored version of a registered
/// document (old versions are rebuilt from the database); otherwise declared + `hash`.
pub fn parse(
    file: &Path,
    document: Value,
    version: Option<&str>,
    hash: &str,
) -> Result<WorkflowSpec, WorkflowErrors> {
    let mut issues = Vec::new();
    let mut add = |node: Option<&str>, problem: String| {
        issues.push(WorkflowIssue { file: file.into(), node: node.map(str::to_owned), problem });
    };
    let raw: RawFile = match serde_json::from_value(document.clone()) {
        Ok(raw) => raw,
        Err(e) => {
            add(None, format!("not a workflow: {e}"));
            return Err(WorkflowErrors(issues));
        }
    };
    let declared = match &raw.version {
        Value::String(v) if !v.trim().is_empty() => v.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => {
            add(None, "`version` must be a non-empty string or a number".into());
            String::new()
        }
    };
    if raw.name.is_empty() || raw.name.len() > 120 || raw.name.contains('@') {
        add(None, "`name` must be 1 to 120 characters without `@`".into());
    }
    if raw.max_steps == 0 {
        add(None, "`max_steps` must be at least 1".into());
    }
    let mut nodes = Vec::new();
    // A node that failed to parse still exists for the edges: one mistake, one message.
    let mut known = BTreeSet::new();
    for (index, map) in raw.nodes.into_iter().enumerate() {
        match super::node_spec::parse_node(map) {
            Ok(node) => nodes.push(node),
            Err((Some(name), problem)) => {
                add(Some(&name), problem);
                known.insert(name);
            }
            Err((None, problem)) => add(Some(&format!("#{}", index + 1)), problem),
        }
    }
    for node in &nodes {
        if node.name == END_NAME || node.name.is_empty() || node.name.len() > 120 {
            add(Some(&node.name), format!("a node name must be 1 to 120 characters and not `{END_NAME}`"));
        } else if !known.insert(node.name.clone()) {
            add(Some(&node.name), "is defined twice".into());
        }
    }
    let is_target = |name: &str| name == END_NAME || known.contains(name);
    if !known.contains(&raw.start) {
        add(None, format!("`start` names `{}`, which is not a node", raw.start));
    }
    let mut edges = BTreeMap::new();
    for edge in raw.edges {
        if !known.contains(&edge.from) {
            add(None, format!("an edge leaves `{}`, which is not a node", edge.from));
            continue;
        }
        let conditional = !edge.when.is_empty() || edge.default.is_some();
        if edge.to.is_some() == conditional {
            add(Some(&edge.from), "an edge has either `to`, or `when` cases and a `default`".into());
        } else if conditional && edge.default.is_none() {
            add(Some(&edge.from), "a conditional edge needs a `default`".into());
        }
        for case in &edge.when {
            if case.tests() != 1 {
                add(
                    Some(&edge.from),
                    format!(
                        "the case on `{}` needs exactly one of equals, not_equals, gt, gte, lt, lte, exists",
                        case.key
                    ),
                );
            }
        }
        for target in edge.targets() {
            if !is_target(target) {
                add(
                    Some(&edge.from),
                    format!("an edge goes to `{target}`, which is not a node (or `{END_NAME}`)"),
                );
            }
        }
        if edges.contains_key(&edge.from) {
            add(Some(&edge.from), "has more than one outgoing edge (use one edge with `when` cases)".into());
        } else {
            edges.insert(edge.from.clone(), edge);
        }
    }
    for node in &nodes {
        if !edges.contains_key(&node.name) {
            add(
                Some(&node.name),
                format!("has no outgoing edge (add {{\"from\": \"{}\", \"to\": \"{END_NAME}\"}})", node.name),
            );
        }
    }
    let spec = WorkflowSpec {
        name: raw.name,
        version: version.map(str::to_owned).unwrap_or_else(|| format!("{declared}+{hash}")),
        description: raw.description,
        start: raw.start,
        inputs: raw.inputs,
        max_steps: raw.max_steps,
        nodes,
        edges,
        file: file.into(),
        document,
    };
    // The graph-wide checks assume every edge names real nodes.
    if issues.is_empty() {
        for (node, problem) in super::graph_checks::check(&spec) {
            issues.push(WorkflowIssue { file: file.into(), node, problem });
        }
    }
    if issues.is_empty() { Ok(spec) } else { Err(WorkflowErrors(issues)) }
}
