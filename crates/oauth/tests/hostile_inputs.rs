//! Malformed, duplicated, oversized and non-UTF-8 input: a clear 400-class
//! error, never a panic, and no secret in any description.

mod common;

use common::{Keys, Req, block_on, provider, verify};
use proptest::prelude::*;
use stacksync_oauth::{
    Endpoint, HttpRequest, Location, MAX_AUTHORIZATION_LEN, MemoryNonceStore, OAuthError,
    ParsedRequest, TokenKind, Transport, hmac_sha1,
};

const NOW: u64 = 1_700_000_000;
const CONSUMER_SECRET: &str = "consumer-secret-do-not-echo";
const TOKEN_SECRET: &str = "token-secret-do-not-echo";

fn keys() -> Keys {
    Keys::default().consumer("ck", CONSUMER_SECRET).token(
        "ck",
        "tk",
        TOKEN_SECRET,
        TokenKind::Access,
    )
}

/// A valid HMAC-SHA1 request for `GET http://h/p?q=1`, its protocol
/// parameters in the header.
fn signed() -> Req {
    let unsigned = Req::new("GET", "http://h/p?q=1").header(format!(
        "OAuth oauth_consumer_key=\"ck\", oauth_token=\"tk\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_timestamp=\"{NOW}\", oauth_nonce=\"n\""
    ));
    let base = ParsedRequest::parse(&unsigned.http())
        .unwrap()
        .signature_base_string();
    let signature =
        stacksync_oauth::percent_encode(&hmac_sha1(&base, CONSUMER_SECRET, TOKEN_SECRET));
    let header = format!(
        "{}, oauth_signature=\"{signature}\"",
        unsigned.authorization.as_deref().unwrap()
    );
    unsigned.header(header)
}

fn check(req: &Req) -> Result<stacksync_oauth::Verified, OAuthError> {
    verify(
        &provider(),
        req,
        Endpoint::Resource,
        NOW,
        &keys(),
        &MemoryNonceStore::new(),
    )
}

/// Checks that `req` is refused as `expected` says, with a 400.
#[track_caller]
fn refused_400(req: &Req, expected: impl Fn(&OAuthError) -> bool) {
    match check(req) {
        Ok(verified) => panic!("accepted: {verified:?} for {req:?}"),
        Err(error) => {
            assert!(expected(&error), "unexpected {error:?} for {req:?}");
            assert_eq!(error.http_status(), 400, "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }
}

#[test]
fn the_valid_request_passes() {
    check(&signed()).unwrap();
}

#[test]
fn malformed_headers_are_400() {
    let valid = signed().authorization.unwrap();
    for header in [
        valid.replacen("=\"ck\"", "=\"ck", 1),
        "OAuth oauth_consumer_key=\"ck".to_owned(),
        valid.replacen("oauth_token=\"tk\"", "oauth_token", 1),
        valid.replacen("oauth_token=\"tk\"", "oauth_token tk", 1),
        valid.replacen("oauth_token=\"tk\"", "oauth_token=tk", 1),
        valid.replacen("\", ", "\" ", 1),
        valid.replacen("\"tk\"", "\"t\\\"k\"", 1),
        format!("{valid}, =\"x\""),
        format!("OAuth realm=\"a\", realm=\"b\", {}", &valid[6..]),
        format!("{valid}, junk=\"{}\"", "x".repeat(MAX_AUTHORIZATION_LEN)),
    ] {
        refused_400(&signed().header(header), |e| {
            matches!(e, OAuthError::MalformedHeader(_))
        });
    }
}

#[test]
fn bad_encoding_is_400_wherever_it_is() {
    let valid = signed().authorization.unwrap();
    for (req, location) in [
        (
            signed().header(valid.replacen("\"tk\"", "\"t%zk\"", 1)),
            Location::Header,
        ),
        (
            signed().header(valid.replacen("\"tk\"", "\"tk%\"", 1)),
            Location::Header,
        ),
        (
            signed().header(valid.replacen("\"tk\"", "\"%C3%28\"", 1)),
            Location::Header,
        ),
        (
            Req {
                query: Some("q=%4".to_owned()),
                ..signed()
            },
            Location::Query,
        ),
        (
            Req {
                query: Some("q=%FF".to_owned()),
                ..signed()
            },
            Location::Query,
        ),
        (
            Req {
                query: Some("q=a b".to_owned()),
                ..signed()
            },
            Location::Query,
        ),
        (signed().form("a=%G0"), Location::FormBody),
        (signed().form("a=\u{e9}"), Location::FormBody),
    ] {
        refused_400(
            &req,
            |e| matches!(e, OAuthError::BadEncoding { location: l, .. } if *l == location),
        );
    }
    // Raw non-UTF-8 bytes in the header and the body.
    let mut header = signed().authorization.unwrap().into_bytes();
    header.insert(8, 0xFF);
    let req = signed();
    let http = HttpRequest {
        authorization: Some(&header),
        ..req.http()
    };
    let refused = block_on(provider().verify(
        &http,
        Endpoint::Resource,
        Transport::Secure,
        NOW,
        &keys(),
        &MemoryNonceStore::new(),
    ));
    assert!(
        matches!(refused, Err(OAuthError::MalformedHeader(_))),
        "{refused:?}"
    );
    let body = [b'a', b'=', 0xC3, 0x28];
    let http = HttpRequest {
        content_type: Some(b"Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        body: &body,
        ..req.http()
    };
    let refused = block_on(provider().verify(
        &http,
        Endpoint::Resource,
        Transport::Secure,
        NOW,
        &keys(),
        &MemoryNonceStore::new(),
    ));
    assert!(
        matches!(
            refused,
            Err(OAuthError::BadEncoding {
                location: Location::FormBody,
                ..
            })
        ),
        "{refused:?}"
    );
    // Another content type: the body is not read at all.
    let http = HttpRequest {
        content_type: Some(b"application/octet-stream"),
        body: &body,
        ..req.http()
    };
    block_on(provider().verify(
        &http,
        Endpoint::Resource,
        Transport::Secure,
        NOW,
        &keys(),
        &MemoryNonceStore::new(),
    ))
    .unwrap();
}

#[test]
fn duplicated_and_scattered_parameters_are_400() {
    let valid = signed().authorization.unwrap();
    refused_400(
        &signed().header(format!("{valid}, oauth_nonce=\"m\"")),
        |e| matches!(e, OAuthError::DuplicateParameter(name) if name == "oauth_nonce"),
    );
    refused_400(
        &signed().header(format!(
            "{valid}, oauth_body_hash=\"a\", oauth_body_hash=\"a\""
        )),
        |e| matches!(e, OAuthError::DuplicateParameter(name) if name == "oauth_body_hash"),
    );
    refused_400(
        &Req {
            query: Some("q=1&oauth_version=1.0".to_owned()),
            ..signed()
        },
        |e| {
            matches!(
                e,
                OAuthError::ParametersInSeveralPlaces {
                    first: Location::Header,
                    second: Location::Query
                }
            )
        },
    );
    refused_400(&signed().form("oauth_extra=1"), |e| {
        matches!(
            e,
            OAuthError::ParametersInSeveralPlaces {
                first: Location::Header,
                second: Location::FormBody
            }
        )
    });
    let in_form_and_query = Req {
        authorization: None,
        query: Some("oauth_nonce=n".to_owned()),
        ..signed()
    }
    .form("oauth_consumer_key=ck");
    refused_400(&in_form_and_query, |e| {
        matches!(
            e,
            OAuthError::ParametersInSeveralPlaces {
                first: Location::FormBody,
                second: Location::Query
            }
        )
    });
    // Repeated request parameters are fine (the RFC's example has two a3).
    let same_name = Req {
        query: Some("q=1&q=1".to_owned()),
        ..signed()
    };
    assert!(matches!(
        check(&same_name),
        Err(OAuthError::InvalidSignature)
    ));
}

#[test]
fn missing_unsupported_and_out_of_range_parameters_are_400() {
    let valid = signed().authorization.unwrap();
    for (name, missing) in [
        ("oauth_consumer_key", "oauth_consumer_key=\"ck\", "),
        (
            "oauth_signature_method",
            "oauth_signature_method=\"HMAC-SHA1\", ",
        ),
        ("oauth_timestamp", &format!("oauth_timestamp=\"{NOW}\", ")),
        ("oauth_nonce", "oauth_nonce=\"n\""),
        ("oauth_token", "oauth_token=\"tk\", "),
    ] {
        refused_400(
            &signed().header(valid.replacen(missing, "", 1)),
            |e| matches!(e, OAuthError::MissingParameter(n) if *n == name),
        );
    }
    let cut = valid.rfind(", oauth_signature=").unwrap();
    refused_400(&signed().header(&valid[..cut]), |e| {
        matches!(e, OAuthError::MissingParameter("oauth_signature"))
    });
    refused_400(
        &signed().header(valid.replacen("HMAC-SHA1", "RSA-SHA1", 1)),
        |e| {
            matches!(e, OAuthError::UnsupportedSignatureMethod(m) if m == "RSA-SHA1")
                && e.to_string().contains("RSA-SHA1")
        },
    );
    refused_400(
        &signed().header(valid.replacen("HMAC-SHA1", "hmac-sha1", 1)),
        |e| matches!(e, OAuthError::UnsupportedSignatureMethod(_)),
    );
    refused_400(
        &signed().header(format!("{valid}, oauth_version=\"2.0\"")),
        |e| matches!(e, OAuthError::UnsupportedVersion),
    );
    for timestamp in ["abc", "0", "-5", "+5", " 5", "99999999999999999999999", ""] {
        let header = valid.replacen(&format!("\"{NOW}\""), &format!("\"{timestamp}\""), 1);
        refused_400(&signed().header(header), |e| {
            matches!(
                e,
                OAuthError::ParameterRejected {
                    name: "oauth_timestamp",
                    ..
                }
            )
        });
    }
    let long_nonce = valid.replacen(
        "oauth_nonce=\"n\"",
        &format!("oauth_nonce=\"{}\"", "n".repeat(256)),
        1,
    );
    refused_400(&signed().header(long_nonce), |e| {
        matches!(
            e,
            OAuthError::ParameterRejected {
                name: "oauth_nonce",
                ..
            }
        )
    });
}

#[test]
fn authentication_failures_are_401_without_secrets() {
    let valid = signed().authorization.unwrap();
    let cases = [
        (
            signed().header(valid.replacen("oauth_nonce=\"n\"", "oauth_nonce=\"m\"", 1)),
            "InvalidSignature",
        ),
        (
            signed().header(valid.replacen("=\"ck\"", "=\"other\"", 1)),
            "UnknownConsumer",
        ),
        (
            signed().header(valid.replacen("=\"tk\"", "=\"other\"", 1)),
            "UnknownToken",
        ),
    ];
    for (req, expected) in cases {
        let error = check(&req).unwrap_err();
        assert!(format!("{error:?}").starts_with(expected), "{error:?}");
        assert_eq!(error.http_status(), 401);
        let text = error.to_string();
        for secret in [CONSUMER_SECRET, TOKEN_SECRET, "oauth_signature"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    let stale = verify(
        &provider(),
        &signed(),
        Endpoint::Resource,
        NOW + 301,
        &keys(),
        &MemoryNonceStore::new(),
    );
    assert!(
        matches!(stale, Err(OAuthError::StaleTimestamp { window_secs: 300 })),
        "{stale:?}"
    );
    verify(
        &provider(),
        &signed(),
        Endpoint::Resource,
        NOW - 300,
        &keys(),
        &MemoryNonceStore::new(),
    )
    .unwrap();
}

/// Anything at all in every field of a request.
#[derive(Debug, Clone)]
struct Arbitrary {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    header: Option<Vec<u8>>,
    body: Vec<u8>,
    form: bool,
}

fn arbitrary_request() -> impl Strategy<Value = Arbitrary> {
    let header = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        // Mostly well-formed: OAuth pairs with hostile names and values.
        prop::collection::vec(("[a-z_%=\" ,\\\\]{0,12}", "[ -~]{0,12}|\\PC{0,4}"), 0..8).prop_map(
            |pairs| {
                let body: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
                format!("OAuth {}", body.join(", ")).into_bytes()
            }
        ),
    ];
    (
        "\\PC{0,6}",
        "[a-zA-Z]{0,6}",
        "[ -~]{0,20}|\\PC{0,6}",
        "[ -~]{0,20}|\\PC{0,6}",
        prop::option::of("[ -~]{0,40}|\\PC{0,10}".prop_map(String::into_bytes)),
        prop::option::of(header),
        prop::collection::vec(any::<u8>(), 0..100),
        any::<bool>(),
    )
        .prop_map(
            |(method, scheme, authority, path, query, header, body, form)| Arbitrary {
                method,
                scheme,
                authority,
                path,
                query: query.map(|q| String::from_utf8_lossy(&q).into_owned()),
                header,
                body,
                form,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives, the answer is an error with a 400 or 401 status
    /// (or, by chance, a verified request), never a panic.
    #[test]
    fn arbitrary_requests_never_panic(request in arbitrary_request()) {
        let http = HttpRequest {
            method: &request.method,
            scheme: &request.scheme,
            authority: &request.authority,
            path: &request.path,
            query: request.query.as_deref(),
            authorization: request.header.as_deref(),
            content_type: request.form.then_some(&b"application/x-www-form-urlencoded"[..]),
            body: &request.body,
        };
        let _ = ParsedRequest::parse(&http);
        for endpoint in [Endpoint::TemporaryCredentials, Endpoint::TokenCredentials, Endpoint::Resource] {
            let result = block_on(provider().verify(&http, endpoint, Transport::Secure, NOW, &keys(), &MemoryNonceStore::new()));
            if let Err(error) = result {
                prop_assert!(matches!(error.http_status(), 400 | 401), "{error:?}");
                prop_assert!(!error.to_string().contains(CONSUMER_SECRET));
            }
        }
    }

    /// A valid header with bytes inserted, removed or replaced.
    #[test]
    fn mangled_headers_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let req = signed();
        let mut header = req.authorization.clone().unwrap().into_bytes();
        for (at, byte, kind) in edits {
            let at = at.index(header.len() + 1);
            match kind {
                0 => header.insert(at, byte),
                1 if at < header.len() => { header.remove(at); }
                _ if at < header.len() => header[at] = byte,
                _ => header.push(byte),
            }
        }
        let http = HttpRequest { authorization: Some(&header), ..req.http() };
        let result = block_on(provider().verify(&http, Endpoint::Resource, Transport::Secure, NOW, &keys(), &MemoryNonceStore::new()));
        if let Err(error) = result {
            prop_assert!(matches!(error.http_status(), 400 | 401), "{error:?}");
        }
    }
}
