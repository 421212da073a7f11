-- LangGraphExecutor: one row per workflow run, rewritten after every step (the checkpoint).
CREATE TABLE IF NOT EXISTS workflow_runs (
    run_id VARCHAR(255) PRIMARY KEY NOT NULL,
    graph VARCHAR(255) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    step INTEGER NOT NULL DEFAULT 0,
    next_node VARCHAR(255),
    state TEXT NOT NULL,
    error TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_workflow_runs_status ON workflow_runs (status, created_at);
