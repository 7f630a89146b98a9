-- Sessions of the website and of desktop devices, as the devices page
-- lists them (issue 23): what kind of session it is, a label (a browser's
-- name), and the device a desktop session registered (`UpdateDevice`), so
-- that signing a device out ends its sessions.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'client';
ALTER TABLE sessions ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN device_id TEXT;

-- The trash: a workspace's deleted items, newest first.
CREATE INDEX items_deleted ON items (workspace_id, server_modified) WHERE status = 'DELETED';
