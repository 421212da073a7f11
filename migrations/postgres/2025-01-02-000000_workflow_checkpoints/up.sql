-- LangGraphExecutor: one row per workflow run, rewritten after every step (the checkpoint).
CREATE TABLE IF NOT EXISTS workflow_runs (
    run_id VARCHAR(255) PRIMARY KEY,
    graph VARCHAR(255) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    step INTEGER NOT NULL DEFAULT 0,
    next_node VARCHAR(255),
    state JSONB NOT NULL,
    error TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_workflow_runs_status ON workflow_runs (status, created_at);
