-- Each item row keeps the chunk list of its latest version, packed as the
-- change feed sends it (crates/metastore/src/packed_item.rs): every chunk's
-- position, id, size and the location it is read from (the version's own,
-- else the workspace's chunk index entry), fields joined by ':', chunks by
-- ','; NULL for folders, empty files and deletes.
--
-- Listing a workspace from 0 read each item's chunks from version_chunks
-- and each chunk's location from chunk_refs, two index probes per chunk:
-- most of a listing's time on PostgreSQL. Commits write the list with the
-- row; a location changes under a stored list only when a folder moves to
-- another workspace, which packs its items' lists again. (A chunk index
-- entry is deleted only once no version uses it, so its location never
-- changes while a stored list names it.)
--
-- Rows stored before this migration get their list here, from the tables,
-- in the SQL both databases share (string_agg: SQLite 3.44, PostgreSQL 9.0).

ALTER TABLE items ADD COLUMN chunk_list TEXT;

UPDATE items SET chunk_list = (
    SELECT string_agg(CAST(vc.seq AS TEXT) || ':' || vc.chunk_id || ':' || CAST(vc.size AS TEXT)
        || ':' || COALESCE(CAST(CASE WHEN vc.pack_id IS NULL THEN cr.pack_id ELSE vc.pack_id END AS TEXT), '')
        || ':' || COALESCE(CAST(CASE WHEN vc.pack_id IS NULL THEN cr.pack_offset ELSE vc.pack_offset END AS TEXT), '')
        || ':' || COALESCE(CAST(CASE WHEN vc.pack_id IS NULL THEN cr.pack_len ELSE vc.pack_len END AS TEXT), ''),
        ',')
    FROM version_chunks vc
    LEFT JOIN chunk_refs cr ON cr.workspace_id = items.workspace_id AND cr.chunk_id = vc.chunk_id
    WHERE vc.item_id = items.id AND vc.version = items.latest_version
)
WHERE is_folder = 0 AND size > 0;
