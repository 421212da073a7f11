//! Pieces shared by the agents' configuration structs: durations written as text
//! (`"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"`, or a number of seconds) and the HTTP
//! retry policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Serde for [`Duration`], the one way every agent config writes a duration: text in
/// the grammar of [`vigil_persistence::duration`] (`"250ms"`, `"1.5s"`, `"2m"`, `"1h"`,
/// `"1d"`), or a bare number of seconds (`30`, `0.5`, `"30"`). Written back in the
/// largest unit that is exact. Use it as `#[serde(with = "duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub use vigil_persistence::duration::{format, parse};

    /// Serializes as text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Deserializes from text or a number of seconds. Every duration of a configuration
    /// is an interval, a timeout or an age, so zero and negative values are refused: a
    /// zero pass interval would run a monitor without pause.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        let (duration, written) = match Raw::deserialize(d)? {
            Raw::Seconds(seconds) if seconds < 0.0 => {
                return Err(D::Error::custom(format!("`{seconds}` must be positive")));
            }
            Raw::Seconds(seconds) => {
                (Duration::try_from_secs_f64(seconds).map_err(D::Error::custom)?, seconds.to_string())
            }
            Raw::Text(text) if text.trim_start().starts_with('-') => {
                return Err(D::Error::custom(format!("`{text}` must be positive")));
            }
            Raw::Text(text) => (parse(&text).map_err(D::Error::custom)?, text),
        };
        if duration.is_zero() {
            return Err(D::Error::custom(format!("`{written}` must be positive")));
        }
        Ok(duration)
    }
}

/// Builder setters for config fields: `setter => field: Type` gives
/// `fn setter(self, value: impl Into<Type>) -> Self`.
macro_rules! setters {
    ($($(#[$doc:meta])* $setter:ident => $field:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $setter(mut self, value: impl Into<$ty>) -> Self {
            self.$field = value.into();
            self
        }
    )*};
}
pub(crate) use setters;

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
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpRetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    #[serde(with = "duration")]
    pub base_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

impl Default for HttpRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl HttpRetryPolicy {
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
    fn a_bare_json_number_is_seconds() {
        #[derive(Deserialize)]
        struct Timeout(#[serde(with = "duration")] Duration);
        let read = |json: &str| serde_json::from_str::<Timeout>(json).map(|t| t.0);
        assert_eq!(read("30").unwrap(), Duration::from_secs(30));
        assert_eq!(read("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(read("\"250ms\"").unwrap(), Duration::from_millis(250));
        assert!(read("-3").is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = HttpRetryPolicy {
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
