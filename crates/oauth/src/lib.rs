//! StackSync OAuth: the provider (server) side of OAuth 1.0a, RFC 5849, for
//! the REST API v2.
//!
//! **What it is for.** Deciding whether a request is signed by a client the
//! server knows, acting for a resource owner who authorized it:
//! * [`ParsedRequest::parse`] reads an [`HttpRequest`] as the server
//!   received it (method, scheme, `Host`, raw path and query,
//!   `Authorization` header, form body) into its protocol parameters, from
//!   exactly one of header, form body or query, each at most once
//!   (RFC 5849 3.5), and its signature base string (3.4.1);
//! * [`Provider::verify`] checks version, signature method (HMAC-SHA1, and
//!   PLAINTEXT only when configured and on a secure transport; RSA-SHA1 is
//!   refused), timestamp window, the secrets found through [`Credentials`],
//!   the signature in constant time, and the nonce through [`NonceStore`]
//!   ([`MemoryNonceStore`] for tests and a single process);
//! * the three-legged flow (RFC 5849 2): [`Callback`] and its redirect,
//!   [`IssuedCredentials`] and the endpoints' response bodies,
//!   [`generate_verifier`], [`Provider::check_exchange`];
//! * every refusal is one [`OAuthError`] with its HTTP status
//!   ([`OAuthError::http_status`]: 400 for malformed, duplicated, missing
//!   or unsupported, 401 for failed authentication).
//!
//! **What it must never do.** No I/O, no clock, no storage: the caller
//! passes the time (`now`), says whether the transport is secure, and looks
//! up secrets and nonces behind the two traits, which live with the
//! metadata store. It depends on no internal crate. No input may make it
//! panic, and no error description contains a secret, a signature or a
//! verifier.

#![warn(missing_docs)]

mod base_string;
mod encoding;
mod error;
mod flow;
mod header;
mod provider;
mod request;
mod signature;
mod store;

pub use base_string::base_uri;
pub use encoding::percent_encode;
pub use error::{Location, OAuthError};
pub use flow::{Callback, IssuedCredentials, TOKEN_BYTES, VERIFIER_BYTES, generate_verifier};
pub use header::MAX_AUTHORIZATION_LEN;
pub use provider::{Config, Endpoint, PendingAuthorization, Provider, Transport, Verified};
pub use request::{
    HttpRequest, MAX_NONCE_LEN, MAX_PROTOCOL_VALUE_LEN, ParsedRequest, ProtocolParams,
    is_form_content_type,
};
pub use signature::{SignatureMethod, hmac_sha1, plaintext};
pub use store::{Credentials, MemoryNonceStore, NonceStore, NonceUse, Secret, TokenKind};
