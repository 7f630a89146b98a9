-- Account control: disabled accounts and revocable sessions.
--
-- A disabled account (disabled_at set) cannot log in and none of its
-- sessions authenticates, even one created before it was disabled; NULL is
-- an active account. Sessions are revoked by user (logout everywhere, a
-- password change, disabling), hence the index.

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
CREATE INDEX sessions_by_user ON sessions (user_id);
