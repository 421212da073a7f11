-- Operator commands to running agents (`vigil agent restart|stop|fix ID`): the database
-- is the control plane, so a command works from any process that reaches it.
CREATE TABLE IF NOT EXISTS agent_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id VARCHAR(255) NOT NULL,
    action VARCHAR(20) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    requested_by VARCHAR(255),
    outcome TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_agent_commands_status ON agent_commands (status, id);
