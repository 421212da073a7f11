-- The persistence actor's commit markers (see the PostgreSQL migration). SQLite
-- commits in process, so the writer never needs to look a marker up there; the table
-- exists so that both backends have one schema.
CREATE TABLE IF NOT EXISTS vigil_write_batches (
    writer_id BIGINT NOT NULL,
    batch_seq BIGINT NOT NULL,
    committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    PRIMARY KEY (writer_id, batch_seq)
);
