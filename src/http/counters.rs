//! Failures and restarts of the runtime's agents, counted from its lifecycle events
//! (the runtime keeps no such totals by cause): one task per [`HttpState`](super::HttpState)
//! follows the stream until the runtime is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use vigil_persistence::lifecycle::{Cause, FailureKind};
use vigil_runtime::events::{EventKind, EventStream, EventStreamError};

/// The counts, by bounded labels only: the agent id (bounded by the fleet), the stage
/// and kind of a failure, the cause of a restart. Never a message.
#[derive(Debug, Default)]
pub(crate) struct LifecycleCounts {
    /// Failures by (agent, stage, kind).
    pub(crate) failures: BTreeMap<(String, &'static str, &'static str), u64>,
    /// Restarts by (agent, cause): `failure`, `requested`, `sibling` or `other`.
    pub(crate) restarts: BTreeMap<(String, &'static str), u64>,
    /// Events the follower missed because it fell behind.
    pub(crate) missed: u64,
}

/// The `kind` label of a failure.
fn failure_kind(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Panic { .. } => "panic",
        FailureKind::Error { .. } => "error",
        FailureKind::Timeout { .. } => "timeout",
        FailureKind::Escalated { .. } => "escalated",
        FailureKind::Unreachable { .. } => "unreachable",
        _ => "other",
    }
}

/// The `cause` label of a restart.
fn restart_cause(cause: &Cause) -> &'static str {
    match cause {
        Cause::Restart { .. } | Cause::Failure { .. } => "failure",
        Cause::RestartRequested { .. } | Cause::Requested => "requested",
        Cause::SiblingRestart { .. } => "sibling",
        _ => "other",
    }
}

/// Follows `stream` in a task of the current actix system, counting into `counts`.
pub(crate) fn follow(mut stream: EventStream, counts: Arc<Mutex<LifecycleCounts>>) {
    actix_rt::spawn(async move {
        loop {
            let event = match stream.next().await {
                Ok(event) => event,
                Err(EventStreamError::Lagged(missed)) => {
                    if let Ok(mut counts) = counts.lock() {
                        counts.missed += missed;
                    }
                    continue;
                }
                // The runtime is gone.
                Err(_) => return,
            };
            let Ok(mut counts) = counts.lock() else { return };
            match &event.kind {
                EventKind::Failure { failure } => {
                    let key = (event.agent_id.clone(), failure.stage.as_str(), failure_kind(&failure.kind));
                    *counts.failures.entry(key).or_default() += 1;
                }
                EventKind::Restarted { .. } => {
                    *counts
                        .restarts
                        .entry((event.agent_id.clone(), restart_cause(&event.cause)))
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    });
}
