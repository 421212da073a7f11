-- Nodes, agent leases and the ownership log (see the PostgreSQL migration). An SQLite
-- database has one node by design: the tables exist so that both backends have one
-- schema, and the writer's fence check reads vigil_agent_leases on both.
CREATE TABLE IF NOT EXISTS vigil_nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    renewed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    lease_expires_at TEXT NOT NULL,
    stopped_at TEXT
);

CREATE TABLE IF NOT EXISTS vigil_agent_leases (
    agent_id TEXT PRIMARY KEY,
    node_id TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    placement TEXT NOT NULL DEFAULT 'singleton' CHECK (placement IN ('singleton', 'per_node')),
    acquired_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_vigil_agent_leases_node_id ON vigil_agent_leases (node_id);

CREATE TABLE IF NOT EXISTS vigil_ownership_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    ended_at TEXT,
    end_reason TEXT CHECK (end_reason IN ('released', 'expired', 'lost')),
    UNIQUE (agent_id, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_vigil_ownership_log_open ON vigil_ownership_log (agent_id) WHERE ended_at IS NULL;
