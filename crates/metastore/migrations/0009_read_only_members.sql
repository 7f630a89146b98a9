-- Read-only members of shared folders.
--
-- A share proposal says whether the people who accept it may change the
-- folder or only read it (read_only = 1); accepting records that on the
-- new member's row, which is what the service checks before every write.
-- Every proposal and membership written before this migration is
-- read-write (0), as it always was. An owner is never read-only: the
-- membership check says so, so that no code path can make one.

ALTER TABLE share_proposals ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0
    CHECK (read_only IN (0, 1));
ALTER TABLE workspace_members ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0
    CHECK (read_only IN (0, 1) AND (read_only = 0 OR is_owner = 0));
