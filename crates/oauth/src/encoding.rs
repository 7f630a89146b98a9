//! Percent-encoding as RFC 5849 section 3.6 defines it (the only encoding
//! the signature base string and the `Authorization` header use), strict
//! percent-decoding, and `application/x-www-form-urlencoded` parsing (query
//! and form body, where `+` is a space).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{Location, OAuthError};

/// Everything but the unreserved set of RFC 3986 2.3 (ALPHA, DIGIT, `-`,
/// `.`, `_`, `~`) is encoded; `percent-encoding` writes uppercase hex.
const RFC5849: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `text` per RFC 5849 3.6: UTF-8, unreserved characters
/// kept, everything else `%XX` with uppercase hex (a space is `%20`, never
/// `+`).
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, RFC5849).to_string()
}

/// Whether `+` stands for a space while decoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plus {
    /// Form rules (query, form body): `+` is a space.
    IsSpace,
    /// RFC 5849 3.5.1 header values: `+` is itself.
    IsPlus,
}

/// Decodes `%XX` escapes strictly (a `%` not followed by two hex digits is
/// an error) and requires the result to be UTF-8.
pub(crate) fn percent_decode(
    input: &[u8],
    plus: Plus,
    location: Location,
) -> Result<String, OAuthError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let (Some(&hi), Some(&lo)) = (input.get(i + 1), input.get(i + 2)) else {
                    return Err(bad(location, "'%' not followed by two hex digits"));
                };
                let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                    return Err(bad(location, "'%' not followed by two hex digits"));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus == Plus::IsSpace => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad(location, "decoded text is not UTF-8"))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn bad(location: Location, reason: &'static str) -> OAuthError {
    OAuthError::BadEncoding { location, reason }
}

/// Parses an `application/x-www-form-urlencoded` string (HTML 4.01
/// 17.13.4, as RFC 5849 3.4.1.3.1 asks for the query and the form body)
/// into decoded name/value pairs, in order. Empty segments (`a=1&&b=2`) are
/// skipped; a segment without `=` is a name with an empty value.
pub(crate) fn parse_form(
    input: &[u8],
    location: Location,
) -> Result<Vec<(String, String)>, OAuthError> {
    // A form is ASCII once encoded; raw bytes above it mean the sender did
    // not encode, and we cannot know which bytes it signed.
    if !input.iter().all(|b| b.is_ascii_graphic()) {
        return Err(bad(location, "unencoded space, control or non-ASCII byte"));
    }
    input
        .split(|&b| b == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(at) => (&segment[..at], &segment[at + 1..]),
                None => (segment, &b""[..]),
            };
            Ok((
                percent_decode(name, Plus::IsSpace, location)?,
                percent_decode(value, Plus::IsSpace, location)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_per_rfc5849() {
        assert_eq!(percent_encode("r b"), "r%20b");
        assert_eq!(percent_encode("=%3D"), "%3D%253D");
        assert_eq!(percent_encode("c@"), "c%40");
        assert_eq!(percent_encode("-._~azAZ09"), "-._~azAZ09");
        assert_eq!(percent_encode("é+*"), "%C3%A9%2B%2A");
    }

    #[test]
    fn decodes_strictly() {
        let q = Location::Query;
        assert_eq!(percent_decode(b"2+q", Plus::IsSpace, q).unwrap(), "2 q");
        assert_eq!(percent_decode(b"2+q", Plus::IsPlus, q).unwrap(), "2+q");
        assert_eq!(percent_decode(b"%3d%3D", Plus::IsSpace, q).unwrap(), "==");
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%g1", b"%FF"] {
            assert!(percent_decode(bad, Plus::IsSpace, q).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_forms() {
        let pairs = parse_form(b"c2&a3=2+q&&b=%3D%253D&=x", Location::FormBody).unwrap();
        let expected = [("c2", ""), ("a3", "2 q"), ("b", "=%3D"), ("", "x")];
        assert_eq!(pairs.len(), expected.len());
        for ((n, v), (en, ev)) in pairs.iter().zip(expected) {
            assert_eq!((n.as_str(), v.as_str()), (en, ev));
        }
        assert!(parse_form(b"a=b c", Location::Query).is_err());
    }
}
