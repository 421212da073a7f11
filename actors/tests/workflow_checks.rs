//! Workflow files: every validation error names the file, the node and the problem,
//! all of a file's problems are reported at once, and a changed file is a new version.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vigil_actors::langgraph::workflow_file::{WorkflowErrors, load_dir, load_file};

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let id = RandomState::new().hash_one(std::time::SystemTime::now());
    let dir = std::env::temp_dir().join(format!("vigil-{tag}-{id:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn write(dir: &Path, name: &str, document: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    path
}

/// A valid file using every node kind and a conditional edge.
pub(crate) fn triage(base_url: &str) -> Value {
    json!({
        "name": "triage",
        "version": "1",
        "start": "fetch",
        "inputs": ["ticket_id"],
        "nodes": [
            // A secret from the platform's environment, in a header (cargo sets
            // CARGO_PKG_NAME for every test process).
            {"name": "fetch", "kind": "http", "url": format!("{base_url}/tickets/{{{{ticket_id}}}}"), "output": "ticket",
             "headers": {"Authorization": "Bearer {{env.CARGO_PKG_NAME}}"}},
            {"name": "classify", "kind": "llm", "prompt": "Classify: {{ticket.body.text}}", "output": "class", "format": "json"},
            {"name": "approve", "kind": "approval"},
            {"name": "page", "kind": "command", "program": "sh", "args": ["-c", "cat >/dev/null; echo '{\"paged\": true}'"], "outputs": ["paged"]}
        ],
        "edges": [
            {"from": "fetch", "to": "classify"},
            {"from": "classify", "when": [{"key": "class.urgent", "equals": true, "to": "approve"}], "default": "end"},
            {"from": "approve", "to": "page"},
            {"from": "page", "to": "end"}
        ]
    })
}

fn problems(dir: &Path, document: &Value) -> Vec<String> {
    let path = write(dir, "wf.json", document);
    match load_file(&path) {
        Ok(spec) => panic!("expected problems, loaded {}", spec.key()),
        Err(WorkflowErrors(issues)) => issues
            .iter()
            .map(|issue| {
                assert_eq!(issue.file, path, "every issue names the file");
                issue.to_string()
            })
            .collect(),
    }
}

fn edit(f: impl FnOnce(&mut Value)) -> Value {
    let mut document = triage("http://127.0.0.1:9");
    f(&mut document);
    document
}

#[test]
fn every_validation_error_names_the_file_the_node_and_the_problem() {
    let dir = temp_dir("wf-check");
    let node = |name: &str, kind: &str| json!({"name": name, "kind": kind});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown kind",
            edit(|d| d["nodes"][2] = node("approve", "email")),
            "node `approve`: unknown kind `email`: expected one of http, command, llm, approval",
        ),
        (
            "unknown field",
            edit(|d| d["nodes"][0]["urll"] = json!("x")),
            "node `fetch`: http node: unknown field `urll`",
        ),
        (
            "edge to a missing node",
            edit(|d| d["edges"][0]["to"] = json!("nowhere")),
            "node `fetch`: an edge goes to `nowhere`, which is not a node",
        ),
        (
            "edge from a missing node",
            edit(|d| d["edges"].as_array_mut().unwrap().push(json!({"from": "ghost", "to": "end"}))),
            "an edge leaves `ghost`, which is not a node",
        ),
        (
            "conditional target missing",
            edit(|d| d["edges"][1]["when"][0]["to"] = json!("apprve")),
            "node `classify`: an edge goes to `apprve`",
        ),
        (
            "unreachable node",
            edit(|d| {
                d["nodes"].as_array_mut().unwrap().push(node("island", "approval"));
                d["edges"].as_array_mut().unwrap().push(json!({"from": "island", "to": "end"}));
            }),
            "node `island`: cannot be reached from `start` (`fetch`)",
        ),
        (
            "no end",
            edit(|d| {
                d["edges"][1] = json!({"from": "classify", "to": "approve"});
                d["edges"][3] = json!({"from": "page", "to": "fetch"});
            }),
            "the graph has no end: no path from `fetch` reaches `end`",
        ),
        (
            "a loop with no way out",
            edit(|d| d["edges"][3] = json!({"from": "page", "to": "approve"})),
            "node `page`: can never reach `end`",
        ),
        (
            "template naming an unknown key",
            edit(|d| d["nodes"][0]["url"] = json!("http://x/{{ticket_idd}}")),
            "node `fetch`: a template names `ticket_idd`, which neither `inputs` nor any node before this one produces",
        ),
        (
            "template naming a later key",
            edit(|d| d["nodes"][1]["prompt"] = json!("{{paged}}")),
            "node `classify`: a template names `paged`",
        ),
        (
            "condition on an unknown key",
            edit(|d| d["edges"][1]["when"][0]["key"] = json!("klass.urgent")),
            "node `classify`: an edge condition reads `klass.urgent`",
        ),
        (
            "unclosed template",
            edit(|d| d["nodes"][1]["prompt"] = json!("{{ticket")),
            "node `classify`: bad template",
        ),
        (
            "an environment variable outside a header",
            edit(|d| d["nodes"][0]["url"] = json!("http://x/{{ticket_id}}?key={{env.API_KEY}}")),
            "node `fetch`: bad template in `http://x/{{ticket_id}}?key={{env.API_KEY}}`: `{{env.NAME}}` is allowed in header values only",
        ),
        (
            "no outgoing edge",
            edit(|d| {
                d["edges"].as_array_mut().unwrap().pop();
            }),
            "node `page`: has no outgoing edge",
        ),
        (
            "two outgoing edges",
            edit(|d| d["edges"].as_array_mut().unwrap().push(json!({"from": "fetch", "to": "end"}))),
            "node `fetch`: has more than one outgoing edge",
        ),
        (
            "duplicate node",
            edit(|d| d["nodes"].as_array_mut().unwrap().push(node("approve", "approval"))),
            "node `approve`: is defined twice",
        ),
        (
            "reserved name",
            edit(|d| d["nodes"].as_array_mut().unwrap().push(node("end", "approval"))),
            "node `end`: a node name must be 1 to 120 characters and not `end`",
        ),
        (
            "missing start",
            edit(|d| d["start"] = json!("begin")),
            "`start` names `begin`, which is not a node",
        ),
        (
            "conditional edge without default",
            edit(|d| {
                d["edges"][1].as_object_mut().unwrap().remove("default");
            }),
            "node `classify`: a conditional edge needs a `default`",
        ),
        (
            "case with two tests",
            edit(|d| d["edges"][1]["when"][0]["gt"] = json!(1)),
            "node `classify`: the case on `class.urgent` needs exactly one of",
        ),
        (
            "bad fail_on",
            edit(|d| d["nodes"][0]["fail_on"] = json!(["6xx"])),
            "node `fetch`: `fail_on`: `6xx` is not a status code",
        ),
        ("bad duration", edit(|d| d["nodes"][0]["timeout"] = json!("soon")), "node `fetch`: `timeout`:"),
        (
            "retries out of range",
            edit(|d| d["nodes"][0]["retries"] = json!(-1)),
            "node `fetch`: `retries` must be a whole number from 0 to 10",
        ),
        (
            "approval with a timeout",
            edit(|d| d["nodes"][2]["timeout"] = json!("1s")),
            "node `approve`: an approval node takes no `retries` or `timeout`",
        ),
        (
            "node without a name",
            edit(|d| {
                d["nodes"][2].as_object_mut().unwrap().remove("name");
            }),
            "node `#3`: every node needs a `name`",
        ),
        ("zero max_steps", edit(|d| d["max_steps"] = json!(0)), "`max_steps` must be at least 1"),
        (
            "unknown top-level field",
            edit(|d| d["nodez"] = json!([])),
            "not a workflow: unknown field `nodez`",
        ),
    ];
    for (what, document, expected) in cases {
        let found = problems(&dir, &document);
        assert!(found.iter().any(|p| p.contains(expected)), "{what}: expected `{expected}` in {found:#?}");
        assert!(found.iter().all(|p| p.starts_with(&dir.join("wf.json").display().to_string())), "{found:?}");
    }
    std::fs::write(dir.join("bad.json"), "{ not json").unwrap();
    let err = load_file(&dir.join("bad.json")).unwrap_err().to_string();
    assert!(err.contains("bad.json: not JSON: key must be a string at line 1 column 3"), "{err}");
    // All of a file's problems at once, one per line.
    let many = problems(
        &dir,
        &edit(|d| {
            d["nodes"][2]["kind"] = json!("email");
            d["edges"][0]["to"] = json!("nowhere");
        }),
    );
    assert_eq!(many.len(), 2, "{many:#?}");
}

#[test]
fn templates_after_a_command_without_outputs_are_not_judged() {
    let dir = temp_dir("wf-undecidable");
    let document = edit(|d| {
        d["nodes"][3].as_object_mut().unwrap().remove("outputs");
        d["nodes"][3]["args"] = json!(["{{whatever}}"]);
        d["edges"][3] = json!({"from": "page", "when": [{"key": "made_by_page", "exists": true, "to": "end"}], "default": "end"});
    });
    let problems = load_file(&write(&dir, "wf.json", &document));
    // `whatever` is read by `page` itself, after nodes that are all known: still judged.
    assert!(problems.unwrap_err().to_string().contains("names `whatever`"));
    let document = edit(|d| {
        d["nodes"][3].as_object_mut().unwrap().remove("outputs");
        d["edges"][3] = json!({"from": "page", "when": [{"key": "made_by_page", "exists": true, "to": "end"}], "default": "end"});
    });
    load_file(&write(&dir, "wf.json", &document)).expect("a key a command may have written is not judged");
}

#[test]
fn a_folder_loads_every_file_and_a_changed_file_is_a_new_version() {
    let dir = temp_dir("wf-dir");
    write(&dir, "triage.json", &triage("http://127.0.0.1:9"));
    std::fs::write(dir.join("notes.txt"), "not a workflow").unwrap();
    let first = load_dir(&dir).unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].key().starts_with("triage@1+"), "{}", first[0].key());
    write(&dir, "triage.json", &edit(|d| d["max_steps"] = json!(10)));
    let second = load_dir(&dir).unwrap();
    assert_ne!(first[0].key(), second[0].key(), "same declared version, different content");
    write(&dir, "copy.json", &triage("http://127.0.0.1:9"));
    let err = load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("workflow `triage` is also defined in"), "{err}");
}

#[test]
fn cases_test_equality_comparison_and_presence() {
    use vigil_actors::langgraph::workflow_file::Case;
    let case = |test: Value| -> Case {
        let mut document = json!({"key": "a.b", "to": "x"});
        document.as_object_mut().unwrap().extend(test.as_object().unwrap().clone());
        serde_json::from_value(document).unwrap()
    };
    let state = json!({"a": {"b": 5, "nothing": null}});
    let holds = |test: Value| case(test).holds(&state);
    assert!(holds(json!({"equals": 5})) && !holds(json!({"equals": "5"})));
    assert!(holds(json!({"not_equals": 4})) && !holds(json!({"not_equals": 5})));
    assert!(holds(json!({"gt": 4})) && !holds(json!({"gt": 5})) && holds(json!({"gte": 5})));
    assert!(holds(json!({"lt": 6})) && !holds(json!({"lt": 5})) && holds(json!({"lte": 5})));
    assert!(holds(json!({"exists": true})) && !holds(json!({"exists": false})));
    let missing = |test: Value| {
        let mut c = case(test);
        c.key = "a.nothing".into();
        c.holds(&state)
    };
    assert!(missing(json!({"exists": false})), "null counts as absent");
    assert!(!missing(json!({"gt": 0})), "a comparison needs a number");
    assert!(missing(json!({"not_equals": 1})), "a missing key is not equal");
}
