//! Compiling a checked [`WorkflowSpec`] into a [`Graph`] over a JSON state — the same
//! model and executor Rust graphs use — and what each node kind does when it runs.
//!
//! | kind       | runs                                                                   |
//! |------------|------------------------------------------------------------------------|
//! | `http`     | the request; `state[output] = {"status": code, "body": JSON or text}`; a status in `fail_on` fails the attempt |
//! | `command`  | the program with `args` (no shell), the state as JSON on stdin, in the file's folder; its stdout (a JSON object, or nothing) merged into the state; a non-zero exit fails; the timeout kills it |
//! | `llm`      | a chat completion through the AI help agent's OpenAI-compatible client; `state[output]` = the answer (text, or parsed for `"format": "json"`); logged in `llm_conversations` (so the LangSmith bridge traces it) |
//! | `approval` | nothing: the run waits for an operator ([`GraphBuilder::approval`](super::GraphBuilder::approval)) |

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::node_spec::status_pattern;
use super::template::{render_header, render_json, render_text, render_url};
use super::workflow_file::{
    CommandSpec, END_NAME, HttpSpec, LlmFormat, LlmSpec, NodeSpecKind, WorkflowErrors, WorkflowIssue,
    WorkflowSpec,
};
use super::{END, Graph, NodeContext, NodeError, NodePolicy, START};
use crate::ai_help::{OpenAiConfig, OpenAiResponder};

/// Compiles `spec` into a graph named `name@version`. `llm` is the endpoint `llm` nodes
/// use (vigil.json's `ai_help.openai`); a file with `llm` nodes and no endpoint fails.
pub fn compile(spec: &WorkflowSpec, llm: Option<&OpenAiConfig>) -> Result<Graph<Value>, WorkflowErrors> {
    let issue = |node: Option<&str>, problem: String| {
        WorkflowErrors(vec![WorkflowIssue {
            file: spec.file.clone(),
            node: node.map(str::to_owned),
            problem,
        }])
    };
    // Absolute: the child runs in this folder, so a relative `./page.sh` must not be
    // resolved against it a second time.
    let folder: &Path = spec.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    // No client-wide timeout: each attempt is bounded by the node's own `timeout`.
    let client = reqwest::Client::builder().build().map_err(|e| issue(None, format!("HTTP client: {e}")))?;
    let target = |name: &str| if name == END_NAME { END.to_owned() } else { name.to_owned() };
    let mut builder =
        Graph::<Value>::builder(spec.key()).step_limit(spec.max_steps).edge(START, target(&spec.start));
    for node in &spec.nodes {
        builder = match &node.kind {
            NodeSpecKind::Approval => builder.approval(&node.name),
            NodeSpecKind::Http(http) => {
                let (client, http) = (client.clone(), http.clone());
                builder.node(&node.name, move |state, _ctx| run_http(client.clone(), http.clone(), state))
            }
            NodeSpecKind::Command(command) => {
                let (command, folder) = (command.clone(), folder.clone());
                builder
                    .node(&node.name, move |state, _ctx| run_command(command.clone(), folder.clone(), state))
            }
            NodeSpecKind::Llm(llm_spec) => {
                let config = llm.ok_or_else(|| {
                    issue(
                        Some(&node.name),
                        "an llm node needs `ai_help.openai` (base_url, api_key) in vigil.json".into(),
                    )
                })?;
                let responder = OpenAiResponder::new(config.clone())
                    .map_err(|e| issue(Some(&node.name), format!("ai_help.openai: {e}")))?;
                let llm_spec = llm_spec.clone();
                builder.node(&node.name, move |state, ctx| {
                    run_llm(responder.clone(), llm_spec.clone(), state, ctx)
                })
            }
        };
        if !matches!(node.kind, NodeSpecKind::Approval) {
            let policy = NodePolicy { attempts: node.attempts, backoff: node.backoff, timeout: node.timeout };
            builder = builder.policy(&node.name, policy);
        }
    }
    for (from, edge) in &spec.edges {
        builder = match &edge.to {
            Some(to) => builder.edge(from, target(to)),
            None => {
                let cases = edge.when.clone();
                let default = target(edge.default.as_deref().unwrap_or(END_NAME));
                builder.conditional_edge(from, move |state: &Value| {
                    cases
                        .iter()
                        .find(|case| case.holds(state))
                        .map_or(default.clone(), |case| target(&case.to))
                })
            }
        };
    }
    builder.build().map_err(|e| issue(None, e.to_string()))
}

/// The state as an object, to write into.
fn object(state: &mut Value) -> Result<&mut Map<String, Value>, NodeError> {
    state.as_object_mut().ok_or_else(|| NodeError::msg("the run's state is not a JSON object"))
}

async fn run_http(client: reqwest::Client, spec: HttpSpec, mut state: Value) -> Result<Value, NodeError> {
    let url = render_url(&spec.url, &state).map_err(NodeError::msg)?;
    let method = reqwest::Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
        .map_err(|e| NodeError::msg(e.to_string()))?;
    let mut request = client.request(method, &url);
    for (name, value) in &spec.headers {
        request = request.header(name, render_header(value, &state).map_err(NodeError::msg)?);
    }
    if let Some(body) = &spec.body {
        request = request.json(&render_json(body, &state).map_err(NodeError::msg)?);
    }
    // Errors name the URL without its query and credentials, which may hold a key.
    let shown = shown_url(&url);
    let response = request
        .send()
        .await
        .map_err(|e| NodeError::msg(format!("{} {shown}: {}", spec.method, e.without_url())))?;
    let status = response.status().as_u16();
    let text =
        response.text().await.map_err(|e| NodeError::msg(format!("reading {shown}: {}", e.without_url())))?;
    let failed =
        spec.fail_on.iter().filter_map(|p| status_pattern(p)).any(|(lo, hi)| (lo..=hi).contains(&status));
    if failed {
        return Err(NodeError::msg(format!(
            "HTTP {status} from {shown}: {}",
            crate::http::truncate(&text, 300)
        )));
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    object(&mut state)?.insert(spec.output, json!({ "status": status, "body": body }));
    Ok(state)
}

/// `url` as errors show it: no `user:password@`, no query string.
fn shown_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            let path = if path.is_empty() { String::new() } else { format!("/{path}") };
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

/// Kills the child if it still runs when dropped: when the node's timeout drops the
/// future, or the executor stops mid-node. On Unix the child leads its own process
/// group and the whole group is killed, so a `sh -c "...; sleep 60"` does not leave
/// its `sleep` behind holding the output pipe.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            #[cfg(unix)]
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn run_command(spec: CommandSpec, folder: PathBuf, mut state: Value) -> Result<Value, NodeError> {
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|arg| render_text(arg, &state))
        .collect::<Result<_, _>>()
        .map_err(NodeError::msg)?;
    // A path is relative to the workflow file; a bare name is looked up in PATH.
    let program =
        if spec.program.contains('/') { folder.join(&spec.program) } else { PathBuf::from(&spec.program) };
    let mut command = Command::new(&program);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .args(&args)
        .current_dir(&folder)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NodeError::msg(format!("cannot start `{}`: {e}", spec.program)))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut child = KillOnDrop(child);
    let input = serde_json::to_vec(&state).map_err(|e| NodeError::msg(e.to_string()))?;
    // The pipes are read on blocking threads; a program that ignores its input is fine.
    let writer = tokio::task::spawn_blocking(move || stdin.map(|mut s| s.write_all(&input)));
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = read_all(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = read_all(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        if let Some(status) = child.0.try_wait().map_err(|e| NodeError::msg(e.to_string()))? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = writer.await;
    let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        return Err(NodeError::msg(format!(
            "`{}` exited with {status}: {}",
            spec.program,
            crate::http::truncate(stderr.trim(), 300)
        )));
    }
    let text = String::from_utf8_lossy(&out);
    if text.trim().is_empty() {
        return Ok(state);
    }
    let Value::Object(output) = serde_json::from_str(&text).map_err(|e| {
        NodeError::msg(format!(
            "`{}` printed something that is not JSON ({e}): {}",
            spec.program,
            crate::http::truncate(&text, 200)
        ))
    })?
    else {
        return Err(NodeError::msg(format!(
            "`{}` must print a JSON object, merged into the state",
            spec.program
        )));
    };
    object(&mut state)?.extend(output);
    Ok(state)
}

async fn run_llm(
    responder: OpenAiResponder,
    spec: LlmSpec,
    mut state: Value,
    ctx: NodeContext,
) -> Result<Value, NodeError> {
    let prompt = render_text(&spec.prompt, &state).map_err(NodeError::msg)?;
    let mut messages = Vec::new();
    if let Some(system) = &spec.system {
        messages.push(
            json!({ "role": "system", "content": render_text(system, &state).map_err(NodeError::msg)? }),
        );
    }
    messages.push(json!({ "role": "user", "content": prompt }));
    let (text, answer) = responder.chat(messages).await?;
    let metadata =
        json!({ "model": answer["model"].as_str().unwrap_or(responder.model()), "usage": answer["usage"] });
    ctx.log_llm(&prompt, &text, Some(metadata)).await?;
    let value = match spec.format {
        LlmFormat::Text => Value::String(text),
        LlmFormat::Json => {
            // Models like to fence JSON in ```json ... ```; the fence is not the answer.
            let trimmed =
                text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```");
            serde_json::from_str(trimmed.trim()).map_err(|e| {
                NodeError::msg(format!("the answer is not JSON ({e}): {}", crate::http::truncate(&text, 200)))
            })?
        }
    };
    object(&mut state)?.insert(spec.output, value);
    Ok(state)
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_show_urls_without_credentials_or_query() {
        assert_eq!(
            super::shown_url("https://u:secret@api.example/v1/x?key=abc#f"),
            "https://api.example/v1/x"
        );
        assert_eq!(super::shown_url("http://127.0.0.1:8765"), "http://127.0.0.1:8765");
    }
}
