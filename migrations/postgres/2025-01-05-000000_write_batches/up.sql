-- The persistence actor's commit markers. Every transaction of the writer inserts its
-- (writer, batch) key here first, so that after a COMMIT whose answer was lost (the
-- connection or the server died under it) the writer can tell, on a new connection,
-- whether that transaction committed: the key is present (it did) or absent (it did
-- not). A writer keeps one row, the latest: each transaction deletes the writer's
-- earlier keys, whose outcomes it already knows. Rows of writers that stopped are
-- removed by the retention cleanup.
CREATE TABLE IF NOT EXISTS vigil_write_batches (
    writer_id BIGINT NOT NULL,
    batch_seq BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (writer_id, batch_seq)
);
