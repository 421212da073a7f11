//! `vigil run` as a cluster: three processes on one PostgreSQL database, each a node.
//! The ten built-in agents spread over them, each exactly once; a node killed with
//! `kill -9` has its agents running on the survivors within two lease periods; a node
//! frozen with `SIGSTOP` past its lease is fenced — the others take its agents over,
//! and when it thaws its late writes are refused and counted and it stops them; no
//! agent is ever owned by two nodes at once (the ownership log's intervals never
//! overlap); `vigil agent restart` reaches the node that runs the agent. Waits poll
//! `vigil status`/`vigil nodes` with a deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_persistence::testing::{TestDb, assert_no_overlapping_ownership};
use vigil_persistence::{DatabaseConfig, Store};

use crate::cli::{block_on, pg_url, temp_dir, vigil};
use crate::run::stop_with_sigterm;

const DEADLINE: Duration = Duration::from_secs(120);
const LEASE: Duration = Duration::from_secs(3);
const AGENTS: usize = 10;

/// A `vigil run` node; its stderr goes to `dir/<name>.log`.
struct Node {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, url: &str, name: &str) -> Node {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["--database-url", url, "run", "--no-status", "--lease", "3s", "--node-id", name])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log"))
            .spawn()
            .expect("start vigil run");
        Node { name: name.to_owned(), child, log }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([format!("-{signal}"), self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.name);
    }

    /// SIGTERM, then waits for a clean exit; returns its log.
    fn stop(mut self) -> String {
        stop_with_sigterm(&mut self.child, &self.log)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil status --json`: each agent's owner, for agents that run (active, running).
fn running_owners(dir: &Path, url: &str) -> HashMap<String, String> {
    let out = vigil(dir, &["--database-url", url, "status", "--json"]);
    let Ok(status) = serde_json::from_slice::<Value>(&out.stdout) else { return HashMap::new() };
    status["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["recorded_state"] == "active" && a["liveness"] == "running")
        .filter_map(|a| Some((a["agent_id"].as_str()?.to_owned(), a["owner"].as_str()?.to_owned())))
        .collect()
}

/// Polls `probe` every 200 ms until it gives a value, within [`DEADLINE`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn per_node(owners: &HashMap<String, String>) -> HashMap<String, usize> {
    owners.values().fold(HashMap::new(), |mut counts, node| {
        *counts.entry(node.clone()).or_default() += 1;
        counts
    })
}

/// No two ownership intervals of one agent overlap, by the server's clock.
fn assert_no_overlap(url: &str) {
    let log = block_on(async {
        let store = Store::connect(DatabaseConfig::postgres(url).unwrap()).await.unwrap();
        store.ownership_log(None).await.unwrap()
    });
    assert_no_overlapping_ownership(&log);
}

#[test]
fn three_nodes_spread_survive_a_kill_and_fence_a_frozen_node() {
    let Some(db) = block_on(TestDb::postgres()) else { return };
    let url = pg_url(&db);
    let dir = temp_dir();
    let out = vigil(&dir, &["--database-url", &url, "migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let started = Instant::now();
    let a = Node::start(&dir, &url, "node-a");
    let b = Node::start(&dir, &url, "node-b");
    let c = Node::start(&dir, &url, "node-c");
    let placed = wait_for("the ten agents spread over three nodes, each running once", || {
        let owners = running_owners(&dir, &url);
        let counts = per_node(&owners);
        (owners.len() == AGENTS && counts.len() == 3 && counts.values().all(|n| *n >= 3)).then_some(owners)
    });
    eprintln!("placed over three nodes in {:?}: {:?}", started.elapsed(), per_node(&placed));
    // Each node's own view (`vigil nodes`): every agent in exactly one node's list.
    let nodes: Value =
        serde_json::from_slice(&vigil(&dir, &["--database-url", &url, "nodes", "--json"]).stdout)
            .expect("nodes --json");
    let mut listed: Vec<String> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["agents"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()))
        .collect();
    listed.sort();
    let mut expected: Vec<String> = placed.keys().cloned().collect();
    expected.sort();
    assert_eq!(listed, expected, "{nodes}");

    // The control plane reaches the owner: a restart of an agent c runs, asked from
    // another shell, is carried out by c.
    let on_c =
        placed.iter().find(|(_, node)| *node == "node-c").map(|(id, _)| id.clone()).expect("c runs agents");
    let out = vigil(&dir, &["--database-url", &url, "agent", "restart", &on_c]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("active again"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        running_owners(&dir, &url).get(&on_c).map(String::as_str),
        Some("node-c"),
        "restarted where it runs"
    );

    // kill -9: the survivors run b's agents within two lease periods.
    b.signal("KILL");
    let killed = Instant::now();
    let after_kill = wait_for("b's agents running on a and c", || {
        let owners = running_owners(&dir, &url);
        (owners.len() == AGENTS && owners.values().all(|n| n != "node-b")).then_some(owners)
    });
    let failover = killed.elapsed();
    eprintln!("failover after kill -9: {failover:?} (lease {LEASE:?}): {:?}", per_node(&after_kill));
    assert!(failover < 2 * LEASE + Duration::from_secs(2), "within two lease periods: {failover:?}");

    // SIGSTOP c past its lease: a takes its agents over; thawed, c's late writes are
    // refused (its agents' last transitions carry the old epoch) and it stops them.
    c.signal("STOP");
    let frozen = Instant::now();
    wait_for("a runs every agent while c is frozen", || {
        let owners = running_owners(&dir, &url);
        (owners.len() == AGENTS && owners.values().all(|n| n == "node-a")).then_some(())
    });
    eprintln!("frozen node's agents taken over after {:?}", frozen.elapsed());
    c.signal("CONT");
    // Thawed, c rejoins the placement: the cluster spreads again over a and c.
    wait_for("the agents spread over a and c again", || {
        let counts = per_node(&running_owners(&dir, &url));
        (counts.values().sum::<usize>() == AGENTS && counts.get("node-c").is_some_and(|n| *n >= 4))
            .then_some(())
    });
    assert_no_overlap(&url);
    let c_log = c.stop();
    let fenced = c_log
        .lines()
        .find_map(|line| {
            line.split("; ").find_map(|part| {
                part.strip_suffix(" late writes refused (fenced: another node had taken their agents over)")
            })
        })
        .and_then(|n| n.parse::<u64>().ok());
    eprintln!("late writes of the frozen node refused: {fenced:?}");
    assert!(fenced.is_some_and(|n| n > 0), "the thawed node's late writes were refused and counted: {c_log}");
    let a_log = a.stop();
    assert!(!a_log.contains("late writes refused"), "{a_log}");
    assert_no_overlap(&url);
}
