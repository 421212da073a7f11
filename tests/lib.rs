//! End-to-end tests of the `vigil` facade and command.

mod cli;
mod outage;
mod run;
