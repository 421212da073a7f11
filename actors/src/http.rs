//! The one HTTP call shape both network agents use: POST a JSON body, retry per a
//! [`HttpRetryPolicy`], give back the JSON answer or a typed [`HttpError`].
//!
//! Each attempt is bounded by the client's timeout, so a server that hangs costs at
//! most `max_attempts × timeout` plus the backoffs — and only to the agent making the
//! call: the wait is an `await` on the agent's own cycle, never a blocked thread.

use std::time::Duration;

use crate::config::HttpRetryPolicy;

/// Why an HTTP exchange failed (after its retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server answered with a non-success status.
    #[error("HTTP {status} from {url}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The endpoint.
        url: String,
        /// The start of the response body.
        body: String,
    },
    /// No answer within the timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The per-attempt timeout.
        timeout: Duration,
    },
    /// The connection failed (refused, reset, DNS, TLS, ...).
    #[error("cannot reach {url}: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// The client's description.
        reason: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The endpoint.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl HttpError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            HttpError::Timeout { .. } | HttpError::Transport { .. } => true,
            HttpError::Decode { .. } => false,
        }
    }
}

/// An exchange that failed: the last error and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (after {attempts} attempt(s))")]
pub struct HttpFailure {
    /// The last attempt's error.
    #[source]
    pub error: HttpError,
    /// Attempts made.
    pub attempts: u32,
}

/// Builds the client both agents use: rustls, no HTTP/2, the given timeout per request.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()
}

/// POSTs `body` to `url` with `headers`, retrying per `policy`; the answer's JSON.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    timeout: Duration,
    policy: &HttpRetryPolicy,
) -> Result<serde_json::Value, HttpFailure> {
    let max = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match post_once(client, url, headers, body, timeout).await {
            Ok(answer) => return Ok(answer),
            Err(error) if error.is_retryable() && attempt < max => {
                let wait = policy.backoff(attempt);
                tracing::debug!(%url, attempt, ?wait, %error, "HTTP attempt failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(HttpFailure { error, attempts: attempt }),
        }
    }
}

async fn post_once(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, HttpError> {
    let mut request = client.post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let classify = |e: reqwest::Error| {
        if e.is_timeout() {
            HttpError::Timeout { url: url.to_owned(), timeout }
        } else {
            HttpError::Transport { url: url.to_owned(), reason: error_chain(&e) }
        }
    };
    let response = request.send().await.map_err(classify)?;
    let status = response.status();
    let text = response.text().await.map_err(classify)?;
    if !status.is_success() {
        return Err(HttpError::Status {
            status: status.as_u16(),
            url: url.to_owned(),
            body: truncate(&text, 500),
        });
    }
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| HttpError::Decode {
        url: url.to_owned(),
        reason: format!("{e}: {}", truncate(&text, 200)),
    })
}

/// The error with its sources, `a: b: c` (reqwest's own message is terse).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` characters of `text`, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
