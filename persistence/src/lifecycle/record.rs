//! [`TransitionRecord`]: one applied transition, and the data of the
//! `state_transition` event that records it.
//!
//! The runtime writes it (one event per transition, serialized with serde) and the
//! monitors and the AI help agent read it back with [`TransitionRecord::from_event`]
//! or [`SharedState::recent_transitions`](crate::SharedState::recent_transitions):
//! one type on both sides, so a reader asks [`TransitionRecord::is_failure`] instead
//! of comparing JSON strings.
//!
//! ```
//! use vigil_persistence::lifecycle::{Cause, State, TransitionRecord, Trigger};
//!
//! let restart = TransitionRecord::new(
//!     "worker",
//!     State::Active,
//!     Trigger::RecoveryStart,
//!     Cause::RestartRequested { reason: "operator".into() },
//! )
//! .unwrap();
//! assert_eq!(restart.to, State::Recovery);
//! assert!(!restart.is_failure(), "a restart somebody asked for is not a failure");
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Cause, IllegalTransition, State, Trigger, next_state};
use crate::Severity;
use crate::models::SystemEventRecord;

/// A transition that has been applied to an agent; the data of its
/// `state_transition` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// The agent that changed state (`agents.agent_id`).
    pub agent_id: String,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// The trigger that caused the change.
    pub trigger: Trigger,
    /// Why the trigger was sent.
    pub cause: Cause,
    /// When the transition was applied.
    pub at: DateTime<Utc>,
}

/// Why an event could not be read as a [`TransitionRecord`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionRecordError {
    /// The event is of another type.
    #[error("event {id} is a `{event_type}` event, not a `state_transition`")]
    NotATransition {
        /// The event's row id.
        id: i32,
        /// Its type.
        event_type: String,
    },
    /// The event has no data.
    #[error("state_transition event {id} has no data")]
    NoData {
        /// The event's row id.
        id: i32,
    },
    /// The data is not a transition record (an unknown state, trigger or cause, or a
    /// missing field).
    #[error("state_transition event {id} has malformed data: {source}")]
    Malformed {
        /// The event's row id.
        id: i32,
        /// What serde refused.
        source: serde_json::Error,
    },
}

impl TransitionRecord {
    /// The `event_type` of the events that carry transition records.
    pub const EVENT_TYPE: &'static str = "state_transition";

    /// Applies `trigger` to `from` with [`next_state`] and, if it is legal, describes
    /// the transition, stamped now.
    pub fn new(
        agent_id: impl Into<String>,
        from: State,
        trigger: Trigger,
        cause: Cause,
    ) -> Result<Self, IllegalTransition> {
        let to = next_state(from, trigger)?;
        Ok(Self { agent_id: agent_id.into(), from, to, trigger, cause, at: Utc::now() })
    }

    /// Reads the record out of a `state_transition` event.
    pub fn from_event(event: &SystemEventRecord) -> Result<Self, TransitionRecordError> {
        if event.event_type != Self::EVENT_TYPE {
            return Err(TransitionRecordError::NotATransition {
                id: event.id,
                event_type: event.event_type.clone(),
            });
        }
        let data = event.event_data.as_ref().ok_or(TransitionRecordError::NoData { id: event.id })?;
        Self::deserialize(&data.0).map_err(|source| TransitionRecordError::Malformed { id: event.id, source })
    }

    /// Whether this records a failure of the agent: a transition into `error` whose
    /// cause is a [`Cause::Failure`]. A restart somebody asked for, a sibling's
    /// restart or a park is not one.
    pub fn is_failure(&self) -> bool {
        self.to == State::Error && matches!(self.cause, Cause::Failure { .. })
    }

    /// Whether this is the start of a restart the agent's own failure caused
    /// (`RecoveryStart` with [`Cause::Restart`]), as opposed to a requested one.
    pub fn is_failure_restart(&self) -> bool {
        self.to == State::Recovery && matches!(self.cause, Cause::Restart { .. })
    }

    /// The severity its event is recorded at: `error` for a failure (or any entry into
    /// `error`), `critical` for a park in `manual`, `warning` for the restart after a
    /// failure, `info` for everything else, requested and sibling restarts included.
    pub fn severity(&self) -> Severity {
        match self.to {
            State::Error => Severity::Error,
            State::Manual => Severity::Critical,
            State::Recovery if self.is_failure_restart() => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Failure, Stage};
    use crate::types::Json;

    fn event(event_type: &str, data: Option<serde_json::Value>) -> SystemEventRecord {
        SystemEventRecord {
            id: 7,
            event_type: event_type.into(),
            event_data: data.map(Json),
            timestamp: None,
            severity: None,
        }
    }

    #[test]
    fn a_record_round_trips_through_an_event() {
        let failure = Failure::panic(Stage::Cycle, "boom");
        let record =
            TransitionRecord::new("w", State::Active, Trigger::ErrorOccurred, Cause::Failure { failure })
                .unwrap();
        let read = TransitionRecord::from_event(&event(
            "state_transition",
            Some(serde_json::to_value(&record).unwrap()),
        ))
        .unwrap();
        assert_eq!(read, record);
        assert!(read.is_failure());
        assert_eq!(read.severity(), Severity::Error);
    }

    #[test]
    fn bad_data_is_a_typed_error() {
        let unknown_state = serde_json::json!({
            "agent_id": "w", "from": "active", "to": "exploded", "trigger": "ErrorOccurred",
            "cause": {"kind": "startup"}, "at": "2026-01-01T00:00:00Z",
        });
        assert!(matches!(
            TransitionRecord::from_event(&event("state_transition", Some(unknown_state))),
            Err(TransitionRecordError::Malformed { id: 7, .. })
        ));
        assert!(matches!(
            TransitionRecord::from_event(&event("state_transition", None)),
            Err(TransitionRecordError::NoData { id: 7 })
        ));
        assert!(matches!(
            TransitionRecord::from_event(&event("critical_health_alert", None)),
            Err(TransitionRecordError::NotATransition { .. })
        ));
    }

    #[test]
    fn only_a_failure_into_error_is_a_failure() {
        let requested = Cause::RestartRequested { reason: "operator".into() };
        let restart = TransitionRecord::new("w", State::Active, Trigger::RecoveryStart, requested).unwrap();
        assert!(!restart.is_failure());
        assert_eq!(restart.severity(), Severity::Info);
        let sibling = Cause::SiblingRestart { sibling: "a".into() };
        let with_sibling =
            TransitionRecord::new("w", State::Active, Trigger::RecoveryStart, sibling).unwrap();
        assert!(!with_sibling.is_failure());
        assert_eq!(with_sibling.severity(), Severity::Info);
        let park = Cause::Escalation { reason: "intensity".into() };
        assert!(
            !TransitionRecord::new("w", State::Active, Trigger::ErrorOccurred, park).unwrap().is_failure()
        );
    }
}
