-- Resumable upload sessions of the REST API v2 (`/upload_session`): a big
-- file sent in pieces, each kept as a write-once object of its own in the
-- server's staging container, then committed as one file.
--
-- A session belongs to one user and says where its bytes go: a new file
-- (parent_id, the folder's API id, NULL for the top folder; name;
-- autorename) or a new version of a file (file_id, if_match). received is
-- how many bytes it holds, always the sum of its whole pieces: a piece is
-- recorded by one conditional update (received = the offset it was sent
-- at), so two pieces racing at one offset cannot both count. A session
-- expires 24 hours after its last piece. size is reserved against the
-- quota of the owner of the workspace the file goes to (quota_owner_id)
-- until the session ends. finisher and finishing_until claim the session
-- for one finish at a time, for a while.
--
-- No foreign keys: removing a user or a workspace must not be refused
-- because of a session; sessions of removed users are pruned with the
-- expired ones.
CREATE TABLE upload_sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    quota_owner_id  TEXT NOT NULL,
    parent_id       TEXT,
    name            TEXT,
    autorename      BIGINT NOT NULL DEFAULT 0 CHECK (autorename IN (0, 1)),
    file_id         TEXT,
    if_match        BIGINT,
    mimetype        TEXT,
    size            BIGINT NOT NULL CHECK (size >= 0),
    received        BIGINT NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= size),
    pieces          BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    finisher        TEXT,
    finishing_until BIGINT,
    CHECK ((name IS NULL AND file_id IS NOT NULL) OR (name IS NOT NULL AND file_id IS NULL))
);
-- Open sessions per user (the cap), per quota owner (the reservation),
-- and the expired ones (pruning).
CREATE INDEX upload_sessions_user ON upload_sessions (user_id, expires_at);
CREATE INDEX upload_sessions_quota_owner ON upload_sessions (quota_owner_id, expires_at);
CREATE INDEX upload_sessions_expires ON upload_sessions (expires_at);

-- The staged objects, recorded before they are written (as the object
-- ledger records an upload before storing it), so that none is ever
-- stored without a row that leads to its deletion. start_offset and size
-- are NULL while the piece is being written; release_after is when the
-- object may be deleted: the writer's deadline while it is written, never
-- (the largest BIGINT) once it is a whole piece of a live session, and the
-- time its session ended after that. The garbage collector of workspace
-- containers never sees these objects: they live in a container of their
-- own, which belongs to no workspace.
CREATE TABLE upload_pieces (
    object_id     TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    start_offset  BIGINT,
    size          BIGINT,
    created_at    BIGINT NOT NULL,
    release_after BIGINT NOT NULL
);
CREATE INDEX upload_pieces_session ON upload_pieces (session_id, start_offset);
CREATE INDEX upload_pieces_release ON upload_pieces (release_after);
