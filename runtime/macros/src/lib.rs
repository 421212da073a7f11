//! `#[derive(Agent)]` for Vigil: turns `#[agent(...)]` attributes into an
//! `AgentDescriptor` impl.
//!
//! Use it through `vigil_runtime` or the `vigil` facade (both re-export it next to the
//! `Agent` trait). The generated code names the runtime the way the using crate's
//! Cargo.toml does: `::vigil_runtime` (or its rename) when that crate is a dependency,
//! else `::vigil::runtime`. The attributes are documented on [`macro@Agent`].
//!
//! The crate is split the way the derive works: `attr` reads and validates the
//! `#[agent(...)]` attributes, `model` checks the item and builds the validated
//! description of the agent, `codegen` writes the impls.

mod attr;
mod codegen;
mod model;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `vigil_runtime::AgentDescriptor` from `#[agent(...)]` attributes, and checks
/// that the type also implements the `vigil_runtime::Agent` trait.
///
/// ```text
/// #[derive(Agent)]
/// #[agent(name = "health", cycle = "5s", heartbeat = "30s", restart = "permanent")]
/// #[agent(mailbox = 64, shutdown_timeout = "5s")]
/// struct HealthAgent;
/// ```
///
/// | key                | value                                              | default                  |
/// |--------------------|----------------------------------------------------|--------------------------|
/// | `name`             | string of `[a-z0-9_.-]`, 1 to 255 characters       | type name in snake_case  |
/// | `cycle`            | duration                                           | `"5s"`                   |
/// | `cycle_timeout`    | duration: a cycle running longer fails the agent    | `"5m"`                   |
/// | `heartbeat`        | duration                                           | `"30s"`                  |
/// | `shutdown_timeout` | duration                                           | `"5s"`                   |
/// | `restart`          | `"permanent"`, `"transient"` or `"temporary"`      | `"permanent"`            |
/// | `mailbox`          | integer, at least 1                                | `64`                     |
///
/// A duration is a string `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`, greater
/// than zero and a whole number of milliseconds: `"250ms"`, `"5s"`, `"1.5m"`, `"1h"`,
/// `"1d"` — the same parser as the configuration files and the command line
/// (`vigil_persistence::duration`). The attribute may be repeated; keys
/// merge, and a key given twice is an error. Defaults are those of
/// `AgentSettings::new`.
///
/// The derive accepts structs (named, tuple or unit) without generic parameters; a
/// generic agent implements `AgentDescriptor` by hand. Every mistake is a compile error
/// at the offending token.
#[proc_macro_derive(Agent, attributes(agent))]
pub fn derive_agent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match model::AgentModel::from_input(&input) {
        Ok(model) => codegen::expand(&model),
        Err(errors) => codegen::expand_error(&input, &errors),
    }
    .into()
}
