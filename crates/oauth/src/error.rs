//! The one error type of the crate and the HTTP status each variant is sent
//! with (RFC 5849 section 3.2: 400 for what is malformed, missing,
//! duplicated or unsupported, 401 for what fails authentication).
//!
//! Descriptions never contain a secret, a signature or a verifier, and echo
//! at most a short, sanitised piece of what the client sent (a parameter
//! name, a signature-method name).

use std::error::Error as StdError;
use std::fmt;

/// Where a request carried its parameters (RFC 5849 section 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// The `Authorization: OAuth ...` header field (3.5.1).
    Header,
    /// An `application/x-www-form-urlencoded` entity-body (3.5.2).
    FormBody,
    /// The request URI's query (3.5.3).
    Query,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::Header => "the Authorization header",
            Location::FormBody => "the form body",
            Location::Query => "the query",
        })
    }
}

/// Why a request or a step of the three-legged flow was refused.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    // ---- 400: malformed, missing, duplicated, unsupported ----
    /// The `Authorization: OAuth` header does not follow RFC 5849 3.5.1.
    #[error("malformed OAuth Authorization header: {0}")]
    MalformedHeader(&'static str),
    /// A name or value is not valid percent-encoding or not UTF-8.
    #[error("invalid encoding in {location}: {reason}")]
    BadEncoding {
        /// Where the bad encoding was found.
        location: Location,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The scheme, `Host` or path the request was received at cannot form a
    /// base string URI (RFC 5849 3.4.1.2).
    #[error("request URL cannot be signed: {0}")]
    BadRequestUrl(&'static str),
    /// The HTTP method is not a token.
    #[error("invalid HTTP method")]
    BadMethod,
    /// `oauth_*` parameters were sent in more than one place (RFC 5849 3.5).
    #[error("OAuth parameters sent in both {first} and {second}; use exactly one place")]
    ParametersInSeveralPlaces {
        /// One place that held `oauth_*` parameters.
        first: Location,
        /// Another place that held `oauth_*` parameters.
        second: Location,
    },
    /// An `oauth_*` parameter appears more than once (RFC 5849 3.1).
    #[error("OAuth parameter {0} appears more than once")]
    DuplicateParameter(String),
    /// A parameter the request needs is absent.
    #[error("missing OAuth parameter {0}")]
    MissingParameter(&'static str),
    /// A parameter has a value this provider does not take (too long, not
    /// a number, not an absolute URI, given where it has no place).
    #[error("OAuth parameter {name} rejected: {reason}")]
    ParameterRejected {
        /// The parameter's name.
        name: &'static str,
        /// Why its value is refused.
        reason: &'static str,
    },
    /// `oauth_version` is present and not `1.0`.
    #[error("unsupported oauth_version; only 1.0 is supported")]
    UnsupportedVersion,
    /// The signature method is unknown or not supported (RSA-SHA1).
    #[error("unsupported oauth_signature_method {0:?}; use HMAC-SHA1 (or PLAINTEXT over TLS)")]
    UnsupportedSignatureMethod(String),
    /// PLAINTEXT was used on an insecure transport or is disabled.
    #[error("PLAINTEXT signatures are refused here: {0}")]
    PlaintextRefused(&'static str),
    /// Temporary or token credentials were requested over a transport that
    /// is neither TLS nor loopback (RFC 5849 2.1, 2.3).
    #[error("credentials are issued only over TLS or loopback")]
    InsecureTransport,

    // ---- 401: authentication failed ----
    /// The signature does not match the request.
    #[error("invalid signature")]
    InvalidSignature,
    /// No client credentials have this consumer key.
    #[error("unknown consumer key")]
    UnknownConsumer,
    /// The token is unknown, belongs to another consumer, or was revoked.
    #[error("unknown or revoked token")]
    UnknownToken,
    /// `oauth_timestamp` is outside the accepted window around the server's
    /// clock.
    #[error("timestamp outside the accepted window of {window_secs} s around the server's clock")]
    StaleTimestamp {
        /// The accepted distance from the server's clock, in seconds.
        window_secs: u64,
    },
    /// The (consumer, token, timestamp, nonce) combination was used before.
    #[error("nonce already used")]
    NonceReused,
    /// The temporary credentials expired before they were exchanged.
    #[error("temporary credentials expired")]
    TokenExpired,
    /// The temporary credentials were already exchanged once.
    #[error("temporary credentials already used")]
    TokenUsed,
    /// The resource owner has not (yet) authorized the temporary
    /// credentials.
    #[error("temporary credentials not authorized by the resource owner")]
    NotAuthorized,
    /// `oauth_verifier` does not match the one issued.
    #[error("invalid verifier")]
    VerifierMismatch,

    // ---- 500: the provider itself failed ----
    /// The caller's credential or nonce store failed.
    #[error("credential or nonce store failed")]
    Store(#[source] Box<dyn StdError + Send + Sync>),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

impl OAuthError {
    /// The HTTP status the API answers with (RFC 5849 3.2): 400, 401 or
    /// 500.
    pub fn http_status(&self) -> u16 {
        use OAuthError::*;
        match self {
            MalformedHeader(_)
            | BadEncoding { .. }
            | BadRequestUrl(_)
            | BadMethod
            | ParametersInSeveralPlaces { .. }
            | DuplicateParameter(_)
            | MissingParameter(_)
            | ParameterRejected { .. }
            | UnsupportedVersion
            | UnsupportedSignatureMethod(_)
            | PlaintextRefused(_)
            | InsecureTransport => 400,
            InvalidSignature
            | UnknownConsumer
            | UnknownToken
            | StaleTimestamp { .. }
            | NonceReused
            | TokenExpired
            | TokenUsed
            | NotAuthorized
            | VerifierMismatch => 401,
            Store(_) | Random => 500,
        }
    }

    /// The `oauth_problem` name of the OAuth Problem Reporting extension,
    /// for clients that read it (the API may send it in its JSON body or a
    /// `WWW-Authenticate` header).
    pub fn problem(&self) -> &'static str {
        use OAuthError::*;
        match self {
            MalformedHeader(_) | BadEncoding { .. } | BadRequestUrl(_) | BadMethod => {
                "parameter_rejected"
            }
            ParametersInSeveralPlaces { .. } | DuplicateParameter(_) => "parameter_rejected",
            MissingParameter(_) => "parameter_absent",
            ParameterRejected { .. } | InsecureTransport => "parameter_rejected",
            UnsupportedVersion => "version_rejected",
            UnsupportedSignatureMethod(_) | PlaintextRefused(_) => "signature_method_rejected",
            InvalidSignature => "signature_invalid",
            UnknownConsumer => "consumer_key_unknown",
            UnknownToken | TokenUsed => "token_rejected",
            StaleTimestamp { .. } => "timestamp_refused",
            NonceReused => "nonce_used",
            TokenExpired => "token_expired",
            NotAuthorized | VerifierMismatch => "permission_unknown",
            Store(_) | Random => "internal_error",
        }
    }

    pub(crate) fn store(error: impl StdError + Send + Sync + 'static) -> Self {
        OAuthError::Store(Box::new(error))
    }
}

/// At most this many characters of a client-chosen name are echoed in an
/// error, printable ASCII only.
const ECHO_LIMIT: usize = 40;

/// A short, printable copy of something the client sent, for an error
/// description.
pub(crate) fn sanitised(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(ECHO_LIMIT)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > ECHO_LIMIT {
        out.push_str("...");
    }
    out
}
