//! The signature methods (RFC 5849 3.4): HMAC-SHA1 (3.4.2) and PLAINTEXT
//! (3.4.4). RSA-SHA1 (3.4.3) is not supported. Verification compares in
//! constant time.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::encoding::percent_encode;
use crate::error::{OAuthError, sanitised};

/// A signature method this provider verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureMethod {
    /// `HMAC-SHA1` (RFC 5849 3.4.2).
    HmacSha1,
    /// `PLAINTEXT` (RFC 5849 3.4.4): the secrets themselves, so only over
    /// a secure transport.
    Plaintext,
}

impl SignatureMethod {
    /// Reads `oauth_signature_method` (case-sensitive, RFC 5849 3.1).
    pub fn parse(name: &str) -> Result<Self, OAuthError> {
        match name {
            "HMAC-SHA1" => Ok(SignatureMethod::HmacSha1),
            "PLAINTEXT" => Ok(SignatureMethod::Plaintext),
            other => Err(OAuthError::UnsupportedSignatureMethod(sanitised(other))),
        }
    }

    /// The name as sent in `oauth_signature_method`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
            SignatureMethod::Plaintext => "PLAINTEXT",
        }
    }
}

/// `encode(consumer_secret) & encode(token_secret)`: the HMAC-SHA1 key and
/// the PLAINTEXT signature; the `&` is there even when a secret is empty.
fn key(consumer_secret: &str, token_secret: &str) -> String {
    format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    )
}

fn mac(base_string: &str, consumer_secret: &str, token_secret: &str) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key(consumer_secret, token_secret).as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(base_string.as_bytes());
    mac
}

/// The HMAC-SHA1 signature of `base_string`, base64-encoded (the value of
/// `oauth_signature` before its transmission encoding).
pub fn hmac_sha1(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    STANDARD.encode(
        mac(base_string, consumer_secret, token_secret)
            .finalize()
            .into_bytes(),
    )
}

/// The PLAINTEXT signature (the value of `oauth_signature` before its
/// transmission encoding).
pub fn plaintext(consumer_secret: &str, token_secret: &str) -> String {
    key(consumer_secret, token_secret)
}

/// Base64 as clients write it: the standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Checks a received `oauth_signature` in constant time.
pub(crate) fn verify(
    method: SignatureMethod,
    received: &str,
    base_string: impl FnOnce() -> String,
    consumer_secret: &str,
    token_secret: &str,
) -> Result<(), OAuthError> {
    let valid = match method {
        SignatureMethod::HmacSha1 => match LENIENT_BASE64.decode(received) {
            Ok(received) => mac(&base_string(), consumer_secret, token_secret)
                .verify_slice(&received)
                .is_ok(),
            Err(_) => false,
        },
        SignatureMethod::Plaintext => {
            let expected = key(consumer_secret, token_secret);
            bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
        }
    };
    if valid {
        Ok(())
    } else {
        Err(OAuthError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_examples_of_rfc_section_2() {
        assert_eq!(plaintext("ja893SD9", ""), "ja893SD9&");
        assert_eq!(
            plaintext("ja893SD9", "xyz4992k83j47x0b"),
            "ja893SD9&xyz4992k83j47x0b"
        );
        assert_eq!(plaintext("a b&", "é"), "a%20b%26&%C3%A9");
    }

    #[test]
    fn verifies_what_it_signs() {
        let signature = hmac_sha1("GET&x&y", "cs", "ts");
        let base = || "GET&x&y".to_owned();
        verify(SignatureMethod::HmacSha1, &signature, base, "cs", "ts").unwrap();
        let unpadded = signature.trim_end_matches('=');
        verify(SignatureMethod::HmacSha1, unpadded, base, "cs", "ts").unwrap();
        for (sig, cs, ts) in [
            (&*signature, "cs", "tx"),
            (&*signature, "cx", "ts"),
            ("!!", "cs", "ts"),
        ] {
            assert!(verify(SignatureMethod::HmacSha1, sig, base, cs, ts).is_err());
        }
        verify(SignatureMethod::Plaintext, "cs&ts", base, "cs", "ts").unwrap();
        assert!(verify(SignatureMethod::Plaintext, "cs&t", base, "cs", "ts").is_err());
    }

    #[test]
    fn rsa_is_refused_by_name() {
        let error = SignatureMethod::parse("RSA-SHA1").unwrap_err();
        assert_eq!(error.http_status(), 400);
        assert!(error.to_string().contains("RSA-SHA1"));
    }
}
