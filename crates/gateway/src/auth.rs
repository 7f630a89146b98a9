//! Credentials and peer address as the gateway finds them on a request.
//! Checking a token is the service's job; this only finds it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::GatewayError;

/// The bearer token of the `Authorization` header, if there is one.
/// A header that is present but not a bearer token is an error rather than
/// "no token", so that a misconfigured client hears why it is refused.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| GatewayError::BadAuthorization)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(GatewayError::BadAuthorization)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(GatewayError::BadAuthorization);
    }
    Ok(Some(token.to_owned()))
}

/// The bearer token, required.
pub(crate) fn required_bearer(headers: &HeaderMap) -> Result<String, GatewayError> {
    bearer(headers)?.ok_or(GatewayError::MissingToken { also: "" })
}

/// The client's IP address when the server was started with connect info.
pub(crate) struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(header: Option<&str>, expected: Result<Option<&str>, ()>) {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(h).unwrap());
        }
        let got = bearer(&headers);
        let got = got.as_ref().map(|t| t.as_deref()).map_err(|_| ());
        assert_eq!(got, expected, "{header:?}");
    }

    #[test]
    fn bearer_tokens_are_found_and_other_schemes_refused() {
        check(None, Ok(None));
        check(Some("Bearer abc"), Ok(Some("abc")));
        check(Some("bearer  abc "), Ok(Some("abc")));
        check(Some("Basic dXNlcjpwdw=="), Err(()));
        check(Some("Bearer "), Err(()));
        check(Some("abc"), Err(()));
    }
}
