//! The validated description of an agent type, built from the derive input.

use syn::{Data, DeriveInput, Ident, LitStr};

use crate::attr::{AgentAttrs, Errors, RestartKind, validate_name};

/// Everything the code generator needs, all of it already checked.
pub(crate) struct AgentModel {
    /// The type the derive is on.
    pub(crate) ident: Ident,
    /// The agent's name, spanned at the user's literal (or the type name by default).
    pub(crate) name: LitStr,
    /// Cycle interval in milliseconds, if set.
    pub(crate) cycle_ms: Option<u64>,
    /// Longest a cycle may run, in milliseconds, if set.
    pub(crate) cycle_timeout_ms: Option<u64>,
    /// Heartbeat interval in milliseconds, if set.
    pub(crate) heartbeat_ms: Option<u64>,
    /// Shutdown timeout in milliseconds, if set.
    pub(crate) shutdown_timeout_ms: Option<u64>,
    /// Restart type, if set.
    pub(crate) restart: Option<RestartKind>,
    /// Mailbox capacity, if set.
    pub(crate) mailbox: Option<usize>,
}

impl AgentModel {
    /// Checks the item and its `#[agent(...)]` attributes. All problems found are
    /// reported together.
    pub(crate) fn from_input(input: &DeriveInput) -> syn::Result<Self> {
        let mut errors = Errors::default();

        match &input.data {
            Data::Struct(_) => {}
            Data::Enum(data) => errors.push(syn::Error::new(
                data.enum_token.span,
                "`#[derive(Agent)]` only supports structs: an agent is a struct (named, tuple or unit)",
            )),
            Data::Union(data) => errors.push(syn::Error::new(
                data.union_token.span,
                "`#[derive(Agent)]` only supports structs: an agent is a struct (named, tuple or unit)",
            )),
        }
        if !input.generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(
                &input.generics,
                "`#[derive(Agent)]` does not support generic parameters; \
                 implement `vigil_runtime::AgentDescriptor` by hand for a generic agent",
            ));
        }

        let attrs = AgentAttrs::parse(&input.attrs, &mut errors);
        let name = match attrs.name {
            Some(name) => name,
            None => default_name(&input.ident, &mut errors),
        };
        errors.finish()?;

        Ok(AgentModel {
            ident: input.ident.clone(),
            name,
            cycle_ms: attrs.cycle_ms,
            cycle_timeout_ms: attrs.cycle_timeout_ms,
            heartbeat_ms: attrs.heartbeat_ms,
            shutdown_timeout_ms: attrs.shutdown_timeout_ms,
            restart: attrs.restart,
            mailbox: attrs.mailbox,
        })
    }
}

/// The type name in snake_case, checked like an explicit name but reported at the type
/// name (a non-ASCII type name has no valid default).
fn default_name(ident: &Ident, errors: &mut Errors) -> LitStr {
    let name = snake_case(&syn::ext::IdentExt::unraw(ident).to_string());
    if let Err(problem) = validate_name(&name) {
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "the default agent name `{name}` (the type name in snake_case) is invalid: {problem}; \
                 set one with `#[agent(name = \"...\")]`"
            ),
        ));
    }
    LitStr::new(&name, ident.span())
}

/// `HeartbeatHealthAgent` -> `heartbeat_health_agent`, `HTTPProbe` -> `http_probe`,
/// `Agent2` -> `agent2`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let word_starts = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // The last capital of an acronym starts the next word: `HTTPProbe`.
                Some(p) if p.is_uppercase() => next_is_lower,
                _ => false,
            };
            if word_starts {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_splits_words_and_acronyms() {
        assert_eq!(snake_case("HeartbeatHealthAgent"), "heartbeat_health_agent");
        assert_eq!(snake_case("HTTPProbe"), "http_probe");
        assert_eq!(snake_case("Agent2"), "agent2");
        assert_eq!(snake_case("Agent2Go"), "agent2_go");
        assert_eq!(snake_case("Already_Snake"), "already_snake");
        assert_eq!(snake_case("A"), "a");
    }
}
