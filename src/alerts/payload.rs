//! The bodies a webhook receives, per [`WebhookFormat`].
//!
//! **`json`** — Vigil's document:
//!
//! ```json
//! {
//!   "status": "firing",
//!   "incident": {
//!     "key": "agent_silent:worker-1", "rule": "agent_silent", "type": "agent_silent",
//!     "subject": "worker-1", "severity": "critical",
//!     "summary": "agent `worker-1` stopped heartbeating: ...",
//!     "started_at": "2025-01-07T10:00:00Z", "resolved_at": null, "occurrences": 1
//!   },
//!   "event": null,
//!   "vigil": { "node": "host/4242/1" }
//! }
//! ```
//!
//! `event` is the first `system_events` row of an event incident (`id`, `event_type`,
//! `event_data`, `timestamp`, `severity`); `resolved_at` is set in the `resolved` one.
//!
//! **`slack`** — a Slack incoming-webhook message: `text` (what notifications and
//! clients without blocks show) and one `section` block with the same line plus a
//! `context` block with the key, the node and the start time.

use serde_json::{Value, json};
use vigil_persistence::alert_deliveries::AlertStatus;

use super::config::WebhookFormat;
use super::incidents::Notification;

/// The body of `notification` for a webhook of `format`, sent by `node`.
pub fn body(format: WebhookFormat, notification: &Notification, node: &str) -> Value {
    match format {
        WebhookFormat::Json => generic(notification, node),
        WebhookFormat::Slack => slack(notification, node),
    }
}

fn generic(notification: &Notification, node: &str) -> Value {
    let incident = &notification.incident;
    json!({
        "status": notification.status.as_str(),
        "incident": {
            "key": incident.key,
            "rule": incident.rule,
            "type": incident.incident_type,
            "subject": incident.subject,
            "severity": incident.severity.as_str(),
            "summary": incident.summary,
            "started_at": incident.started_at,
            "resolved_at": incident.resolved_at,
            "occurrences": incident.occurrences,
        },
        "event": incident.event,
        "vigil": { "node": node },
    })
}

fn slack(notification: &Notification, node: &str) -> Value {
    let incident = &notification.incident;
    let text = match notification.status {
        AlertStatus::Firing => {
            format!(
                ":rotating_light: [FIRING] {} {}: {}",
                incident.severity, incident.incident_type, incident.summary
            )
        }
        AlertStatus::Resolved => {
            format!(":white_check_mark: [RESOLVED] {}: {}", incident.incident_type, incident.summary)
        }
    };
    let context = format!(
        "`{}` · node `{node}` · started {}",
        incident.key,
        incident.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    json!({
        "text": text,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] },
        ],
    })
}
