//! Who is running on this database, decided when it is read.
//!
//! A row saying `active` proves only that an agent was active when the row was
//! written. If the process that ran it was killed, the row stays `active` for ever;
//! an operator who trusts it is misled exactly when it matters. So liveness is never
//! read from a state column. It is computed at read time from two facts:
//!
//! 1. **Presence.** Every runtime records a [`Presence`] under the system-state key
//!    `presence:<node>` and renews it every [`RENEW_EVERY`]; a clean shutdown marks it
//!    stopped. A reader decides ([`Presence::verdict`]): stopped; or the process is
//!    gone — when the reader is on the same machine (same boot) it looks the process up
//!    by pid *and* start time, so a `kill -9` is seen at once and a reused pid is not
//!    mistaken for it; or its lease expired — renewed longer ago than
//!    [`LEASE_TIMEOUT`], which is how a process on another machine is judged; or
//!    running.
//! 2. **Heartbeats.** Every agent's heartbeat records the node that runs it and its own
//!    heartbeat interval (in `uptime_details`). An agent is [`Liveness::Running`] when
//!    its node is running and its last heartbeat is younger than
//!    [`SILENT_AFTER_INTERVALS`] of its interval (plus a grace for a busy writer);
//!    [`Liveness::Silent`] when its node runs but it stopped beating; and
//!    [`Liveness::NotRunning`] when nothing runs it.
//!
//! ```no_run
//! # async fn demo(state: vigil_persistence::SharedState) -> Result<(), vigil_persistence::StoreError> {
//! let report = state.liveness().await?;
//! if !report.platform_running() {
//!     println!("no platform is running on this database");
//! }
//! for agent in &report.agents {
//!     println!("{} {:?} {:?}", agent.agent_id, agent.recorded_state, agent.liveness);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};

use crate::backend::with_conn;
use crate::error::StoreError;
use crate::lifecycle::State;
use crate::models::{AgentRecord, SystemStateEntry};
use crate::schema::system_state;
use crate::shared_state::SharedState;
use crate::types::Ts;

/// The prefix of the system-state keys that hold presences.
pub const PRESENCE_PREFIX: &str = "presence:";

/// How often a runtime renews its presence.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// A presence renewed longer ago than this belongs to a process that stopped
/// renewing: three missed renewals plus a grace for a writer that is catching up.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(3 * 5 + 10);

/// An agent whose heartbeat is older than this many of its own intervals (plus
/// [`HEARTBEAT_GRACE`]) is silent.
pub const SILENT_AFTER_INTERVALS: u32 = 2;

/// Slack for heartbeats that wait in the writer's queue.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(5);

/// The heartbeat interval assumed for an agent whose heartbeat did not record its own
/// (written by an older version): the default of `AgentSettings`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The operating-system process a runtime lives in, as another process can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The kernel's boot id (Linux): pids are only comparable within one boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The process's start time in clock ticks since boot (Linux), which tells the
    /// process from a later one that reused its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        let (host, boot_id) = this_machine();
        Self { host: host.clone(), pid, boot_id: boot_id.clone(), start_ticks: process_start_ticks(pid) }
    }

    /// Whether the process is alive, when this machine can tell: `None` for a process
    /// on another machine (or another boot, or a system without `/proc`).
    pub fn is_alive(&self) -> Option<bool> {
        let (host, boot_id) = this_machine();
        if &self.host != host || self.boot_id.is_none() || &self.boot_id != boot_id {
            return None;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return Some(false);
        };
        let (state, start) = parse_stat(&stat)?;
        // A zombie was killed and waits only to be reaped: it runs nothing.
        Some(state != 'Z' && self.start_ticks.is_none_or(|ticks| Some(ticks) == start))
    }
}

/// This machine's host name and boot id, read once per process (every presence judged
/// is compared with them).
fn this_machine() -> &'static (String, Option<String>) {
    static MACHINE: std::sync::OnceLock<(String, Option<String>)> = std::sync::OnceLock::new();
    MACHINE.get_or_init(|| (host_name(), boot_id()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

fn process_start_ticks(pid: u32) -> Option<u64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?.1
}

/// The state letter and start time of a `/proc/<pid>/stat` line. The command name (the
/// second field) is in parentheses and may hold spaces and parentheses itself, so the
/// fields are counted from the last `)`: state is the 3rd field, start time the 22nd.
fn parse_stat(stat: &str) -> Option<(char, Option<u64>)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18).and_then(|ticks| ticks.parse().ok())))
}

/// What a runtime records about itself under `presence:<node>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The node id: `host/pid/n`, `n` counting the runtimes this process started.
    pub node: String,
    /// Its process.
    pub process: ProcessIdentity,
    /// The Vigil version it runs.
    pub version: String,
    /// When it started.
    pub started_at: Ts,
    /// When it last renewed this record.
    pub renewed_at: Ts,
    /// How often it renews.
    pub renew_every_secs: f64,
    /// How many agents its tree holds.
    pub agents: usize,
    /// Set by a clean shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Ts>,
}

impl Presence {
    /// A presence for a new runtime of this process holding `agents` agents.
    pub fn new(node: String, agents: usize) -> Self {
        let now = Ts::now();
        Self {
            node,
            process: ProcessIdentity::current(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: now,
            renewed_at: now,
            renew_every_secs: RENEW_EVERY.as_secs_f64(),
            agents,
            stopped_at: None,
        }
    }

    /// A node id no other runtime has: `host/pid/n`.
    pub fn new_node_id() -> String {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}/{}/{n}", this_machine().0, std::process::id())
    }

    /// The system-state key of this presence.
    pub fn key(&self) -> String {
        format!("{PRESENCE_PREFIX}{}", self.node)
    }

    /// Whether the runtime behind this presence runs, decided now.
    pub fn verdict(&self) -> PlatformVerdict {
        if let Some(at) = self.stopped_at {
            return PlatformVerdict::Stopped { at };
        }
        if self.process.is_alive() == Some(false) {
            return PlatformVerdict::ProcessGone;
        }
        let age = age_of(self.renewed_at);
        let timeout = LEASE_TIMEOUT.max(Duration::from_secs_f64(3.0 * self.renew_every_secs.max(0.0)));
        if age > timeout {
            PlatformVerdict::LeaseExpired { age_secs: age.as_secs_f64() }
        } else {
            PlatformVerdict::Running
        }
    }
}

/// Whether a runtime runs, as decided at read time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum PlatformVerdict {
    /// It renews its presence, and (when this machine can tell) its process is alive.
    Running,
    /// It shut down cleanly.
    Stopped {
        /// When.
        at: Ts,
    },
    /// Its process no longer exists (killed or crashed), seen from the same machine.
    ProcessGone,
    /// It stopped renewing its presence (killed, crashed, frozen or cut off).
    LeaseExpired {
        /// Seconds since its last renewal.
        age_secs: f64,
    },
}

impl PlatformVerdict {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running)
    }
}

impl std::fmt::Display for PlatformVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running => write!(f, "is running"),
            Self::Stopped { at } => write!(f, "stopped cleanly {} ago", human_age(age_of(*at))),
            Self::ProcessGone => write!(f, "is gone: its process was killed or crashed"),
            Self::LeaseExpired { age_secs } => write!(
                f,
                "has not been heard from for {} (killed, crashed, frozen or cut off)",
                human_age(Duration::from_secs_f64(*age_secs))
            ),
        }
    }
}

/// A presence and what was decided about it.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformView {
    /// What the runtime recorded.
    #[serde(flatten)]
    pub presence: Presence,
    /// What that means now.
    pub status: PlatformVerdict,
}

/// Whether an agent runs, as decided at read time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Its node runs and its heartbeat is recent for its interval.
    Running,
    /// Its node runs, but its heartbeat is overdue.
    Silent,
    /// No running node runs it (whatever its row says).
    NotRunning,
}

impl Liveness {
    /// `running`, `silent`, `not running`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Silent => "silent",
            Self::NotRunning => "not running",
        }
    }
}

/// One agent as seen at read time.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// The agent id.
    pub agent_id: String,
    /// The state its row records (true only while it runs).
    pub recorded_state: Option<State>,
    /// The node its last heartbeat came from.
    pub node: Option<String>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: Option<f64>,
    /// Its own heartbeat interval.
    pub heartbeat_interval_secs: f64,
    /// Whether it runs.
    pub liveness: Liveness,
}

impl AgentView {
    /// Judges `agent` against the presences read with it.
    pub fn assess(agent: &AgentRecord, platforms: &[PlatformView]) -> Self {
        let uptime = agent.uptime_details.as_ref().map(|u| &u.0);
        let node = uptime.and_then(|u| u.get("node")).and_then(|n| n.as_str()).map(str::to_owned);
        let interval = uptime
            .and_then(|u| u.get("heartbeat_interval_secs"))
            .and_then(serde_json::Value::as_f64)
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .map_or(DEFAULT_HEARTBEAT_INTERVAL, Duration::from_secs_f64);
        let age = agent.last_heartbeat.map(age_of);
        let node_runs = node
            .as_deref()
            .is_some_and(|node| platforms.iter().any(|p| p.presence.node == node && p.status.is_running()));
        let overdue = interval * SILENT_AFTER_INTERVALS + HEARTBEAT_GRACE;
        let liveness = match (node_runs, age) {
            (false, _) => Liveness::NotRunning,
            (true, Some(age)) if age <= overdue => Liveness::Running,
            (true, _) => Liveness::Silent,
        };
        Self {
            agent_id: agent.agent_id.clone(),
            recorded_state: agent.status,
            node,
            heartbeat_age_secs: age.map(|a| a.as_secs_f64()),
            heartbeat_interval_secs: interval.as_secs_f64(),
            liveness,
        }
    }
}

/// Every runtime and agent on the database, judged at read time.
#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    /// Presences, the most recently renewed first.
    pub platforms: Vec<PlatformView>,
    /// Agents, by id.
    pub agents: Vec<AgentView>,
}

impl LivenessReport {
    /// Whether any runtime runs on the database.
    pub fn platform_running(&self) -> bool {
        self.platforms.iter().any(|p| p.status.is_running())
    }

    /// The running runtimes.
    pub fn running(&self) -> impl Iterator<Item = &PlatformView> {
        self.platforms.iter().filter(|p| p.status.is_running())
    }

    /// The most recently renewed presence, running or not.
    pub fn last_platform(&self) -> Option<&PlatformView> {
        <[PlatformView]>::first(&self.platforms)
    }

    /// Healthy: a runtime runs, and every agent of a running runtime runs and is
    /// `active`. (Agents whose runtime is gone are reported, not counted: they may be
    /// left over from an embedding application that no longer runs them.)
    pub fn healthy(&self) -> bool {
        self.platform_running()
            && self
                .agents
                .iter()
                .filter(|a| a.liveness != Liveness::NotRunning)
                .all(|a| a.liveness == Liveness::Running && a.recorded_state == Some(State::Active))
    }

    /// "no platform is running on this database" with what is known of the last one.
    pub fn no_platform_message(&self, database: &str) -> String {
        match self.last_platform() {
            None => format!("no platform is running on {database} (none has ever run there)"),
            Some(last) => format!(
                "no platform is running on {database}: the last one (pid {} on {}, node {}) {}",
                last.presence.process.pid, last.presence.process.host, last.presence.node, last.status
            ),
        }
    }
}

impl SharedState {
    /// Every recorded presence (the 100 most recently renewed).
    pub async fn presences(&self) -> Result<Vec<Presence>, StoreError> {
        let pattern = format!("{PRESENCE_PREFIX}%");
        let entries: Vec<SystemStateEntry> = self
            .store()
            .run(move |inner| {
                let pattern = pattern.clone();
                async move {
                    with_conn!(inner, |conn| Ok(system_state::table
                        .filter(system_state::key.like(&pattern))
                        .order(system_state::updated_at.desc())
                        .limit(100)
                        .select(SystemStateEntry::as_select())
                        .load(conn)
                        .await?))
                }
            })
            .await?;
        // A presence that does not parse (written by a future version) is skipped.
        let mut presences: Vec<Presence> =
            entries.into_iter().filter_map(|e| serde_json::from_value(e.value.0).ok()).collect();
        presences.sort_by_key(|p| std::cmp::Reverse(p.renewed_at.get()));
        Ok(presences)
    }

    /// Every recorded presence with its verdict, decided now.
    pub async fn platforms(&self) -> Result<Vec<PlatformView>, StoreError> {
        let presences = self.presences().await?;
        Ok(presences
            .into_iter()
            .map(|presence| PlatformView { status: presence.verdict(), presence })
            .collect())
    }

    /// Runtimes and agents, judged now (see the [module documentation](self)).
    pub async fn liveness(&self) -> Result<LivenessReport, StoreError> {
        let platforms = self.platforms().await?;
        let agents =
            self.get_registered_agents().await?.iter().map(|a| AgentView::assess(a, &platforms)).collect();
        Ok(LivenessReport { platforms, agents })
    }

    /// Queues `presence` for the writer (not awaited: a runtime renewing its presence
    /// during an outage must not stall; the writer keeps it until the database is back).
    pub async fn record_presence(&self, presence: &Presence) -> Result<(), StoreError> {
        let value = serde_json::to_value(presence)
            .map_err(|e| StoreError::InvalidInput { field: "presence", reason: e.to_string() })?;
        self.set_system_state(&presence.key(), value).enqueue().await
    }
}

/// How long ago `at` was (zero for a time in the future).
pub fn age_of(at: Ts) -> Duration {
    (Utc::now() - at.get()).to_std().unwrap_or_default()
}

/// `4.2s`, `3m12s`, `2h05m`, `3d04h`.
pub fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{:.1}s", age.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_stat(stat), Some(('S', Some(987654))));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_it() {
        let me = ProcessIdentity::current();
        if me.boot_id.is_none() {
            eprintln!("no /proc here: process checks are not possible, skipping");
            return;
        }
        assert_eq!(me.is_alive(), Some(true));
        let reused = ProcessIdentity { start_ticks: me.start_ticks.map(|t| t + 1), ..me.clone() };
        assert_eq!(reused.is_alive(), Some(false), "same pid, other start time: another process");
        let elsewhere = ProcessIdentity { host: format!("{}-elsewhere", me.host), ..me };
        assert_eq!(elsewhere.is_alive(), None, "a process on another machine cannot be looked up");
    }

    #[test]
    fn verdicts_follow_stop_marks_and_lease_age() {
        let mut presence = Presence::new(Presence::new_node_id(), 3);
        assert_eq!(presence.verdict(), PlatformVerdict::Running);
        presence.process.host = "another-machine".into();
        presence.renewed_at = Ts::from(Utc::now() - chrono::Duration::seconds(60));
        assert!(matches!(presence.verdict(), PlatformVerdict::LeaseExpired { age_secs } if age_secs >= 59.0));
        presence.renewed_at = Ts::now();
        assert_eq!(presence.verdict(), PlatformVerdict::Running, "another machine: the lease decides");
        presence.stopped_at = Some(Ts::now());
        assert!(matches!(presence.verdict(), PlatformVerdict::Stopped { .. }));
    }

    fn agent(node: &str, interval_secs: f64, heartbeat_secs_ago: i64) -> AgentRecord {
        AgentRecord {
            id: 1,
            agent_id: "probe".into(),
            agent_name: "Probe".into(),
            status: Some(State::Active),
            last_heartbeat: Some(Ts::from(Utc::now() - chrono::Duration::seconds(heartbeat_secs_ago))),
            last_state_change: None,
            uptime_details: Some(crate::types::Json(
                serde_json::json!({ "node": node, "heartbeat_interval_secs": interval_secs }),
            )),
            metrics: None,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn an_agent_runs_only_while_its_node_runs_and_it_beats_on_its_own_interval() {
        let running = Presence::new(Presence::new_node_id(), 1);
        let mut stopped = Presence::new(Presence::new_node_id(), 1);
        stopped.stopped_at = Some(Ts::now());
        let platforms: Vec<PlatformView> = [running.clone(), stopped.clone()]
            .into_iter()
            .map(|presence| PlatformView { status: presence.verdict(), presence })
            .collect();
        let judge =
            |node: &str, interval, ago| AgentView::assess(&agent(node, interval, ago), &platforms).liveness;
        assert_eq!(judge(&running.node, 1.0, 0), Liveness::Running);
        // Its own interval decides: 1 s beats, 2 × 1 s + 5 s grace, so 30 s is silent...
        assert_eq!(judge(&running.node, 1.0, 30), Liveness::Silent);
        // ... while an agent beating every 60 s is fine at 30 s.
        assert_eq!(judge(&running.node, 60.0, 30), Liveness::Running);
        assert_eq!(judge(&stopped.node, 1.0, 0), Liveness::NotRunning, "a fresh row of a stopped node");
        assert_eq!(judge("elsewhere/1/1", 1.0, 0), Liveness::NotRunning, "a node nobody recorded");
        let report = LivenessReport {
            platforms: platforms.clone(),
            agents: vec![AgentView::assess(&agent(&running.node, 1.0, 30), &platforms)],
        };
        assert!(report.platform_running() && !report.healthy(), "a silent agent is not healthy");
        let report = LivenessReport { platforms: platforms[1..].to_vec(), agents: vec![] };
        assert!(!report.platform_running() && !report.healthy(), "no platform: not healthy");
        assert!(report.no_platform_message("db").contains("stopped cleanly"));
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(human_age(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human_age(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_age(Duration::from_secs(7500)), "2h05m");
        assert_eq!(human_age(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
    }
}
