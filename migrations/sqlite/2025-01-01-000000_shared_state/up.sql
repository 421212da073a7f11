-- The nine tables of the specification in SQLite types: TIMESTAMPTZ and JSONB become TEXT
-- (RFC 3339 timestamps in UTC, JSON text); SERIAL is INTEGER PRIMARY KEY AUTOINCREMENT.
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id VARCHAR(255) UNIQUE NOT NULL,
    agent_name VARCHAR(255) NOT NULL,
    status VARCHAR(50) DEFAULT 'initializing',
    last_heartbeat TEXT,
    last_state_change TEXT,
    uptime_details TEXT,
    metrics TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_agents_agent_id ON agents (agent_id);
CREATE INDEX IF NOT EXISTS idx_agents_status ON agents (status);
CREATE INDEX IF NOT EXISTS idx_agents_last_heartbeat ON agents (last_heartbeat DESC);

CREATE TABLE IF NOT EXISTS performance_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id INTEGER REFERENCES agents(id),
    metric_name VARCHAR(255) NOT NULL,
    metric_value REAL NOT NULL,
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    metadata TEXT,
    source_agent VARCHAR(255)
);
CREATE INDEX IF NOT EXISTS idx_performance_metrics_agent_id ON performance_metrics (agent_id);
CREATE INDEX IF NOT EXISTS idx_performance_metrics_timestamp ON performance_metrics (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_performance_metrics_metric_name ON performance_metrics (metric_name);

CREATE TABLE IF NOT EXISTS system_state (
    key VARCHAR(255) PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE IF NOT EXISTS agent_heartbeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id INTEGER REFERENCES agents(id),
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    status VARCHAR(50),
    message TEXT,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS idx_agent_heartbeats_agent_id ON agent_heartbeats (agent_id);
CREATE INDEX IF NOT EXISTS idx_agent_heartbeats_timestamp ON agent_heartbeats (timestamp);

CREATE TABLE IF NOT EXISTS system_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    event_data TEXT,
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    severity VARCHAR(20) DEFAULT 'info'
);
CREATE INDEX IF NOT EXISTS idx_system_events_timestamp ON system_events (timestamp);
CREATE INDEX IF NOT EXISTS idx_system_events_event_type ON system_events (event_type);
CREATE INDEX IF NOT EXISTS idx_system_events_severity ON system_events (severity);
-- From the specification's "Query Optimization" section.
CREATE INDEX IF NOT EXISTS idx_system_events_timestamp_type ON system_events (timestamp DESC, event_type);

CREATE TABLE IF NOT EXISTS help_requests (
    request_id VARCHAR(255) PRIMARY KEY,
    query TEXT NOT NULL,
    context TEXT,
    status VARCHAR(50) DEFAULT 'pending',
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE IF NOT EXISTS help_responses (
    request_id VARCHAR(255) PRIMARY KEY REFERENCES help_requests(request_id),
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    response TEXT NOT NULL,
    status VARCHAR(50) DEFAULT 'complete'
);

CREATE TABLE IF NOT EXISTS agent_communications (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    from_agent_id INTEGER REFERENCES agents(id),
    to_agent_id INTEGER REFERENCES agents(id),
    message_type VARCHAR(100),
    message_content TEXT,
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    status VARCHAR(50) DEFAULT 'sent'
);

CREATE TABLE IF NOT EXISTS llm_conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id INTEGER REFERENCES agents(id),
    conversation_id VARCHAR(255),
    message_content TEXT,
    response_content TEXT,
    timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    metadata TEXT
);
