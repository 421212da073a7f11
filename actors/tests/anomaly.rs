//! The performance monitor on real metrics: collection, and a z-score of the newest
//! sample on a synthetic series with a known spike (and none on a flat noisy one).

use chrono::Utc;
use vigil_actors::PerformanceMonitor;
use vigil_persistence::shared_state::Metric;
use vigil_runtime::testkit::memory_state;

use crate::monitor_common::*;

#[actix_rt::test]
async fn a_known_spike_is_critical_and_a_flat_noisy_series_is_quiet() {
    let shared = memory_state().await;
    shared.register_agent("spiky", "Synthetic").await.unwrap();
    shared.register_agent("calm", "Synthetic").await.unwrap();
    shared.register_agent("late_spike", "Synthetic").await.unwrap();
    let now = Utc::now();
    // 30 samples, one a second, noisy around 10 (±0.5): deterministic "noise".
    let noise = |i: i64| 10.0 + 0.5 * ((i * 7919) % 11 - 5) as f64 / 5.0;
    for i in 0..30 {
        let at = now - chrono::Duration::seconds(30 - i);
        for agent in ["spiky", "calm", "late_spike"] {
            // `late_spike` had its spike long ago, then went back to normal: the newest
            // value is ordinary, so there is nothing to report now.
            let value = if agent == "late_spike" && i == 2 { 100.0 } else { noise(i) };
            shared
                .add_performance_metric(Metric::new("synthetic_latency_ms", value).agent(agent).at(at))
                .await
                .unwrap();
        }
    }
    shared
        .add_performance_metric(Metric::new("synthetic_latency_ms", 40.0).agent("spiky").at(now))
        .await
        .unwrap();

    let mut config = fast_config().performance;
    config.anomaly_metrics.push("synthetic_latency_ms".into());
    let runtime = builder(&shared).child(PerformanceMonitor::child_spec(config)).start().await.unwrap();
    let alert = wait_for_event(&shared, "performance_anomaly_alert", "spiky").await;
    assert_eq!(alert["metric"], "synthetic_latency_ms");
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["value"], 40.0);
    assert!(alert["z"].as_f64().unwrap() >= 5.0, "{alert}");
    // The whole pass is done once its duration is recorded: nothing else was flagged.
    wait_until("a completed pass", || async { passes(&shared, "performance_monitor").await >= 1 }).await;
    let synthetic: Vec<_> = events(&shared, "performance_anomaly_alert")
        .await
        .into_iter()
        .filter(|e| e["metric"] == "synthetic_latency_ms")
        .collect();
    assert_eq!(synthetic.len(), 1, "only the spike: {synthetic:?}");

    // The runtime's own figures are collected, per agent and system-wide.
    let since = (now - chrono::Duration::minutes(1)).into();
    for name in ["pool_in_use", "pool_utilization", "query_mean_ms", "process_rss_bytes"] {
        assert!(!shared.metric_series(name, None, since).await.unwrap().is_empty(), "{name}");
    }
    wait_until("cycle durations of the monitor itself", || async {
        !shared
            .metric_series("cycle_duration_ms", Some("performance_monitor"), since)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    wait_until("process CPU (needs two passes)", || async {
        !shared.metric_series("process_cpu_percent", None, since).await.unwrap().is_empty()
    })
    .await;
    // The same sample is judged once: more passes, still one alert.
    wait_for_passes(&shared, &["performance_monitor"], 2).await;
    let again = events(&shared, "performance_anomaly_alert").await;
    assert_eq!(again.iter().filter(|e| e["metric"] == "synthetic_latency_ms").count(), 1);
    runtime.shutdown().await;
}
