//! End-to-end tests of the `vigil` facade and command.

mod alerts;
mod browser;
mod cli;
mod cli_props;
mod cluster;
mod http;
mod outage;
mod pooler;
mod run;
mod workflow;
