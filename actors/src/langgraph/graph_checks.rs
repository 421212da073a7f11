//! The graph-wide checks of a workflow file, run once every edge names real nodes:
//! reachability from `start`, a way to `end` from every node, and the state keys
//! templates read against the keys that can exist by then.
//!
//! A key can exist before node N when it is one of the file's `inputs` or written by a
//! node that can run before N (a predecessor, transitively). A `command` node without
//! `outputs` may write anything, so after it the check is undecidable and skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::workflow_file::{END_NAME, WorkflowSpec};

/// Every node reachable from `from` along `next` (not including `from` unless on a loop).
fn closure<'a>(from: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for n in next.get(at).into_iter().flatten() {
            if seen.insert(*n) {
                queue.push_back(n);
            }
        }
    }
    seen
}

/// The problems found: (node, problem); `None` for the graph as a whole.
pub(crate) fn check(spec: &WorkflowSpec) -> Vec<(Option<String>, String)> {
    let mut issues = Vec::new();
    let mut forward: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut backward: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, edge) in &spec.edges {
        for to in edge.targets() {
            forward.entry(from.as_str()).or_default().push(to);
            backward.entry(to).or_default().push(from.as_str());
        }
    }
    let mut reached = closure(&spec.start, &forward);
    reached.insert(&spec.start);
    for node in &spec.nodes {
        if !reached.contains(node.name.as_str()) {
            issues.push((
                Some(node.name.clone()),
                format!("cannot be reached from `start` (`{}`)", spec.start),
            ));
        }
    }
    let reaches_end = closure(END_NAME, &backward);
    if !reaches_end.contains(spec.start.as_str()) {
        issues.push((
            None,
            format!("the graph has no end: no path from `{}` reaches `{END_NAME}`", spec.start),
        ));
    } else {
        for node in spec.nodes.iter().filter(|n| reached.contains(n.name.as_str())) {
            if !reaches_end.contains(node.name.as_str()) {
                issues.push((
                    Some(node.name.clone()),
                    format!("can never reach `{END_NAME}` (a loop with no way out)"),
                ));
            }
        }
    }
    let by_name: BTreeMap<&str, _> = spec.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for node in &spec.nodes {
        let reads = match node.reads() {
            Ok(reads) => reads,
            Err(e) => {
                issues.push((Some(node.name.clone()), e.to_string()));
                continue;
            }
        };
        let before = closure(&node.name, &backward);
        let mut available: BTreeSet<String> = spec.inputs.iter().cloned().collect();
        let mut decidable = true;
        for name in &before {
            match by_name.get(name).and_then(|n| n.writes()) {
                Some(keys) => available.extend(keys),
                None => decidable = false,
            }
        }
        if !decidable {
            continue;
        }
        for key in reads.iter().collect::<BTreeSet<_>>() {
            if !available.contains(key) {
                issues.push((
                    Some(node.name.clone()),
                    format!("a template names `{key}`, which neither `inputs` nor any node before this one produces"),
                ));
            }
        }
        let Some(own) = node.writes() else { continue };
        available.extend(own);
        for case in spec.edges.get(&node.name).map(|e| e.when.as_slice()).unwrap_or_default() {
            let root = case.key.split('.').next().unwrap_or_default();
            if !available.contains(root) {
                issues.push((
                    Some(node.name.clone()),
                    format!("an edge condition reads `{}`, which no node up to this one produces", case.key),
                ));
            }
        }
    }
    issues
}
