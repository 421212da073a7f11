-- Every attempt to deliver an alert to a webhook (see the PostgreSQL migration).
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    webhook_name VARCHAR(255) NOT NULL,
    incident_key VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL CHECK (status IN ('firing', 'resolved')),
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    outcome VARCHAR(20) NOT NULL CHECK (outcome IN ('delivered', 'failed', 'gave_up')),
    http_status INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    attempted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_alert_deliveries_attempted_at ON alert_deliveries (attempted_at);
CREATE INDEX IF NOT EXISTS idx_alert_deliveries_incident ON alert_deliveries (incident_key, id);
