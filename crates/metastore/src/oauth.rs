//! OAuth 1.0a provider state for the REST API v2: consumers, request and
//! access tokens, and the nonces that make a signed request single-use.

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
    pub expires_at: i64,
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
        .bind(now_ms())
        .bind(t.expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating a request token")?;
        Ok(())
    }

    /// An unexpired request token.
    pub async fn request_token(&self, token: &str) -> Result<Option<RequestToken>, StoreError> {
        let row = sqlx::query(
            "SELECT token, secret, consumer_key, callback, verifier, user_id, expires_at FROM oauth_request_tokens \
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
    /// request token is deleted in the same transaction.
    pub async fn exchange_request_token(
        &self,
        request: &str,
        access: &AccessToken,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let done = sqlx::query("DELETE FROM oauth_request_tokens WHERE token = $1 AND user_id = $2 AND consumer_key = $3")
            .bind(request)
            .bind(access.user.to_string())
            .bind(&access.consumer_key)
            .execute(&mut *tx)
            .await
            .ctx("consuming a request token")?;
        if done.rows_affected() == 0 {
            return Err(Error::unauthenticated("request token unknown or not authorized").into());
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

    /// Records a nonce; returns `false` if this (consumer, timestamp, nonce)
    /// was seen before, i.e. the request is a replay.
    pub async fn use_nonce(
        &self,
        consumer_key: &str,
        ts: i64,
        nonce: &str,
    ) -> Result<bool, StoreError> {
        if nonce.is_empty() || nonce.len() > 128 {
            return Err(Error::bad_request("an OAuth nonce has 1 to 128 characters").into());
        }
        let done = sqlx::query(
            "INSERT INTO oauth_nonces (consumer_key, ts, nonce) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(consumer_key)
        .bind(ts)
        .bind(nonce)
        .execute(&self.pool)
        .await
        .ctx("recording a nonce")?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets nonces older than `before` (seconds); the API refuses
    /// timestamps that old anyway.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_nonces WHERE ts < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .ctx("pruning nonces")?;
        Ok(done.rows_affected())
    }
}
