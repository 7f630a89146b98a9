//! OAuth 1.0a provider state for the REST API v2: consumers, request and
//! access tokens, and the nonces that make a signed request single-use.
//!
//! What must happen once happens in one statement or one transaction: a
//! request token is authorized once (a conditional update), exchanged once
//! (deleted, conditional on its user, consumer, verifier and expiry, in the
//! transaction that creates the access token), a nonce is accepted once
//! (an insert into its primary key), and removing a consumer ends all its
//! tokens with it. Secrets are kept in clear: HMAC-SHA1 needs them.

use stacksync_proto::{Error, UserId};

use crate::error::{DbContext, StoreError};
use crate::rows::{get, parse_id};
use crate::{MetaStore, now_ms};

/// A registered API client (the web UI, a mobile app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConsumer {
    pub key: String,
    pub secret: String,
    pub name: String,
    pub callback: Option<String>,
}

/// A temporary credential on its way to authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestToken {
    pub token: String,
    pub secret: String,
    pub consumer_key: String,
    pub callback: Option<String>,
    pub verifier: Option<String>,
    pub user: Option<UserId>,
    /// When it was issued (milliseconds since the epoch).
    pub created_at: i64,
    /// When it stops being usable (milliseconds since the epoch).
    pub expires_at: i64,
}

/// An app a user authorized, as they see it in their list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedApp {
    pub consumer_key: String,
    pub name: String,
    /// When its oldest live access token was issued (milliseconds).
    pub authorized_at: i64,
}

/// A token that acts for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub secret: String,
    pub consumer_key: String,
    pub user: UserId,
}

impl MetaStore {
    /// Registers a consumer.
    pub async fn create_oauth_consumer(&self, c: &OAuthConsumer) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO oauth_consumers (consumer_key, secret, name, callback, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&c.key)
            .bind(&c.secret)
            .bind(&c.name)
            .bind(&c.callback)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .ctx("creating an OAuth consumer")?;
        Ok(())
    }

    /// A consumer by key.
    pub async fn oauth_consumer(&self, key: &str) -> Result<Option<OAuthConsumer>, StoreError> {
        let row = sqlx::query("SELECT consumer_key, secret, name, callback FROM oauth_consumers WHERE consumer_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an OAuth consumer")?;
        row.map(|r| {
            Ok(OAuthConsumer {
                key: get(&r, "consumer_key")?,
                secret: get(&r, "secret")?,
                name: get(&r, "name")?,
                callback: get(&r, "callback")?,
            })
        })
        .transpose()
    }

    /// Stores a new request token.
    pub async fn create_request_token(&self, t: &RequestToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_request_tokens (token, secret, consumer_key, callback, verifier, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6)",
        )
        .bind(&t.token)
        .bind(&t.secret)
        .bind(&t.consumer_key)
        .bind(&t.callback)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating a request token")?;
        Ok(())
    }

    /// An unexpired request token.
    pub async fn request_token(&self, token: &str) -> Result<Option<RequestToken>, StoreError> {
        let row = sqlx::query(
            "SELECT token, secret, consumer_key, callback, verifier, user_id, created_at, expires_at FROM oauth_request_tokens \
             WHERE token = $1 AND expires_at > $2",
        )
        .bind(token)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a request token")?;
        row.map(|r| {
            let user: Option<String> = get(&r, "user_id")?;
            Ok(RequestToken {
                token: get(&r, "token")?,
                secret: get(&r, "secret")?,
                consumer_key: get(&r, "consumer_key")?,
                callback: get(&r, "callback")?,
                verifier: get(&r, "verifier")?,
                user: user
                    .map(|u| parse_id("oauth_request_tokens", &u))
                    .transpose()?,
                created_at: get(&r, "created_at")?,
                expires_at: get(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    /// Marks a request token as authorized by `user` with `verifier`.
    pub async fn authorize_request_token(
        &self,
        token: &str,
        user: UserId,
        verifier: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_request_tokens SET user_id = $1, verifier = $2 WHERE token = $3 AND user_id IS NULL AND expires_at > $4",
        )
        .bind(user.to_string())
        .bind(verifier)
        .bind(token)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .ctx("authorizing a request token")?;
        if done.rows_affected() == 0 {
            return Err(Error::unauthenticated(
                "request token unknown, expired or already authorized",
            )
            .into());
        }
        Ok(())
    }

    /// Swaps an authorized request token for an access token, once: the
    /// request token is deleted in the same transaction, conditional on
    /// being authorized by `access.user` for `access.consumer_key` with
    /// `verifier` and unexpired, so of two concurrent exchanges one wins.
    pub async fn exchange_request_token(
        &self,
        request: &str,
        verifier: &str,
        access: &AccessToken,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let done = sqlx::query(
            "DELETE FROM oauth_request_tokens WHERE token = $1 AND user_id = $2 AND consumer_key = $3 \
             AND verifier = $4 AND expires_at > $5",
        )
        .bind(request)
        .bind(access.user.to_string())
        .bind(&access.consumer_key)
        .bind(verifier)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .ctx("consuming a request token")?;
        if done.rows_affected() == 0 {
            return Err(Error::unauthenticated(
                "request token unknown, expired, already used or not authorized",
            )
            .into());
        }
        sqlx::query(
            "INSERT INTO oauth_access_tokens (token, secret, consumer_key, user_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&access.token)
        .bind(&access.secret)
        .bind(&access.consumer_key)
        .bind(access.user.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .ctx("creating an access token")?;
        tx.commit().await.ctx("committing an access token")?;
        Ok(())
    }

    /// Deletes a request token its user has not authorized (they denied
    /// it); `false` if there was none such.
    pub async fn delete_request_token(&self, token: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM oauth_request_tokens WHERE token = $1 AND user_id IS NULL")
                .bind(token)
                .execute(&self.pool)
                .await
                .ctx("deleting a request token")?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes request tokens that expired before `before` (milliseconds).
    pub async fn prune_request_tokens(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_request_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .ctx("pruning request tokens")?;
        Ok(done.rows_affected())
    }

    /// An access token by its public part.
    pub async fn access_token(&self, token: &str) -> Result<Option<AccessToken>, StoreError> {
        let row = sqlx::query(
            "SELECT token, secret, consumer_key, user_id FROM oauth_access_tokens WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an access token")?;
        row.map(|r| {
            Ok(AccessToken {
                token: get(&r, "token")?,
                secret: get(&r, "secret")?,
                consumer_key: get(&r, "consumer_key")?,
                user: parse_id("oauth_access_tokens", &get::<String>(&r, "user_id")?)?,
            })
        })
        .transpose()
    }

    /// Records a nonce of `consumer_key` and `token` (empty for none) at
    /// timestamp `ts`, to be kept until `keep_until` (seconds); returns
    /// `false` if this (consumer, token, timestamp, nonce) was seen before,
    /// i.e. the request is a replay. One insert into the primary key, so
    /// of two concurrent uses exactly one is accepted.
    pub async fn use_nonce(
        &self,
        consumer_key: &str,
        token: &str,
        ts: i64,
        nonce: &str,
        keep_until: i64,
    ) -> Result<bool, StoreError> {
        if nonce.is_empty() || nonce.len() > 255 {
            return Err(Error::bad_request("an OAuth nonce has 1 to 255 bytes").into());
        }
        let done = sqlx::query(
            "INSERT INTO oauth_nonces (consumer_key, token, ts, nonce, keep_until) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(consumer_key)
        .bind(token)
        .bind(ts)
        .bind(nonce)
        .bind(keep_until)
        .execute(&self.pool)
        .await
        .ctx("recording a nonce")?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets nonces that need not be kept after `before` (seconds); the
    /// API refuses timestamps that old anyway.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_nonces WHERE keep_until < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .ctx("pruning nonces")?;
        Ok(done.rows_affected())
    }

    /// Every registered consumer, by key.
    pub async fn oauth_consumers(&self) -> Result<Vec<OAuthConsumer>, StoreError> {
        let rows = sqlx::query(
            "SELECT consumer_key, secret, name, callback FROM oauth_consumers ORDER BY consumer_key",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("listing OAuth consumers")?;
        rows.iter()
            .map(|r| {
                Ok(OAuthConsumer {
                    key: get(r, "consumer_key")?,
                    secret: get(r, "secret")?,
                    name: get(r, "name")?,
                    callback: get(r, "callback")?,
                })
            })
            .collect()
    }

    /// Removes a consumer and, in the same transaction, every token and
    /// nonce of it; `false` if there was no such consumer.
    pub async fn delete_oauth_consumer(&self, key: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        for sql in [
            "DELETE FROM oauth_access_tokens WHERE consumer_key = $1",
            "DELETE FROM oauth_request_tokens WHERE consumer_key = $1",
            "DELETE FROM oauth_nonces WHERE consumer_key = $1",
        ] {
            sqlx::query(sql)
                .bind(key)
                .execute(&mut *tx)
                .await
                .ctx("ending a consumer's tokens")?;
        }
        let done = sqlx::query("DELETE FROM oauth_consumers WHERE consumer_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .ctx("removing an OAuth consumer")?;
        tx.commit().await.ctx("committing a consumer's removal")?;
        Ok(done.rows_affected() > 0)
    }

    /// The consumers `user` authorized that still hold an access token for
    /// them, by name.
    pub async fn authorized_apps(&self, user: UserId) -> Result<Vec<AuthorizedApp>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.consumer_key AS consumer_key, c.name AS name, MIN(t.created_at) AS since \
             FROM oauth_access_tokens t JOIN oauth_consumers c ON c.consumer_key = t.consumer_key \
             WHERE t.user_id = $1 GROUP BY c.consumer_key, c.name ORDER BY c.name, c.consumer_key",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .ctx("listing authorized apps")?;
        rows.iter()
            .map(|r| {
                Ok(AuthorizedApp {
                    consumer_key: get(r, "consumer_key")?,
                    name: get(r, "name")?,
                    authorized_at: get(r, "since")?,
                })
            })
            .collect()
    }

    /// Ends every access token `consumer_key` holds for `user`; how many.
    pub async fn revoke_app(&self, user: UserId, consumer_key: &str) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM oauth_access_tokens WHERE user_id = $1 AND consumer_key = $2")
                .bind(user.to_string())
                .bind(consumer_key)
                .execute(&self.pool)
                .await
                .ctx("revoking an app")?;
        Ok(done.rows_affected())
    }
}
