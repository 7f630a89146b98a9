//! The signature base string (RFC 5849 3.4.1): the uppercased method, the
//! base string URI and the normalized parameters, each encoded (3.6) and
//! joined by `&`.

use crate::encoding::percent_encode;
use crate::error::OAuthError;

/// The method uppercased (3.4.1.1 step 1); it must be an HTTP token (RFC
/// 7230 3.2.6). A custom method's reserved characters are encoded when the
/// base string is built.
pub(crate) fn method(method: &str) -> Result<String, OAuthError> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(OAuthError::BadMethod);
    }
    Ok(method.to_ascii_uppercase())
}

/// The base string URI (3.4.1.2): `scheme://host[:port]path`, scheme and
/// host lowercased, the default port (80 for http, 443 for https) left
/// out, the path kept as received (`/` if empty), no query, no fragment.
pub fn base_uri(scheme: &str, authority: &str, path: &str) -> Result<String, OAuthError> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(OAuthError::BadRequestUrl(
                "scheme is neither http nor https",
            ));
        }
    };
    let (host, port) = split_authority(authority)?;
    let path = match path {
        "" => "/",
        path if path.starts_with('/') => path,
        _ => return Err(OAuthError::BadRequestUrl("path does not start with '/'")),
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains(['?', '#']) {
        return Err(OAuthError::BadRequestUrl(
            "path is not a percent-encoded path",
        ));
    }
    let mut uri = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(port) = port.filter(|&port| port != default_port) {
        uri.push_str(&format!(":{port}"));
    }
    uri.push_str(path);
    Ok(uri)
}

/// Splits a `Host` field into host and port (RFC 3986 3.2.2, 3.2.3; an
/// empty port is no port).
fn split_authority(authority: &str) -> Result<(&str, Option<u16>), OAuthError> {
    let (host, port) = if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(OAuthError::BadRequestUrl(
                "unterminated IPv6 literal in Host",
            ));
        };
        let (host, rest) = authority.split_at(close + 1);
        match rest {
            "" => (host, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(OAuthError::BadRequestUrl("junk after IPv6 literal in Host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // reg-name or IPv4 (unreserved, sub-delims, pct-encoded); inside an
    // IPv6 literal also ':' (and '.' for an embedded IPv4).
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
    let literal_ok = |b: u8| b.is_ascii_hexdigit() || b":.".contains(&b);
    let valid = match inner {
        Some(inner) => !inner.is_empty() && inner.bytes().all(literal_ok),
        None => !host.is_empty() && host.bytes().all(host_ok),
    };
    if !valid {
        return Err(OAuthError::BadRequestUrl(
            "Host is not a host name or address",
        ));
    }
    let port = match port {
        None | Some("") => None,
        Some(port) if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => Some(
            port.parse::<u16>()
                .map_err(|_| OAuthError::BadRequestUrl("port out of range"))?,
        ),
        Some(_) => return Err(OAuthError::BadRequestUrl("port is not a number")),
    };
    Ok((host, port))
}

/// The normalized request parameters (3.4.1.3.2): names and values encoded
/// (3.6), sorted by name then value in byte order, `name=value` joined by
/// `&`. `oauth_signature` is left out (3.4.1.3.1); `realm` never gets here
/// from the header.
pub(crate) fn normalized_parameters(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "oauth_signature")
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    encoded.sort_unstable();
    let mut out = String::new();
    for (i, (name, value)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The signature base string (3.4.1.1).
pub(crate) fn signature_base_string(
    method: &str,
    base_uri: &str,
    params: &[(String, String)],
) -> String {
    format!(
        "{}&{}&{}",
        percent_encode(method),
        percent_encode(base_uri),
        percent_encode(&normalized_parameters(params))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_uri_examples_of_rfc_3_4_1_2() {
        assert_eq!(
            base_uri("http", "EXAMPLE.COM:80", "/r%20v/X").unwrap(),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            base_uri("https", "www.example.net:8080", "/").unwrap(),
            "https://www.example.net:8080/"
        );
        assert_eq!(base_uri("HTTPS", "h:443", "").unwrap(), "https://h/");
        assert_eq!(base_uri("http", "h:443", "/").unwrap(), "http://h:443/");
        assert_eq!(base_uri("http", "h:", "/").unwrap(), "http://h/");
        assert_eq!(
            base_uri("http", "[::1]:8080", "/a").unwrap(),
            "http://[::1]:8080/a"
        );
        assert_eq!(base_uri("http", "[::1]", "/a").unwrap(), "http://[::1]/a");
    }

    #[test]
    fn refuses_what_cannot_be_a_base_uri() {
        for (scheme, authority, path) in [
            ("ftp", "h", "/"),
            ("http", "", "/"),
            ("http", "h:99999", "/"),
            ("http", "h:8a", "/"),
            ("http", "u@h", "/"),
            ("http", "[::1", "/"),
            ("http", "[::1]x", "/"),
            ("http", "h", "x"),
            ("http", "h", "/a b"),
            ("http", "h", "/a?b"),
            ("http", "h h", "/"),
        ] {
            assert!(
                base_uri(scheme, authority, path).is_err(),
                "{scheme} {authority} {path}"
            );
        }
    }

    #[test]
    fn methods_are_tokens() {
        assert_eq!(method("get").unwrap(), "GET");
        assert_eq!(method("M-SEARCH").unwrap(), "M-SEARCH");
        assert!(method("").is_err());
        assert!(method("GE T").is_err());
    }
}
