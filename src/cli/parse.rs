//! Reading the command line: the value parsers of the flags, and [`parse_args`], which
//! turns clap's outcome into an exit code and a message that holds no secret.
//!
//! | value                | parser             | accepts                                  |
//! |----------------------|--------------------|------------------------------------------|
//! | `--for`, `--since`, `--timeout` | [`parse_duration`] | `500ms`, `30s`, `10m`, `2h`, `1d`, up to 36500 days |
//! | `--limit`            | [`parse_limit`]    | 1 to [`MAX_LIMIT`]                       |
//! | `--days`             | [`parse_days`]     | 0 to 36500                               |
//! | `--min-ms`           | [`parse_min_ms`]   | a number ≥ 0                             |
//!
//! A negative value (`--days -5`, `--since -5m`) reaches its parser (the flags take
//! values that start with `-`) and is refused with "must be positive", exit code 2,
//! rather than clap's "unexpected argument '-5'".
//!
//! Whatever clap says about the arguments — an unexpected argument, an invalid value —
//! may quote them, and an argument may be a URL with a password in it
//! (`vigil status postgresql://app:pw@db/x`, `--database-url` forgotten). Every
//! message of the command passes through [`redact`] first.
//!
//! ```
//! let error = vigil::cli::parse_args(["vigil", "status", "postgresql://app:s3cret@db/x"]).unwrap_err();
//! assert_eq!(error.code, 2);
//! assert!(!error.message.contains("s3cret"));
//! ```

use std::ffi::OsString;

use clap::Parser as _;
use vigil_persistence::shared_state::MAX_DAYS_TO_KEEP;
use vigil_persistence::workflow_runs::WorkflowStatus;

use super::Cli;

use crate::values::negative;
pub use crate::values::{MAX_LIMIT, parse_duration, parse_limit, parse_severity};

/// A command line that does not run a command: help, the version, or bad usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyExit {
    /// The exit code: 0 for help and the version, 2 for bad usage.
    pub code: u8,
    /// What to print, secrets removed (see [`redact`]).
    pub message: String,
    /// Whether it goes to standard output (help, version) rather than standard error.
    pub stdout: bool,
}

/// Parses a command line (program name first) as `vigil` does, without exiting.
#[doc(hidden)]
pub fn parse_args<I, T>(args: I) -> Result<Cli, EarlyExit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    Cli::try_parse_from(&args).map_err(|error| {
        let stdout = !error.use_stderr();
        let styled = error.render();
        let rendered = if use_color(stdout) { styled.ansi().to_string() } else { styled.to_string() };
        EarlyExit {
            code: u8::try_from(error.exit_code()).unwrap_or(2),
            message: redact(&rendered, &args),
            stdout,
        }
    })
}

/// Colours where clap would use them: on a terminal.
fn use_color(stdout: bool) -> bool {
    use std::io::IsTerminal as _;
    if stdout { std::io::stdout().is_terminal() } else { std::io::stderr().is_terminal() }
}

/// `text` with the password of every URL among `args` replaced by `***`.
pub fn redact(text: &str, args: &[OsString]) -> String {
    let mut text = text.to_owned();
    for arg in args {
        for password in url_passwords(&arg.to_string_lossy()) {
            text = text.replace(password, "***");
        }
    }
    text
}

/// The passwords of the URLs in `arg`: `scheme://user:PASSWORD@host...`. Only finds them,
/// to hide them (parsing a database URL is `vigil_persistence::config::DatabaseUrl`'s),
/// and errs on the side of hiding: the user information runs to the last `@` of the
/// word, so a password with an unescaped `/` or `@` in it is hidden whole.
pub(crate) fn url_passwords(arg: &str) -> impl Iterator<Item = &str> {
    arg.match_indices("://").filter_map(|(at, _)| {
        let rest = &arg[at + 3..];
        let word = &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())];
        let userinfo = &word[..word.rfind('@')?];
        let password = &userinfo[userinfo.find(':')? + 1..];
        (!password.is_empty()).then_some(password)
    })
}

/// Parses a `--days`: 0 to [`MAX_DAYS_TO_KEEP`].
pub fn parse_days(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let range = format!("0 to {MAX_DAYS_TO_KEEP} days");
    if negative(text) {
        return Err(format!("`{text}` must be positive ({range})"));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a whole number of days ({range})"));
    }
    text.parse::<u32>()
        .ok()
        .filter(|days| *days <= MAX_DAYS_TO_KEEP)
        .ok_or_else(|| format!("`{text}` is out of range ({range})"))
}

/// Parses a `--min-ms`: a finite number of milliseconds, 0 or more.
pub fn parse_min_ms(text: &str) -> Result<f64, String> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        Ok(ms) if ms < 0.0 => Err(format!("`{text}` must be positive (milliseconds, 0 or more)")),
        _ if negative(text) => Err(format!("`{text}` must be positive (milliseconds, 0 or more)")),
        _ => Err(format!("`{text}` is not a number of milliseconds")),
    }
}

/// Parses a `--status` of `vigil workflows`.
pub fn parse_workflow_status(text: &str) -> Result<WorkflowStatus, String> {
    WorkflowStatus::parse(text)
        .ok_or_else(|| format!("`{text}` is not a workflow status: pending, running, completed, failed, waiting, cancelled or rejected"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn negative_values_must_be_positive() {
        for text in ["-5", "-5m", "-0.5s", "-1d"] {
            assert!(parse_duration(text).unwrap_err().contains("must be positive"), "{text}");
        }
        assert!(parse_limit("-1").unwrap_err().contains("must be positive"));
        assert!(parse_limit("0").unwrap_err().contains("must be positive"));
        assert!(parse_days("-5").unwrap_err().contains("must be positive"));
        assert!(parse_min_ms("-0.5").unwrap_err().contains("must be positive"));
        assert_eq!(parse_days("0"), Ok(0));
        assert_eq!(parse_limit("20"), Ok(20));
        assert!(parse_limit("99999999999999999999999").unwrap_err().contains("too large"));
        assert!(parse_days("4294967296").unwrap_err().contains("0 to 36500"));
        assert!(parse_duration("--json").unwrap_err().contains("not a duration"));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        for text in ["36501d", "99999999999999999999999d"] {
            assert!(parse_duration(text).unwrap_err().contains("at most 36500d"), "{text}");
        }
    }

    #[test]
    fn url_passwords_are_found() {
        let found: Vec<_> = url_passwords("postgresql://app:pw@db/x http://u:p:q@h").collect();
        assert_eq!(found, ["pw", "p:q"]);
        let found: Vec<_> = url_passwords("postgresql://app:p/w@d@db/x").collect();
        assert_eq!(found, ["p/w@d"]);
        assert_eq!(url_passwords("postgresql://app@db/x").count(), 0);
        assert_eq!(url_passwords("sqlite:vigil.db").count(), 0);
        let args = [OsString::from("postgresql://app:s3cret@db/x")];
        assert_eq!(redact("bad 'postgresql://app:s3cret@db/x'", &args), "bad 'postgresql://app:***@db/x'");
    }
}
