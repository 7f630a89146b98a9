//! The three-legged flow's pure pieces (RFC 5849 section 2): callbacks and
//! the redirect back to them, random tokens, secrets and verifiers, and the
//! response bodies of the temporary-credential and token endpoints.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::encoding::percent_encode;
use crate::error::OAuthError;
use crate::store::Secret;

/// Random bytes in a token or a secret: 256 bits, 43 characters of
/// URL-safe base64 (RFC 5849 4.9 asks for unguessable values).
pub const TOKEN_BYTES: usize = 32;
/// Random bytes in a verifier: 128 bits, 22 characters. It only completes
/// a flow that also needs the temporary credentials' secret, once.
pub const VERIFIER_BYTES: usize = 16;

/// Where the resource owner is sent after the authorization step
/// (`oauth_callback`, RFC 5849 2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// `oob`: the client cannot receive a callback; the server shows the
    /// verifier for the resource owner to copy.
    OutOfBand,
    /// An absolute URI.
    Uri(String),
}

/// Schemes a callback may not use: the authorization page redirects a
/// logged-in browser there.
const REFUSED_SCHEMES: [&str; 4] = ["javascript", "data", "vbscript", "file"];

impl Callback {
    /// Reads an `oauth_callback` value: `oob` (case-sensitive) or an
    /// absolute URI (`scheme:rest`, printable ASCII, not a script or data
    /// URI). Custom schemes of native apps are allowed.
    pub fn parse(value: &str) -> Result<Self, OAuthError> {
        if value == "oob" {
            return Ok(Callback::OutOfBand);
        }
        let rejected = |reason| OAuthError::ParameterRejected {
            name: "oauth_callback",
            reason,
        };
        let Some((scheme, rest)) = value.split_once(':') else {
            return Err(rejected("neither oob nor an absolute URI"));
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok || rest.is_empty() {
            return Err(rejected("neither oob nor an absolute URI"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(rejected("URI has unencoded spaces, controls or non-ASCII"));
        }
        if REFUSED_SCHEMES
            .iter()
            .any(|refused| scheme.eq_ignore_ascii_case(refused))
        {
            return Err(rejected("scheme not allowed for a callback"));
        }
        Ok(Callback::Uri(value.to_owned()))
    }

    /// The value to store and to give back to [`Callback::parse`].
    pub fn as_str(&self) -> &str {
        match self {
            Callback::OutOfBand => "oob",
            Callback::Uri(uri) => uri,
        }
    }

    /// The URI to redirect the resource owner to once they approved (RFC
    /// 5849 2.2): the callback with `oauth_token` and `oauth_verifier`
    /// appended to its query (after an existing query, before a fragment).
    /// `None` for [`Callback::OutOfBand`]: show the verifier instead.
    pub fn redirect(&self, token: &str, verifier: &str) -> Option<String> {
        let Callback::Uri(uri) = self else {
            return None;
        };
        let (base, fragment) = match uri.split_once('#') {
            Some((base, fragment)) => (base, Some(fragment)),
            None => (uri.as_str(), None),
        };
        let mut out = String::with_capacity(uri.len() + token.len() + verifier.len() + 40);
        out.push_str(base);
        if !base.contains('?') {
            out.push('?');
        } else if !base.ends_with(['?', '&']) {
            out.push('&');
        }
        out.push_str("oauth_token=");
        out.push_str(&percent_encode(token));
        out.push_str("&oauth_verifier=");
        out.push_str(&percent_encode(verifier));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        Some(out)
    }
}

/// A freshly issued identifier and shared-secret: temporary credentials or
/// token credentials. The caller stores them (the secret as it stores
/// passwords' equivalents: it is needed in clear to verify signatures)
/// and sends them once.
#[derive(Clone, Debug)]
pub struct IssuedCredentials {
    /// `oauth_token`.
    pub token: String,
    /// `oauth_token_secret`.
    pub secret: Secret,
}

impl IssuedCredentials {
    /// A random token and secret from the operating system's generator.
    pub fn generate() -> Result<Self, OAuthError> {
        Ok(IssuedCredentials {
            token: random_string::<TOKEN_BYTES>()?,
            secret: Secret::new(random_string::<TOKEN_BYTES>()?),
        })
    }

    /// The temporary-credential endpoint's answer (RFC 5849 2.1), sent as
    /// `application/x-www-form-urlencoded`.
    pub fn temporary_credentials_body(&self) -> String {
        format!(
            "{}&oauth_callback_confirmed=true",
            self.token_credentials_body()
        )
    }

    /// The token endpoint's answer (RFC 5849 2.3), sent as
    /// `application/x-www-form-urlencoded`.
    pub fn token_credentials_body(&self) -> String {
        format!(
            "oauth_token={}&oauth_token_secret={}",
            percent_encode(&self.token),
            percent_encode(self.secret.expose())
        )
    }
}

/// A random verification code for the authorization step (RFC 5849 2.2).
pub fn generate_verifier() -> Result<String, OAuthError> {
    random_string::<VERIFIER_BYTES>()
}

fn random_string<const N: usize>() -> Result<String, OAuthError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| OAuthError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_append_to_any_query() {
        let redirect = |uri: &str| Callback::parse(uri).unwrap().redirect("t k", "v").unwrap();
        assert_eq!(
            redirect("http://c/ready"),
            "http://c/ready?oauth_token=t%20k&oauth_verifier=v"
        );
        assert_eq!(
            redirect("http://c/cb?x=1"),
            "http://c/cb?x=1&oauth_token=t%20k&oauth_verifier=v"
        );
        assert_eq!(
            redirect("http://c/cb?"),
            "http://c/cb?oauth_token=t%20k&oauth_verifier=v"
        );
        assert_eq!(
            redirect("http://c/cb?x&"),
            "http://c/cb?x&oauth_token=t%20k&oauth_verifier=v"
        );
        assert_eq!(
            redirect("app://cb?x=1#frag?y"),
            "app://cb?x=1&oauth_token=t%20k&oauth_verifier=v#frag?y"
        );
        assert_eq!(Callback::OutOfBand.redirect("t", "v"), None);
    }

    #[test]
    fn callbacks_are_oob_or_absolute() {
        assert_eq!(Callback::parse("oob").unwrap(), Callback::OutOfBand);
        for bad in [
            "OOB",
            "",
            "/relative",
            "1http://x",
            "http:",
            "http://a b",
            "javascript:alert(1)",
            "DATA:x",
        ] {
            assert!(Callback::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn issued_values_are_long_and_distinct() {
        let a = IssuedCredentials::generate().unwrap();
        let b = IssuedCredentials::generate().unwrap();
        assert_eq!(a.token.len(), 43);
        assert_eq!(a.secret.expose().len(), 43);
        assert_ne!(a.token, b.token);
        assert_ne!(a.secret, b.secret);
        assert_eq!(generate_verifier().unwrap().len(), 22);
        assert!(format!("{a:?}").contains("Secret(..)"));
        assert!(
            a.temporary_credentials_body()
                .ends_with("&oauth_callback_confirmed=true")
        );
    }
}
