//! Verifying a signed request (RFC 5849 3.2) and checking the exchange of
//! temporary credentials for token credentials (2.3).

use subtle::ConstantTimeEq;

use crate::error::OAuthError;
use crate::flow::Callback;
use crate::request::{HttpRequest, MAX_NONCE_LEN, ParsedRequest, ProtocolParams};
use crate::signature::{self, SignatureMethod};
use crate::store::{Credentials, NonceStore, NonceUse, Secret, TokenKind};

/// How strict the provider is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How far `oauth_timestamp` may be from the server's clock, either way,
    /// in seconds. Nonces are kept this long past their timestamp.
    pub timestamp_window_secs: u64,
    /// Whether PLAINTEXT is accepted at all (and then only on a secure
    /// transport).
    pub allow_plaintext: bool,
    /// Whether the temporary-credential and token endpoints refuse requests
    /// on an insecure transport (RFC 5849 2.1 and 2.3 say they MUST).
    pub secure_credential_endpoints: bool,
    /// How long temporary credentials may wait to be exchanged, in seconds.
    pub temporary_credentials_lifetime_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timestamp_window_secs: 300,
            allow_plaintext: false,
            secure_credential_endpoints: true,
            temporary_credentials_lifetime_secs: 15 * 60,
        }
    }
}

/// How the request reached the server, as the caller knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS (possibly terminated by a trusted proxy) or a loopback
    /// connection: nobody else saw the bytes.
    Secure,
    /// Anything else.
    Insecure,
}

/// Which endpoint the request was sent to; each needs other parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Temporary Credential Request (`POST /oauth/request_token`): client
    /// credentials only, `oauth_callback` required.
    TemporaryCredentials,
    /// Token Request (`POST /oauth/access_token`): temporary credentials and
    /// `oauth_verifier` required.
    TokenCredentials,
    /// A protected resource: token credentials required.
    Resource,
}

/// A request whose signature, timestamp and nonce checked out.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The client's `oauth_consumer_key`.
    pub consumer_key: String,
    /// `oauth_token`: temporary credentials at the token endpoint, token
    /// credentials on a resource, `None` at the temporary-credential
    /// endpoint.
    pub token: Option<String>,
    /// How the request was signed.
    pub signature_method: SignatureMethod,
    /// `oauth_callback`, at the temporary-credential endpoint.
    pub callback: Option<Callback>,
    /// `oauth_verifier`, at the token endpoint.
    pub verifier: Option<Secret>,
}

/// What the API layer stored about temporary credentials, for the exchange
/// check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingAuthorization<'a> {
    /// The consumer they were issued to.
    pub consumer_key: &'a str,
    /// When they were issued (seconds since the Unix epoch).
    pub issued_at: u64,
    /// The verifier issued when the resource owner approved; `None` until
    /// then (or if they denied).
    pub verifier: Option<&'a str>,
    /// Whether they were already exchanged once.
    pub used: bool,
}

/// The OAuth 1.0a provider: pure checks under one [`Config`].
#[derive(Clone, Debug, Default)]
pub struct Provider {
    config: Config,
}

impl Provider {
    /// A provider with `config`.
    pub fn new(config: Config) -> Self {
        Provider { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Verifies a signed request sent to `endpoint` (RFC 5849 3.2): parses
    /// it, checks version, signature method, the parameters `endpoint`
    /// needs and the timestamp against `now` (seconds since the Unix epoch,
    /// the caller's clock), looks up the secrets, checks the signature, and
    /// only then records the nonce (so unsigned requests cannot use up a
    /// client's nonces or fill the store).
    pub async fn verify<C, N>(
        &self,
        request: &HttpRequest<'_>,
        endpoint: Endpoint,
        transport: Transport,
        now: u64,
        credentials: &C,
        nonces: &N,
    ) -> Result<Verified, OAuthError>
    where
        C: Credentials + ?Sized,
        N: NonceStore + ?Sized,
    {
        let parsed = ParsedRequest::parse(request)?;
        let p = parsed.protocol();
        let checked = self.check_parameters(p, endpoint, transport, now)?;

        let consumer_secret = credentials
            .consumer_secret(&checked.consumer_key)
            .await
            .map_err(OAuthError::store)?
            .ok_or(OAuthError::UnknownConsumer)?;
        let token_secret = match (&p.token, endpoint) {
            (None, _) => Secret::new(""),
            (Some(token), endpoint) => {
                let kind = match endpoint {
                    Endpoint::TokenCredentials => TokenKind::Temporary,
                    _ => TokenKind::Access,
                };
                credentials
                    .token_secret(&checked.consumer_key, token, kind)
                    .await
                    .map_err(OAuthError::store)?
                    .ok_or(OAuthError::UnknownToken)?
            }
        };
        signature::verify(
            checked.signature_method,
            p.signature.as_deref().unwrap_or_default(),
            || parsed.signature_base_string(),
            consumer_secret.expose(),
            token_secret.expose(),
        )?;

        if let (Some(timestamp), Some(nonce)) = (checked.timestamp, p.nonce.as_deref()) {
            let used = NonceUse {
                consumer_key: &checked.consumer_key,
                token: p.token.as_deref().unwrap_or_default(),
                timestamp,
                nonce,
                now,
                keep_until: timestamp.saturating_add(self.config.timestamp_window_secs),
            };
            if !nonces.remember(&used).await.map_err(OAuthError::store)? {
                return Err(OAuthError::NonceReused);
            }
        }
        Ok(Verified {
            consumer_key: checked.consumer_key,
            token: p.token.clone(),
            signature_method: checked.signature_method,
            callback: checked.callback,
            verifier: p.verifier.clone().map(Secret::new),
        })
    }

    /// Everything that needs no lookup, in the order RFC 5849 3.2 lists
    /// the 400s before the 401s.
    fn check_parameters(
        &self,
        p: &ProtocolParams,
        endpoint: Endpoint,
        transport: Transport,
        now: u64,
    ) -> Result<Checked, OAuthError> {
        if p.version.as_deref().is_some_and(|version| version != "1.0") {
            return Err(OAuthError::UnsupportedVersion);
        }
        let consumer_key = p
            .consumer_key
            .clone()
            .ok_or(OAuthError::MissingParameter("oauth_consumer_key"))?;
        let method = p
            .signature_method
            .as_deref()
            .ok_or(OAuthError::MissingParameter("oauth_signature_method"))?;
        let signature_method = SignatureMethod::parse(method)?;
        if p.signature.is_none() {
            return Err(OAuthError::MissingParameter("oauth_signature"));
        }
        if signature_method == SignatureMethod::Plaintext {
            if !self.config.allow_plaintext {
                return Err(OAuthError::PlaintextRefused("disabled on this server"));
            }
            if transport != Transport::Secure {
                return Err(OAuthError::PlaintextRefused("only over TLS or loopback"));
            }
        }

        let mut callback = None;
        match endpoint {
            Endpoint::TemporaryCredentials => {
                if p.token.is_some() {
                    return Err(OAuthError::ParameterRejected {
                        name: "oauth_token",
                        reason: "temporary credentials are requested with client credentials only",
                    });
                }
                let value = p
                    .callback
                    .as_deref()
                    .ok_or(OAuthError::MissingParameter("oauth_callback"))?;
                callback = Some(Callback::parse(value)?);
            }
            Endpoint::TokenCredentials => {
                p.token
                    .as_ref()
                    .ok_or(OAuthError::MissingParameter("oauth_token"))?;
                p.verifier
                    .as_ref()
                    .ok_or(OAuthError::MissingParameter("oauth_verifier"))?;
            }
            Endpoint::Resource => {
                p.token
                    .as_ref()
                    .ok_or(OAuthError::MissingParameter("oauth_token"))?;
            }
        }
        let issues_credentials = endpoint != Endpoint::Resource;
        if issues_credentials
            && self.config.secure_credential_endpoints
            && transport != Transport::Secure
        {
            return Err(OAuthError::InsecureTransport);
        }

        // PLAINTEXT may leave out timestamp and nonce (RFC 5849 3.1); when
        // sent, they are checked all the same.
        let needs_freshness = signature_method == SignatureMethod::HmacSha1;
        let timestamp = match p.timestamp.as_deref() {
            Some(value) => Some(self.check_timestamp(value, now)?),
            None if needs_freshness => return Err(OAuthError::MissingParameter("oauth_timestamp")),
            None => None,
        };
        match p.nonce.as_deref() {
            Some("") => {
                return Err(OAuthError::ParameterRejected {
                    name: "oauth_nonce",
                    reason: "empty",
                });
            }
            Some(nonce) if nonce.len() > MAX_NONCE_LEN => {
                return Err(OAuthError::ParameterRejected {
                    name: "oauth_nonce",
                    reason: "longer than 255 bytes",
                });
            }
            Some(_) if timestamp.is_none() => {
                return Err(OAuthError::MissingParameter("oauth_timestamp"));
            }
            Some(_) => {}
            None if needs_freshness || timestamp.is_some() => {
                return Err(OAuthError::MissingParameter("oauth_nonce"));
            }
            None => {}
        }
        Ok(Checked {
            consumer_key,
            signature_method,
            timestamp,
            callback,
        })
    }

    /// A positive integer (RFC 5849 3.3) within the window around `now`.
    fn check_timestamp(&self, value: &str, now: u64) -> Result<u64, OAuthError> {
        let not_positive = OAuthError::ParameterRejected {
            name: "oauth_timestamp",
            reason: "not a positive integer of seconds",
        };
        if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_positive);
        }
        let timestamp: u64 = value.parse().map_err(|_| not_positive)?;
        if timestamp == 0 {
            return Err(OAuthError::ParameterRejected {
                name: "oauth_timestamp",
                reason: "not a positive integer of seconds",
            });
        }
        if timestamp.abs_diff(now) > self.config.timestamp_window_secs {
            return Err(OAuthError::StaleTimestamp {
                window_secs: self.config.timestamp_window_secs,
            });
        }
        Ok(timestamp)
    }

    /// Checks a verified token-endpoint request against what was stored
    /// about its temporary credentials (RFC 5849 2.3): issued to the same
    /// consumer, not used before, not expired, approved by the resource
    /// owner, and the verifier matches (compared in constant time).
    ///
    /// Single use is the caller's to make atomic: mark the temporary
    /// credentials used (or delete them) in the same transaction that
    /// issues the token credentials, conditional on them not being used.
    pub fn check_exchange(
        &self,
        verified: &Verified,
        pending: &PendingAuthorization<'_>,
        now: u64,
    ) -> Result<(), OAuthError> {
        let given = verified
            .verifier
            .as_ref()
            .ok_or(OAuthError::MissingParameter("oauth_verifier"))?;
        if verified.token.is_none() || pending.consumer_key != verified.consumer_key {
            return Err(OAuthError::UnknownToken);
        }
        if pending.used {
            return Err(OAuthError::TokenUsed);
        }
        let expires_at = pending
            .issued_at
            .saturating_add(self.config.temporary_credentials_lifetime_secs);
        if now > expires_at {
            return Err(OAuthError::TokenExpired);
        }
        let expected = pending.verifier.ok_or(OAuthError::NotAuthorized)?;
        if !bool::from(expected.as_bytes().ct_eq(given.expose().as_bytes())) {
            return Err(OAuthError::VerifierMismatch);
        }
        Ok(())
    }
}

/// What [`Provider::check_parameters`] established.
struct Checked {
    consumer_key: String,
    signature_method: SignatureMethod,
    timestamp: Option<u64>,
    callback: Option<Callback>,
}
