-- StackSync metadata schema, version 1.
--
-- Written in the SQL that SQLite and PostgreSQL share, because one schema and
-- one code path serve both: ids are UUID text, digests are lower-case hex
-- text, times are BIGINT milliseconds since the Unix epoch, flags are BIGINT
-- 0/1 (sqlx's Any driver cannot read SQLite booleans).
-- The top level of a workspace is parent_id = '' (not NULL) so that the
-- live-name uniqueness index also covers top-level names.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    storage_user  TEXT,
    quota_limit   BIGINT NOT NULL,
    quota_used    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    os          TEXT NOT NULL DEFAULT '',
    app_version TEXT NOT NULL DEFAULT '',
    last_ip     TEXT,
    last_access BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id);

-- Login sessions for the RPC and gateway paths; only a hash of the token is kept.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id              TEXT PRIMARY KEY,
    owner_id        TEXT NOT NULL REFERENCES users (id),
    is_shared       BIGINT NOT NULL CHECK (is_shared IN (0, 1)),
    encryption      TEXT NOT NULL,
    container       TEXT NOT NULL UNIQUE,
    latest_revision BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    -- For a shared workspace: the folder (item id) it was made from.
    source_folder   TEXT
);

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    -- The workspace's name as this member sees it, and where they mount it.
    name         TEXT NOT NULL,
    mount_parent TEXT,
    is_owner     BIGINT NOT NULL CHECK (is_owner IN (0, 1)),
    joined_at    BIGINT NOT NULL,
    -- Client-side encryption: the workspace data key wrapped for this member.
    wrapped_key  TEXT,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_by_user ON workspace_members (user_id);

-- One row per item with its latest state: the change feed reads only this.
CREATE TABLE items (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    parent_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    is_folder       BIGINT NOT NULL CHECK (is_folder IN (0, 1)),
    mimetype        TEXT,
    status          TEXT NOT NULL,
    latest_version  BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    content_hash    TEXT,
    size            BIGINT NOT NULL,
    client_modified BIGINT NOT NULL,
    server_modified BIGINT NOT NULL,
    device_id       TEXT NOT NULL
);
-- The change feed: cost grows with the changes read, not the workspace size.
CREATE UNIQUE INDEX items_by_revision ON items (workspace_id, revision);
-- A live name is unique within its parent.
CREATE UNIQUE INDEX items_live_name ON items (workspace_id, parent_id, name) WHERE status <> 'DELETED';
CREATE INDEX items_by_parent ON items (workspace_id, parent_id);

-- Every version ever committed; deletes are versions too.
CREATE TABLE item_versions (
    item_id         TEXT NOT NULL REFERENCES items (id),
    version         BIGINT NOT NULL,
    workspace_id    TEXT NOT NULL,
    parent_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    is_folder       BIGINT NOT NULL CHECK (is_folder IN (0, 1)),
    mimetype        TEXT,
    status          TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    content_hash    TEXT,
    size            BIGINT NOT NULL,
    client_modified BIGINT NOT NULL,
    server_modified BIGINT NOT NULL,
    device_id       TEXT NOT NULL,
    PRIMARY KEY (item_id, version)
);

CREATE TABLE version_chunks (
    item_id  TEXT NOT NULL,
    version  BIGINT NOT NULL,
    seq      INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    size     BIGINT NOT NULL,
    PRIMARY KEY (item_id, version, seq),
    FOREIGN KEY (item_id, version) REFERENCES item_versions (item_id, version)
);

-- How many versions reference each chunk of a workspace: the basis for
-- garbage collection and for the real (deduplicated) storage use.
CREATE TABLE chunk_refs (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    chunk_id     TEXT NOT NULL,
    size         BIGINT NOT NULL,
    refs         BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, chunk_id)
);

CREATE TABLE share_proposals (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users (id),
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    folder_id    TEXT NOT NULL,
    encryption   TEXT NOT NULL,
    -- The shared workspace, once created.
    shared_workspace_id TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE share_invitees (
    proposal_id TEXT NOT NULL REFERENCES share_proposals (id),
    email       TEXT NOT NULL,
    user_id     TEXT REFERENCES users (id),
    state       TEXT NOT NULL,
    answered_at BIGINT,
    PRIMARY KEY (proposal_id, email)
);

-- OAuth 1.0a provider state (REST API v2).
CREATE TABLE oauth_consumers (
    consumer_key TEXT PRIMARY KEY,
    secret       TEXT NOT NULL,
    name         TEXT NOT NULL,
    callback     TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE oauth_request_tokens (
    token        TEXT PRIMARY KEY,
    secret       TEXT NOT NULL,
    consumer_key TEXT NOT NULL REFERENCES oauth_consumers (consumer_key),
    callback     TEXT,
    verifier     TEXT,
    user_id      TEXT REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE oauth_access_tokens (
    token        TEXT PRIMARY KEY,
    secret       TEXT NOT NULL,
    consumer_key TEXT NOT NULL REFERENCES oauth_consumers (consumer_key),
    user_id      TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL
);

-- A (consumer, timestamp, nonce) triple is accepted once: replays are refused.
CREATE TABLE oauth_nonces (
    consumer_key TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    nonce        TEXT NOT NULL,
    PRIMARY KEY (consumer_key, ts, nonce)
);
