//! Incidents: what the evaluator observed, folded so that one incident gives one
//! `firing` and one `resolved` per webhook, whatever the number of observations.
//!
//! The [`IncidentBook`] holds the open incidents by key (`rule:subject`). The
//! evaluator feeds it each pass — the silent agents found ([`IncidentBook::observe_silent`])
//! and the new events ([`IncidentBook::observe_event`]) — and then asks for the
//! [`Notification`]s to send ([`IncidentBook::notifications`]): a `firing` to each
//! webhook that accepts an incident and has not heard of it (so an incident whose
//! severity rises later reaches the webhooks that only take the higher one), and a
//! `resolved` to each webhook that got its `firing`. Pure: time is passed in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tokio::time::{Duration, Instant};
use vigil_persistence::Severity;
use vigil_persistence::alert_deliveries::AlertStatus;
use vigil_persistence::models::SystemEventRecord;

use super::config::WebhookConfig;

/// The longest incident key stored (the `alert_deliveries.incident_key` column).
const MAX_KEY_CHARS: usize = 255;

/// The rule of the agents that stopped heartbeating.
pub const AGENT_SILENT: &str = "agent_silent";
/// The rule of severe system events.
pub const EVENT: &str = "event";

/// One incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// `rule:subject`, at most 255 characters.
    pub key: String,
    /// [`AGENT_SILENT`] or [`EVENT`].
    pub rule: &'static str,
    /// What a webhook's `event_types` matches: `agent_silent`, or the event's type.
    pub incident_type: String,
    /// The agent (`agent_silent`), or `event_type` and the event's agent
    /// (`critical_health_alert/worker-1`).
    pub subject: String,
    /// The worst severity seen.
    pub severity: Severity,
    /// One line for people.
    pub summary: String,
    /// When it was first observed.
    pub started_at: DateTime<Utc>,
    /// When it ended, once it has.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The first event, for the event rule.
    pub event: Option<serde_json::Value>,
    /// Events folded into it (the first included).
    pub occurrences: u64,
    /// When it was last observed (the event rule's quiet period counts from here).
    last_seen: Instant,
    /// The webhooks (by index) sent its `firing`.
    notified: BTreeSet<usize>,
}

/// A notification for one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// The incident as it stands.
    pub incident: Incident,
}

/// The open incidents.
#[derive(Debug, Default)]
pub struct IncidentBook {
    open: BTreeMap<String, Incident>,
}

fn key_of(rule: &str, subject: &str) -> String {
    format!("{rule}:{subject}").chars().take(MAX_KEY_CHARS).collect()
}

impl IncidentBook {
    /// An agent found silent: opens its incident, or keeps it open.
    pub fn observe_silent(&mut self, agent_id: &str, age: Duration, interval: Duration, now: Instant) {
        let key = key_of(AGENT_SILENT, agent_id);
        let summary = format!(
            "agent `{agent_id}` stopped heartbeating: last heartbeat {:.1}s ago (interval {:.1}s)",
            age.as_secs_f64(),
            interval.as_secs_f64()
        );
        self.open
            .entry(key.clone())
            .or_insert_with(|| Incident {
                key,
                rule: AGENT_SILENT,
                incident_type: AGENT_SILENT.into(),
                subject: agent_id.into(),
                severity: Severity::Critical,
                summary,
                started_at: Utc::now(),
                resolved_at: None,
                event: None,
                occurrences: 1,
                last_seen: now,
                notified: BTreeSet::new(),
            })
            .last_seen = now;
    }

    /// Resolves every open `agent_silent` incident whose agent is not in `silent`
    /// (it beats again, was stopped on purpose, or is no longer run).
    pub fn settle_silent(&mut self, silent: &BTreeSet<String>) {
        for incident in self.open.values_mut() {
            if incident.rule == AGENT_SILENT
                && incident.resolved_at.is_none()
                && !silent.contains(&incident.subject)
            {
                incident.resolved_at = Some(Utc::now());
                incident.summary = format!("agent `{}` heartbeats again (or was stopped)", incident.subject);
            }
        }
    }

    /// A severe event: opens the incident of its type and agent, or folds it into the
    /// open one (a repeat: no new alert).
    pub fn observe_event(&mut self, event: &SystemEventRecord, severity: Severity, now: Instant) {
        let data = event.event_data.as_ref().map(|d| &d.0);
        let agent = data.and_then(|d| d.get("agent_id").or_else(|| d.get("agent"))).and_then(|a| a.as_str());
        let subject = match agent {
            Some(agent) => format!("{}/{agent}", event.event_type),
            None => event.event_type.clone(),
        };
        let key = key_of(EVENT, &subject);
        match self.open.get_mut(&key) {
            Some(incident) => {
                incident.last_seen = now;
                incident.occurrences += 1;
                incident.severity = incident.severity.max(severity);
            }
            None => {
                let on = agent.map(|a| format!(" (agent `{a}`)")).unwrap_or_default();
                let incident = Incident {
                    key: key.clone(),
                    rule: EVENT,
                    incident_type: event.event_type.clone(),
                    subject,
                    severity,
                    summary: format!("{severity} event `{}`{on}", event.event_type),
                    started_at: Utc::now(),
                    resolved_at: None,
                    event: serde_json::to_value(event).ok(),
                    occurrences: 1,
                    last_seen: now,
                    notified: BTreeSet::new(),
                };
                self.open.insert(key, incident);
            }
        }
    }

    /// Resolves every event incident whose event has not recurred for `quiet`.
    pub fn settle_events(&mut self, quiet: Duration, now: Instant) {
        for incident in self.open.values_mut() {
            if incident.rule == EVENT && incident.resolved_at.is_none() && now - incident.last_seen >= quiet {
                incident.resolved_at = Some(Utc::now());
                incident.summary = format!(
                    "event `{}` has not recurred for {}s ({} occurrence(s) in all)",
                    incident.incident_type,
                    quiet.as_secs(),
                    incident.occurrences
                );
            }
        }
    }

    /// What to send now, by webhook index: `firing` to every accepting webhook not yet
    /// told of an open incident, `resolved` to every webhook told of one that ended
    /// (which then leaves the book).
    pub fn notifications(&mut self, webhooks: &[WebhookConfig]) -> Vec<(usize, Notification)> {
        let mut out = Vec::new();
        for incident in self.open.values_mut() {
            if incident.resolved_at.is_some() {
                continue;
            }
            let new: Vec<usize> = (0..webhooks.len())
                .filter(|i| !incident.notified.contains(i))
                .filter(|&i| webhooks[i].accepts(&incident.incident_type, incident.severity))
                .collect();
            incident.notified.extend(&new);
            let status = AlertStatus::Firing;
            out.extend(new.into_iter().map(|i| (i, Notification { status, incident: incident.clone() })));
        }
        let ended: Vec<String> =
            self.open.iter().filter(|(_, i)| i.resolved_at.is_some()).map(|(k, _)| k.clone()).collect();
        for key in ended {
            if let Some(incident) = self.open.remove(&key) {
                let status = AlertStatus::Resolved;
                out.extend(
                    incident
                        .notified
                        .iter()
                        .map(|&i| (i, Notification { status, incident: incident.clone() })),
                );
            }
        }
        out
    }

    /// The open incidents (for tests and diagnostics).
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// Forgets everything (a standby node that lost the lead: the new leader owns the
    /// incidents now).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::config::WebhookFormat;

    fn webhook(name: &str, min: Severity, types: Option<&[&str]>) -> WebhookConfig {
        let mut webhook = WebhookConfig::new(name, "http://127.0.0.1:9/hook", WebhookFormat::Json).unwrap();
        webhook.min_severity = min;
        webhook.event_types = types.map(|t| t.iter().map(|s| s.to_string()).collect());
        webhook
    }

    fn event(id: i32, event_type: &str, agent: &str, severity: &str) -> SystemEventRecord {
        SystemEventRecord {
            id,
            event_type: event_type.into(),
            event_data: Some(vigil_persistence::types::Json(serde_json::json!({ "agent_id": agent }))),
            timestamp: None,
            severity: Some(severity.into()),
        }
    }

    #[test]
    fn repeats_fold_into_one_incident_that_resolves_once_quiet() {
        let hooks = [webhook("a", Severity::Error, None)];
        let mut book = IncidentBook::default();
        let t0 = Instant::now();
        let quiet = Duration::from_secs(60);
        for i in 0..5 {
            book.observe_event(&event(i, "boom", "w1", "critical"), Severity::Critical, t0);
            book.settle_events(quiet, t0);
        }
        let sent = book.notifications(&hooks);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.status, AlertStatus::Firing);
        assert_eq!(sent[0].1.incident.key, "event:boom/w1");
        assert!(book.notifications(&hooks).is_empty(), "told once");
        book.settle_events(quiet, t0 + Duration::from_secs(30));
        assert!(book.notifications(&hooks).is_empty(), "still recurring within the window");
        book.settle_events(quiet, t0 + quiet);
        let sent = book.notifications(&hooks);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.status, AlertStatus::Resolved);
        assert_eq!(sent[0].1.incident.occurrences, 5);
        assert_eq!(book.open().count(), 0);
    }

    #[test]
    fn webhooks_get_what_they_accept_and_a_rising_severity_reaches_the_stricter_ones() {
        let hooks = [
            webhook("all", Severity::Error, None),
            webhook("critical", Severity::Critical, None),
            webhook("silent-only", Severity::Debug, Some(&[AGENT_SILENT])),
        ];
        let mut book = IncidentBook::default();
        let now = Instant::now();
        book.observe_event(&event(1, "boom", "w1", "error"), Severity::Error, now);
        let sent: Vec<usize> = book.notifications(&hooks).into_iter().map(|(i, _)| i).collect();
        assert_eq!(sent, [0]);
        book.observe_event(&event(2, "boom", "w1", "critical"), Severity::Critical, now);
        let sent: Vec<usize> = book.notifications(&hooks).into_iter().map(|(i, _)| i).collect();
        assert_eq!(sent, [1], "escalated: the critical-only webhook hears of it, once");

        book.observe_silent("w2", Duration::from_secs(9), Duration::from_secs(1), now);
        let sent: Vec<usize> = book.notifications(&hooks).into_iter().map(|(i, _)| i).collect();
        assert_eq!(sent, [0, 1, 2]);
        book.settle_silent(&BTreeSet::from(["w2".to_owned()]));
        assert!(book.notifications(&hooks).is_empty(), "still silent");
        book.settle_silent(&BTreeSet::new());
        let sent: Vec<(usize, AlertStatus)> =
            book.notifications(&hooks).into_iter().map(|(i, n)| (i, n.status)).collect();
        assert_eq!(
            sent,
            [(0, AlertStatus::Resolved), (1, AlertStatus::Resolved), (2, AlertStatus::Resolved)]
        );
    }

    #[test]
    fn keys_are_bounded() {
        let long = "x".repeat(400);
        let mut book = IncidentBook::default();
        book.observe_silent(&long, Duration::ZERO, Duration::from_secs(1), Instant::now());
        assert_eq!(book.open().next().unwrap().key.chars().count(), MAX_KEY_CHARS);
    }
}
