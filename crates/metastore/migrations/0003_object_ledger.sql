-- Stored objects, honest quotas and garbage collection.
--
-- The object ledger: one row per object (an encoded chunk named by its id,
-- or a pack named by the client's random id) the server knows is stored in
-- a workspace's container, with the bytes it occupies. A workspace owner's
-- users.quota_used is the sum of the sizes of the objects of the
-- workspaces they own (a shared folder counts against its owner), kept in
-- the same transaction as every ledger insert and delete.
--
-- uploader_id is the user whose upload the server stored (or whose commit
-- first named an object a client wrote directly to Swift); NULL for an
-- object the garbage collector found in a container without a row.
-- marked_at is set by the garbage collector, in the transaction that finds
-- the object unreferenced: from then on commits refuse to name it and
-- uploads of it are refused until its row is gone.
CREATE TABLE objects (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    object_id    TEXT NOT NULL,
    size         BIGINT NOT NULL,
    uploader_id  TEXT,
    created_at   BIGINT NOT NULL,
    marked_at    BIGINT,
    PRIMARY KEY (workspace_id, object_id)
);

-- A version's own location of a chunk: set when the committer proposed a
-- span in a pack they uploaded themselves, and then read instead of the
-- workspace's chunk index, so another member's earlier claim (a plant) never
-- decides where this version's bytes are read from. NULL: the index's.
ALTER TABLE version_chunks ADD COLUMN pack_id TEXT;
ALTER TABLE version_chunks ADD COLUMN pack_offset BIGINT;
ALTER TABLE version_chunks ADD COLUMN pack_len BIGINT;

-- The garbage collector asks "does anything still use this object?" by
-- object name: these make each question an index probe.
CREATE INDEX chunk_refs_by_pack ON chunk_refs (workspace_id, pack_id);
CREATE INDEX version_chunks_by_pack ON version_chunks (pack_id);

-- Quota used to be the sum of the sizes clients declared; it is now the
-- bytes stored, which the ledger rebuilds from here on.
UPDATE users SET quota_used = 0;
