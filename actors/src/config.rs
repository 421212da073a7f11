//! Pieces shared by the agents' configuration structs: durations written as text
//! (`"250ms"`, `"5s"`, `"2m"`, `"1h"`, or a number of milliseconds) and the HTTP retry
//! policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Serde for [`Duration`] as `"250ms"` / `"5s"` / `"2m"` / `"1h"` (or a bare number of
/// milliseconds). Written back in the largest unit that is exact.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Formats a duration the way [`parse`] reads it.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if ms == 0 {
            "0ms".into()
        } else if ms % 3_600_000 == 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 {
            format!("{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    /// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"` or `"1500"` (milliseconds).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like \"5s\""))?;
        let ms = match unit.trim() {
            "" | "ms" => n,
            "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            other => return Err(format!("unknown duration unit `{other}` (use ms, s, m or h)")),
        };
        Ok(Duration::from_millis(ms))
    }

    /// Serializes as text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Deserializes from text or a number of milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(text) => parse(&text).map_err(D::Error::custom),
        }
    }
}

/// How an HTTP call is retried: up to `max_attempts` attempts, waiting `base_backoff`
/// after the first failure, doubling up to `max_backoff` (with up to 25 % jitter).
/// Retried: connection errors, timeouts, 408, 429 and 5xx; any other status is final.
///
/// | field          | default |
/// |----------------|---------|
/// | `max_attempts` | `3`     |
/// | `base_backoff` | `"500ms"` |
/// | `max_backoff`  | `"10s"` |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    #[serde(with = "duration")]
    pub base_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts starting at `base_backoff`.
    pub fn new(max_attempts: u32, base_backoff: Duration) -> Self {
        Self { max_attempts, base_backoff, ..Self::default() }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let capped = exp.min(self.max_backoff);
        let jitter = capped.as_micros() as u64 / 4;
        capped + Duration::from_micros(if jitter == 0 { 0 } else { rand::random_range(0..=jitter) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_back() {
        for (text, ms) in [("250ms", 250), ("5s", 5000), ("2m", 120_000), ("1h", 3_600_000), ("1500", 1500)] {
            assert_eq!(duration::parse(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
        assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration::format(Duration::from_secs(120)), "2m");
        assert!(duration::parse("5 parsecs").is_err());
        assert!(duration::parse("soon").is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125), "{first:?}");
        let second = policy.backoff(2);
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(250), "{second:?}");
        let capped = policy.backoff(10);
        assert!(capped >= Duration::from_millis(300) && capped <= Duration::from_millis(375), "{capped:?}");
    }
}
