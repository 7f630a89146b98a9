-- Names that would collide on a case-insensitive file system.
--
-- macOS and Windows fold case (and macOS normalization) when they compare
-- names, so `Report.txt` and `report.txt` in one folder would overwrite each
-- other there. Each item row keeps its name's folding key (Unicode case
-- folding plus NFC, computed in Rust by stacksync_proto::fold_key: SQL's
-- lower() differs between SQLite and PostgreSQL and does not fold), and a
-- live key is unique within its parent, like the live name itself.
--
-- Rows stored before this migration get their key when a store opens the
-- database (MetaStore::connect); until then, and for an old live sibling
-- whose key another one already holds, the key is NULL, which the unique
-- index does not compare. Every row the store writes carries its key.

ALTER TABLE items ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX items_live_name_key ON items (workspace_id, parent_id, name_key) WHERE status <> 'DELETED';
