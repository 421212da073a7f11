DROP TABLE IF EXISTS vigil_write_batches;
