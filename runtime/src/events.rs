//! The lifecycle event stream: every transition, failure, restart and missed
//! heartbeat of every agent, as typed [`LifecycleEvent`]s.
//!
//! The stream is a bounded broadcast: publishing never waits, so a slow subscriber
//! can never slow the agents down. A subscriber that falls more than the capacity
//! behind is told how many events it missed ([`EventStreamError::Lagged`]) and goes
//! on from the oldest event still held.
//!
//! Tests await events instead of sleeping:
//!
//! ```no_run
//! # async fn demo(runtime: vigil_runtime::Runtime) {
//! use std::time::Duration;
//! use vigil_runtime::lifecycle::State;
//!
//! let mut events = runtime.subscribe();
//! let event = events
//!     .wait_for(Duration::from_secs(5), |e| e.agent_id == "worker" && e.entered() == Some(State::Active))
//!     .await
//!     .expect("worker became active");
//! # }
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::lifecycle::{Cause, Failure, State, Transition, Trigger};

/// What happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A lifecycle transition was applied and persisted.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// The trigger.
        trigger: Trigger,
    },
    /// A hook or handler failed (returned an error, panicked or timed out), or a
    /// supervisor gave up.
    Failure {
        /// What failed, and how.
        failure: Failure,
    },
    /// The agent was restarted with fresh state (the event's cause says why).
    Restarted {
        /// Restart number within the intensity period, from 1; 0 for a restart that
        /// was asked for (an operator's, a monitor's, a sibling's), which does not count.
        attempt: u32,
    },
    /// A heartbeat could not be recorded.
    HeartbeatMissed {
        /// Why.
        reason: String,
    },
    /// A cycle tick came while the previous cycle still ran; it was skipped.
    CycleOverrun,
    /// A cycle failed because the database is unavailable
    /// ([`AgentError::is_transient`](crate::AgentError::is_transient)): it was skipped,
    /// not counted as a failure, and the next tick tries again.
    CycleDeferred {
        /// The store error.
        reason: String,
    },
    /// A cycle completed (published only on a bus made
    /// [`with_cycle_events`](EventBus::with_cycle_events), and only while somebody
    /// subscribes: one event per cycle of every agent would flood every subscriber).
    /// Tests wait for it instead of polling cycle counts.
    CycleFinished {
        /// Cycles this agent has completed since it was spawned, this one included.
        cycle: u64,
        /// How long the cycle took.
        duration: Duration,
    },
    /// The agent's actor stopped.
    Stopped,
}

/// One event of the lifecycle stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleEvent {
    /// The agent concerned.
    pub agent_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Why.
    pub cause: Cause,
    /// When.
    pub at: DateTime<Utc>,
}

impl LifecycleEvent {
    /// An event about `agent_id`, stamped now.
    pub fn new(agent_id: impl Into<String>, kind: EventKind, cause: Cause) -> Self {
        Self { agent_id: agent_id.into(), kind, cause, at: Utc::now() }
    }

    /// The state entered, if this is a transition.
    pub fn entered(&self) -> Option<State> {
        match self.kind {
            EventKind::Transition { to, .. } => Some(to),
            _ => None,
        }
    }
}

impl From<&Transition> for LifecycleEvent {
    fn from(t: &Transition) -> Self {
        LifecycleEvent {
            agent_id: t.agent_id.clone(),
            kind: EventKind::Transition { from: t.from, to: t.to, trigger: t.trigger },
            cause: t.cause.clone(),
            at: t.at,
        }
    }
}

/// The publishing side, shared by the runtime and every agent host.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<LifecycleEvent>,
    /// Whether hosts publish [`EventKind::CycleFinished`].
    cycle_events: bool,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus {
    /// A bus that holds up to `capacity` events for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0, cycle_events: false }
    }

    /// The same bus, on which every agent also publishes [`EventKind::CycleFinished`]
    /// after each completed cycle (off by default). For tests that wait for cycles:
    ///
    /// ```no_run
    /// # async fn demo(shared: vigil_persistence::SharedState) {
    /// use std::time::Duration;
    /// use vigil_runtime::testkit::FaultyAgent;
    /// use vigil_runtime::{EventBus, EventKind, Runtime};
    ///
    /// let events = EventBus::default().with_cycle_events();
    /// let mut stream = events.subscribe();
    /// let plan = vigil_runtime::testkit::FaultPlan::new();
    /// let runtime = Runtime::builder(shared)
    ///     .events(events)
    ///     .agent_with_id("worker", move || FaultyAgent::new(plan.clone()))
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// stream
    ///     .wait_for(Duration::from_secs(5), |e| matches!(e.kind, EventKind::CycleFinished { cycle: 3, .. }))
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    #[must_use]
    pub fn with_cycle_events(mut self) -> Self {
        self.cycle_events = true;
        self
    }

    /// Whether a completed cycle is to be published: the bus publishes cycle events
    /// and somebody listens (an event nobody receives is not even built).
    pub(crate) fn wants_cycle_events(&self) -> bool {
        self.cycle_events && self.sender.receiver_count() > 0
    }

    /// Publishes an event; never waits. With no subscriber the event is dropped.
    pub fn publish(&self, event: LifecycleEvent) {
        tracing::debug!(agent.id = %event.agent_id, kind = ?event.kind, "lifecycle event");
        let _ = self.sender.send(event);
    }

    /// A new subscription, starting with the next event published.
    pub fn subscribe(&self) -> EventStream {
        EventStream { receiver: self.sender.subscribe() }
    }
}

/// Why no event was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventStreamError {
    /// The subscriber fell behind; this many events were skipped.
    #[error("the subscriber lagged and missed {0} events")]
    Lagged(u64),
    /// The runtime is gone.
    #[error("the event stream is closed")]
    Closed,
    /// Nothing matching arrived in time.
    #[error("no matching event within {0:?}")]
    Timeout(Duration),
}

/// A subscription to the lifecycle stream.
#[derive(Debug)]
pub struct EventStream {
    receiver: broadcast::Receiver<LifecycleEvent>,
}

impl EventStream {
    /// The next event.
    pub async fn next(&mut self) -> Result<LifecycleEvent, EventStreamError> {
        match self.receiver.recv().await {
            Ok(event) => Ok(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(EventStreamError::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => Err(EventStreamError::Closed),
        }
    }

    /// Waits up to `timeout` for an event matching `predicate`, skipping others
    /// (a lag is skipped too: the caller asked for a match, not for every event).
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut(&LifecycleEvent) -> bool,
    ) -> Result<LifecycleEvent, EventStreamError> {
        let search = async {
            loop {
                match self.next().await {
                    Ok(event) if predicate(&event) => return Ok(event),
                    Ok(_) | Err(EventStreamError::Lagged(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(timeout, search).await.map_err(|_| EventStreamError::Timeout(timeout))?
    }

    /// Waits until `agent_id` enters `state`.
    pub async fn wait_for_state(
        &mut self,
        agent_id: &str,
        state: State,
        timeout: Duration,
    ) -> Result<LifecycleEvent, EventStreamError> {
        self.wait_for(timeout, |e| e.agent_id == agent_id && e.entered() == Some(state)).await
    }
}
