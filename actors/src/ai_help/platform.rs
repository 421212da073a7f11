//! [`PlatformResponder`]: answers operators' questions from the platform's own state,
//! offline — no model, no network.
//!
//! A question is reduced to lowercase words, matched against the registered agent ids
//! and a few word lists, and classified into one *intent* (an agent's status, stale
//! agents, recent errors, system health, the list of agents, or help). Each intent is
//! answered by reading the shared state: the `agents` rows, their liveness
//! ([`vigil_persistence::presence`]), and the recent `state_transition` events, read
//! as *incidents* (failures, restarts, parks). The answer's metadata names the intent
//! and the agents it is about, so `llm_conversations` shows how a question was read.
//!
//! The [`super::OpenAiResponder`] reuses the same facts to ground a language model's
//! answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use vigil_persistence::StoreError;
use vigil_persistence::duration;
use vigil_persistence::lifecycle::{Cause, State, TransitionRecord};
use vigil_persistence::models::{AgentRecord, HelpRequestRecord};
use vigil_persistence::presence::{AgentView, Liveness};
use vigil_persistence::shared_state::EventFilter;
use vigil_persistence::types::Ts;
use vigil_runtime::AgentContext;

use super::{AiHelpConfig, Answer, Responder, ResponderError};

/// Answers from the platform's own state, offline.
///
/// | the question mentions                         | the answer gives                                   |
/// |-----------------------------------------------|----------------------------------------------------|
/// | a registered agent id (`heartbeat_health`, or in words: "heartbeat health") | its state, last heartbeat, last state change, recent errors and restarts |
/// | stale / unresponsive / silent / not responding | the stale agents and when each was last seen       |
/// | error / fail / crash / restart / problem      | recent failures and restarts across agents          |
/// | health / overview / summary / system          | agents by state, stale agents, recent failures, database |
/// | list / which agents / all agents              | every registered agent and its state                |
/// | anything else                                 | what it can answer, with examples                   |
///
/// Matching is case-insensitive on words, so punctuation and `_`/`-`/space in agent
/// ids do not matter; when one id contains another ("worker" and "worker_2"), the
/// longer match wins.
#[derive(Debug, Clone)]
pub struct PlatformResponder {
    /// Heartbeat age after which an agent is stale.
    stale_after: Duration,
    /// Recent `state_transition` events read for errors and restarts.
    event_scan_limit: i64,
}

impl Default for PlatformResponder {
    fn default() -> Self {
        Self::from_config(&AiHelpConfig::default())
    }
}

/// What a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Intent {
    AgentStatus,
    Stale,
    Errors,
    Health,
    ListAgents,
    Help,
}

const ERROR_WORDS: &[&str] = &[
    "error",
    "errors",
    "fail",
    "fails",
    "failed",
    "failing",
    "failure",
    "failures",
    "crash",
    "crashed",
    "crashes",
    "crashing",
    "panic",
    "panics",
    "panicked",
    "restart",
    "restarts",
    "restarted",
    "restarting",
    "wrong",
    "problem",
    "problems",
    "issue",
    "issues",
    "broken",
];
const STALE_WORDS: &[&str] =
    &["stale", "unresponsive", "silent", "dead", "stuck", "hung", "hanging", "missing", "late"];
const STALE_PHRASES: &[&str] = &["not responding", "no heartbeat", "stopped responding", "not beating"];
const HEALTH_WORDS: &[&str] =
    &["health", "healthy", "overview", "summary", "overall", "system", "everything"];
const LIST_PHRASES: &[&str] =
    &["which agents", "what agents", "all agents", "list agents", "list the agents"];

/// Lowercase words of `text`, joined by single spaces and padded with one on each side,
/// so `" word "` finds whole words and phrases.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

fn has_word(haystack: &str, list: &[&str]) -> bool {
    list.iter().any(|w| haystack.contains(&format!(" {w} ")))
}

impl Intent {
    fn classify(text: &str, mentions_agent: bool) -> Intent {
        let has_phrase = |list: &[&str]| list.iter().any(|p| text.contains(&format!(" {p} ")));
        if mentions_agent {
            Intent::AgentStatus
        } else if has_word(text, STALE_WORDS) || has_phrase(STALE_PHRASES) {
            Intent::Stale
        } else if has_word(text, ERROR_WORDS) {
            Intent::Errors
        } else if has_word(text, HEALTH_WORDS) {
            Intent::Health
        } else if has_phrase(LIST_PHRASES)
            || (has_word(text, &["list", "registered"]) && text.contains(" agent"))
        {
            Intent::ListAgents
        } else {
            Intent::Help
        }
    }
}

/// The registered agents named in `text` (already passed through [`words`]).
fn mentioned_agents<'a>(text: &str, agents: &'a [AgentRecord]) -> Vec<&'a AgentRecord> {
    let found: Vec<(&AgentRecord, String)> = agents
        .iter()
        .map(|a| (a, words(&a.agent_id)))
        .filter(|(_, id)| id.trim().len() > 1 && text.contains(id.as_str()))
        .collect();
    // Drop a match that is part of a longer one ("worker" inside "worker 2").
    found
        .iter()
        .filter(|(_, id)| {
            !found.iter().any(|(_, other)| other.len() > id.len() && other.contains(id.as_str()))
        })
        .map(|(agent, _)| *agent)
        .collect()
}

/// What a recorded transition means for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncidentKind {
    /// The agent failed ([`TransitionRecord::is_failure`]).
    Failed,
    /// Its supervisor restarted it after a failure.
    Restarted,
    /// It was restarted because somebody asked, or with a sibling: not a failure.
    RestartedOnRequest,
    /// It was parked for manual intervention.
    Parked,
}

/// One failure, restart or park, read from a `state_transition` event.
struct Incident {
    kind: IncidentKind,
    record: TransitionRecord,
}

impl Incident {
    fn of(record: TransitionRecord) -> Option<Self> {
        let kind = match (record.to, &record.cause) {
            _ if record.is_failure() => IncidentKind::Failed,
            (State::Recovery, _) if record.is_failure_restart() => IncidentKind::Restarted,
            (State::Recovery, Cause::RestartRequested { .. } | Cause::SiblingRestart { .. }) => {
                IncidentKind::RestartedOnRequest
            }
            (State::Manual, _) => IncidentKind::Parked,
            _ => return None,
        };
        Some(Self { kind, record })
    }

    fn is(&self, kind: IncidentKind) -> bool {
        self.kind == kind
    }

    /// A restart of any kind.
    fn is_restart(&self) -> bool {
        matches!(self.kind, IncidentKind::Restarted | IncidentKind::RestartedOnRequest)
    }
}

/// The stored state's name, or `unknown` for a row without one.
fn state_name(state: Option<State>) -> &'static str {
    state.map_or("unknown", State::as_str)
}

fn ago(ts: Option<vigil_persistence::types::Ts>) -> String {
    match ts {
        None => "never".into(),
        Some(ts) => {
            let secs = (chrono::Utc::now() - ts.get()).num_seconds().max(0);
            let human = match secs {
                0..=119 => format!("{secs}s"),
                120..=7199 => format!("{}m", secs / 60),
                _ => format!("{}h", secs / 3600),
            };
            format!("{ts} ({human} ago)")
        }
    }
}

impl PlatformResponder {
    /// A responder with `config`'s thresholds.
    pub fn from_config(config: &AiHelpConfig) -> Self {
        Self { stale_after: config.stale_after, event_scan_limit: config.event_scan_limit }
    }

    async fn incidents(&self, ctx: &AgentContext) -> Result<Vec<Incident>, StoreError> {
        let transitions = ctx
            .shared_state()
            .recent_transitions(EventFilter { limit: Some(self.event_scan_limit), ..Default::default() })
            .await?;
        Ok(transitions.into_iter().filter_map(Incident::of).collect())
    }

    fn incident_lines(incidents: &[&Incident], max: usize) -> String {
        incidents
            .iter()
            .take(max)
            .map(|i| {
                let what = match i.kind {
                    IncidentKind::Failed => "failed",
                    IncidentKind::Restarted => "restarted",
                    IncidentKind::RestartedOnRequest => "restarted on request",
                    IncidentKind::Parked => "parked for manual intervention",
                };
                let cause = match (&i.record.cause, i.record.cause.failure()) {
                    (_, Some(failure)) => failure.to_string(),
                    (cause, None) => cause.to_string(),
                };
                format!("\n  - {} {} {what}: {cause}", Ts::from(i.record.at), i.record.agent_id)
            })
            .collect()
    }

    async fn agent_report(&self, agent: &AgentRecord, seen: &LiveStates, incidents: &[Incident]) -> String {
        let mine: Vec<&Incident> = incidents.iter().filter(|i| i.record.agent_id == agent.agent_id).collect();
        let errors: Vec<&Incident> = mine.iter().copied().filter(|i| i.is(IncidentKind::Failed)).collect();
        let restarts = mine.iter().filter(|i| i.is_restart()).count();
        let stale = agent
            .last_heartbeat
            .or(agent.created_at)
            .is_some_and(|t| (chrono::Utc::now() - t.get()).to_std().unwrap_or_default() > self.stale_after);
        let mut text = format!(
            "Agent {} ({}) is {}.\n  last heartbeat: {}{}\n  last state change: {}\n  recent errors: {}, restarts: {}",
            agent.agent_id,
            agent.agent_name,
            seen.describe(agent),
            ago(agent.last_heartbeat),
            if stale { " — STALE" } else { "" },
            ago(agent.last_state_change),
            errors.len(),
            restarts,
        );
        if !errors.is_empty() {
            text.push_str("\n  latest errors:");
            text.push_str(&Self::incident_lines(&errors, 3));
        }
        text
    }

    pub(super) async fn answer(
        &self,
        query: &str,
        ctx: &AgentContext,
    ) -> Result<(Intent, String, Vec<String>), StoreError> {
        let shared = ctx.shared_state();
        let agents = shared.get_registered_agents().await?;
        // Whether each agent runs, decided now: a row's state is only its last record.
        let seen = LiveStates::read(shared, &agents).await?;
        let text = words(query);
        let mentioned = mentioned_agents(&text, &agents);
        let intent = Intent::classify(&text, !mentioned.is_empty());
        let ids: Vec<String> = mentioned.iter().map(|a| a.agent_id.clone()).collect();
        let answer = match intent {
            Intent::AgentStatus => {
                let incidents = self.incidents(ctx).await?;
                let mut parts = Vec::new();
                for agent in &mentioned {
                    parts.push(self.agent_report(agent, &seen, &incidents).await);
                }
                parts.join("\n\n")
            }
            Intent::Stale => {
                let stale = shared.get_stale_agents(self.stale_after).await?;
                if stale.is_empty() {
                    format!(
                        "No stale agents: all {} registered agents sent a heartbeat within the last {}.",
                        agents.len(),
                        duration::format(self.stale_after)
                    )
                } else {
                    let lines: String = stale
                        .iter()
                        .map(|a| {
                            format!(
                                "\n  - {} (state {}), last heartbeat {}",
                                a.agent_id,
                                state_name(a.status),
                                ago(a.last_heartbeat)
                            )
                        })
                        .collect();
                    format!(
                        "{} stale agent(s) (no heartbeat within {}):{lines}",
                        stale.len(),
                        duration::format(self.stale_after)
                    )
                }
            }
            Intent::Errors => {
                let incidents = self.incidents(ctx).await?;
                let all: Vec<&Incident> = incidents.iter().collect();
                let errors = all.iter().filter(|i| i.is(IncidentKind::Failed)).count();
                let restarts = all.iter().filter(|i| i.is_restart()).count();
                if all.is_empty() {
                    "No agent failed or restarted recently.".into()
                } else {
                    format!(
                        "Recently: {errors} failure(s) and {restarts} restart(s). Latest:{}",
                        Self::incident_lines(&all, 10)
                    )
                }
            }
            Intent::Health => {
                let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
                for agent in &agents {
                    *by_state.entry(seen.label(agent)).or_default() += 1;
                }
                let states: Vec<String> = by_state.iter().map(|(s, n)| format!("{s}: {n}")).collect();
                let stale = shared.get_stale_agents(self.stale_after).await?;
                let stale_ids: Vec<&str> = stale.iter().map(|a| a.agent_id.as_str()).collect();
                let incidents = self.incidents(ctx).await?;
                // Restarts somebody asked for are not failures.
                let failures = incidents.iter().filter(|i| i.is(IncidentKind::Failed)).count();
                let db = shared.get_database_health().await?;
                let verdict = if stale.is_empty()
                    && failures == 0
                    && by_state.keys().all(|s| {
                        ![State::Error.as_str(), State::Manual.as_str(), SILENT, NOT_RUNNING].contains(s)
                    }) {
                    "healthy"
                } else {
                    "needs attention"
                };
                format!(
                    "System health: {verdict}.\n  agents: {} ({})\n  stale agents: {}\n  recent failures: {failures}\n  database: {:?}, {:.1} ms round trip",
                    agents.len(),
                    if states.is_empty() { "none".into() } else { states.join(", ") },
                    if stale_ids.is_empty() { "none".into() } else { stale_ids.join(", ") },
                    db.status,
                    db.response_time_ms,
                )
            }
            Intent::ListAgents => {
                let lines: String =
                    agents.iter().map(|a| format!("\n  - {}: {}", a.agent_id, seen.describe(a))).collect();
                format!("{} registered agent(s):{lines}", agents.len())
            }
            Intent::Help => {
                // Every built-in agent fits; a large platform is cut short, and says so.
                const SHOWN: usize = 20;
                let mut known: Vec<String> = agents.iter().take(SHOWN).map(|a| a.agent_id.clone()).collect();
                if agents.len() > SHOWN {
                    known.push(format!("and {} more (\"list all agents\")", agents.len() - SHOWN));
                }
                format!(
                    "I answer from the platform's own state. Ask, for example:\n  \
                     - \"what is the status of <agent>?\" (also its recent errors and restarts)\n  \
                     - \"which agents are stale?\"\n  \
                     - \"any errors or restarts lately?\"\n  \
                     - \"how is the system health?\"\n  \
                     - \"list all agents\"\n\
                     Registered agents: {}",
                    if known.is_empty() { "none yet".into() } else { known.join(", ") }
                )
            }
        };
        Ok((intent, answer, ids))
    }
}

const SILENT: &str = "silent";
const NOT_RUNNING: &str = "not running";

/// Each agent's liveness, read once per answer ([`vigil_persistence::presence`]).
struct LiveStates(std::collections::HashMap<String, Liveness>);

impl LiveStates {
    /// Judges `agents` (already read for the answer) against the presences.
    async fn read(
        shared: &vigil_persistence::SharedState,
        agents: &[AgentRecord],
    ) -> Result<Self, StoreError> {
        let platforms = shared.platforms().await?;
        let judged = agents.iter().map(|a| AgentView::assess(a, &platforms));
        Ok(Self(judged.map(|a| (a.agent_id, a.liveness)).collect()))
    }

    fn liveness(&self, agent: &AgentRecord) -> Liveness {
        self.0.get(&agent.agent_id).copied().unwrap_or(Liveness::NotRunning)
    }

    /// The state to count it under: its recorded state while it runs.
    fn label(&self, agent: &AgentRecord) -> &'static str {
        match self.liveness(agent) {
            Liveness::Running => state_name(agent.status),
            Liveness::Silent => SILENT,
            Liveness::NotRunning => NOT_RUNNING,
        }
    }

    /// `in state active`, or `not running (last recorded active)`.
    fn describe(&self, agent: &AgentRecord) -> String {
        match self.liveness(agent) {
            Liveness::Running => format!("in state {}", state_name(agent.status)),
            other => format!("{} (last recorded {})", other.as_str(), state_name(agent.status)),
        }
    }
}

impl Responder for PlatformResponder {
    fn name(&self) -> &str {
        "platform"
    }

    async fn respond(
        &self,
        request: &HelpRequestRecord,
        ctx: &AgentContext,
    ) -> Result<Answer, ResponderError> {
        let (intent, text, agents) = self.answer(&request.query, ctx).await?;
        Ok(Answer::new(text, json!({ "intent": intent, "agents": agents })))
    }
}
