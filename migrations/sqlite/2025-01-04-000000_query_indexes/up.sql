-- Indexes for the reads the monitors make on every pass, beyond the specification's
-- own: an agent's latest heartbeats (agent_id = ? ORDER BY timestamp DESC LIMIT n)
-- and a metric's series (metric_name = ? [AND agent_id = ?] AND timestamp >= ?).
-- Without them both scan every row of the agent or the metric name.
CREATE INDEX IF NOT EXISTS idx_agent_heartbeats_agent_timestamp ON agent_heartbeats (agent_id, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_performance_metrics_name_agent_timestamp ON performance_metrics (metric_name, agent_id, timestamp);
