//! Durations written as text: the one grammar every part of Vigil reads and writes.
//!
//! `#[agent(cycle = "5s")]`, a monitor's `"pass_interval": "2m"` in a config file and
//! `vigil events --since 1d` all go through [`parse`], so a duration that works in one
//! place works in all of them.
//!
//! | written  | means                         |
//! |----------|-------------------------------|
//! | `250ms`  | milliseconds                  |
//! | `30s`    | seconds                       |
//! | `10m`    | minutes                       |
//! | `2h`     | hours                         |
//! | `1d`     | days (24 h)                   |
//! | `30`     | a bare number is seconds      |
//! | `1.5s`   | a decimal fraction, kept to the nanosecond |
//!
//! Whitespace around the text, and between the number and the unit, is ignored.
//! [`format()`] writes a duration back in the largest unit that is exact, so
//! `parse(&format(d)) == Ok(d)` for every `d`.
//!
//! **What the parser does not decide.** `"0s"` parses to [`Duration::ZERO`]: whether
//! zero makes sense is the caller's business (an agent's cycle interval refuses it, a
//! `--since 0s` does not). A negative value (`"-5m"`) is always refused, with an error
//! that says it must be positive. Callers add their own bounds the same way: the CLI
//! caps durations at a hundred years, the derive wants whole milliseconds.
//!
//! **Overflow.** Arithmetic is exact (integers, no floating point) and checked: a
//! duration past [`Duration::MAX`] is a [`DurationError::TooLarge`], never a wrap or a
//! panic.
//!
// The example runs as a doctest of vigil-persistence; the derive's crate, which
// compiles this file too, cannot name `vigil_persistence`, so it leaves it out.
#![cfg_attr(
    not(proc_macro),
    doc = r#"
```
use std::time::Duration;
use vigil_persistence::duration;

assert_eq!(duration::parse("1d"), Ok(Duration::from_secs(86_400)));
assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
assert_eq!(duration::format(Duration::from_secs(7200)), "2h");
assert!(duration::parse("5 parsecs").unwrap_err().to_string().contains("unknown unit"));
```
"#
)]
//!
//! This file depends on `std` only: the `#[derive(Agent)]` proc-macro crate compiles
//! the same source (`#[path]`), so the derive and the runtime cannot disagree.

use std::fmt;
use std::time::Duration;

/// The units, for error messages.
const UNITS: &str = "ms, s, m, h or d";

/// Nanoseconds in one second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Fraction digits read at most: enough for nanosecond precision in any unit (a day is
/// 8.64e13 ns, 14 digits), few enough that the arithmetic stays inside `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

/// Why a text is not a duration. The message quotes the text and says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing was written.
    Empty,
    /// A negative number (`"-5m"`).
    Negative(String),
    /// The text does not start with a number (`"soon"`, `"--json"`, `"1.2.3s"`).
    NotANumber(String),
    /// The number is followed by something other than a unit (`"5 parsecs"`).
    UnknownUnit {
        /// The whole text.
        text: String,
        /// What stood where the unit should be.
        unit: String,
    },
    /// Longer than [`Duration::MAX`].
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "an empty text is not a duration (e.g. 30s, 10m, 2h)"),
            DurationError::Negative(text) => write!(f, "`{text}` must be positive (e.g. 30s, 10m, 2h)"),
            DurationError::NotANumber(text) => write!(f, "`{text}` is not a duration like 30s, 10m, 2h"),
            DurationError::UnknownUnit { text, unit } => {
                write!(f, "unknown unit `{unit}` in `{text}` (use {UNITS})")
            }
            DurationError::TooLarge(text) => write!(f, "`{text}` is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Reads a duration: a number (whole or decimal) and a unit, `ms`, `s`, `m`, `h` or
/// `d`; a bare number is seconds. See the [module docs](self) for the rules.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if trimmed
        .strip_prefix('-')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
    {
        return Err(DurationError::Negative(trimmed.to_owned()));
    }
    let number_end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::NotANumber(trimmed.to_owned()));
    }
    let unit_nanos: u128 = match unit.trim_start() {
        "ms" => 1_000_000,
        "" | "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        other => {
            return Err(DurationError::UnknownUnit { text: trimmed.to_owned(), unit: other.to_owned() });
        }
    };
    let too_large = || DurationError::TooLarge(trimmed.to_owned());
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let whole_nanos = digits(whole).and_then(|n| n.checked_mul(unit_nanos)).ok_or_else(too_large)?;
    // Below 10^18 * 8.64e13 < 2^127: cannot overflow.
    let fraction_nanos =
        digits(fraction).ok_or_else(too_large)? * unit_nanos / 10u128.pow(fraction.len() as u32);
    let nanos = whole_nanos.checked_add(fraction_nanos).ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// The value of a run of ASCII digits (`0` for none); `None` past `u128::MAX`.
fn digits(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |n, b| n.checked_mul(10)?.checked_add(u128::from(b - b'0')))
}

/// Writes `d` the way [`parse`] reads it, in the largest unit that is exact: `"1d"`,
/// `"2h"`, `"10m"`, `"30s"`, `"1500ms"`, `"0s"`; a duration with a fraction of a
/// millisecond as decimal seconds (`"1.50025s"`).
pub fn format(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        let fraction = format!("{nanos:09}");
        return format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'));
    }
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_unit_reads() {
        let cases = [
            ("250ms", ms(250)),
            ("5s", ms(5_000)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1d", ms(86_400_000)),
            ("36500d", Duration::from_secs(36_500 * 86_400)),
            ("30", ms(30_000)),
            ("1.5s", ms(1_500)),
            ("0.25", ms(250)),
            (".5m", ms(30_000)),
            ("1.5d", ms(129_600_000)),
            (" 5 s ", ms(5_000)),
            ("0.000000001s", Duration::from_nanos(1)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn zero_parses_and_the_caller_decides() {
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0ms"), Ok(Duration::ZERO));
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn format_is_exact_and_reads_back() {
        for (d, text) in [
            (ms(1_500), "1500ms"),
            (ms(120_000), "2m"),
            (ms(5_000), "5s"),
            (ms(86_400_000), "1d"),
            (ms(90_000_000), "25h"),
            (Duration::from_micros(1_500_250), "1.50025s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text}");
        }
        for d in [Duration::from_nanos(1), Duration::new(12_345, 678_901_234), Duration::MAX] {
            assert_eq!(parse(&format(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("   "), Err(DurationError::Empty));
        for text in ["soon", "s", ".", "1.2.3s", "--json", "+5s", "abc"] {
            assert_eq!(parse(text), Err(DurationError::NotANumber(text.into())), "{text:?}");
        }
        for (text, unit) in [("5 parsecs", "parsecs"), ("5sec", "sec"), ("1e3s", "e3s"), ("5S", "S")] {
            assert_eq!(parse(text), Err(DurationError::UnknownUnit { text: text.into(), unit: unit.into() }));
        }
        for text in ["-1s", "-5", "-0.5s", "-1d", "-.5m"] {
            assert_eq!(parse(text), Err(DurationError::Negative(text.into())), "{text:?}");
            assert!(parse(text).unwrap_err().to_string().contains("must be positive"));
        }
        assert!(parse("--json").unwrap_err().to_string().contains("not a duration"));
        assert!(parse("5 parsecs").unwrap_err().to_string().contains("use ms, s, m, h or d"));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let max_secs = u64::MAX.to_string();
        assert_eq!(parse(&max_secs), Ok(Duration::from_secs(u64::MAX)));
        for text in [
            "18446744073709551616s", // u64::MAX seconds + 1
            "213503982334602d",      // just past Duration::MAX in days
            "99999999999999999999h",
            "999999999999999999999999999999999999999999ms", // past u128
        ] {
            assert_eq!(parse(text), Err(DurationError::TooLarge(text.into())), "{text}");
        }
        // Long fractions are cut at nanoseconds, not overflowed.
        assert_eq!(parse("1.0000000001234567890123456789d"), Ok(Duration::new(86_400, 10_666)));
    }
}
