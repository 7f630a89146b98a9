-- Shared links: a file or folder opened in a browser by anyone who holds
-- the link's URL (`/s/ID#SECRET`), read only ('view') or, for a folder,
-- upload only ('upload', a file request).
--
-- Only hashes are kept: the secret's BLAKE3 (hex), so that a leaked
-- database opens no link, and an optional password as an Argon2id PHC
-- string. `item_id` is the API id the link was made for (an item id, or a
-- shared folder's workspace id); the link acts as its owner, whose access
-- to that item the service checks again on every request, so there is no
-- reference to the item or its workspace here: a link whose item is gone
-- is dead, not an orphan row that blocks a delete.
--
-- Password attempts are counted per link in a fixed window
-- (`attempts` since `attempts_since`, milliseconds), one conditional
-- update per attempt, so every server instance sees the same count.
--
-- A link session is what a browser holds after opening a link: a random
-- token in a cookie, stored hashed with its expiry. Revoking a link
-- deletes it with its sessions; removing a user deletes their links
-- (ON DELETE CASCADE, as user removal deletes the user row last).

CREATE TABLE shared_links (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    item_id        TEXT NOT NULL,
    access         TEXT NOT NULL CHECK (access IN ('view', 'upload')),
    secret_hash    TEXT NOT NULL,
    password_hash  TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    attempts       BIGINT NOT NULL DEFAULT 0,
    attempts_since BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX shared_links_by_owner ON shared_links (owner_id, created_at);

CREATE TABLE link_sessions (
    token_hash TEXT PRIMARY KEY,
    link_id    TEXT NOT NULL REFERENCES shared_links (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX link_sessions_by_link ON link_sessions (link_id);
-- Expired sessions are pruned.
CREATE INDEX link_sessions_expires ON link_sessions (expires_at);
