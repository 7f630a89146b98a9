-- Sealed records of end-to-end encrypted workspaces, and sealed private
-- identities.
--
-- In a workspace whose encryption is client-side every version carries a
-- record its writer sealed (signed and encrypted: the real name, sizes,
-- times, content hash and chunk list), opaque to the server. It is kept
-- with the version (item_versions.record) and with the item's latest
-- state (items.record), which the change feed reads, as lower-case hex
-- text like every other byte string of this schema; NULL for a version
-- without one (every version of any other workspace, and every version
-- stored before this migration). A folder that moves to another workspace
-- moves its rows, records included.
--
-- A user may also keep their private identity, sealed under their
-- encryption passphrase, for their own other devices
-- (user_identities.sealed, hex, NULL when none): the server gives it to
-- that user only.

ALTER TABLE items ADD COLUMN record TEXT;
ALTER TABLE item_versions ADD COLUMN record TEXT;
ALTER TABLE user_identities ADD COLUMN sealed TEXT;
