-- Chunk packing: where each chunk of a workspace is stored.
--
-- Clients gather the encoded chunks of many files into pack objects and read
-- them back with range reads, because object stores charge per request far
-- more than per byte. The server keeps one location per chunk and workspace
-- (first claim wins): a chunk is bytes pack_offset .. pack_offset + pack_len
-- of the object named pack_id (lower-case hex) in the workspace's container.
-- All three are NULL for a chunk stored as an object of its own named by its
-- id, which is what every chunk recorded before this migration is.
-- One ALTER per column: SQLite adds a single column per statement.

ALTER TABLE chunk_refs ADD COLUMN pack_id TEXT;
ALTER TABLE chunk_refs ADD COLUMN pack_offset BIGINT;
ALTER TABLE chunk_refs ADD COLUMN pack_len BIGINT;
