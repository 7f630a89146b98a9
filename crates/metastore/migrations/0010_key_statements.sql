-- Public identities and key statements of end-to-end encrypted workspaces.
--
-- Both are opaque to the server (the client's vault makes and verifies
-- them) and stored as lower-case hex text, like every other byte string
-- of this schema. `size` is the statement's length in bytes, so that a
-- page of statements is cut by its byte budget without reading the
-- statements themselves.
--
-- A workspace's statements form a chain, epoch 1, 2, 3, ... with no gap:
-- the primary key (workspace_id, epoch) is what settles two members
-- appending the same epoch at once, on both databases; the service only
-- ever inserts epoch = latest + 1 (`crates/metastore/src/key_chain.rs`).
-- Rows are deleted only with their user or workspace.

CREATE TABLE user_identities (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    identity   TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);

CREATE TABLE key_statements (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    epoch        BIGINT NOT NULL CHECK (epoch >= 1),
    statement    TEXT NOT NULL,
    size         BIGINT NOT NULL,
    author_id    TEXT NOT NULL,
    stored_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, epoch)
);
