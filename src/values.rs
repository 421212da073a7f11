//! The values an operator types, parsed once for every place that takes them: the
//! `vigil` command's flags (`--since`, `--limit`, `--severity`) and the query strings
//! of the HTTP API (`/api/v1/metrics?since=10m`, `/api/v1/events?limit=20`).
//!
//! | value      | parser             | accepts                                             |
//! |------------|--------------------|-----------------------------------------------------|
//! | a duration | [`parse_duration`] | `500ms`, `30s`, `10m`, `2h`, `1d`, up to 36500 days |
//! | a limit    | [`parse_limit`]    | 1 to [`MAX_LIMIT`]                                  |
//! | a severity | [`parse_severity`] | `debug`, `info`, `warning`, `error`, `critical`     |
//! | a workflow status | [`parse_workflow_status`] | `pending`, `running`, `waiting`, `completed`, `failed`, `cancelled`, `rejected` |
//! | a help status | [`parse_help_status`] | `pending`, `processing`, `complete`, `failed`   |
//!
//! Each error is a sentence that names the value and the range, and says "must be
//! positive" for a negative one.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(vigil::values::parse_duration("10m"), Ok(Duration::from_secs(600)));
//! assert!(vigil::values::parse_limit("-1").unwrap_err().contains("must be positive"));
//! ```

use std::time::Duration;

use vigil_persistence::shared_state::MAX_DAYS_TO_KEEP;
use vigil_persistence::workflow_runs::WorkflowStatus;
use vigil_persistence::{HelpStatus, Severity};

/// The most rows a limit asks for.
pub const MAX_LIMIT: i64 = 1_000_000;

/// The longest duration taken: a hundred years, the history Vigil keeps at most
/// ([`MAX_DAYS_TO_KEEP`]).
const MAX_DURATION_MS: u64 = MAX_DAYS_TO_KEEP as u64 * 86_400_000;

/// Whether `text` is a negative number (`-5`, `-0.5s`), to say "must be positive".
pub(crate) fn negative(text: &str) -> bool {
    text.strip_prefix('-').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
}

/// A duration (`500ms`, `30s`, `10m`, `2h`, `1d`; see [`vigil_persistence::duration`]),
/// at most 36500 days.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use vigil_persistence::duration::{self, DurationError};
    match duration::parse(text) {
        Ok(parsed) if parsed <= Duration::from_millis(MAX_DURATION_MS) => Ok(parsed),
        Ok(_) | Err(DurationError::TooLarge(_)) => {
            Err(format!("`{}` is too long: at most {}d", text.trim(), MAX_DURATION_MS / 86_400_000))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A row count, 1 to [`MAX_LIMIT`].
pub fn parse_limit(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let range = format!("1 to {MAX_LIMIT}");
    match text.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Ok(n) if n < 1 => Err(format!("`{text}` must be positive ({range})")),
        _ if negative(text) => Err(format!("`{text}` must be positive ({range})")),
        Ok(_) => Err(format!("`{text}` is too large ({range})")),
        Err(_) if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() => {
            Err(format!("`{text}` is too large ({range})"))
        }
        Err(_) => Err(format!("`{text}` is not a whole number ({range})")),
    }
}

/// A severity, in any case: `debug`, `info`, `warning`, `error`, `critical`.
pub fn parse_severity(text: &str) -> Result<Severity, String> {
    Severity::parse(&text.to_ascii_lowercase())
        .ok_or_else(|| format!("`{text}` is not a severity (debug, info, warning, error, critical)"))
}

/// A workflow run's status: `pending`, `running`, `waiting`, `completed`, `failed`,
/// `cancelled` or `rejected`.
pub fn parse_workflow_status(text: &str) -> Result<WorkflowStatus, String> {
    WorkflowStatus::parse(text)
        .ok_or_else(|| format!(
            "`{text}` is not a workflow status: pending, running, waiting, completed, failed, cancelled or rejected"
        ))
}

/// A help request's status: `pending`, `processing`, `complete` or `failed`.
pub fn parse_help_status(text: &str) -> Result<HelpStatus, String> {
    [HelpStatus::Pending, HelpStatus::Processing, HelpStatus::Complete, HelpStatus::Failed]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| format!("`{text}` is not a help status: pending, processing, complete or failed"))
}
