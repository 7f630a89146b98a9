-- Delta locations: a chunk may be stored as a patch against another chunk
-- of the same workspace (its base), which a reader needs to decode it.
-- pack_base (lower-case hex chunk id) is set only with the other pack_*
-- columns, on a location whose bytes are such a delta; NULL everywhere
-- else, which is what every row written before this migration is.
--
-- While a chunk_refs row names a base, that row holds one reference on
-- the base's row (counted in its refs), so a base stays stored, and keeps
-- its location, for as long as any version can read a delta against it.
-- A base is always stored whole: chains are refused at commit.

ALTER TABLE chunk_refs ADD COLUMN pack_base TEXT;
ALTER TABLE version_chunks ADD COLUMN pack_base TEXT;

-- Releasing a base finds the entries that name it.
CREATE INDEX chunk_refs_by_base ON chunk_refs (workspace_id, pack_base) WHERE pack_base IS NOT NULL;
