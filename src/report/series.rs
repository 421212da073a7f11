//! A metric over a window, in buckets of equal width, for charts (`/api/v1/series`).
//!
//! The window ends now and is cut into `ceil(since / step)` buckets of `step`, the last
//! ending now, so no bucket is half in the future. Every bucket is listed, empty ones
//! with `count` 0 and no `value`, so a chart's x axis is the time axis.
//!
//! | `name`         | what a bucket's `value` is                                  |
//! |----------------|-------------------------------------------------------------|
//! | [`HEARTBEATS`] | heartbeats per minute (of `agent`, or of every agent)       |
//! | any other      | the mean of the samples of that metric (`min`, `max` too)   |
//!
//! Metrics the built-in agents record: `cycle_duration_ms` and `cycles_per_second`
//! (per agent), `persistence_queue_depth`, `persistence_flush_p50_ms` and
//! `persistence_flush_p99_ms` (the writer's queue and commit latency), `pool_in_use`,
//! `pool_utilization`, `query_mean_ms`, `process_cpu_percent`, `process_rss_bytes`
//! (the performance monitor), `monitor_pass_ms` (each monitor), and the health scores
//! `heartbeat_health_score`, `shared_state_health_score`; an agent's own metrics
//! likewise ([`SharedState::recorded_metrics`] lists what a window holds).

use std::time::Duration;

use chrono::{DateTime, Utc};
use vigil_persistence::{SharedState, StoreError};

/// The series name of the heartbeat rate (not a metric: read from the heartbeats).
pub const HEARTBEATS: &str = "heartbeats";

/// The most buckets a series has.
pub const MAX_BUCKETS: u64 = 1_000;

/// The most samples read for one series (100 000); a window holding more is bucketed from its
/// oldest samples and says `truncated`.
pub const MAX_POINTS: i64 = 100_000;

/// Which series [`Series::read`] reads.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    /// A metric name, or [`HEARTBEATS`].
    pub name: String,
    /// Only samples (or heartbeats) of this agent.
    pub agent: Option<String>,
    /// The window, ending now.
    pub since: Duration,
    /// The width of a bucket.
    pub step: Duration,
}

impl SeriesQuery {
    /// `name` over the last `since` in buckets of `step`; an error names `step` when
    /// it is zero or makes more than [`MAX_BUCKETS`] buckets.
    pub fn new(name: String, agent: Option<String>, since: Duration, step: Duration) -> Result<Self, String> {
        if step.is_zero() {
            return Err("step: must be positive".into());
        }
        let buckets = since.as_micros().div_ceil(step.as_micros().max(1));
        if buckets > u128::from(MAX_BUCKETS) {
            return Err(format!(
                "step: {step:?} cuts {since:?} into {buckets} buckets; at most {MAX_BUCKETS} (a longer step)"
            ));
        }
        Ok(Self { name, agent, since, step })
    }

    /// A step that cuts `since` into about 60 buckets (at least a second).
    pub fn default_step(since: Duration) -> Duration {
        (since / 60).max(Duration::from_secs(1))
    }

    fn buckets(&self) -> usize {
        // At most MAX_BUCKETS (checked by `new`), at least one.
        self.since.as_micros().div_ceil(self.step.as_micros().max(1)).max(1) as usize
    }
}

/// One bucket: the samples that fell into it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// How many.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Bucket {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
    }
}

/// A series read now.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was asked.
    pub query: SeriesQuery,
    /// The start of the first bucket.
    pub start: DateTime<Utc>,
    /// The buckets, oldest first.
    pub buckets: Vec<Bucket>,
    /// Whether the window held more than [`MAX_POINTS`] samples (the newest are missing).
    pub truncated: bool,
}

impl Series {
    /// Reads `query`'s samples now and buckets them.
    pub async fn read(state: &SharedState, query: SeriesQuery) -> Result<Self, StoreError> {
        let end = Utc::now();
        let width = chrono::Duration::from_std(query.step).unwrap_or(chrono::TimeDelta::MAX);
        let start = end - width * i32::try_from(query.buckets()).unwrap_or(i32::MAX);
        let since = start.into();
        let agent = query.agent.as_deref();
        let samples: Vec<(DateTime<Utc>, f64)> = if query.name == HEARTBEATS {
            let times = state.heartbeat_times(agent, since, MAX_POINTS).await?;
            times.into_iter().map(|at| (at.get(), 1.0)).collect()
        } else {
            let points = state.metric_points(&query.name, agent, since, MAX_POINTS).await?;
            points.into_iter().map(|(at, value)| (at.get(), f64::from(value))).collect()
        };
        let truncated = samples.len() as i64 >= MAX_POINTS;
        let mut buckets = vec![Bucket::default(); query.buckets()];
        let step_us = query.step.as_micros().max(1) as i64;
        for (at, value) in samples {
            let offset = (at - start).num_microseconds().unwrap_or(i64::MAX);
            // A sample stamped a little ahead of this clock goes into the last bucket.
            let index = usize::try_from(offset / step_us).unwrap_or(0).min(buckets.len() - 1);
            buckets[index].add(value);
        }
        Ok(Self { query, start, buckets, truncated })
    }

    /// `{"name", "agent", "unit", "since_secs", "step_secs", "start", "truncated",
    /// "points": [{"t", "count", "value", "min", "max"}]}`: `t` is a bucket's start;
    /// `value`, `min` and `max` are `null` in an empty bucket.
    pub fn to_json(&self) -> serde_json::Value {
        let heartbeats = self.query.name == HEARTBEATS;
        let step = chrono::Duration::from_std(self.query.step).unwrap_or(chrono::TimeDelta::MAX);
        let per_minute = 60.0 / self.query.step.as_secs_f64();
        let points: Vec<_> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                let t = self.start + step * i32::try_from(i).unwrap_or(i32::MAX);
                let value = if heartbeats {
                    Some(bucket.count as f64 * per_minute)
                } else {
                    (bucket.count > 0).then(|| bucket.sum / bucket.count as f64)
                };
                let (min, max) = if bucket.count > 0 && !heartbeats {
                    (Some(bucket.min), Some(bucket.max))
                } else {
                    (None, None)
                };
                serde_json::json!({ "t": t, "count": bucket.count, "value": value, "min": min, "max": max })
            })
            .collect();
        serde_json::json!({
            "name": self.query.name,
            "agent": self.query.agent,
            "unit": if heartbeats { "per_minute" } else { "mean" },
            "since_secs": self.query.since.as_secs_f64(),
            "step_secs": self.query.step.as_secs_f64(),
            "start": self.start,
            "truncated": self.truncated,
            "points": points,
        })
    }
}
