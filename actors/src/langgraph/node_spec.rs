//! One node of a workflow file, read from its JSON object: the fields every kind has
//! (`name`, `kind`, `retries`, `backoff`, `timeout`) and then the kind's own fields,
//! unknown ones refused.
//!
//! | kind       | own fields                                              | default timeout |
//! |------------|---------------------------------------------------------|-----------------|
//! | `http`     | `method`, `url`, `headers`, `body`, `output`, `fail_on` | 30s             |
//! | `command`  | `program`, `args`, `outputs`                            | 60s             |
//! | `llm`      | `prompt`, `system`, `output`, `format`                  | none (the client's own timeout and retries apply) |
//! | `approval` | none                                                    | none (it waits for an operator) |

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::workflow_file::{NodeSpec, NodeSpecKind};

/// The node kinds, as files name them.
pub const KINDS: [&str; 4] = ["http", "command", "llm", "approval"];

/// Reads one node; on failure the node's name (if it has one) and the problem.
pub(crate) fn parse_node(mut map: Map<String, Value>) -> Result<NodeSpec, (Option<String>, String)> {
    let name = match map.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err((None, "every node needs a `name` (a string)".into())),
    };
    let fail = |problem: String| (Some(name.clone()), problem);
    let kind = match map.remove("kind") {
        Some(Value::String(kind)) => kind,
        _ => return Err(fail(format!("needs a `kind`: one of {}", KINDS.join(", ")))),
    };
    let retries = match map.remove("retries") {
        None => 0,
        Some(value) => value
            .as_u64()
            .filter(|n| *n <= 10)
            .ok_or_else(|| fail("`retries` must be a whole number from 0 to 10".into()))?
            as u32,
    };
    let duration =
        |map: &mut Map<String, Value>, field: &str| -> Result<Option<Duration>, (Option<String>, String)> {
            match map.remove(field) {
                None => Ok(None),
                Some(value) => {
                    #[derive(serde::Deserialize)]
                    struct Wrapped(#[serde(with = "crate::config::duration")] Duration);
                    serde_json::from_value::<Wrapped>(value)
                        .map(|w| Some(w.0))
                        .map_err(|e| fail(format!("`{field}`: {e}")))
                }
            }
        };
    let backoff = duration(&mut map, "backoff")?.unwrap_or(Duration::from_millis(500));
    let timeout = duration(&mut map, "timeout")?;
    let rest = Value::Object(map);
    fn fields<T: DeserializeOwned>(rest: Value, kind: &str) -> Result<T, String> {
        serde_json::from_value(rest).map_err(|e| format!("{kind} node: {e}"))
    }
    let (kind, default_timeout) = match kind.as_str() {
        "http" => {
            let spec: super::workflow_file::HttpSpec = fields(rest, "http").map_err(fail)?;
            const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
            if !METHODS.contains(&spec.method.to_ascii_uppercase().as_str()) {
                return Err(fail(format!("`method` must be one of {}", METHODS.join(", "))));
            }
            if let Some(bad) = spec.fail_on.iter().find(|code| status_pattern(code).is_none()) {
                return Err(fail(format!("`fail_on`: `{bad}` is not a status code (404) or class (4xx)")));
            }
            (NodeSpecKind::Http(spec), Some(Duration::from_secs(30)))
        }
        "command" => {
            let spec: super::workflow_file::CommandSpec = fields(rest, "command").map_err(fail)?;
            if spec.program.trim().is_empty() {
                return Err(fail("`program` is empty".into()));
            }
            (NodeSpecKind::Command(spec), Some(Duration::from_secs(60)))
        }
        "llm" => (NodeSpecKind::Llm(fields(rest, "llm").map_err(fail)?), None),
        "approval" => {
            if let Some(field) = rest.as_object().and_then(|m| m.keys().next()) {
                return Err(fail(format!("an approval node has no field `{field}`")));
            }
            if retries > 0 || timeout.is_some() {
                return Err(fail("an approval node takes no `retries` or `timeout`".into()));
            }
            (NodeSpecKind::Approval, None)
        }
        other => return Err(fail(format!("unknown kind `{other}`: expected one of {}", KINDS.join(", ")))),
    };
    Ok(NodeSpec { name, kind, attempts: retries + 1, backoff, timeout: timeout.or(default_timeout) })
}

/// `"404"` → that code; `"4xx"` → the class; anything else → `None`.
pub(crate) fn status_pattern(text: &str) -> Option<(u16, u16)> {
    match text.as_bytes() {
        [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
            let base = u16::from(c - b'0') * 100;
            Some((base, base + 99))
        }
        _ => text.parse::<u16>().ok().filter(|c| (100..600).contains(c)).map(|c| (c, c)),
    }
}

impl NodeSpec {
    /// The top-level state keys this node's templates read.
    pub(crate) fn reads(&self) -> Result<Vec<String>, super::template::TemplateError> {
        use super::template::{json_keys, keys, keys_outside_headers};
        let mut out = Vec::new();
        match &self.kind {
            NodeSpecKind::Http(http) => {
                out.extend(keys_outside_headers(&http.url)?);
                // Header values are the one place `{{env.NAME}}` may stand.
                for value in http.headers.values() {
                    out.extend(keys(value)?);
                }
                if let Some(body) = &http.body {
                    out.extend(json_keys(body)?);
                }
            }
            NodeSpecKind::Command(command) => {
                for arg in &command.args {
                    out.extend(keys_outside_headers(arg)?);
                }
            }
            NodeSpecKind::Llm(llm) => {
                out.extend(keys_outside_headers(&llm.prompt)?);
                if let Some(system) = &llm.system {
                    out.extend(keys_outside_headers(system)?);
                }
            }
            NodeSpecKind::Approval => {}
        }
        Ok(out)
    }

    /// The keys this node writes; `None`: any (a command without `outputs`).
    pub(crate) fn writes(&self) -> Option<Vec<String>> {
        match &self.kind {
            NodeSpecKind::Http(http) => Some(vec![http.output.clone()]),
            NodeSpecKind::Llm(llm) => Some(vec![llm.output.clone()]),
            NodeSpecKind::Command(command) => command.outputs.clone(),
            NodeSpecKind::Approval => Some(Vec::new()),
        }
    }
}
