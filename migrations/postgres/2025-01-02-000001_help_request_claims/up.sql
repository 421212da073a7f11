-- AIHelpAgent: who claimed a request and when, so a claim whose helper died can be
-- reclaimed after a timeout (status 'processing' with an old claimed_at).
ALTER TABLE help_requests ADD COLUMN claimed_at TIMESTAMPTZ;
ALTER TABLE help_requests ADD COLUMN claimed_by VARCHAR(255);
CREATE INDEX IF NOT EXISTS idx_help_requests_status_created ON help_requests (status, created_at);
