DROP INDEX IF EXISTS idx_help_requests_status_created;
ALTER TABLE help_requests DROP COLUMN claimed_by;
ALTER TABLE help_requests DROP COLUMN claimed_at;
