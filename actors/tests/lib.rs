//! Tests of the seven monitoring agents, in one binary so it links once.
//!
//! Timers run on real time with short intervals (the store does its I/O on a runtime
//! of its own, so a paused clock would race its queries); every wait is on an event,
//! a row or a signal with a timeout as safety net, never a sleep followed by an
//! assertion.

mod common;

mod anomaly;
mod claims;
mod consistency;
mod incident;
mod restarts;
