//! Templates of workflow files: `{{key}}`, `{{key.sub.0}}` or `{{state.key}}` stand
//! for a value of the run's JSON state, read at the moment the node runs.
//!
//! | where                     | a template becomes                                        |
//! |---------------------------|-----------------------------------------------------------|
//! | a JSON body, a whole string `"{{ticket}}"` | the value itself, with its JSON type (object, number, ...) |
//! | a JSON body, inside text  | the value as text (strings bare, the rest as compact JSON), then JSON-encoded with the string around it |
//! | a URL                     | the value as text, percent-encoded                        |
//! | a prompt, an argument, a header | the value as text                                   |
//!
//! A template naming a key the state does not have fails the node (a file check
//! catches most of them first).
//!
//! **Secrets.** `{{env.NAME}}` stands for the environment variable `NAME` of the
//! platform's process, read when the request is sent — in an `http` node's header
//! values only (`"Authorization": "Bearer {{env.TICKETS_TOKEN}}"`). So a token is never
//! written in the file, never stored with the workflow's versions in the database,
//! never part of the run's state, and never in a URL or a body that an error or a log
//! might show; a variable that is not set fails the node, naming the variable only.

use serde_json::Value;

/// A `{{` without its `}}`, or an empty `{{}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad template in `{text}`: {problem}")]
pub(crate) struct TemplateError {
    /// The text (shortened).
    text: String,
    /// What is wrong.
    problem: &'static str,
}

/// The pieces of a template text: literal text, state paths, environment variables.
enum Piece<'a> {
    Text(&'a str),
    Path(Vec<&'a str>),
    Env(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let fail = |problem| TemplateError { text: crate::http::truncate(text, 80), problem };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| fail("`{{` is never closed by `}}`"))?;
        let inner = after[..close].trim();
        if let Some(name) = inner.strip_prefix("env.") {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(fail("`{{env.NAME}}` needs a variable name of letters, digits and `_`"));
            }
            out.push(Piece::Env(name));
            rest = &after[close + 2..];
            continue;
        }
        let inner = inner.strip_prefix("state.").unwrap_or(inner);
        if inner.is_empty() || inner == "state" {
            return Err(fail("`{{}}` names no key"));
        }
        let path: Vec<&str> = inner.split('.').map(str::trim).collect();
        if path.iter().any(|segment| segment.is_empty()) {
            return Err(fail("a key path has an empty segment"));
        }
        out.push(Piece::Path(path));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The top-level state keys `text` reads (`{{ticket.body}}` reads `ticket`).
pub(crate) fn keys(text: &str) -> Result<Vec<String>, TemplateError> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Path(path) => Some(path[0].to_owned()),
            Piece::Text(_) | Piece::Env(_) => None,
        })
        .collect())
}

/// [`keys`] of a text that is not a header value, where `{{env.NAME}}` is refused (see
/// the module docs).
pub(crate) fn keys_outside_headers(text: &str) -> Result<Vec<String>, TemplateError> {
    if pieces(text)?.iter().any(|piece| matches!(piece, Piece::Env(_))) {
        return Err(TemplateError {
            text: crate::http::truncate(text, 80),
            problem: "`{{env.NAME}}` is allowed in header values only (secrets stay out of URLs, bodies, prompts and arguments)",
        });
    }
    keys(text)
}

/// The top-level keys every string inside a JSON value reads.
pub(crate) fn json_keys(value: &Value) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    match value {
        Value::String(text) => out.extend(keys_outside_headers(text)?),
        Value::Array(items) => {
            for item in items {
                out.extend(json_keys(item)?);
            }
        }
        Value::Object(map) => {
            for item in map.values() {
                out.extend(json_keys(item)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The value at a dotted path (array elements by index), if any.
pub(crate) fn lookup<'v>(state: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(state, |at, segment| match at {
        Value::Object(map) => map.get(*segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

fn find<'v>(state: &'v Value, path: &[&str]) -> Result<&'v Value, String> {
    lookup(state, path).ok_or_else(|| format!("the state has no `{}` (named by a template)", path.join(".")))
}

/// A value as text: strings bare, everything else compact JSON.
pub(crate) fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Renders `text`, each value passed through `escape`; environment variables only when
/// `env` is allowed (header values).
fn render_with(text: &str, state: &Value, escape: fn(&str) -> String, env: bool) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(text).map_err(|e| e.to_string())? {
        match piece {
            Piece::Text(literal) => out.push_str(literal),
            Piece::Path(path) => out.push_str(&escape(&as_text(find(state, &path)?))),
            Piece::Env(name) if env => out
                .push_str(&std::env::var(name).map_err(|_| {
                    format!("the environment variable {name} (named by a header) is not set")
                })?),
            Piece::Env(name) => return Err(format!("`{{{{env.{name}}}}}` is allowed in header values only")),
        }
    }
    Ok(out)
}

/// Renders `text`, each value passed through `escape`.
pub(crate) fn render(text: &str, state: &Value, escape: fn(&str) -> String) -> Result<String, String> {
    render_with(text, state, escape, false)
}

/// Renders plain text (prompts, arguments).
pub(crate) fn render_text(text: &str, state: &Value) -> Result<String, String> {
    render(text, state, str::to_owned)
}

/// Renders a header value: state values and `{{env.NAME}}` (the only place secrets
/// from the environment go).
pub(crate) fn render_header(text: &str, state: &Value) -> Result<String, String> {
    render_with(text, state, str::to_owned, true)
}

/// Renders a URL: substituted values are percent-encoded (all but RFC 3986's
/// unreserved characters), so a value cannot add a path segment or a query parameter.
pub(crate) fn render_url(text: &str, state: &Value) -> Result<String, String> {
    render(text, state, |value| {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    })
}

/// Renders a JSON document: a string that is exactly one template becomes the value
/// (any JSON type); other strings are rendered as text. The structure of the document
/// never comes from the state, so a value cannot inject JSON.
pub(crate) fn render_json(template: &Value, state: &Value) -> Result<Value, String> {
    Ok(match template {
        Value::String(text) => match pieces(text).map_err(|e| e.to_string())?.as_slice() {
            [Piece::Text(""), Piece::Path(path), Piece::Text("")] => find(state, path)?.clone(),
            _ => Value::String(render_text(text, state)?),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| render_json(item, state)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), render_json(item, state)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn templates_read_the_state_with_the_escaping_of_their_place() {
        let state = json!({"ticket": {"id": 7, "title": "disk \"full\" & more"}, "tags": ["a", "b"]});
        assert_eq!(
            render_text("#{{ticket.id}}: {{state.ticket.title}}", &state).unwrap(),
            "#7: disk \"full\" & more"
        );
        assert_eq!(
            render_url("http://x/t?q={{ticket.title}}", &state).unwrap(),
            "http://x/t?q=disk%20%22full%22%20%26%20more"
        );
        let body = json!({"whole": "{{ticket}}", "text": "title: {{ticket.title}}", "first": "{{tags.0}}"});
        assert_eq!(
            render_json(&body, &state).unwrap(),
            json!({"whole": {"id": 7, "title": "disk \"full\" & more"}, "text": "title: disk \"full\" & more", "first": "a"})
        );
        assert_eq!(keys("{{a.b}} and {{ state.c }}").unwrap(), vec!["a", "c"]);
        assert!(render_text("{{missing}}", &state).unwrap_err().contains("`missing`"));
        assert!(keys("{{open").is_err());
        assert!(keys("{{}}").is_err());
    }

    #[test]
    fn environment_variables_render_in_headers_only() {
        let state = json!({"id": 7});
        // PATH is set in every process that runs these tests.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(render_header("x {{env.PATH}} {{id}}", &state).unwrap(), format!("x {path} 7"));
        assert_eq!(keys("Bearer {{env.PATH}}").unwrap(), Vec::<String>::new());
        assert!(
            keys_outside_headers("Bearer {{ env.PATH }}")
                .unwrap_err()
                .to_string()
                .contains("header values only")
        );
        assert!(json_keys(&json!({"key": "{{env.PATH}}"})).is_err());
        assert_eq!(keys_outside_headers("{{id}}").unwrap(), vec!["id"]);
        assert!(render_text("{{env.PATH}}", &state).unwrap_err().contains("header values only"));
        assert!(render_url("http://x/{{env.PATH}}", &state).unwrap_err().contains("header values only"));
        let missing = render_header("{{env.VIGIL_SURELY_UNSET_VARIABLE}}", &state).unwrap_err();
        assert!(missing.contains("VIGIL_SURELY_UNSET_VARIABLE") && missing.contains("not set"), "{missing}");
        assert!(keys("{{env.}}").is_err() && keys("{{env.A-B}}").is_err());
    }
}
