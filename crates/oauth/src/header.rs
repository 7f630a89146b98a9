//! The `Authorization: OAuth ...` header field (RFC 5849 3.5.1, RFC 2617
//! auth-params): `OAuth` (any case), then comma-separated `name="value"`
//! pairs with optional linear whitespace, names and values percent-encoded
//! per 3.6. `realm` is dropped here, as the base string leaves it out.

use crate::encoding::{Plus, percent_decode};
use crate::error::{Location, OAuthError};

/// Longer `Authorization` headers are refused before they are parsed (a
/// fully populated OAuth header is well under 1 KiB).
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;

/// The parameters of an OAuth `Authorization` header, `realm` left out;
/// `None` when the header uses another scheme (`Basic`, `Bearer`, ...).
pub(crate) fn parse_authorization(raw: &[u8]) -> Result<Option<Vec<(String, String)>>, OAuthError> {
    if raw.len() > MAX_AUTHORIZATION_LEN {
        return Err(OAuthError::MalformedHeader("longer than 8 KiB"));
    }
    let raw = trim_lws(raw);
    let scheme_end = raw.iter().position(|&b| is_lws(b)).unwrap_or(raw.len());
    if !raw[..scheme_end].eq_ignore_ascii_case(b"OAuth") {
        return Ok(None);
    }
    let mut rest = &raw[scheme_end..];
    let mut params = Vec::new();
    let mut realm_seen = false;
    loop {
        rest = skip_separators(rest);
        if rest.is_empty() {
            break;
        }
        let AuthParam { name, value, after } = auth_param(rest)?;
        rest = after;
        if name == b"realm" {
            if realm_seen {
                return Err(OAuthError::MalformedHeader("realm appears more than once"));
            }
            realm_seen = true;
        } else {
            params.push((
                percent_decode(name, Plus::IsPlus, Location::Header)?,
                percent_decode(value, Plus::IsPlus, Location::Header)?,
            ));
        }
        // After a parameter: end, or a comma.
        rest = trim_start_lws(rest);
        match rest.first() {
            None => break,
            Some(b',') => {}
            Some(_) => {
                return Err(OAuthError::MalformedHeader(
                    "parameters must be separated by commas",
                ));
            }
        }
    }
    Ok(Some(params))
}

/// One `name="value"` of the header, still encoded.
struct AuthParam<'a> {
    name: &'a [u8],
    /// What is between the quotes.
    value: &'a [u8],
    /// What follows the closing quote.
    after: &'a [u8],
}

fn auth_param(input: &[u8]) -> Result<AuthParam<'_>, OAuthError> {
    let name_end = input
        .iter()
        .position(|&b| !is_name_byte(b))
        .unwrap_or(input.len());
    if name_end == 0 {
        return Err(OAuthError::MalformedHeader("expected a parameter name"));
    }
    let (name, rest) = input.split_at(name_end);
    let rest = trim_start_lws(rest);
    let Some(rest) = rest.strip_prefix(b"=") else {
        return Err(OAuthError::MalformedHeader(
            "parameter name not followed by '='",
        ));
    };
    let rest = trim_start_lws(rest);
    let Some(rest) = rest.strip_prefix(b"\"") else {
        return Err(OAuthError::MalformedHeader(
            "parameter value must be in double quotes",
        ));
    };
    // Encoded values contain neither quotes nor backslashes, so there is no
    // quoted-pair to honour: a backslash is refused, not interpreted.
    let Some(close) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
        return Err(OAuthError::MalformedHeader("unterminated quoted value"));
    };
    if rest[close] == b'\\' {
        return Err(OAuthError::MalformedHeader("backslash in a quoted value"));
    }
    let value = &rest[..close];
    if !value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(OAuthError::MalformedHeader(
            "control or non-ASCII byte in a value",
        ));
    }
    Ok(AuthParam {
        name,
        value,
        after: &rest[close + 1..],
    })
}

/// Parameter names are percent-encoded tokens; `%` is allowed for names
/// outside the unreserved set, which decoding checks.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

fn trim_start_lws(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_lws(b))
        .unwrap_or(input.len());
    &input[start..]
}

fn trim_lws(input: &[u8]) -> &[u8] {
    let input = trim_start_lws(input);
    let end = input
        .iter()
        .rposition(|&b| !is_lws(b))
        .map_or(0, |at| at + 1);
    &input[..end]
}

/// Commas and whitespace between parameters; empty list elements are
/// allowed (RFC 7230 7, `#rule`).
fn skip_separators(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_lws(b) && b != b',')
        .unwrap_or(input.len());
    &input[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(header: &str) -> Result<Option<Vec<(String, String)>>, OAuthError> {
        parse_authorization(header.as_bytes())
    }

    #[test]
    fn reads_the_rfc_example() {
        let params = parse(
            "OAuth realm=\"Example\",\n oauth_consumer_key=\"0685bd9184jfhq22\",\
             oauth_signature=\"wOJIO9A2W5mFwDgiDvZbTSMK%2FPY%3D\"",
        );
        // A raw newline is not linear whitespace in a header we are handed.
        assert!(params.is_err());
        let params = parse(
            "oauth realm=\"Example\", oauth_consumer_key=\"0685bd9184jfhq22\",\t\
             oauth_signature = \"wOJIO9A2W5mFwDgiDvZbTSMK%2FPY%3D\" ,",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            params,
            [
                (
                    "oauth_consumer_key".to_owned(),
                    "0685bd9184jfhq22".to_owned()
                ),
                (
                    "oauth_signature".to_owned(),
                    "wOJIO9A2W5mFwDgiDvZbTSMK/PY=".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn other_schemes_are_not_ours() {
        assert!(parse("Bearer abc").unwrap().is_none());
        assert!(parse("OAuthx a=\"b\"").unwrap().is_none());
        assert_eq!(parse("OAuth").unwrap(), Some(vec![]));
    }

    #[test]
    fn refuses_malformed_headers() {
        for header in [
            "OAuth a=\"b",
            "OAuth a",
            "OAuth a=b",
            "OAuth =\"b\"",
            "OAuth a=\"b\" c=\"d\"",
            "OAuth a=\"b\\\"\"",
            "OAuth realm=\"x\", realm=\"y\"",
            "OAuth a=\"%zz\"",
            "OAuth a=\"%FF\"",
            "OAuth a\"b\"",
        ] {
            assert!(
                matches!(
                    parse(header),
                    Err(OAuthError::MalformedHeader(_) | OAuthError::BadEncoding { .. })
                ),
                "{header}: {:?}",
                parse(header)
            );
        }
        let huge = format!("OAuth a=\"{}\"", "x".repeat(MAX_AUTHORIZATION_LEN));
        assert!(matches!(parse(&huge), Err(OAuthError::MalformedHeader(_))));
    }
}
