//! Integration tests of the built-in agents, in one binary so it links once: the AI
//! agents (HTTP peers are servers the tests start on 127.0.0.1) and the seven
//! monitoring agents, on SQLite and (when available) PostgreSQL.
//!
//! Every wait is on an event, a row or a signal with a timeout as safety net, never a
//! sleep followed by an assertion.

mod common;
mod monitor_common;

mod ai_help;
mod langgraph;
mod langsmith;
mod workflow_checks;
mod workflow_runs;

mod anomaly;
mod claims;
mod consistency;
mod incident;
mod restarts;
