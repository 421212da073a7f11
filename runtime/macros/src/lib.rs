//! `#[derive(Agent)]` (placeholder: the lifecycle-macros branch replaces this crate's sources).
use proc_macro::TokenStream;

/// Derives `vigil_runtime::AgentDescriptor` from `#[agent(...)]` attributes.
#[proc_macro_derive(Agent, attributes(agent))]
pub fn derive_agent(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
