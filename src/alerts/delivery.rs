//! Delivery: one task per webhook, fed by a bounded queue, posting each notification
//! with retries and recording every attempt.
//!
//! The evaluator only pushes to a webhook's queue — it never waits for a webhook.
//! A full queue drops its *oldest* notification (the newest says more about now),
//! counts it and logs the first drop. Each attempt is bounded by the client's timeout;
//! connection errors, timeouts, 408, 429 and 5xx are retried after the
//! [`HttpRetryPolicy`]'s backoff (exponential, jittered) up to `max_attempts`; any
//! other answer is final. Every attempt becomes an `alert_deliveries` row, enqueued to
//! the writer without waiting. A webhook that hangs therefore costs its own task
//! `timeout` per attempt and nothing else: not the evaluator, not another webhook, not
//! an agent or a write.
//!
//! Nothing logged or recorded holds the URL or a header value: reqwest's errors are
//! stripped of their URL, and what remains is scrubbed of the URL and header values.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use vigil_actors::HttpRetryPolicy;
use vigil_actors::http::error_chain;
use vigil_persistence::SharedState;
use vigil_persistence::alert_deliveries::{AlertDelivery, DeliveryOutcome};
use vigil_persistence::types::Ts;

use super::config::WebhookConfig;
use super::incidents::Notification;
use super::payload;

/// A webhook's figures since the alerter started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// The webhook's name.
    pub name: String,
    /// Notifications delivered.
    pub delivered: u64,
    /// Notifications given up (after their last attempt, or a final answer).
    pub gave_up: u64,
    /// Attempts that failed (retried or not).
    pub failed_attempts: u64,
    /// Notifications dropped from a full queue.
    pub dropped: u64,
    /// Notifications waiting now.
    pub queued: usize,
}

/// The bounded queue in front of one webhook's task.
#[derive(Debug)]
pub(crate) struct WebhookQueue {
    name: String,
    capacity: usize,
    items: Mutex<VecDeque<Notification>>,
    wake: Notify,
    closing: AtomicBool,
    delivered: AtomicU64,
    gave_up: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
}

impl WebhookQueue {
    pub(crate) fn new(name: &str, capacity: usize) -> Self {
        Self {
            name: name.to_owned(),
            capacity: capacity.max(1),
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `notification`; never waits. A full queue loses its oldest.
    pub(crate) fn push(&self, notification: Notification) {
        let mut items = self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if items.len() >= self.capacity {
            items.pop_front();
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    webhook = %self.name,
                    capacity = self.capacity,
                    "alert queue full: dropping the oldest notifications (counted in the alerter's stats; logged once)"
                );
            }
        }
        items.push_back(notification);
        drop(items);
        self.wake.notify_one();
    }

    /// No more notifications: the task ends once the queue is empty.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    async fn pop(&self) -> Option<Notification> {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a push between this
            // check and the wait below is not missed.
            if let Some(item) = self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop_front()
            {
                return Some(item);
            }
            if self.closing.load(Ordering::Acquire) {
                return None;
            }
            self.wake.notified().await;
        }
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        WebhookStats {
            name: self.name.clone(),
            delivered: self.delivered.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len(),
        }
    }
}

/// One webhook's task: everything it needs, owned.
pub(crate) struct Courier {
    pub(crate) webhook: WebhookConfig,
    pub(crate) queue: Arc<WebhookQueue>,
    pub(crate) client: reqwest::Client,
    pub(crate) shared: SharedState,
    pub(crate) retry: HttpRetryPolicy,
    pub(crate) node: String,
}

/// How one attempt ended.
struct Attempt {
    http_status: Option<u16>,
    error: Option<String>,
    retryable: bool,
}

impl Courier {
    /// Delivers notifications until the queue is closed and empty.
    pub(crate) async fn run(self) {
        while let Some(notification) = self.queue.pop().await {
            self.deliver(&notification).await;
        }
    }

    async fn deliver(&self, notification: &Notification) {
        let body = payload::body(self.webhook.format, notification, &self.node);
        let max = self.retry.max_attempts.max(1);
        for attempt in 1..=max {
            let (at, started) = (Ts::now(), Instant::now());
            let result = self.post(&body).await;
            let outcome = match &result {
                Attempt { error: None, .. } => DeliveryOutcome::Delivered,
                Attempt { retryable: true, .. } if attempt < max => DeliveryOutcome::Failed,
                _ => DeliveryOutcome::GaveUp,
            };
            let record = AlertDelivery {
                webhook_name: self.webhook.name.clone(),
                incident_key: notification.incident.key.clone(),
                status: notification.status,
                attempt,
                outcome,
                http_status: result.http_status,
                error: result.error.clone(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                attempted_at: at,
            };
            if let Err(e) = self.shared.record_alert_delivery(record).enqueue().await {
                tracing::debug!(webhook = %self.webhook.name, error = %e, "alert delivery attempt not recorded");
            }
            let (webhook, key, status) =
                (&self.webhook.name, &notification.incident.key, notification.status.as_str());
            match outcome {
                DeliveryOutcome::Delivered => {
                    self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(webhook = %webhook, incident = %key, status, attempt, "alert delivered");
                    return;
                }
                DeliveryOutcome::Failed => {
                    self.queue.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(webhook = %webhook, incident = %key, attempt, ?wait, error = ?result.error, "alert attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                DeliveryOutcome::GaveUp => {
                    self.queue.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.queue.gave_up.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %webhook, incident = %key, status, attempt, error = ?result.error, "alert not delivered: giving up");
                    return;
                }
            }
        }
    }

    async fn post(&self, body: &serde_json::Value) -> Attempt {
        let mut request = self.client.post(self.webhook.url.expose().clone()).json(body);
        for (name, value) in &self.webhook.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Read (and drop) the body, so the connection can be reused.
                let _ = response.bytes().await;
                let code = status.as_u16();
                if status.is_success() {
                    Attempt { http_status: Some(code), error: None, retryable: false }
                } else {
                    let retryable = code == 408 || code == 429 || status.is_server_error();
                    Attempt { http_status: Some(code), error: Some(format!("HTTP {code}")), retryable }
                }
            }
            Err(error) => {
                let what = if error.is_timeout() { "timed out" } else { "request failed" };
                let text = format!("{what}: {}", self.scrub(&error_chain(&error.without_url())));
                Attempt { http_status: None, error: Some(text), retryable: true }
            }
        }
    }

    /// `text` without the URL or any header value (belt and braces: reqwest's error is
    /// already stripped of its URL).
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(self.webhook.url.expose().as_str(), "<webhook url>");
        for value in self.webhook.headers.values().filter(|v| !v.is_empty()) {
            text = text.replace(value.as_str(), "***");
        }
        text
    }
}
