//! Requests signed by an independent client implementation
//! (`oauth1-request`) pass; the same requests with one thing changed are
//! refused with the right error.
//!
//! `oauth1-request` writes parameter names into the base string without
//! encoding them and sorts by raw rather than encoded values, so names are
//! drawn from the unreserved set and cases where the two orders of a
//! repeated name differ are skipped; values are arbitrary.

mod common;

use std::num::NonZeroU64;

use common::{Keys, Req, provider, verify};
use oauth::signature_method::SignatureMethod as ClientMethod;
use oauth1_request as oauth;
use proptest::prelude::*;
use stacksync_oauth::{Endpoint, MemoryNonceStore, OAuthError, TokenKind, percent_encode};

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Placement {
    Header,
    Form,
    Query,
}

#[derive(Clone, Debug)]
struct Case {
    method: &'static str,
    lowercase_method: bool,
    https: bool,
    host: String,
    port: Option<u16>,
    explicit_default_port: bool,
    path: Vec<String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    placement: Placement,
    plaintext: bool,
    consumer: (String, String),
    /// `None`: a temporary-credential request with a callback.
    token: Option<(String, String)>,
    nonce: String,
    skew: i64,
    version: bool,
    /// Write spaces in the query and form body as `+` (form rules).
    plus_for_space: bool,
}

fn name() -> impl Strategy<Value = String> {
    // A small pool, so that repeated names are common.
    prop_oneof![
        prop::sample::select(vec!["a", "a2", "b", "name", "x.y", "z~", "_"])
            .prop_map(str::to_owned),
        "[A-Za-z0-9._~-]{1,8}"
            .prop_filter("not a protocol parameter", |n| !n.starts_with("oauth_")),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,10}",
        "\\PC{0,8}",
        prop::sample::select(vec!["", "+", "%20", "=&=", "é", "日本", "🦀", " a b "])
            .prop_map(str::to_owned),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9]{1,16}", "\\PC{1,12}"]
}

fn case() -> impl Strategy<Value = Case> {
    let target = (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        any::<bool>(),
        any::<bool>(),
        "[a-z0-9]{1,8}(\\.[a-z0-9]{1,6}){0,2}",
        prop::option::of(1024u16..),
        any::<bool>(),
        prop::collection::vec("\\PC{0,6}", 0..4),
    );
    let params = (
        prop::collection::vec((name(), value()), 0..5),
        prop::collection::vec((name(), value()), 0..5),
        prop::sample::select(vec![Placement::Header, Placement::Form, Placement::Query]),
    );
    let signing = (
        any::<bool>(),
        (text(), text()),
        prop::option::of((text(), text())),
        "[A-Za-z0-9]{1,24}",
        -(WINDOW as i64)..=WINDOW as i64,
        any::<bool>(),
        any::<bool>(),
    );
    (target, params, signing).prop_map(|(target, params, signing)| {
        let (method, lowercase_method, https, host, port, explicit_default_port, path) = target;
        let (query, mut form, mut placement) = params;
        let (plaintext, consumer, token, nonce, skew, version, plus_for_space) = signing;
        let body_allowed = matches!(method, "POST" | "PUT" | "PATCH");
        if !body_allowed {
            form.clear();
            if placement == Placement::Form {
                placement = Placement::Header;
            }
        }
        // In the form or the query, the client signs only what it writes
        // there; the other place stays empty.
        let query = if placement == Placement::Form {
            Vec::new()
        } else {
            query
        };
        if placement == Placement::Query {
            form.clear();
        }
        Case {
            method,
            lowercase_method,
            https,
            host,
            port,
            explicit_default_port,
            path,
            query,
            form,
            placement,
            plaintext,
            consumer,
            token,
            nonce,
            skew,
            version,
            plus_for_space,
        }
    })
}

/// What the client signs and sends, with its inputs.
struct Signed {
    req: Req,
    endpoint: Endpoint,
}

impl Case {
    fn path(&self) -> String {
        let mut path: String = self
            .path
            .iter()
            .map(|s| format!("/{}", percent_encode(s)))
            .collect();
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The base string URI the client is given: normalized, as the RFC
    /// says a client builds it.
    fn client_uri(&self, host: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port.filter(|&p| p != self.default_port()) {
            Some(port) => format!("{scheme}://{host}:{port}{}", self.path()),
            None => format!("{scheme}://{host}{}", self.path()),
        }
    }

    /// The `Host` field the server sees: upper case, maybe the default port.
    fn authority(&self) -> String {
        let host = self.host.to_ascii_uppercase();
        match self.port {
            Some(port) if port != self.default_port() => format!("{host}:{port}"),
            _ if self.explicit_default_port => format!("{host}:{}", self.default_port()),
            _ => host,
        }
    }

    fn keys(&self) -> Keys {
        let keys = Keys::default().consumer(&self.consumer.0, &self.consumer.1);
        match &self.token {
            Some((token, secret)) => keys.token(&self.consumer.0, token, secret, TokenKind::Access),
            None => keys,
        }
    }

    /// Whether the client's raw-value order of repeated names is the RFC's
    /// encoded-value order for these query parameters and the form (see the
    /// module comment).
    fn client_orders_like_the_rfc(&self, query: &[(String, String)]) -> bool {
        let all: Vec<_> = query.iter().chain(&self.form).collect();
        all.iter().all(|(n1, v1)| {
            all.iter()
                .filter(|(n2, _)| n2 == n1)
                .all(|(_, v2)| v1.cmp(v2) == percent_encode(v1).cmp(&percent_encode(v2)))
        })
    }

    fn sign(&self) -> Signed {
        self.sign_with(
            &self.host,
            &self.consumer.1,
            self.token.as_ref().map(|t| t.1.as_str()),
            self.skew,
            &self.query,
        )
    }

    /// Signs this case's request, but with the given host, secrets, clock
    /// skew and query parameters.
    fn sign_with(
        &self,
        host: &str,
        consumer_secret: &str,
        token_secret: Option<&str>,
        skew: i64,
        query: &[(String, String)],
    ) -> Signed {
        if self.plaintext {
            self.sign_as(
                oauth::Plaintext::new(),
                host,
                consumer_secret,
                token_secret,
                skew,
                query,
            )
        } else {
            self.sign_as(
                oauth::HmacSha1::new(),
                host,
                consumer_secret,
                token_secret,
                skew,
                query,
            )
        }
    }

    fn sign_as<SM: ClientMethod + Clone>(
        &self,
        method: SM,
        host: &str,
        consumer_secret: &str,
        token_secret: Option<&str>,
        skew: i64,
        query: &[(String, String)],
    ) -> Signed {
        let client = oauth::Credentials::new(self.consumer.0.as_str(), consumer_secret);
        let mut builder = oauth::Builder::<_, &str>::new(client, method);
        let endpoint = match (&self.token, token_secret) {
            (Some((token, _)), Some(secret)) => {
                builder.token(oauth::Credentials::new(token.as_str(), secret));
                Endpoint::Resource
            }
            _ => {
                builder.callback("https://client.example/cb?x=1&y=%20");
                Endpoint::TemporaryCredentials
            }
        };
        let timestamp = NOW.checked_add_signed(skew).expect("skew is small");
        builder
            .nonce(self.nonce.as_str())
            .timestamp(NonZeroU64::new(timestamp))
            .version(self.version);

        let uri = self.client_uri(host);
        let signed_params = oauth::request::ParameterList::new(
            query
                .iter()
                .chain(&self.form)
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let query_params = oauth::request::ParameterList::new(
            query
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let form_params = oauth::request::ParameterList::new(
            self.form
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        // `to_form` and `to_query` of the builder write the protocol
        // parameters only; the request's own go first (RFC 5849 3.5.2, 3.5.3).
        let join = |own: String, protocol: &str| match own.is_empty() {
            true => protocol.to_owned(),
            false => format!("{own}&{protocol}"),
        };
        let (authorization, query, form) = match self.placement {
            Placement::Header => (
                Some(builder.authorize(self.method, &uri, &signed_params)),
                oauth::to_form(&query_params),
                oauth::to_form(&form_params),
            ),
            Placement::Form => {
                let protocol = builder.to_form(self.method, &uri, &form_params);
                (
                    None,
                    String::new(),
                    join(oauth::to_form(&form_params), &protocol),
                )
            }
            Placement::Query => {
                let signed = builder.to_query(self.method, uri.clone(), &query_params);
                let protocol = &signed[uri.len() + 1..];
                (
                    None,
                    join(oauth::to_form(&query_params), protocol),
                    String::new(),
                )
            }
        };
        // oauth1-request 0.6 writes a PLAINTEXT signature without its
        // transmission encoding (RFC 5849 2.1 shows `"ja893SD9%26"`); encode
        // it as the RFC says so that the secrets may hold any character.
        let (authorization, query, form) = match self.plaintext {
            false => (authorization, query, form),
            true => match self.placement {
                Placement::Header => (
                    authorization.map(|h| encode_plaintext(&h, true)),
                    query,
                    form,
                ),
                Placement::Form => (authorization, query, encode_plaintext(&form, false)),
                Placement::Query => (authorization, encode_plaintext(&query, false), form),
            },
        };
        // Escapes never overlap, so every "%20" is a space.
        let (query, form) = match self.plus_for_space {
            true => (query.replace("%20", "+"), form.replace("%20", "+")),
            false => (query, form),
        };
        let method = if self.lowercase_method {
            self.method.to_ascii_lowercase()
        } else {
            self.method.to_owned()
        };
        let has_form = self.placement == Placement::Form || !self.form.is_empty();
        let req = Req {
            method,
            scheme: if self.https { "https" } else { "http" }.to_owned(),
            authority: self.authority(),
            path: self.path(),
            query: (!query.is_empty()).then_some(query),
            authorization,
            form: has_form.then_some(form),
        };
        Signed { req, endpoint }
    }
}

/// Passes if `result` is the refusal named `expected` (an `OAuthError`
/// variant).
#[track_caller]
fn refused_with(
    result: Result<stacksync_oauth::Verified, OAuthError>,
    expected: &str,
) -> Result<(), TestCaseError> {
    let at = std::panic::Location::caller();
    match result {
        Ok(verified) => Err(TestCaseError::fail(format!(
            "{at}: accepted, expected {expected}: {verified:?}"
        ))),
        Err(error) => {
            let debug = format!("{error:?}");
            let variant = debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default();
            if variant == expected {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{at}: expected {expected}, got {debug}"
                )))
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn client_signed_requests_pass_and_tampered_ones_fail(case in case()) {
        prop_assume!(case.client_orders_like_the_rfc(&case.query));
        let provider = provider();
        let keys = case.keys();
        let nonces = MemoryNonceStore::new();
        let Signed { req, endpoint } = case.sign();

        // The request passes.
        let verified = verify(&provider, &req, endpoint, NOW, &keys, &nonces);
        let verified = verified.map_err(|e| TestCaseError::fail(format!("{e}: {req:?}")))?;
        prop_assert_eq!(&verified.consumer_key, &case.consumer.0);
        prop_assert_eq!(verified.token.as_ref(), case.token.as_ref().map(|t| &t.0));

        // The same request again: a replay.
        refused_with(verify(&provider, &req, endpoint, NOW, &keys, &nonces), "NonceReused")?;

        // Another consumer secret or token secret.
        let wrong_consumer = case.sign_with(&case.host, &format!("{}x", case.consumer.1), case.token.as_ref().map(|t| t.1.as_str()), case.skew, &case.query);
        refused_with(verify(&provider, &wrong_consumer.req, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        if let Some((_, secret)) = &case.token {
            let wrong_token = case.sign_with(&case.host, &case.consumer.1, Some(&format!("{secret}x")), case.skew, &case.query);
            refused_with(verify(&provider, &wrong_token.req, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        }

        // A timestamp beyond the window, either way.
        let beyond = if case.skew >= 0 { WINDOW as i64 + 1 + case.skew } else { -(WINDOW as i64) - 1 + case.skew };
        let stale = case.sign_with(&case.host, &case.consumer.1, case.token.as_ref().map(|t| t.1.as_str()), beyond, &case.query);
        refused_with(verify(&provider, &stale.req, endpoint, NOW, &keys, &MemoryNonceStore::new()), "StaleTimestamp")?;

        // Unknown consumer, unknown token.
        refused_with(verify(&provider, &req, endpoint, NOW, &Keys::default(), &MemoryNonceStore::new()), "UnknownConsumer")?;
        if case.token.is_some() {
            let no_tokens = Keys::default().consumer(&case.consumer.0, &case.consumer.1);
            refused_with(verify(&provider, &req, endpoint, NOW, &no_tokens, &MemoryNonceStore::new()), "UnknownToken")?;
        }

        if case.plaintext {
            // PLAINTEXT signs nothing but the secrets: the rest is TLS's job.
            return Ok(());
        }

        // Another method, host or path than the one signed.
        let mut other_method = req.clone();
        other_method.method = if case.method == "GET" { "HEAD" } else { "GET" }.to_owned();
        refused_with(verify(&provider, &other_method, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        let mut other_host = req.clone();
        other_host.authority = format!("x{}", req.authority);
        refused_with(verify(&provider, &other_host, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        let mut other_path = req.clone();
        other_path.path = format!("{}x", req.path);
        refused_with(verify(&provider, &other_path, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        let mut other_port = req.clone();
        other_port.authority = format!("{}:1", case.host);
        refused_with(verify(&provider, &other_port, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;

        // A parameter value changed, the signature kept.
        let mut query = case.query.clone();
        match query.first_mut() {
            Some((_, value)) => value.push('x'),
            None => query.push(("added".to_owned(), String::new())),
        }
        if case.placement != Placement::Form && case.client_orders_like_the_rfc(&query) {
            let tampered = case.sign_with(&case.host, &case.consumer.1, case.token.as_ref().map(|t| t.1.as_str()), case.skew, &query);
            let forged = with_signature_of(&tampered.req, &req);
            refused_with(verify(&provider, &forged, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
            // Signed properly but with a nonce already used at that
            // timestamp: a replay all the same.
            refused_with(verify(&provider, &tampered.req, endpoint, NOW, &keys, &nonces), "NonceReused")?;
        }
        if let Some(body) = &req.form {
            let mut tampered = req.clone();
            tampered.form = Some(format!("added=1&{body}"));
            refused_with(verify(&provider, &tampered, endpoint, NOW, &keys, &MemoryNonceStore::new()), "InvalidSignature")?;
        }
    }
}

/// `text` with its last parameter, `oauth_signature`, percent-encoded.
fn encode_plaintext(text: &str, quoted: bool) -> String {
    let at = text.rfind("oauth_signature=").expect("signed") + "oauth_signature=".len();
    let raw = &text[at..];
    match quoted {
        true => format!(
            "{}\"{}\"",
            &text[..at],
            percent_encode(raw.trim_matches('"'))
        ),
        false => format!("{}{}", &text[..at], percent_encode(raw)),
    }
}

/// `tampered` carrying the `oauth_signature` of `original` (always the
/// last parameter the client writes).
fn with_signature_of(tampered: &Req, original: &Req) -> Req {
    fn signature(text: &str) -> &str {
        &text[text.rfind("oauth_signature=").expect("signed")..]
    }
    fn swap(text: &str, signature: &str) -> String {
        let at = text.rfind("oauth_signature=").expect("signed");
        format!("{}{}", &text[..at], signature)
    }
    let mut forged = tampered.clone();
    match (&original.authorization, &original.query) {
        (Some(header), _) => {
            forged.authorization = Some(swap(
                forged.authorization.as_deref().expect("header"),
                signature(header),
            ))
        }
        (None, Some(query)) => {
            forged.query = Some(swap(
                forged.query.as_deref().expect("query"),
                signature(query),
            ))
        }
        (None, None) => unreachable!("the query case has a query"),
    }
    forged
}
