//! The OAuth 1.0a provider of the REST API v2 over the metadata store: the
//! three-legged flow (request token, the resource owner's authorization,
//! the exchange for an access token), the verification of every signed API
//! request, a user's authorised apps, and the registered consumers.
//!
//! The pure protocol is `stacksync_oauth`'s; this module keeps its state.
//! Single use is the database's: a request token is authorized by one
//! conditional update and exchanged by one conditional delete in the
//! transaction that creates the access token, a nonce is accepted by one
//! insert into its key. The authorization page's password goes through the
//! one password check of login ([`Service::check_password`]), with its
//! throttling. Nonces and expired request tokens are pruned as they are
//! written, at most once a minute per process, so both tables stay bounded.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use stacksync_metastore::{AccessToken, AuthorizedApp, MetaStore, OAuthConsumer, RequestToken};
use stacksync_oauth::{
    Callback, Credentials, Endpoint, HttpRequest, IssuedCredentials, NonceStore, NonceUse,
    OAuthError, PendingAuthorization, Provider, Secret, TokenKind, Transport, generate_verifier,
};
use stacksync_proto::{Error, UserId};

use crate::Service;
use crate::error::ServiceError;

/// Prune nonces and expired request tokens at most this often (seconds).
const PRUNE_EVERY_SECS: u64 = 60;

/// Longest consumer name an administrator may register.
pub const MAX_CONSUMER_NAME: usize = 100;

/// Who a verified API request acts for, and through which app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCaller {
    /// The resource owner who authorized the app.
    pub user: UserId,
    /// The app (`oauth_consumer_key`).
    pub consumer_key: String,
}

/// A request token waiting for its user, as the authorization page shows
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApp {
    /// The app's registered name.
    pub name: String,
    /// Whether the user will be shown the verifier (`oob`) rather than
    /// sent back to the app.
    pub out_of_band: bool,
}

/// The outcome of the user's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The app's registered name.
    pub app: String,
    /// The verifier the app needs for the exchange.
    pub verifier: String,
    /// Where to send the user (the callback with `oauth_token` and
    /// `oauth_verifier`), or `None` for `oob`: show them the verifier.
    pub redirect: Option<String>,
}

/// A consumer as an administrator registered it: the secret is shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsumer {
    /// `oauth_consumer_key`.
    pub key: String,
    /// The client shared-secret.
    pub secret: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn secs_to_db(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn store_failed(e: impl Into<ServiceError>) -> OAuthError {
    let e: ServiceError = e.into();
    tracing::warn!(error = %e, "OAuth store failed");
    OAuthError::Store(Box::new(e))
}

/// The secrets of consumers and tokens, as the metadata store keeps them.
struct StoreCredentials<'a>(&'a MetaStore);

#[async_trait]
impl Credentials for StoreCredentials<'_> {
    type Error = ServiceError;

    async fn consumer_secret(&self, consumer_key: &str) -> Result<Option<Secret>, ServiceError> {
        Ok(self
            .0
            .oauth_consumer(consumer_key)
            .await?
            .map(|c| Secret::new(c.secret)))
    }

    async fn token_secret(
        &self,
        consumer_key: &str,
        token: &str,
        kind: TokenKind,
    ) -> Result<Option<Secret>, ServiceError> {
        let found = match kind {
            // Only unexpired ones are found.
            TokenKind::Temporary => self
                .0
                .request_token(token)
                .await?
                .map(|t| (t.consumer_key, t.secret)),
            TokenKind::Access => self
                .0
                .access_token(token)
                .await?
                .map(|t| (t.consumer_key, t.secret)),
        };
        Ok(found
            .filter(|(owner, _)| owner == consumer_key)
            .map(|(_, secret)| Secret::new(secret)))
    }
}

/// The nonces used, in the metadata store, pruned as they are written.
struct StoreNonces<'a>(&'a Service);

#[async_trait]
impl NonceStore for StoreNonces<'_> {
    type Error = ServiceError;

    async fn remember(&self, used: &NonceUse<'_>) -> Result<bool, ServiceError> {
        self.0.prune_oauth_state(used.now).await?;
        Ok(self
            .0
            .store()
            .use_nonce(
                used.consumer_key,
                used.token,
                secs_to_db(used.timestamp),
                used.nonce,
                secs_to_db(used.keep_until),
            )
            .await?)
    }
}

/// Whether `callback` is allowed for a consumer registered with
/// `registered`: anything when it registered none; otherwise `oob`, the
/// registered URI itself, or a URI under it (the next character a `/`,
/// `?` or `#`, or the registered one ending in `/`).
fn callback_allowed(registered: Option<&str>, callback: &Callback) -> bool {
    let (Some(registered), Callback::Uri(uri)) = (registered, callback) else {
        return true;
    };
    match uri.strip_prefix(registered) {
        Some("") => true,
        Some(rest) => registered.ends_with('/') || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

impl Service {
    fn oauth_provider(&self) -> Provider {
        Provider::new(self.config().oauth.clone())
    }

    /// Deletes nonces no longer needed and expired request tokens, unless
    /// that was done in the last minute by this process.
    async fn prune_oauth_state(&self, now: u64) -> Result<(), ServiceError> {
        let last = self.inner.oauth_pruned.load(Ordering::Relaxed);
        if now < last.saturating_add(PRUNE_EVERY_SECS)
            || self
                .inner
                .oauth_pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let nonces = self.store().prune_nonces(secs_to_db(now)).await?;
        let tokens = self
            .store()
            .prune_request_tokens(secs_to_db(now).saturating_mul(1000))
            .await?;
        tracing::debug!(nonces, tokens, "pruned OAuth state");
        Ok(())
    }

    /// Temporary Credential Request (`POST /oauth/request_token`, RFC 5849
    /// 2.1): a consumer-signed request with `oauth_callback` (`oob` or an
    /// absolute URI, under the consumer's registered callback if it has
    /// one) gets a request token, stored until it expires.
    pub async fn oauth_request_token(
        &self,
        request: &HttpRequest<'_>,
        transport: Transport,
    ) -> Result<IssuedCredentials, OAuthError> {
        let provider = self.oauth_provider();
        let now = now_secs();
        let verified = provider
            .verify(
                request,
                Endpoint::TemporaryCredentials,
                transport,
                now,
                &StoreCredentials(self.store()),
                &StoreNonces(self),
            )
            .await?;
        let callback = verified
            .callback
            .ok_or(OAuthError::MissingParameter("oauth_callback"))?;
        let consumer = self
            .store()
            .oauth_consumer(&verified.consumer_key)
            .await
            .map_err(store_failed)?
            .ok_or(OAuthError::UnknownConsumer)?;
        if !callback_allowed(consumer.callback.as_deref(), &callback) {
            return Err(OAuthError::ParameterRejected {
                name: "oauth_callback",
                reason: "not under the callback registered for this consumer",
            });
        }
        let issued = IssuedCredentials::generate()?;
        let created_at = secs_to_db(now).saturating_mul(1000);
        let lifetime = secs_to_db(provider.config().temporary_credentials_lifetime_secs);
        self.store()
            .create_request_token(&RequestToken {
                token: issued.token.clone(),
                secret: issued.secret.expose().to_owned(),
                consumer_key: verified.consumer_key,
                callback: Some(callback.as_str().to_owned()),
                verifier: None,
                user: None,
                created_at,
                expires_at: created_at.saturating_add(lifetime.saturating_mul(1000)),
            })
            .await
            .map_err(store_failed)?;
        Ok(issued)
    }

    /// The app a live, not yet authorized request token was issued to, for
    /// the authorization page; `NotFound` when there is none (unknown,
    /// expired, already answered).
    pub async fn oauth_pending(&self, token: &str) -> Result<PendingApp, Error> {
        let (pending, consumer) = self.pending_request(token).await?;
        Ok(PendingApp {
            name: consumer.name,
            out_of_band: pending.callback.as_deref() == Some("oob"),
        })
    }

    async fn pending_request(&self, token: &str) -> Result<(RequestToken, OAuthConsumer), Error> {
        let gone =
            || Error::not_found("this authorization request is unknown, expired or answered");
        let pending = self
            .store()
            .request_token(token)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?
            .filter(|t| t.user.is_none())
            .ok_or_else(gone)?;
        let consumer = self
            .store()
            .oauth_consumer(&pending.consumer_key)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?
            .ok_or_else(gone)?;
        Ok((pending, consumer))
    }

    /// Resource Owner Authorization, approved (RFC 5849 2.2): the user's
    /// email and password are checked by the one throttled password check
    /// of login, then the request token is authorized for them with a new
    /// verifier, once. `peer` is the browser's address, for the throttle.
    pub async fn oauth_approve(
        &self,
        token: &str,
        email: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Approval, Error> {
        let (pending, consumer) = self.pending_request(token).await?;
        let user = self.check_password(email, password, peer).await?;
        let verifier = generate_verifier().map_err(|e| Error::internal(e.to_string()))?;
        self.store()
            .authorize_request_token(token, user, &verifier)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        let callback = Callback::parse(pending.callback.as_deref().unwrap_or("oob"))
            .map_err(|e| Error::internal(format!("stored callback: {e}")))?;
        Ok(Approval {
            app: consumer.name,
            redirect: callback.redirect(token, &verifier),
            verifier,
        })
    }

    /// Resource Owner Authorization, denied: the request token is deleted
    /// (if it was not authorized already). Needs no password: it gives
    /// nothing to anyone. Returns the app's name.
    pub async fn oauth_deny(&self, token: &str) -> Result<String, Error> {
        let (_, consumer) = self.pending_request(token).await?;
        self.store()
            .delete_request_token(token)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        Ok(consumer.name)
    }

    /// Token Request (`POST /oauth/access_token`, RFC 5849 2.3): a request
    /// signed with the consumer's and the request token's secrets, with the
    /// verifier the user's approval gave, gets an access token, once: the
    /// request token is consumed in the transaction that stores it.
    pub async fn oauth_access_token(
        &self,
        request: &HttpRequest<'_>,
        transport: Transport,
    ) -> Result<IssuedCredentials, OAuthError> {
        let provider = self.oauth_provider();
        let now = now_secs();
        let verified = provider
            .verify(
                request,
                Endpoint::TokenCredentials,
                transport,
                now,
                &StoreCredentials(self.store()),
                &StoreNonces(self),
            )
            .await?;
        let token = verified.token.as_deref().ok_or(OAuthError::UnknownToken)?;
        let pending = self
            .store()
            .request_token(token)
            .await
            .map_err(store_failed)?
            .ok_or(OAuthError::UnknownToken)?;
        provider.check_exchange(
            &verified,
            &PendingAuthorization {
                consumer_key: &pending.consumer_key,
                issued_at: u64::try_from(pending.created_at / 1000).unwrap_or(0),
                verifier: pending.verifier.as_deref(),
                used: false,
            },
            now,
        )?;
        let (Some(user), Some(verifier)) = (pending.user, pending.verifier.as_deref()) else {
            return Err(OAuthError::NotAuthorized);
        };
        let issued = IssuedCredentials::generate()?;
        let access = AccessToken {
            token: issued.token.clone(),
            secret: issued.secret.expose().to_owned(),
            consumer_key: verified.consumer_key.clone(),
            user,
        };
        match self
            .store()
            .exchange_request_token(token, verifier, &access)
            .await
        {
            Ok(()) => Ok(issued),
            // Another exchange (or its expiry) got there first.
            Err(e) if e.to_proto().kind == stacksync_proto::ErrorKind::Unauthenticated => {
                Err(OAuthError::TokenUsed)
            }
            Err(e) => Err(store_failed(e)),
        }
    }

    /// Verifies a signed REST API v2 request: HMAC-SHA1 (or PLAINTEXT where
    /// allowed) with a live access token, within the timestamp window,
    /// nonce unused; the user it acts for must not be disabled.
    pub async fn verify_api_request(
        &self,
        request: &HttpRequest<'_>,
        transport: Transport,
    ) -> Result<ApiCaller, OAuthError> {
        let verified = self
            .oauth_provider()
            .verify(
                request,
                Endpoint::Resource,
                transport,
                now_secs(),
                &StoreCredentials(self.store()),
                &StoreNonces(self),
            )
            .await?;
        let token = verified.token.as_deref().ok_or(OAuthError::UnknownToken)?;
        let access = self
            .store()
            .access_token(token)
            .await
            .map_err(store_failed)?
            .filter(|t| t.consumer_key == verified.consumer_key)
            .ok_or(OAuthError::UnknownToken)?;
        let user = self.store().user(access.user).await.map_err(store_failed)?;
        if user.disabled {
            return Err(OAuthError::UnknownToken);
        }
        Ok(ApiCaller {
            user: access.user,
            consumer_key: access.consumer_key,
        })
    }

    /// The apps `user` authorised that still hold an access token.
    pub async fn authorized_apps(&self, user: UserId) -> Result<Vec<AuthorizedApp>, Error> {
        self.store()
            .authorized_apps(user)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())
    }

    /// Ends every access token of `consumer_key` for `user`; `NotFound` if
    /// there was none.
    pub async fn revoke_app(&self, user: UserId, consumer_key: &str) -> Result<(), Error> {
        let ended = self
            .store()
            .revoke_app(user, consumer_key)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        if ended == 0 {
            return Err(Error::not_found(
                "no app with this key holds access to your account",
            ));
        }
        Ok(())
    }

    /// Registers an API client (`stacksync admin oauth add`): a random key
    /// and secret; `callback`, if given, must be an absolute URI, and every
    /// request token's callback must then lie under it (or be `oob`).
    pub async fn add_oauth_consumer(
        &self,
        name: &str,
        callback: Option<&str>,
    ) -> Result<NewConsumer, Error> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_CONSUMER_NAME
            || name.chars().any(char::is_control)
        {
            return Err(Error::bad_request(format!(
                "an app's name has 1 to {MAX_CONSUMER_NAME} characters, no control characters"
            )));
        }
        if let Some(callback) = callback {
            match Callback::parse(callback) {
                Ok(Callback::Uri(_)) => {}
                _ => {
                    return Err(Error::bad_request(
                        "the callback must be an absolute URI (http, https or an app's scheme)",
                    ));
                }
            }
        }
        let issued = IssuedCredentials::generate().map_err(|e| Error::internal(e.to_string()))?;
        let consumer = OAuthConsumer {
            key: issued.token,
            secret: issued.secret.expose().to_owned(),
            name: name.to_owned(),
            callback: callback.map(str::to_owned),
        };
        self.store()
            .create_oauth_consumer(&consumer)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        Ok(NewConsumer {
            key: consumer.key,
            secret: consumer.secret,
        })
    }

    /// Every registered consumer (`stacksync admin oauth list`).
    pub async fn oauth_consumers(&self) -> Result<Vec<OAuthConsumer>, Error> {
        self.store()
            .oauth_consumers()
            .await
            .map_err(|e| ServiceError::from(e).to_proto())
    }

    /// Removes a consumer and ends all its tokens (`stacksync admin oauth
    /// remove`); `NotFound` if there is none with this key.
    pub async fn remove_oauth_consumer(&self, key: &str) -> Result<(), Error> {
        let removed = self
            .store()
            .delete_oauth_consumer(key)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        if !removed {
            return Err(Error::not_found(format!("no app with key {key}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_must_lie_under_the_registered_one() {
        let uri = |u: &str| Callback::Uri(u.to_owned());
        assert!(callback_allowed(None, &uri("https://any.example/cb")));
        let reg = Some("https://app.example/cb");
        assert!(callback_allowed(reg, &Callback::OutOfBand));
        assert!(callback_allowed(reg, &uri("https://app.example/cb")));
        assert!(callback_allowed(reg, &uri("https://app.example/cb?x=1")));
        assert!(callback_allowed(reg, &uri("https://app.example/cb/more")));
        assert!(!callback_allowed(reg, &uri("https://app.example/cbx")));
        assert!(!callback_allowed(
            Some("https://app.example"),
            &uri("https://app.example.evil.org/")
        ));
        assert!(callback_allowed(
            Some("https://app.example/"),
            &uri("https://app.example/x")
        ));
    }
}
