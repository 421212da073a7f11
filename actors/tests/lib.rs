//! Integration tests of the built-in AI agents, on SQLite and (when available)
//! PostgreSQL. HTTP peers are servers the tests start on 127.0.0.1.

mod common;

mod ai_help;
mod langgraph;
mod langsmith;
