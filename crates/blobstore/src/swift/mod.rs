//! The OpenStack Swift backend, over HTTP.
//!
//! Hand-written on reqwest because no Rust crate we found covers what we
//! need: the maintained `openstack_sdk` authenticates through Keystone only
//! (no TempAuth v1, which single-node Swift and our tests use) and its
//! object-store layer is raw generated endpoints, without retries, ETag
//! checks or replayable streaming uploads; the smaller `openstack` and
//! `osauth` crates are built around Keystone as well. What we add: token
//! caching and renewal on 401 ([`auth`]), retries with backoff on
//! connection errors and 5xx for our (all idempotent) requests ([`retry`]),
//! streamed bodies with MD5/ETag checks (`body`) and a semaphore bounding
//! requests in flight.
//!
//! Mapping, as in the original StackSync: the installation is one Swift
//! account, each StackSync user a Swift user, each workspace a container in
//! the installation's account; other users reach it through container ACLs.

pub mod auth;
mod body;
mod ops;
pub mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{BlobError, BlobErrorKind, Result};
pub use auth::SwiftAuth;
use auth::{Authenticator, Session};
use body::ReplayBody;
pub use retry::RetryPolicy;

/// Everything needed to reach Swift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwiftConfig {
    /// How to authenticate.
    pub auth: SwiftAuth,
    /// The account whose containers to use (e.g. `AUTH_stacksync`), when it
    /// is not the authenticated user's own: a StackSync user's storage user
    /// reaches the installation's account through ACLs.
    #[serde(default)]
    pub account: Option<String>,
    /// Requests in flight at most, per store.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Retries of failed requests.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Connect timeout, milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Longest wait for any read on a connection, milliseconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    /// The operator says the cluster encrypts objects at rest: its proxies
    /// run Swift's `keymaster` (or `kms_keymaster`) and `encryption`
    /// middlewares. What workspaces with server-side encryption require.
    #[serde(default)]
    pub encrypted_at_rest: bool,
    /// The proxies' `admin_key` (`[app:proxy-server]`), which signs a
    /// request for the cluster's admin `/info`: with it, [`SwiftStore::connect`]
    /// checks that encryption is enabled instead of taking the word above
    /// for it, and refuses a configuration that claims it falsely.
    #[serde(default)]
    pub info_admin_key: Option<String>,
}

fn default_concurrency() -> usize {
    16
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_read_timeout() -> u64 {
    60_000
}

impl SwiftConfig {
    /// A configuration with default limits for `auth`.
    pub fn new(auth: SwiftAuth) -> SwiftConfig {
        SwiftConfig {
            auth,
            account: None,
            max_concurrency: default_concurrency(),
            retry: RetryPolicy::default(),
            connect_timeout_ms: default_connect_timeout(),
            read_timeout_ms: default_read_timeout(),
            encrypted_at_rest: false,
            info_admin_key: None,
        }
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwiftStats {
    /// Successful logins (the first one included).
    pub logins: u64,
    /// Requests re-sent after a connection error or 5xx.
    pub retries: u64,
}

/// A [`crate::BlobStore`] on OpenStack Swift. Cheap to share behind an `Arc`;
/// one HTTP connection pool, token and semaphore per store.
#[derive(Debug)]
pub struct SwiftStore {
    http: Client,
    auth: Authenticator,
    limit: Arc<Semaphore>,
    config: SwiftConfig,
    retries: AtomicU64,
    /// Encryption at rest, as configured or as the cluster's admin `/info` said.
    at_rest: AtomicBool,
}

/// Installs the `ring` rustls provider once per process. reqwest is built
/// without its default aws-lc-rs provider, which needs cmake and nasm.
fn install_tls_provider() {
    // An error only means a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl SwiftStore {
    /// A store for `config`; nothing is sent until the first operation.
    pub fn new(config: SwiftConfig) -> Result<SwiftStore> {
        install_tls_provider();
        let http = Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .read_timeout(Duration::from_millis(config.read_timeout_ms))
            // Storage traffic goes straight to Swift, never via an HTTP proxy
            // picked up from the environment.
            .no_proxy()
            .build()
            .map_err(|e| BlobError::with_source(BlobErrorKind::Protocol, "build HTTP client", e))?;
        Ok(SwiftStore {
            http,
            auth: Authenticator::new(config.auth.clone(), config.account.clone()),
            limit: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            at_rest: AtomicBool::new(config.encrypted_at_rest),
            config,
            retries: AtomicU64::new(0),
        })
    }

    /// Logs in now (otherwise the first operation does), to fail early on
    /// bad credentials.
    /// With `info_admin_key`, also reads the cluster's admin `/info` and
    /// refuses a configuration that says the cluster encrypts at rest when
    /// it does not.
    pub async fn connect(&self) -> Result<()> {
        self.session_with_retry().await?;
        let Some(enabled) = self.encryption_enabled().await? else {
            return Ok(());
        };
        if self.config.encrypted_at_rest && !enabled {
            return Err(BlobError::new(
                BlobErrorKind::Protocol,
                "storage says encrypted_at_rest, but the Swift cluster's /info says its \
                 encryption middleware is not enabled",
            ));
        }
        self.at_rest.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the cluster's encryption middleware is enabled, from its
    /// admin `/info` (signed with `info_admin_key`: HMAC-SHA1 over
    /// `GET\n<expires>\n/info`); `None` without an admin key.
    pub async fn encryption_enabled(&self) -> Result<Option<bool>> {
        use hmac::{Hmac, Mac};
        let Some(key) = &self.config.info_admin_key else {
            return Ok(None);
        };
        let storage = self.storage_url().await?;
        let mut url = reqwest::Url::parse(&storage)
            .map_err(|e| BlobError::with_source(BlobErrorKind::Protocol, "storage URL", e))?;
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 60;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes())
            .map_err(|_| BlobError::new(BlobErrorKind::Protocol, "unusable info_admin_key"))?;
        mac.update(format!("GET\n{expires}\n/info").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        url.set_path("/info");
        url.set_query(Some(&format!(
            "swiftinfo_sig={sig}&swiftinfo_expires={expires}"
        )));
        let what = "GET /info (admin)";
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| BlobError::with_source(BlobErrorKind::Unavailable, what, e))?;
        if !resp.status().is_success() {
            return Err(BlobError::new(
                BlobErrorKind::Protocol,
                format!(
                    "{what}: {} (is info_admin_key the proxies' admin_key?)",
                    resp.status()
                ),
            ));
        }
        let info: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| BlobError::with_source(BlobErrorKind::Protocol, what, e))?;
        let Some(admin) = info.get("admin") else {
            return Err(BlobError::new(
                BlobErrorKind::Protocol,
                format!("{what}: no admin section (wrong admin key?)"),
            ));
        };
        Ok(Some(
            admin
                .get("encryption")
                .and_then(|e| e.get("enabled"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        ))
    }

    /// The session, retrying a login that could not reach the auth service.
    async fn session_with_retry(&self) -> Result<Arc<Session>> {
        let mut attempt = 1;
        loop {
            match self.auth.session(&self.http).await {
                Err(e)
                    if e.kind == BlobErrorKind::Unavailable
                        && attempt < self.config.retry.max_attempts =>
                {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.config.retry.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Logins and retries so far.
    pub fn stats(&self) -> SwiftStats {
        SwiftStats {
            logins: self.auth.logins(),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Replaces the cached token, e.g. by one the server no longer honours,
    /// to exercise renewal. Does nothing before the first login.
    pub async fn replace_token(&self, token: &str) {
        self.auth.set_token(token).await;
    }

    /// The storage URL in use (after login).
    pub async fn storage_url(&self) -> Result<String> {
        Ok(self.session_with_retry().await?.storage_url.clone())
    }

    /// Sends a request built by `build` for the current session, retrying
    /// connection errors and 5xx answers with backoff and renewing the token
    /// on 401. Every request this backend sends is safe to repeat (a PUT is
    /// create-only, and a repeat that finds its own earlier attempt stored
    /// compares the bytes and succeeds), which is what makes retrying all
    /// of them safe. Returns the first other answer
    /// with the concurrency permit, which the caller holds while it reads
    /// the body.
    async fn send(
        &self,
        what: &str,
        replay: Option<&ReplayBody>,
        build: impl Fn(&Client, &Session) -> RequestBuilder,
    ) -> Result<(Response, OwnedSemaphorePermit)> {
        let permit =
            self.limit.clone().acquire_owned().await.map_err(|_| {
                BlobError::new(BlobErrorKind::Unavailable, "store is shutting down")
            })?;
        let max_attempts = self.config.retry.max_attempts.max(1);
        let mut attempt = 0;
        let mut renewals = 0;
        loop {
            attempt += 1;
            let last = attempt >= max_attempts;
            let cause = match self.auth.session(&self.http).await {
                Err(e) if e.kind == BlobErrorKind::Unavailable => e.message,
                Err(e) => return Err(e),
                Ok(session) => match self.attempt(build(&self.http, &session)).await {
                    Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                        // A refused token is renewed at once, without counting
                        // an attempt; twice in a row means the credentials
                        // themselves are refused.
                        self.auth.invalidate(&session).await;
                        renewals += 1;
                        if renewals > 2 {
                            return Err(BlobError::new(
                                BlobErrorKind::Unauthenticated,
                                format!("{what}: token refused after renewal"),
                            ));
                        }
                        attempt -= 1;
                        continue;
                    }
                    Ok(resp) if resp.status().is_server_error() => {
                        format!("answered {}", resp.status())
                    }
                    Ok(resp) => return Ok((resp, permit)),
                    Err(e) => {
                        if let Some(source_failed) = match replay {
                            Some(r) => r.source_error().await,
                            None => None,
                        } {
                            return Err(source_failed);
                        }
                        error_chain(&e)
                    }
                },
            };
            if last {
                return Err(BlobError::new(
                    BlobErrorKind::Unavailable,
                    format!("{what}: failed after {attempt} attempts; last: {cause}"),
                ));
            }
            tracing::debug!(what, attempt, cause, "retrying Swift request");
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.config.retry.delay(attempt)).await;
        }
    }
}

impl SwiftStore {
    /// Sends one attempt of a request, recording its latency and whether
    /// it failed (`crate::metrics`): the one place every object, container
    /// and account request of this backend goes through.
    async fn attempt(&self, request: RequestBuilder) -> reqwest::Result<Response> {
        let request = request.build()?;
        let method = request.method().clone();
        let started = std::time::Instant::now();
        let result = self.http.execute(request).await;
        let failed = match &result {
            Ok(resp) => resp.status().is_server_error(),
            Err(_) => true,
        };
        crate::metrics::swift_request(method.as_str(), started.elapsed(), failed);
        result
    }
}

/// An error with its causes, which reqwest keeps in `source()`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// The error for an answer the operation did not expect.
fn status_error(status: StatusCode, what: &str) -> BlobError {
    let kind = match status.as_u16() {
        401 => BlobErrorKind::Unauthenticated,
        403 => BlobErrorKind::Forbidden,
        404 => BlobErrorKind::NotFound,
        409 => BlobErrorKind::Conflict,
        413 => BlobErrorKind::TooLarge,
        // Swift's answer when the body does not match the ETag we sent.
        422 => BlobErrorKind::Integrity,
        s if s >= 500 => BlobErrorKind::Unavailable,
        _ => BlobErrorKind::Protocol,
    };
    BlobError::new(kind, format!("{what}: Swift answered {status}"))
}
