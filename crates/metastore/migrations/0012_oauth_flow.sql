-- OAuth 1.0a provider state, as the endpoints use it (REST API v2).
--
-- A nonce is unique per (consumer, token, timestamp) as RFC 5849 3.3 says,
-- so the token joins the key, and each use says until when it must be
-- remembered (its timestamp plus the accepted window): pruning deletes
-- what is past that, through its index, which bounds the table by the
-- request rate times the window. Nonces are only remembered for minutes,
-- so the old table is replaced rather than migrated.
DROP TABLE oauth_nonces;
CREATE TABLE oauth_nonces (
    consumer_key TEXT NOT NULL,
    token        TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    nonce        TEXT NOT NULL,
    keep_until   BIGINT NOT NULL,
    PRIMARY KEY (consumer_key, token, ts, nonce)
);
CREATE INDEX oauth_nonces_keep_until ON oauth_nonces (keep_until);

-- A user's authorised apps, and revoking one, read access tokens by user.
CREATE INDEX oauth_access_tokens_user ON oauth_access_tokens (user_id, consumer_key);
-- Removing a consumer ends its tokens.
CREATE INDEX oauth_access_tokens_consumer ON oauth_access_tokens (consumer_key);
CREATE INDEX oauth_request_tokens_consumer ON oauth_request_tokens (consumer_key);
-- Expired request tokens are pruned.
CREATE INDEX oauth_request_tokens_expires ON oauth_request_tokens (expires_at);
