//! How connections are pooled and retried: [`PoolConfig`] (sizes and timeouts, the
//! specification's defaults) and the [`ConnectRetryPolicy`] for transient errors.

use std::time::Duration;

use super::error::DatabaseConfigError;

/// Retry policy for transient database errors: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConnectRetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any one delay.
    pub max_backoff: Duration,
}

impl Default for ConnectRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl ConnectRetryPolicy {
    /// A policy that makes `max_attempts` attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the first and the largest delay.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The delay before retry number `retry` (0-based): a random duration between half
    /// and all of `initial * 2^retry`, capped at `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << retry.min(20));
        let ceiling = exp.min(self.max_backoff);
        let half = ceiling / 2;
        let jitter = rand::random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most connections open at once (default 20).
    pub max_connections: u32,
    /// Connections kept open when idle (default 5).
    pub min_connections: u32,
    /// Longest a statement may run (default 30 s).
    pub command_timeout: Duration,
    /// Longest a caller waits for a free connection (default 30 s).
    pub connection_timeout: Duration,
    /// Retries of transient failures.
    pub retry: ConnectRetryPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 20,
            min_connections: 5,
            command_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(30),
            retry: ConnectRetryPolicy::default(),
        }
    }
}

impl PoolConfig {
    /// Sets the pool bounds.
    pub fn with_connections(mut self, min: u32, max: u32) -> Self {
        self.min_connections = min;
        self.max_connections = max;
        self
    }

    /// Sets the command timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the time to wait for a free connection.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: ConnectRetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub(super) fn validate(&self) -> Result<(), DatabaseConfigError> {
        if self.max_connections == 0 {
            return Err(DatabaseConfigError::InvalidValue {
                name: "max_connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.min_connections > self.max_connections {
            return Err(DatabaseConfigError::InvalidValue {
                name: "min_connections",
                reason: format!(
                    "{} is more than max_connections ({})",
                    self.min_connections, self.max_connections
                ),
            });
        }
        if self.command_timeout.is_zero() {
            return Err(DatabaseConfigError::InvalidValue {
                name: "command_timeout",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}
