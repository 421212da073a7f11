//! The `alerts` section of `vigil.json`: [`AlertsConfig`], its webhooks
//! ([`WebhookConfig`]) and the typed [`AlertConfigError`] a bad one gets.
//!
//! A webhook URL is a secret: a Slack incoming-webhook URL *is* its token (in the
//! path), others carry one in the user info or the query. So a [`WebhookUrl`] never
//! shows more than `scheme://host:port` (its `Debug` and `Display`), an error about it
//! never quotes it, and header values are never shown at all.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use vigil_actors::HttpRetryPolicy;
use vigil_actors::config::duration;
use vigil_persistence::Severity;

/// What is wrong with an alerts configuration. `field` is the path inside the
/// `alerts` section (`webhooks[0].url`); no variant holds a URL or a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertConfigError {
    /// The section is not what serde expected (an unknown field, a bad `format` or
    /// `min_severity`, a bad duration): serde's message, which names the value, never a
    /// secret one (URLs and headers are checked by the variants below).
    #[error("{field}: {message}")]
    Parse {
        /// Where.
        field: String,
        /// What serde said.
        message: String,
    },
    /// A webhook URL that cannot be used.
    #[error("{field}: not a usable webhook URL: {reason} (the URL is not shown: it may hold a token)")]
    Url {
        /// Where.
        field: String,
        /// Why (never the URL itself).
        reason: String,
    },
    /// A header whose name or value is not valid in HTTP.
    #[error("{field}: header `{name}` has an invalid {what} (the value is not shown)")]
    Header {
        /// Where.
        field: String,
        /// The header's name, as written.
        name: String,
        /// `name` or `value`.
        what: &'static str,
    },
    /// A value outside what makes sense.
    #[error("{field}: {reason}")]
    OutOfRange {
        /// Where.
        field: String,
        /// The rule.
        reason: String,
    },
    /// Two webhooks share a name (the name identifies a webhook in logs and records).
    #[error("webhooks[{index}].name: `{name}` is already the name of another webhook")]
    DuplicateName {
        /// The second one's index.
        index: usize,
        /// The name.
        name: String,
    },
}

/// Where alerts go and when. Every field has a default; no webhook, no alerter.
///
/// | field                    | default  | meaning |
/// |--------------------------|----------|---------|
/// | `webhooks`               | `[]`     | the receivers ([`WebhookConfig`]) |
/// | `dedup_window`           | `"5m"`   | an event incident absorbs repeats of its event without a new alert, and resolves once the event has not recurred for this long |
/// | `silent_after_intervals` | `3`      | an agent is silent when its last heartbeat is older than this many of its own heartbeat intervals |
/// | `evaluate_interval`      | `"1s"`   | time between two passes of the evaluator (new events, liveness) |
/// | `retry`                  | `{"max_attempts": 6, "base_backoff": "1s", "max_backoff": "60s"}` | per notification ([`HttpRetryPolicy`]: connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter; other answers are final) |
/// | `timeout`                | `"5s"`   | per attempt, connecting included |
/// | `queue_capacity`         | `256`    | notifications waiting per webhook; past it the oldest is dropped (counted, logged) |
/// | `shutdown_grace`         | `"2s"`   | at shutdown, how long queued notifications may still be delivered |
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// The receivers.
    pub webhooks: Vec<WebhookConfig>,
    /// See the table.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    /// See the table.
    pub silent_after_intervals: u32,
    /// See the table.
    #[serde(with = "duration")]
    pub evaluate_interval: Duration,
    /// See the table.
    pub retry: HttpRetryPolicy,
    /// See the table.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// See the table.
    pub queue_capacity: usize,
    /// See the table.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let mut retry = HttpRetryPolicy::new(6, Duration::from_secs(1));
        retry.max_backoff = Duration::from_secs(60);
        Self {
            webhooks: Vec::new(),
            dedup_window: Duration::from_secs(300),
            silent_after_intervals: 3,
            evaluate_interval: Duration::from_secs(1),
            retry,
            timeout: Duration::from_secs(5),
            queue_capacity: 256,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Vigil's JSON document (see [`crate::alerts`]).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text`, plus `blocks`).
    Slack,
}

/// One receiver of alerts.
///
/// | field          | default   | meaning |
/// |----------------|-----------|---------|
/// | `name`         | required  | names the webhook in logs and in `alert_deliveries` |
/// | `url`          | required  | `http` or `https`; a secret, never shown |
/// | `format`       | `"json"`  | `"json"` or `"slack"` |
/// | `min_severity` | `"error"` | incidents below it are not sent (`agent_silent` is `critical`) |
/// | `event_types`  | all       | if set, only incidents of these types: an event type, or `agent_silent` |
/// | `headers`      | none      | sent with every request; values are secrets, never shown |
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// See the table.
    pub name: String,
    /// See the table.
    pub url: WebhookUrl,
    /// See the table.
    #[serde(default)]
    pub format: WebhookFormat,
    /// See the table.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// See the table.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// See the table.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_min_severity() -> Severity {
    Severity::Error
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("format", &self.format)
            .field("min_severity", &self.min_severity)
            .field("event_types", &self.event_types)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebhookConfig {
    /// A webhook of `format` at `url`, every other field at its default.
    pub fn new(name: impl Into<String>, url: &str, format: WebhookFormat) -> Result<Self, AlertConfigError> {
        Ok(Self {
            name: name.into(),
            url: WebhookUrl::parse(url, "url")?,
            format,
            min_severity: default_min_severity(),
            event_types: None,
            headers: BTreeMap::new(),
        })
    }

    /// Whether an incident of `incident_type` and `severity` goes to this webhook.
    pub fn accepts(&self, incident_type: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && self.event_types.as_ref().is_none_or(|types| types.iter().any(|t| t == incident_type))
    }
}

/// A webhook URL: `http` or `https` with a host. It is a secret: shown only as
/// `scheme://host:port/…`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    /// Parses and checks `text`; `field` names it in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, AlertConfigError> {
        let error = |reason: String| AlertConfigError::Url { field: field.to_owned(), reason };
        // url's parse errors describe the problem, never quote the input.
        let url = reqwest::Url::parse(text.trim()).map_err(|e| error(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(error(format!("the scheme must be http or https, not `{}`", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(error("it has no host".into()));
        }
        Ok(Self(url))
    }

    /// The URL itself, for the request (never for a log).
    pub(crate) fn expose(&self) -> &reqwest::Url {
        &self.0
    }

    /// What may be shown of it: `scheme://host:port/…`.
    pub fn redacted(&self) -> String {
        let port = self.0.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{}{port}/…", self.0.scheme(), self.0.host_str().unwrap_or_default())
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // serde_path_to_error prefixes the path; say only what is wrong.
        WebhookUrl::parse(&text, "url").map_err(|e| match e {
            AlertConfigError::Url { reason, .. } => serde::de::Error::custom(format!(
                "not a usable webhook URL: {reason} (the URL is not shown: it may hold a token)"
            )),
            other => serde::de::Error::custom(other),
        })
    }
}

impl AlertsConfig {
    /// Reads the `alerts` section from its JSON (the object under `"alerts"`): every
    /// error names its field and is checked by [`validate`](Self::validate).
    pub fn from_json(value: serde_json::Value) -> Result<Self, AlertConfigError> {
        let config: Self = serde_path_to_error::deserialize(value).map_err(|e| AlertConfigError::Parse {
            field: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: names unique and not empty, headers valid in HTTP,
    /// counts at least 1.
    pub fn validate(&self) -> Result<(), AlertConfigError> {
        let range = |field: &str, ok: bool, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(AlertConfigError::OutOfRange { field: field.into(), reason: reason.into() })
            }
        };
        range("silent_after_intervals", self.silent_after_intervals >= 1, "at least 1")?;
        range("retry.max_attempts", self.retry.max_attempts >= 1, "at least 1")?;
        range("queue_capacity", self.queue_capacity >= 1, "at least 1")?;
        for (index, webhook) in self.webhooks.iter().enumerate() {
            let field = |name: &str| format!("webhooks[{index}].{name}");
            let name = webhook.name.trim();
            range(&field("name"), !name.is_empty() && name.len() <= 255, "1 to 255 characters")?;
            if self.webhooks[..index].iter().any(|other| other.name == webhook.name) {
                return Err(AlertConfigError::DuplicateName { index, name: webhook.name.clone() });
            }
            for (header, value) in &webhook.headers {
                let invalid =
                    |what| AlertConfigError::Header { field: field("headers"), name: header.clone(), what };
                reqwest::header::HeaderName::from_bytes(header.as_bytes()).map_err(|_| invalid("name"))?;
                reqwest::header::HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
            }
        }
        Ok(())
    }
}

/// Deserializes an [`AlertsConfig`] and [validates](AlertsConfig::validate) it: for a
/// `#[serde(deserialize_with)]` on the section of a larger configuration file.
pub fn deserialize_validated<'de, D: Deserializer<'de>>(d: D) -> Result<AlertsConfig, D::Error> {
    let config = AlertsConfig::deserialize(d)?;
    config.validate().map_err(serde::de::Error::custom)?;
    Ok(config)
}
