//! Why a transition happened ([`Cause`]) and what a failure was ([`Failure`]).
//!
//! A failure is data, not a sentence: where it happened ([`Stage`]) and what it was
//! ([`FailureKind`]: a panic, an error with its source chain, a timeout, ...). The
//! error itself (an `AgentError`) is neither `Clone` nor serializable, so its message
//! and the messages of its `source()` chain are kept as text, in order.
//!
//! ```
//! use vigil_persistence::lifecycle::{Cause, Failure, FailureKind, Stage};
//!
//! let failure = Failure::panic(Stage::Cycle, "index out of bounds");
//! assert_eq!(failure.to_string(), "cycle panicked: index out of bounds");
//!
//! let cause = Cause::Failure { failure };
//! let json = serde_json::to_value(&cause).unwrap();
//! assert_eq!(json["kind"], "failure");
//! assert_eq!(json["failure"]["stage"], "cycle");
//! assert_eq!(json["failure"]["kind"]["type"], "panic");
//! assert_eq!(serde_json::from_value::<Cause>(json).unwrap(), cause);
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a transition happened, recorded with it.
///
/// Serialized with a `kind` tag: `{"kind":"restart_requested","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// An operator or an API call asked for it.
    Requested,
    /// The normal startup sequence of the agent (`Initialize`, `DeployComplete`,
    /// `Start`), or a restarted agent finishing its startup (`RecoveryComplete`).
    Startup,
    /// The agent failed: a hook returned an error, panicked or timed out.
    Failure {
        /// What failed, and how.
        failure: Failure,
    },
    /// The supervisor is restarting the agent after its failure.
    Restart {
        /// Which restart within the current intensity period this is, from 1.
        attempt: u32,
    },
    /// Somebody asked for a restart (an operator's `vigil agent restart`, a monitor's
    /// restart request). Not a failure: it does not count against restart intensity.
    RestartRequested {
        /// Why it was asked for.
        reason: String,
    },
    /// Restarted with a sibling under one_for_all / rest_for_one. Not a failure of
    /// this agent.
    SiblingRestart {
        /// The child whose failure or requested restart restarted this one.
        sibling: String,
    },
    /// The failure was handed to a human: restart intensity exceeded, or an operator
    /// took over.
    Escalation {
        /// Why automatic recovery gave up.
        reason: String,
    },
    /// The agent, its supervisor or the runtime is shutting down.
    Shutdown,
    /// Anything else, described in words.
    Other {
        /// The description.
        reason: String,
    },
}

impl Cause {
    /// The failure, if this cause is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Cause::Failure { failure } => Some(failure),
            _ => None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Requested => f.write_str("requested"),
            Cause::Startup => f.write_str("startup"),
            Cause::Failure { failure } => write!(f, "failure: {failure}"),
            Cause::Restart { attempt } => write!(f, "restart (attempt {attempt})"),
            Cause::RestartRequested { reason } => write!(f, "restart requested: {reason}"),
            Cause::SiblingRestart { sibling } => write!(f, "restarted with sibling `{sibling}`"),
            Cause::Escalation { reason } => write!(f, "escalation: {reason}"),
            Cause::Shutdown => f.write_str("shutdown"),
            Cause::Other { reason } => f.write_str(reason),
        }
    }
}

/// Where in an agent's life a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// The `initialize` hook (at boot, or of a fresh instance on restart or fix).
    Initialize,
    /// The `cycle` hook.
    Cycle,
    /// A typed message's handler.
    Message,
    /// The `on_transition` hook.
    Transition,
    /// The `shutdown` hook.
    Shutdown,
    /// The supervision machinery: a restart that could not be carried out, or a
    /// nested supervisor that gave up.
    Supervision,
}

impl Stage {
    /// What the stage is called in messages (`"initialize"`, `"cycle"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Initialize => "initialize",
            Stage::Cycle => "cycle",
            Stage::Message => "message handler",
            Stage::Transition => "on_transition",
            Stage::Shutdown => "shutdown",
            Stage::Supervision => "supervision",
        }
    }
}

/// What a failure was.
///
/// Serialized with a `type` tag: `{"type":"error","message":"...","chain":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The hook panicked.
    Panic {
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The hook returned an error.
    Error {
        /// The error's message.
        message: String,
        /// The messages of its `source()` chain, outermost first (empty if none).
        chain: Vec<String>,
    },
    /// The hook did not finish in time and was dropped.
    Timeout {
        /// The limit it exceeded, in milliseconds.
        limit_ms: u64,
    },
    /// A nested supervisor exceeded its restart intensity and gave up.
    Escalated {
        /// The supervisor's account of it.
        reason: String,
    },
    /// The child could not be reached or restarted (its actor stopped, say).
    Unreachable {
        /// What happened.
        reason: String,
    },
}

/// A typed failure of an agent: where it happened and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Failure {
    /// Where it happened.
    pub stage: Stage,
    /// What it was.
    pub kind: FailureKind,
}

impl Failure {
    /// A failure of `kind` during `stage`.
    pub fn new(stage: Stage, kind: FailureKind) -> Self {
        Self { stage, kind }
    }

    /// A panic during `stage`.
    pub fn panic(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(stage, FailureKind::Panic { message: message.into() })
    }

    /// An error returned during `stage`, keeping the messages of its source chain.
    pub fn error(stage: Stage, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        Self::new(stage, FailureKind::Error { message: error.to_string(), chain })
    }

    /// An error during `stage` known only by its message.
    pub fn message(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(stage, FailureKind::Error { message: message.into(), chain: Vec::new() })
    }

    /// `stage` did not finish within `limit`.
    pub fn timeout(stage: Stage, limit: Duration) -> Self {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        Self::new(stage, FailureKind::Timeout { limit_ms })
    }

    /// The supervision machinery could not reach or restart a child.
    pub fn unreachable(reason: impl Into<String>) -> Self {
        Self::new(Stage::Supervision, FailureKind::Unreachable { reason: reason.into() })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = self.stage.as_str();
        match &self.kind {
            FailureKind::Panic { message } => write!(f, "{stage} panicked: {message}"),
            FailureKind::Error { message, chain } => {
                write!(f, "{stage} failed: {message}")?;
                chain.iter().try_for_each(|cause| write!(f, ": {cause}"))
            }
            FailureKind::Timeout { limit_ms } => {
                write!(f, "{stage} did not finish within {:?}", Duration::from_millis(*limit_ms))
            }
            FailureKind::Escalated { reason } => f.write_str(reason),
            FailureKind::Unreachable { reason } => write!(f, "child unreachable: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("query failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Inner;

    #[test]
    fn an_error_keeps_its_source_chain() {
        let failure = Failure::error(Stage::Cycle, &Outer(Inner));
        assert_eq!(
            failure.kind,
            FailureKind::Error { message: "query failed".into(), chain: vec!["connection reset".into()] }
        );
        assert_eq!(failure.to_string(), "cycle failed: query failed: connection reset");
    }

    #[test]
    fn a_timeout_reads_as_a_duration() {
        let failure = Failure::timeout(Stage::Initialize, Duration::from_secs(60));
        assert_eq!(failure.to_string(), "initialize did not finish within 60s");
    }
}
