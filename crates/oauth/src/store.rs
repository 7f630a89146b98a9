//! What the provider looks up but does not keep: the secrets of consumers
//! and tokens ([`Credentials`]) and the nonces already used
//! ([`NonceStore`]). The API layer implements both over the metadata store;
//! [`MemoryNonceStore`] serves tests and a single-process server.

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

/// A shared secret (a consumer's or a token's). Its `Debug` never shows
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, to store or to send once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Which credentials an `oauth_token` must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Temporary credentials (request token), exchanged at the token
    /// endpoint.
    Temporary,
    /// Token credentials (access token), used on resources.
    Access,
}

/// The secrets of the credentials a request names, as the API layer finds
/// them in its storage.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// Why a lookup failed (not "not found": that is `Ok(None)`).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The client shared-secret of `consumer_key`, or `None` if there is no
    /// such consumer (or it is disabled).
    async fn consumer_secret(&self, consumer_key: &str) -> Result<Option<Secret>, Self::Error>;

    /// The shared-secret of `token`, or `None` if there is no such token of
    /// that kind issued to `consumer_key` that is still valid (revoked,
    /// expired, already exchanged, another consumer's).
    async fn token_secret(
        &self,
        consumer_key: &str,
        token: &str,
        kind: TokenKind,
    ) -> Result<Option<Secret>, Self::Error>;
}

/// One use of a nonce, as the provider reports it after the request's
/// signature checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceUse<'a> {
    /// `oauth_consumer_key`.
    pub consumer_key: &'a str,
    /// `oauth_token`, empty when the request has none.
    pub token: &'a str,
    /// `oauth_timestamp`.
    pub timestamp: u64,
    /// `oauth_nonce`.
    pub nonce: &'a str,
    /// The provider's clock for this request (seconds since the Unix
    /// epoch), for pruning.
    pub now: u64,
    /// The use must be remembered at least until then (later the timestamp
    /// check refuses the request anyway), and may be forgotten after.
    pub keep_until: u64,
}

/// The nonces already used (RFC 5849 3.3): unique per consumer, token and
/// timestamp.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Why the store failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Records `nonce` atomically: `true` if this (consumer key, token,
    /// timestamp, nonce) was never seen, `false` on a replay.
    async fn remember(&self, nonce: &NonceUse<'_>) -> Result<bool, Self::Error>;
}

type NonceKey = (String, String, u64, String);

/// An in-memory [`NonceStore`] that forgets each use once its `keep_until`
/// has passed, for tests and the single-process server.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    seen: HashSet<NonceKey>,
    /// The same keys ordered by when they may be forgotten.
    expiry: BTreeSet<(u64, NonceKey)>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many uses are remembered now.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        // A panic while holding the lock cannot leave the two sets out of
        // step in a way that matters more than losing a few nonces.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl NonceStore for MemoryNonceStore {
    type Error = Infallible;

    async fn remember(&self, used: &NonceUse<'_>) -> Result<bool, Infallible> {
        let mut remembered = self.lock();
        while let Some((keep_until, _)) = remembered.expiry.first() {
            if *keep_until >= used.now {
                break;
            }
            let (_, key) = remembered.expiry.pop_first().expect("first() was Some");
            remembered.seen.remove(&key);
        }
        let key: NonceKey = (
            used.consumer_key.to_owned(),
            used.token.to_owned(),
            used.timestamp,
            used.nonce.to_owned(),
        );
        if remembered.seen.contains(&key) {
            return Ok(false);
        }
        remembered.seen.insert(key.clone());
        remembered.expiry.insert((used.keep_until, key));
        Ok(true)
    }
}
