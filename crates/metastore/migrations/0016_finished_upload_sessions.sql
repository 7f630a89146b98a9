-- Upload sessions of the REST API v2 that committed their file, kept for a
-- while after the session's row goes: a finish retried because its answer
-- was lost (a dropped connection, a timeout) then answers the file it
-- committed instead of "no such session", and the client knows its upload
-- landed. Written in the transaction that ends the session, so a finish
-- that committed is remembered exactly when its session is gone.
--
-- item_id is the file's API id, version the version the finish committed,
-- created whether it was a new file (1) or a new version (0). No foreign
-- keys, as for upload_sessions: rows of removed users are pruned with the
-- expired ones.
CREATE TABLE finished_upload_sessions (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    item_id          TEXT NOT NULL,
    version          BIGINT NOT NULL CHECK (version >= 0),
    created          BIGINT NOT NULL CHECK (created IN (0, 1)),
    remembered_until BIGINT NOT NULL
);
CREATE INDEX finished_upload_sessions_until ON finished_upload_sessions (remembered_until);
