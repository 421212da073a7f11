//! Reading the `#[agent(...)]` attributes: keys, literal types, and the checks on each
//! value (durations, restart types, mailbox size, names).

use std::collections::HashSet;
use std::fmt;

use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Lit, LitInt, LitStr};

/// Vigil's one duration grammar (`"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"`), compiled
/// here from `vigil_persistence::duration`'s own source: a proc-macro crate cannot
/// depend on the persistence crate cheaply, and one source keeps the derive, the
/// configs and the CLI reading durations alike. Only `parse` is used here.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../persistence/src/duration.rs"]
mod duration;

/// The keys `#[agent(...)]` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Name,
    Cycle,
    CycleTimeout,
    Heartbeat,
    ShutdownTimeout,
    Restart,
    Mailbox,
}

impl Key {
    const ALL: [Key; 7] = [
        Key::Name,
        Key::Cycle,
        Key::CycleTimeout,
        Key::Heartbeat,
        Key::ShutdownTimeout,
        Key::Restart,
        Key::Mailbox,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Key::Name => "name",
            Key::Cycle => "cycle",
            Key::CycleTimeout => "cycle_timeout",
            Key::Heartbeat => "heartbeat",
            Key::ShutdownTimeout => "shutdown_timeout",
            Key::Restart => "restart",
            Key::Mailbox => "mailbox",
        }
    }

    fn from_meta(meta: &ParseNestedMeta<'_>) -> Option<Key> {
        let ident = meta.path.get_ident()?;
        Key::ALL.into_iter().find(|key| ident == key.as_str())
    }

    /// "`name`, `cycle`, ..." for error messages.
    fn list() -> String {
        Key::ALL.map(|key| format!("`{}`", key.as_str())).join(", ")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The restart types, mirroring `vigil_runtime::Restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartKind {
    Permanent,
    Transient,
    Temporary,
}

/// Errors collected while checking, so that one compilation reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every collected error, if there was any.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The values given in `#[agent(...)]` attributes, each checked. A key that is absent,
/// or whose value was rejected (and reported), is `None`.
#[derive(Default)]
pub(crate) struct AgentAttrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) cycle_ms: Option<u64>,
    pub(crate) cycle_timeout_ms: Option<u64>,
    pub(crate) heartbeat_ms: Option<u64>,
    pub(crate) shutdown_timeout_ms: Option<u64>,
    pub(crate) restart: Option<RestartKind>,
    pub(crate) mailbox: Option<usize>,
}

impl AgentAttrs {
    /// Reads every `#[agent(...)]` among `attrs`; keys of all of them merge.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = AgentAttrs::default();
        let mut seen = HashSet::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("agent")) {
            // A syntax error stops reading this attribute; value errors do not.
            if let Err(error) = attr.parse_nested_meta(|meta| out.entry(&meta, &mut seen, errors)) {
                errors.push(error);
            }
        }
        out
    }

    /// One `key = value` entry.
    fn entry(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        seen: &mut HashSet<Key>,
        errors: &mut Errors,
    ) -> syn::Result<()> {
        let key = Key::from_meta(meta);
        let Some(key) = key else {
            let path = meta.path.get_ident().map_or_else(
                || quote::ToTokens::to_token_stream(&meta.path).to_string().replace(' ', ""),
                ToString::to_string,
            );
            errors.push(syn::Error::new_spanned(
                &meta.path,
                format!("unknown `agent` attribute key `{path}`; the valid keys are {}", Key::list()),
            ));
            // Skip its value, if any, to go on checking the other keys.
            if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<Expr>()?;
            }
            return Ok(());
        };

        let value: Expr = meta.value()?.parse()?;
        if !seen.insert(key) {
            errors.push(syn::Error::new_spanned(
                &meta.path,
                format!("duplicate `agent` attribute key `{key}`: each key may be given once"),
            ));
            return Ok(());
        }

        let checked = match key {
            Key::Name => string_lit(key, &value).and_then(|lit| {
                validate_name(&lit.value()).map_err(|problem| {
                    syn::Error::new(lit.span(), format!("invalid agent name: {problem}"))
                })?;
                self.name = Some(lit.clone());
                Ok(())
            }),
            Key::Cycle => duration_ms(key, &value).map(|ms| self.cycle_ms = Some(ms)),
            Key::CycleTimeout => duration_ms(key, &value).map(|ms| self.cycle_timeout_ms = Some(ms)),
            Key::Heartbeat => duration_ms(key, &value).map(|ms| self.heartbeat_ms = Some(ms)),
            Key::ShutdownTimeout => duration_ms(key, &value).map(|ms| self.shutdown_timeout_ms = Some(ms)),
            Key::Restart => restart(&value).map(|restart| self.restart = Some(restart)),
            Key::Mailbox => mailbox(&value).map(|capacity| self.mailbox = Some(capacity)),
        };
        if let Err(error) = checked {
            errors.push(error);
        }
        Ok(())
    }
}

/// The literal inside `expr`, looking through the invisible groups `macro_rules!`
/// leaves around substituted fragments.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(lit) => Some(&lit.lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn string_lit(key: Key, value: &Expr) -> syn::Result<&LitStr> {
    match literal(value) {
        Some(Lit::Str(lit)) => Ok(lit),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("expected a string literal for `{key}`, e.g. `{key} = {}`", example(key)),
        )),
    }
}

fn example(key: Key) -> &'static str {
    match key {
        Key::Name => "\"health_check\"",
        Key::Cycle | Key::ShutdownTimeout => "\"5s\"",
        Key::Heartbeat => "\"30s\"",
        Key::CycleTimeout => "\"5m\"",
        Key::Restart => "\"permanent\"",
        Key::Mailbox => "64",
    }
}

/// Checks an agent name; the `Err` says what is wrong with it.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    const MAX_LEN: usize = 255;
    if name.is_empty() {
        return Err("the name must not be empty".to_owned());
    }
    if let Some(bad) = name.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-')) {
        return Err(format!("`{bad}` is not allowed; use lowercase ASCII letters, digits, `_`, `.` and `-`"));
    }
    if name.len() > MAX_LEN {
        return Err(format!("the name is {} characters long, the limit is {MAX_LEN}", name.len()));
    }
    Ok(())
}

/// A duration literal in milliseconds, in the grammar of `vigil_persistence::duration`,
/// greater than zero.
fn duration_ms(key: Key, value: &Expr) -> syn::Result<u64> {
    let lit = string_lit(key, value)?;
    parse_duration(&lit.value()).map_err(|problem| {
        syn::Error::new(
            lit.span(),
            format!(
                "invalid duration for `{key}`: {problem}; write e.g. \"250ms\", \"5s\", \"2m\", \"1h\" \
                 or \"1d\""
            ),
        )
    })
}

/// `"5s"` -> 5000: [`duration::parse`], then what a setting of the derive needs on top
/// (more than zero, whole milliseconds). The `Err` says what is wrong.
fn parse_duration(text: &str) -> Result<u64, String> {
    let parsed = duration::parse(text).map_err(|e| e.to_string())?;
    if parsed.is_zero() {
        return Err(format!("`{text}` is zero, it must be greater than zero"));
    }
    if !parsed.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!("`{text}` is not a whole number of milliseconds"));
    }
    u64::try_from(parsed.as_millis()).map_err(|_| format!("`{text}` is too large"))
}

fn restart(value: &Expr) -> syn::Result<RestartKind> {
    let lit = string_lit(Key::Restart, value)?;
    match lit.value().as_str() {
        "permanent" => Ok(RestartKind::Permanent),
        "transient" => Ok(RestartKind::Transient),
        "temporary" => Ok(RestartKind::Temporary),
        other => Err(syn::Error::new(
            lit.span(),
            format!(
                "unknown restart type \"{other}\"; expected one of \"permanent\", \"transient\" or \"temporary\""
            ),
        )),
    }
}

fn mailbox(value: &Expr) -> syn::Result<usize> {
    let lit: &LitInt = match literal(value) {
        Some(Lit::Int(lit)) => lit,
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                "expected an integer literal for `mailbox`, e.g. `mailbox = 64`",
            ));
        }
    };
    let capacity: usize = lit.base10_parse()?;
    if capacity == 0 {
        return Err(syn::Error::new(lit.span(), "the mailbox capacity must be at least 1"));
    }
    Ok(capacity)
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, validate_name};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("5s"), Ok(5_000));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500));
        assert_eq!(parse_duration("5"), Ok(5_000), "a bare number is seconds, as everywhere");
        for bad in ["", "0s", "s", "5sec", "-5s", "0.5ms", "99999999999999999999h", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("health.check-2_x").is_ok());
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert!(validate_name(&"a".repeat(256)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("Health").is_err());
        assert!(validate_name("health check").is_err());
    }
}
