//! A client of the REST API v2 (docs/api-v2.md) for the benches: OAuth
//! 1.0a HMAC-SHA1 signatures made by an independent signer (the
//! `oauth1-request` crate, not our provider's code), the three-legged flow
//! over HTTP as an app and a browser would go through it (out of band: the
//! verifier is read from the page), and the few endpoints the API bench
//! times: a streamed upload, a streamed and hashed download, a metadata
//! read. The same client reaches the server directly (`/api/v2`) or
//! through a Swift proxy with the `stacksync_api` middleware (`/v1` and
//! `StackSync-API: v2`); the signature always covers the URL this client
//! used.

use std::fmt::Display;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use oauth1_request as oauth;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

/// Pieces of an upload body, so it is handed to the socket slice by slice
/// (each a view of the one buffer, never a copy).
const UPLOAD_SLICE: usize = 1024 * 1024;

/// An HTTP client for the benches: no proxy from the environment, HTTP/1.1,
/// trusting only the certificate in `cert_file` (PEM) when one is given.
pub fn http_client(cert_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider (see the
    // workspace's Cargo.toml); `ring` is installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(300))
        .pool_max_idle_per_host(4);
    if let Some(path) = cert_file {
        builder = builder.tls_backend_preconfigured(pinned_tls(path)?);
    }
    builder.build().context("building the HTTP client")
}

/// A TLS client configuration that trusts exactly the certificate in
/// `path`. `scripts/swift api-proxy --tls` serves a self-signed
/// certificate that is also a CA (`CA:TRUE`, OpenSSL's default for
/// `req -x509`), which webpki refuses as a server's own certificate
/// (`CaUsedAsEndEntity`) even when it is the trusted root; so the server's
/// certificate is compared with that one byte for byte instead, and its
/// handshake signatures checked as usual.
fn pinned_tls(path: &Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("reading the certificate {}: {e}", path.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let verifier = Pinned {
        cert,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
            .with_no_client_auth(),
    )
}

/// Trusts one certificate, and no other.
#[derive(Debug)]
struct Pinned {
    cert: rustls::pki_types::CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A body that streams `data` in slices of one buffer, with its length.
pub fn streamed_body(data: &Bytes) -> reqwest::Body {
    let data = data.clone();
    let slices = (0..data.len()).step_by(UPLOAD_SLICE).map(move |at| {
        Ok::<Bytes, std::io::Error>(data.slice(at..(at + UPLOAD_SLICE).min(data.len())))
    });
    reqwest::Body::wrap_stream(futures::stream::iter(slices))
}

/// What a download delivered: its length and BLAKE3, hashed as it streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: u64,
    pub hash: blake3::Hash,
}

/// Reads an answer's body to its end, hashing it (never held whole).
pub async fn receive(mut response: reqwest::Response) -> anyhow::Result<Received> {
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    while let Some(piece) = response.chunk().await.context("reading the body")? {
        len += piece.len() as u64;
        hasher.update(&piece);
    }
    Ok(Received {
        len,
        hash: hasher.finalize(),
    })
}

/// RFC 3986 percent-encoding of everything but the unreserved characters
/// (what OAuth and form bodies both accept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs of an `application/x-www-form-urlencoded` text.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.trim()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn form_value(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// An app's or a token's key and secret.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub key: String,
    pub secret: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

/// What an OAuth signature is made of beyond the request itself.
#[derive(Default)]
struct Extra<'a> {
    token: Option<&'a Credentials>,
    callback: Option<&'a str>,
    verifier: Option<&'a str>,
}

/// The `Authorization: OAuth ...` header of a request to `url` (scheme,
/// authority and path, no query) with these query or form parameters,
/// signed with HMAC-SHA1, a fresh nonce and the current time.
fn authorization(
    consumer: &Credentials,
    method: &str,
    url: &str,
    params: &[(&str, &str)],
    extra: Extra<'_>,
) -> String {
    let client = oauth::Credentials::new(consumer.key.as_str(), consumer.secret.as_str());
    let mut builder = oauth::Builder::<_, &str, &str>::new(client, oauth::HmacSha1::new());
    if let Some(token) = extra.token {
        builder.token(oauth::Credentials::new(
            token.key.as_str(),
            token.secret.as_str(),
        ));
    }
    builder.callback(extra.callback);
    builder.verifier(extra.verifier);
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    builder.nonce(nonce.as_str());
    builder.timestamp(NonZeroU64::new(now_secs()));
    let list: Vec<(&str, &dyn Display)> = params
        .iter()
        .map(|(k, v)| (*k, v as &dyn Display))
        .collect();
    builder.authorize(method, url, &oauth::ParameterList::new(list))
}

/// `url?k=v&...` with the parameters percent-encoded (as signed).
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return url.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{url}?{}", query.join("&"))
}

/// An access token for `email` (password `password`) through the
/// three-legged flow against `base` (the server, or anything in front of it
/// that passes `/oauth/*` on): a request token signed by the consumer with
/// `oauth_callback=oob`, the authorization form posted as a browser would
/// (email, password, allow), the verifier read from the page, and the
/// exchange signed with the request token and the verifier.
pub async fn three_legged(
    http: &reqwest::Client,
    base: &str,
    consumer: &Credentials,
    email: &str,
    password: &str,
) -> anyhow::Result<Credentials> {
    let url = format!("{base}/oauth/request_token");
    let header = authorization(
        consumer,
        "POST",
        &url,
        &[],
        Extra {
            callback: Some("oob"),
            ..Extra::default()
        },
    );
    let answer = http
        .post(&url)
        .header(AUTHORIZATION, header)
        .send()
        .await
        .context("POST /oauth/request_token")?;
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        bail!("POST /oauth/request_token: {status}: {text}");
    }
    let pairs = form_pairs(&text);
    let request = Credentials {
        key: form_value(&pairs, "oauth_token").context("no oauth_token in the request token")?,
        secret: form_value(&pairs, "oauth_token_secret")
            .context("no oauth_token_secret in the request token")?,
    };
    if form_value(&pairs, "oauth_callback_confirmed").as_deref() != Some("true") {
        bail!("the request token's answer did not confirm the callback: {text}");
    }

    // The user allows the app on the page (a plain form post, unsigned).
    let form = [
        ("oauth_token", request.key.as_str()),
        ("email", email),
        ("password", password),
        ("action", "allow"),
    ]
    .iter()
    .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let page = http
        .post(format!("{base}/oauth/authorize"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .context("POST /oauth/authorize")?;
    let status = page.status();
    let html = page.text().await?;
    if status != reqwest::StatusCode::OK {
        bail!("POST /oauth/authorize: {status}: {html}");
    }
    let verifier = html
        .split_once("<code id=\"verifier\">")
        .and_then(|(_, rest)| rest.split_once("</code>"))
        .map(|(v, _)| html_unescape(v.trim()))
        .context("no verifier on the authorization page")?;

    let url = format!("{base}/oauth/access_token");
    let header = authorization(
        consumer,
        "POST",
        &url,
        &[],
        Extra {
            token: Some(&request),
            verifier: Some(&verifier),
            ..Extra::default()
        },
    );
    let answer = http
        .post(&url)
        .header(AUTHORIZATION, header)
        .send()
        .await
        .context("POST /oauth/access_token")?;
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        bail!("POST /oauth/access_token: {status}: {text}");
    }
    let pairs = form_pairs(&text);
    Ok(Credentials {
        key: form_value(&pairs, "oauth_token").context("no oauth_token in the access token")?,
        secret: form_value(&pairs, "oauth_token_secret")
            .context("no oauth_token_secret in the access token")?,
    })
}

fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Signed requests to the API at one place: the server (`base` its URL,
/// `prefix` `/api/v2`) or a Swift proxy (`/v1`, with `StackSync-API: v2`).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub prefix: String,
    /// A header sent with every request (the middleware's `StackSync-API`).
    pub header: Option<(&'static str, &'static str)>,
    pub consumer: Credentials,
    pub token: Credentials,
}

impl Api {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{}{path}", self.base, self.prefix);
        let header = authorization(
            &self.consumer,
            method.as_str(),
            &url,
            params,
            Extra {
                token: Some(&self.token),
                ..Extra::default()
            },
        );
        let mut request = self
            .http
            .request(method, with_query(&url, params))
            .header(AUTHORIZATION, header);
        if let Some((name, value)) = self.header {
            request = request.header(name, value);
        }
        request
    }

    /// A signed GET of `path` (under the prefix); the answer, whatever its
    /// status.
    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.request(reqwest::Method::GET, path, &[])
            .send()
            .await
            .with_context(|| format!("GET {}{path}", self.prefix))
    }

    /// A signed GET whose answer must be 200 with JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self.get(path).await?;
        let status = answer.status();
        let text = answer.text().await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {}{path}: {status}: {text}", self.prefix);
        }
        serde_json::from_str(&text).with_context(|| format!("GET {}{path}: {text}", self.prefix))
    }

    /// `POST /file?name=NAME` (in the top folder) with `data` streamed as
    /// the body: the new file's item.
    pub async fn upload(&self, name: &str, data: &Bytes) -> anyhow::Result<serde_json::Value> {
        let answer = self
            .request(reqwest::Method::POST, "/file", &[("name", name)])
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, HeaderValue::from(data.len() as u64))
            .body(streamed_body(data))
            .send()
            .await
            .with_context(|| format!("POST {}/file?name={name}", self.prefix))?;
        let status = answer.status();
        let text = answer.text().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("POST {}/file?name={name}: {status}: {text}", self.prefix);
        }
        serde_json::from_str(&text).with_context(|| format!("the new item: {text}"))
    }

    /// `GET /file/ID/data`, streamed and hashed.
    pub async fn download(&self, id: &str) -> anyhow::Result<Received> {
        let answer = self.get(&format!("/file/{id}/data")).await?;
        let status = answer.status();
        if status != reqwest::StatusCode::OK {
            let text = answer.text().await.unwrap_or_default();
            bail!("GET {}/file/{id}/data: {status}: {text}", self.prefix);
        }
        receive(answer).await
    }
}
