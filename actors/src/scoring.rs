//! The monitors' arithmetic, as pure functions: interval estimation, heartbeat scores,
//! health bands, z-scores, staleness classes and the shared-state health score.
//!
//! Scores are on 0..=100. Every heartbeat judgement is made against the agent's *own*
//! interval: an agent that beats hourly is not late after five minutes (the original
//! platform's scores penalised long intervals by construction).
//!
//! | function                    | formula                                                        |
//! |-----------------------------|----------------------------------------------------------------|
//! | [`recency_score`]           | lateness `r = age / interval`; 100 up to `r = 1.5`, then −20 per interval, 0 from `r = 6.5` |
//! | [`regularity_score`]        | `100 × (1 − min(cv, 1))`, cv = std / mean of the gaps (current open gap included) |
//! | [`state_score`]             | active 100; monitoring, optimizing, standby, maintenance, deploying, initializing 70; recovery 40; error 10; manual, shutdown 0 |
//! | [`coordinator_health`]      | `recency × state_factor − min(failures × penalty, max)`, state_factor = state_score / 100 |
//! | [`heartbeat_health`]        | `recency/100 × (0.40 regularity + 0.35 errors + 0.25 state)` — nothing counts if the agent is not heard from |
//! | [`band`]                    | ≥ 90 excellent, ≥ 75 good, ≥ 50 fair, ≥ 25 poor, else critical |
//! | [`z_score`]                 | `(newest − mean) / max(std, min_rel × |mean|, min_std)` over the window before the newest |
//! | [`shared_state_health`]     | 0.30 agents + 0.15 orphans + 0.15 help + 0.20 pool + 0.20 queries |
//!
//! ```
//! use vigil_actors::scoring::{recency_score, band, HealthBand};
//! // Two intervals late: half a missed beat past the grace, 90 points.
//! assert_eq!(recency_score(60.0, 30.0), 90.0);
//! // An hourly agent ten minutes after its beat is on time.
//! assert_eq!(recency_score(600.0, 3600.0), 100.0);
//! assert_eq!(band(92.0), HealthBand::Excellent);
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_runtime::State;

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] })
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

/// Gaps in seconds between consecutive heartbeat times, oldest first. Accepts the
/// times in any order.
pub fn gaps(times: &[DateTime<Utc>]) -> Vec<f64> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.windows(2).map(|w| (w[1] - w[0]).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).collect()
}

/// An agent's heartbeat interval: the median gap between its recent heartbeats.
/// `None` with fewer than two gaps (three heartbeats): too little to go on.
pub fn estimate_interval(times: &[DateTime<Utc>]) -> Option<Duration> {
    let gaps = gaps(times);
    if gaps.len() < 2 {
        return None;
    }
    median(&gaps).filter(|m| *m > 0.0).and_then(|m| Duration::try_from_secs_f64(m).ok())
}

/// Heartbeat recency on 0..=100 from the age of the last heartbeat and the agent's
/// own interval: on time up to 1.5 intervals (jitter, a write in flight), then 20
/// points per interval late; 0 from 6.5 intervals.
pub fn recency_score(age_secs: f64, interval_secs: f64) -> f64 {
    let lateness = age_secs.max(0.0) / interval_secs.max(1e-3);
    (100.0 - 20.0 * (lateness - 1.5)).clamp(0.0, 100.0)
}

/// Regularity of the gaps on 0..=100: `100 × (1 − min(cv, 1))` with cv the
/// coefficient of variation. Fewer than two gaps: 100 (no evidence of irregularity).
pub fn regularity_score(gaps: &[f64]) -> f64 {
    if gaps.len() < 2 {
        return 100.0;
    }
    let (mean, std) = mean_std(gaps).expect("not empty");
    if mean <= 0.0 {
        return 100.0;
    }
    100.0 * (1.0 - (std / mean).min(1.0))
}

/// How much an agent's lifecycle state is worth on 0..=100.
pub fn state_score(state: State) -> f64 {
    match state {
        State::Active => 100.0,
        State::Monitoring
        | State::Optimizing
        | State::Standby
        | State::Maintenance
        | State::Deploying
        | State::Initializing => 70.0,
        State::Recovery => 40.0,
        State::Error => 10.0,
        _ => 0.0,
    }
}

/// The coordinator's health score: recency scaled by the state, less a penalty per
/// recent failure. An active agent without failures drops below 50 once its heartbeat
/// is more than four of its own intervals old.
pub fn coordinator_health(recency: f64, state: State, failures: u32, penalty: f64, max_penalty: f64) -> f64 {
    let lost = (f64::from(failures) * penalty).min(max_penalty);
    (recency * state_score(state) / 100.0 - lost).clamp(0.0, 100.0)
}

/// Error score on 0..=100: loses `100 / max_failures` per failure in the window.
pub fn error_score(failures: u32, max_failures: u32) -> f64 {
    100.0 * (1.0 - (f64::from(failures) / f64::from(max_failures.max(1))).min(1.0))
}

/// The heartbeat-health score: recency gates everything else.
pub fn heartbeat_health(recency: f64, regularity: f64, errors: f64, state: f64) -> f64 {
    (recency / 100.0 * (0.40 * regularity + 0.35 * errors + 0.25 * state)).clamp(0.0, 100.0)
}

/// A health band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthBand {
    /// Below 25.
    Critical,
    /// 25 to 50.
    Poor,
    /// 50 to 75.
    Fair,
    /// 75 to 90.
    Good,
    /// 90 and above.
    Excellent,
}

impl HealthBand {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthBand::Critical => "critical",
            HealthBand::Poor => "poor",
            HealthBand::Fair => "fair",
            HealthBand::Good => "good",
            HealthBand::Excellent => "excellent",
        }
    }
}

/// The band of a score.
pub fn band(score: f64) -> HealthBand {
    match score {
        s if s >= 90.0 => HealthBand::Excellent,
        s if s >= 75.0 => HealthBand::Good,
        s if s >= 50.0 => HealthBand::Fair,
        s if s >= 25.0 => HealthBand::Poor,
        _ => HealthBand::Critical,
    }
}

/// The z-score of `newest` against `window` (the values before it, in time order),
/// with the standard deviation floored at `min_relative_std × |mean|` and `min_std`.
/// `None` when the window has fewer than `min_samples` values.
pub fn z_score(
    window: &[f64],
    newest: f64,
    min_samples: usize,
    min_relative_std: f64,
    min_std: f64,
) -> Option<Z> {
    if window.len() < min_samples.max(1) {
        return None;
    }
    let (mean, std) = mean_std(window)?;
    let floor = (min_relative_std * mean.abs()).max(min_std).max(f64::MIN_POSITIVE);
    Some(Z { z: (newest - mean) / std.max(floor), mean, std })
}

/// A z-score and the window figures it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Z {
    /// The score.
    pub z: f64,
    /// Mean of the window.
    pub mean: f64,
    /// Standard deviation of the window (before flooring).
    pub std: f64,
}

/// How anomalous a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyLevel {
    /// |z| ≥ the high threshold.
    High,
    /// |z| ≥ the critical threshold.
    Critical,
}

/// The level of a z-score, if any.
pub fn anomaly_level(z: f64, high: f64, critical: f64) -> Option<AnomalyLevel> {
    match z.abs() {
        a if a >= critical => Some(AnomalyLevel::Critical),
        a if a >= high => Some(AnomalyLevel::High),
        _ => None,
    }
}

/// Checks the newest value of a series (oldest first) against the `window_samples`
/// values before it.
pub fn detect_anomaly(
    series: &[f64],
    window_samples: usize,
    min_samples: usize,
    min_relative_std: f64,
    min_std: f64,
    high: f64,
    critical: f64,
) -> Option<(AnomalyLevel, Z)> {
    let (&newest, before) = series.split_last()?;
    let window = &before[before.len().saturating_sub(window_samples)..];
    let z = z_score(window, newest, min_samples, min_relative_std, min_std)?;
    anomaly_level(z.z, high, critical).map(|level| (level, z))
}

/// An agent's class by heartbeat age (the shared-state monitor's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatClass {
    /// Heard from within `active_within`.
    Active,
    /// Within `stale_within`.
    Stale,
    /// Longer ago.
    Inactive,
    /// Never.
    NoHeartbeat,
}

/// Classifies a heartbeat age (`None`: never beat).
pub fn classify_heartbeat(
    age: Option<Duration>,
    active_within: Duration,
    stale_within: Duration,
) -> HeartbeatClass {
    match age {
        None => HeartbeatClass::NoHeartbeat,
        Some(a) if a <= active_within => HeartbeatClass::Active,
        Some(a) if a <= stale_within => HeartbeatClass::Stale,
        Some(_) => HeartbeatClass::Inactive,
    }
}

/// A threshold that respects the agent's own interval: the longer of `threshold` and
/// `intervals × interval`.
pub fn scaled_threshold(threshold: Duration, intervals: f64, interval: Duration) -> Duration {
    threshold.max(interval.mul_f64(intervals.max(0.0)))
}

/// The inputs of the shared-state health score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SharedStateFindings {
    /// Agents checked.
    pub agents: usize,
    /// Agents marked active without a recent heartbeat, or whose state disagrees with
    /// the runtime.
    pub inconsistent_agents: usize,
    /// Rows referencing no agent.
    pub orphan_rows: i64,
    /// Help requests stuck in `processing`.
    pub stuck_help_requests: usize,
    /// Connections in use / maximum.
    pub pool_utilization: f64,
    /// Share of the pool's range above which it counts as saturated.
    pub pool_saturation: f64,
    /// Mean query time, seconds.
    pub mean_query_secs: f64,
    /// Target mean query time, seconds.
    pub query_target_secs: f64,
    /// Failed attempts / all attempts.
    pub query_error_rate: f64,
}

/// The component scores and the overall shared-state health.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SharedStateScore {
    /// `100 × (1 − inconsistent / agents)`. Weight 0.30.
    pub agents: f64,
    /// 100 less 10 per orphan row. Weight 0.15.
    pub orphans: f64,
    /// 100 less 20 per stuck help request. Weight 0.15.
    pub help: f64,
    /// 100 up to the saturation point, then linear to 0 at a full pool. Weight 0.20.
    pub pool: f64,
    /// The lower of latency (100 up to the target, 0 at ten times it) and errors
    /// (`100 × (1 − 10 × error rate)`). Weight 0.20.
    pub queries: f64,
    /// The weighted sum.
    pub overall: f64,
}

/// Scores the shared state (see [`SharedStateScore`] for each component's formula).
pub fn shared_state_health(f: &SharedStateFindings) -> SharedStateScore {
    let agents = if f.agents == 0 {
        100.0
    } else {
        100.0 * (1.0 - (f.inconsistent_agents as f64 / f.agents as f64).min(1.0))
    };
    let orphans = (100.0 - 10.0 * f.orphan_rows as f64).max(0.0);
    let help = (100.0 - 20.0 * f.stuck_help_requests as f64).max(0.0);
    let pool = if f.pool_utilization <= f.pool_saturation {
        100.0
    } else {
        let span = (1.0 - f.pool_saturation).max(1e-9);
        (100.0 * (1.0 - (f.pool_utilization - f.pool_saturation) / span)).clamp(0.0, 100.0)
    };
    let target = f.query_target_secs.max(1e-9);
    let latency = if f.mean_query_secs <= target {
        100.0
    } else {
        (100.0 * (1.0 - (f.mean_query_secs - target) / (9.0 * target))).clamp(0.0, 100.0)
    };
    let errors = (100.0 * (1.0 - 10.0 * f.query_error_rate)).clamp(0.0, 100.0);
    let queries = latency.min(errors);
    let overall = 0.30 * agents + 0.15 * orphans + 0.15 * help + 0.20 * pool + 0.20 * queries;
    SharedStateScore { agents, orphans, help, pool, queries, overall }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_median_gap_is_the_interval_whatever_the_order() {
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // Beats every 30 s with one lost beat (a 60 s gap): the median stays 30 s.
        let times = [at(120), at(0), at(30), at(60), at(120 + 30), at(60 + 60)];
        assert_eq!(gaps(&times), [30.0, 30.0, 60.0, 0.0, 30.0]);
        assert_eq!(estimate_interval(&times), Some(Duration::from_secs(30)));
        assert_eq!(estimate_interval(&[at(0), at(30)]), None, "one gap is not enough");
    }

    #[test]
    fn recency_is_relative_to_the_agents_own_interval() {
        assert_eq!(recency_score(0.0, 30.0), 100.0);
        assert_eq!(recency_score(45.0, 30.0), 100.0); // 1.5 intervals: grace
        assert_eq!(recency_score(90.0, 30.0), 70.0); // 3 intervals: 100 − 20 × 1.5
        assert_eq!(recency_score(120.0, 30.0), 50.0); // 4 intervals
        assert_eq!(recency_score(195.0, 30.0), 0.0); // 6.5 intervals
        // The same age is nothing for an hourly agent.
        assert_eq!(recency_score(195.0, 3600.0), 100.0);
    }

    #[test]
    fn regularity_is_one_minus_the_coefficient_of_variation() {
        assert_eq!(regularity_score(&[30.0, 30.0, 30.0]), 100.0);
        // gaps 20, 40: mean 30, std 10, cv 1/3.
        assert!(close(regularity_score(&[20.0, 40.0]), 100.0 * (1.0 - 1.0 / 3.0)));
        // gaps 1, 100, 1, 100: mean 50.5, std 49.5: 100 × (1 − 49.5/50.5) = 100/50.5.
        assert!(close(regularity_score(&[1.0, 100.0, 1.0, 100.0]), 100.0 / 50.5));
        assert_eq!(regularity_score(&[30.0]), 100.0);
    }

    #[test]
    fn coordinator_health_on_hand_computed_inputs() {
        // Active, on time, no failures.
        assert_eq!(coordinator_health(100.0, State::Active, 0, 15.0, 45.0), 100.0);
        // Active, 4 intervals late: exactly the recovery threshold.
        assert_eq!(coordinator_health(50.0, State::Active, 0, 15.0, 45.0), 50.0);
        // On time but 2 failures in the window: 100 − 30.
        assert_eq!(coordinator_health(100.0, State::Active, 2, 15.0, 45.0), 70.0);
        // Failures are capped at 45 points.
        assert_eq!(coordinator_health(100.0, State::Active, 9, 15.0, 45.0), 55.0);
        // Standby (70 %) and 3 intervals late (70): 49.
        assert!(close(coordinator_health(70.0, State::Standby, 0, 15.0, 45.0), 49.0));
        assert_eq!(coordinator_health(100.0, State::Manual, 0, 15.0, 45.0), 0.0);
    }

    #[test]
    fn heartbeat_health_and_bands() {
        assert_eq!(heartbeat_health(100.0, 100.0, 100.0, 100.0), 100.0);
        // Not heard from: critical whatever the rest.
        assert_eq!(heartbeat_health(0.0, 100.0, 100.0, 100.0), 0.0);
        // 0.9 × (40 + 0.35 × 50 + 25) = 0.9 × 82.5 = 74.25: fair.
        let s = heartbeat_health(90.0, 100.0, 50.0, 100.0);
        assert!(close(s, 74.25));
        assert_eq!(band(s), HealthBand::Fair);
        assert_eq!(band(75.0), HealthBand::Good);
        assert_eq!(band(24.9), HealthBand::Critical);
        assert_eq!(band(25.0), HealthBand::Poor);
        assert_eq!(error_score(1, 4), 75.0);
        assert_eq!(error_score(9, 4), 0.0);
    }

    #[test]
    fn z_scores_on_hand_computed_inputs() {
        // Window 8, 10, 12: mean 10, std sqrt(8/3) = 1.63299...; 20 is 6.1237 away.
        let z = z_score(&[8.0, 10.0, 12.0], 20.0, 3, 0.0, 0.0).unwrap();
        assert!(close(z.mean, 10.0));
        assert!((z.z - 6.123_724_356_957_945).abs() < 1e-12);
        assert_eq!(anomaly_level(z.z, 3.0, 5.0), Some(AnomalyLevel::Critical));
        assert_eq!(anomaly_level(-3.5, 3.0, 5.0), Some(AnomalyLevel::High));
        assert_eq!(anomaly_level(2.9, 3.0, 5.0), None);
        // Too few samples: no verdict.
        assert!(z_score(&[1.0, 2.0], 50.0, 3, 0.0, 0.0).is_none());
        // A constant series: the floor (1 % of the mean) keeps a tiny change ordinary.
        let flat = z_score(&[100.0; 20], 100.5, 10, 0.01, 1e-6).unwrap();
        assert!(close(flat.z, 0.5));
    }

    #[test]
    fn the_newest_value_is_tested_not_the_oldest() {
        let mut series = vec![10.0; 20];
        series.push(100.0);
        let found = detect_anomaly(&series, 60, 10, 0.01, 1e-6, 3.0, 5.0).unwrap();
        assert_eq!(found.0, AnomalyLevel::Critical);
        // The same values with the spike first (a series read in the wrong order):
        // the newest is ordinary.
        series.reverse();
        assert_eq!(detect_anomaly(&series, 60, 10, 0.01, 1e-6, 3.0, 5.0), None);
    }

    #[test]
    fn staleness_classes_and_scaled_thresholds() {
        let (a, s) = (Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(classify_heartbeat(None, a, s), HeartbeatClass::NoHeartbeat);
        assert_eq!(classify_heartbeat(Some(Duration::from_secs(60)), a, s), HeartbeatClass::Active);
        assert_eq!(classify_heartbeat(Some(Duration::from_secs(61)), a, s), HeartbeatClass::Stale);
        assert_eq!(classify_heartbeat(Some(Duration::from_secs(301)), a, s), HeartbeatClass::Inactive);
        let stale = Duration::from_secs(300);
        assert_eq!(scaled_threshold(stale, 3.0, Duration::from_secs(30)), stale);
        assert_eq!(scaled_threshold(stale, 3.0, Duration::from_secs(3600)), Duration::from_secs(10_800));
    }

    #[test]
    fn shared_state_score_weights() {
        let clean = SharedStateFindings {
            agents: 10,
            pool_saturation: 0.9,
            query_target_secs: 0.05,
            ..Default::default()
        };
        assert_eq!(shared_state_health(&clean).overall, 100.0);
        let troubled = SharedStateFindings {
            inconsistent_agents: 5, // agents 50
            orphan_rows: 3,         // orphans 70
            stuck_help_requests: 1, // help 80
            pool_utilization: 0.95, // pool 50
            mean_query_secs: 0.275, // latency 50 (4.5 targets over, of 9)
            query_error_rate: 0.02, // errors 80
            ..clean
        };
        let s = shared_state_health(&troubled);
        assert!(close(s.agents, 50.0) && close(s.orphans, 70.0) && close(s.help, 80.0));
        assert!(close(s.pool, 50.0) && close(s.queries, 50.0));
        // 0.30 × 50 + 0.15 × 70 + 0.15 × 80 + 0.20 × 50 + 0.20 × 50 = 57.5
        assert!(close(s.overall, 57.5));
    }
}
