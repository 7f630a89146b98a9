//! From an HTTP request as the server received it to its OAuth parameters
//! (RFC 5849 3.5: protocol parameters from exactly one of header, form body
//! and query) and its request parameters (3.4.1.3.1: all of them, for the
//! signature base string).

use std::collections::HashSet;

use crate::base_string;
use crate::encoding::parse_form;
use crate::error::{Location, OAuthError, sanitised};
use crate::header::parse_authorization;

/// An HTTP request as the server sees it. Everything is raw, as received:
/// the path and query still percent-encoded, the header and body bytes
/// untouched.
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// The request method (`GET`, `post`, a custom token); uppercased for
    /// the base string.
    pub method: &'a str,
    /// `http` or `https`: how the client reached the server. Behind a proxy
    /// that terminates TLS this is the proxy's scheme, not the socket's.
    pub scheme: &'a str,
    /// The `Host` header field: `host[:port]`, an IPv6 literal in brackets.
    pub authority: &'a str,
    /// The path, percent-encoded as received (`/r%20v/X`); kept as is in the
    /// base string URI.
    pub path: &'a str,
    /// The query without `?`, percent-encoded as received.
    pub query: Option<&'a str>,
    /// The `Authorization` header field's value, if any. A request with
    /// several `Authorization` fields must be refused by the caller.
    pub authorization: Option<&'a [u8]>,
    /// The `Content-Type` header field's value, if any.
    pub content_type: Option<&'a [u8]>,
    /// The entity-body; read only when the content type is
    /// `application/x-www-form-urlencoded`, so it may be empty otherwise.
    pub body: &'a [u8],
}

/// Protocol values longer than this are refused: they are keys of the
/// credential and nonce stores, and no client needs more.
pub const MAX_PROTOCOL_VALUE_LEN: usize = 1024;
/// Nonces are kept for the timestamp window, so they are kept short.
pub const MAX_NONCE_LEN: usize = 255;

/// The protocol parameters of a request (RFC 5849 3.1), decoded. An empty
/// `oauth_token` counts as absent (RFC 5849 2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolParams {
    /// `oauth_consumer_key`.
    pub consumer_key: Option<String>,
    /// `oauth_token`, if present and not empty.
    pub token: Option<String>,
    /// `oauth_signature_method`.
    pub signature_method: Option<String>,
    /// `oauth_signature`, decoded from its transmission encoding.
    pub signature: Option<String>,
    /// `oauth_timestamp`, as sent (checked to be a positive integer later).
    pub timestamp: Option<String>,
    /// `oauth_nonce`.
    pub nonce: Option<String>,
    /// `oauth_version`.
    pub version: Option<String>,
    /// `oauth_callback`.
    pub callback: Option<String>,
    /// `oauth_verifier`.
    pub verifier: Option<String>,
    /// Where the protocol parameters were found (`None`: nowhere).
    pub location: Option<Location>,
}

/// A request broken into what OAuth needs: the parts of its signature base
/// string and its protocol parameters.
#[derive(Clone, Debug)]
pub struct ParsedRequest {
    method: String,
    base_uri: String,
    /// Every request parameter (query, form body, header less `realm`),
    /// `oauth_signature` included; the base string leaves it out.
    params: Vec<(String, String)>,
    protocol: ProtocolParams,
}

impl ParsedRequest {
    /// Parses `request`. Fails with a 400-class error on anything malformed,
    /// duplicated or spread over several places; checks nothing else.
    pub fn parse(request: &HttpRequest<'_>) -> Result<Self, OAuthError> {
        let method = base_string::method(request.method)?;
        let base_uri = base_string::base_uri(request.scheme, request.authority, request.path)?;

        let header = match request.authorization {
            Some(raw) => parse_authorization(raw)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let form = if request.content_type.is_some_and(is_form_content_type) {
            parse_form(request.body, Location::FormBody)?
        } else {
            Vec::new()
        };
        let query = match request.query {
            Some(query) => parse_form(query.as_bytes(), Location::Query)?,
            None => Vec::new(),
        };

        let protocol = protocol_params([
            (Location::Header, &header),
            (Location::FormBody, &form),
            (Location::Query, &query),
        ])?;
        let mut params = query;
        params.extend(form);
        params.extend(header);
        Ok(ParsedRequest {
            method,
            base_uri,
            params,
            protocol,
        })
    }

    /// The protocol parameters.
    pub fn protocol(&self) -> &ProtocolParams {
        &self.protocol
    }

    /// The uppercased method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The base string URI (RFC 5849 3.4.1.2), not yet encoded.
    pub fn base_string_uri(&self) -> &str {
        &self.base_uri
    }

    /// Every request parameter, decoded, in the order query, form body,
    /// header (`realm` left out, `oauth_signature` kept).
    pub fn parameters(&self) -> &[(String, String)] {
        &self.params
    }

    /// The normalized request parameters (RFC 5849 3.4.1.3.2).
    pub fn normalized_parameters(&self) -> String {
        base_string::normalized_parameters(&self.params)
    }

    /// The signature base string (RFC 5849 3.4.1.1).
    pub fn signature_base_string(&self) -> String {
        base_string::signature_base_string(&self.method, &self.base_uri, &self.params)
    }
}

/// Whether a `Content-Type` value is `application/x-www-form-urlencoded`
/// (any case, parameters such as `charset` ignored).
pub fn is_form_content_type(content_type: &[u8]) -> bool {
    let media_type = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media_type.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// Collects the `oauth_*` parameters: all from one location, each once.
fn protocol_params(
    sources: [(Location, &Vec<(String, String)>); 3],
) -> Result<ProtocolParams, OAuthError> {
    let mut protocol = ProtocolParams::default();
    let mut seen = HashSet::new();
    for (location, params) in sources {
        for (name, value) in params.iter().filter(|(name, _)| name.starts_with("oauth_")) {
            match protocol.location {
                None => protocol.location = Some(location),
                Some(first) if first != location => {
                    return Err(OAuthError::ParametersInSeveralPlaces {
                        first,
                        second: location,
                    });
                }
                Some(_) => {}
            }
            if !seen.insert(name.as_str()) {
                return Err(OAuthError::DuplicateParameter(sanitised(name)));
            }
            let slot = match name.as_str() {
                "oauth_consumer_key" => &mut protocol.consumer_key,
                "oauth_token" => &mut protocol.token,
                "oauth_signature_method" => &mut protocol.signature_method,
                "oauth_signature" => &mut protocol.signature,
                "oauth_timestamp" => &mut protocol.timestamp,
                "oauth_nonce" => &mut protocol.nonce,
                "oauth_version" => &mut protocol.version,
                "oauth_callback" => &mut protocol.callback,
                "oauth_verifier" => &mut protocol.verifier,
                // Extensions (oauth_body_hash, ...) are signed like any
                // other parameter; only their uniqueness is checked.
                _ => continue,
            };
            if value.len() > MAX_PROTOCOL_VALUE_LEN {
                return Err(OAuthError::ParameterRejected {
                    name: "oauth_*",
                    reason: "value longer than 1024 bytes",
                });
            }
            *slot = Some(value.clone());
        }
    }
    // Present-but-empty token: the client MAY send it for temporary
    // credentials (RFC 5849 2.1); it means "no token".
    if protocol.token.as_deref() == Some("") {
        protocol.token = None;
    }
    Ok(protocol)
}
