//! Helpers shared by the integration tests: a credential table, an owned
//! request, a one-call executor.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;

use async_trait::async_trait;
use stacksync_oauth::{
    Config, Credentials, Endpoint, HttpRequest, MemoryNonceStore, OAuthError, Provider, Secret,
    TokenKind, Transport, Verified,
};

/// Consumers and tokens with their secrets, as the API layer would find
/// them in the metadata store.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    consumers: HashMap<String, String>,
    tokens: HashMap<(String, String, TokenKind), String>,
}

impl Keys {
    pub fn consumer(mut self, key: &str, secret: &str) -> Self {
        self.consumers.insert(key.to_owned(), secret.to_owned());
        self
    }

    pub fn token(mut self, consumer: &str, token: &str, secret: &str, kind: TokenKind) -> Self {
        self.tokens.insert(
            (consumer.to_owned(), token.to_owned(), kind),
            secret.to_owned(),
        );
        self
    }
}

#[async_trait]
impl Credentials for Keys {
    type Error = Infallible;

    async fn consumer_secret(&self, consumer_key: &str) -> Result<Option<Secret>, Infallible> {
        Ok(self.consumers.get(consumer_key).map(Secret::new))
    }

    async fn token_secret(
        &self,
        consumer_key: &str,
        token: &str,
        kind: TokenKind,
    ) -> Result<Option<Secret>, Infallible> {
        let key = (consumer_key.to_owned(), token.to_owned(), kind);
        Ok(self.tokens.get(&key).map(Secret::new))
    }
}

/// A request as the server would receive it, owned.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// A form body, sent as `application/x-www-form-urlencoded`.
    pub form: Option<String>,
}

impl Req {
    pub fn new(method: &str, url: &str) -> Self {
        let (scheme, rest) = url.split_once("://").expect("absolute URL");
        let (authority, path_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (path, query) = match path_query.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (path_query, None),
        };
        Req {
            method: method.to_owned(),
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            query,
            authorization: None,
            form: None,
        }
    }

    pub fn header(mut self, authorization: impl Into<String>) -> Self {
        self.authorization = Some(authorization.into());
        self
    }

    pub fn form(mut self, body: &str) -> Self {
        self.form = Some(body.to_owned());
        self
    }

    pub fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.method,
            scheme: &self.scheme,
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            authorization: self.authorization.as_deref().map(str::as_bytes),
            content_type: self
                .form
                .as_ref()
                .map(|_| &b"application/x-www-form-urlencoded"[..]),
            body: self.form.as_deref().unwrap_or_default().as_bytes(),
        }
    }
}

/// Runs one future to completion.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(future)
}

/// A provider that accepts PLAINTEXT on secure transports.
pub fn provider() -> Provider {
    Provider::new(Config {
        allow_plaintext: true,
        ..Config::default()
    })
}

/// `provider.verify` on a secure transport, run to completion.
pub fn verify(
    provider: &Provider,
    req: &Req,
    endpoint: Endpoint,
    now: u64,
    keys: &Keys,
    nonces: &MemoryNonceStore,
) -> Result<Verified, OAuthError> {
    block_on(provider.verify(&req.http(), endpoint, Transport::Secure, now, keys, nonces))
}
