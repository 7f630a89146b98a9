//! The worked examples of RFC 5849, as published (April 2010).

mod common;

use common::{Keys, Req, provider, verify};
use stacksync_oauth::{
    Callback, Config, Endpoint, IssuedCredentials, MemoryNonceStore, OAuthError, ParsedRequest,
    PendingAuthorization, Provider, Secret, SignatureMethod, TokenKind, Transport, hmac_sha1,
};

/// Sections 3.1, 3.4.1.1 and 3.4.1.3: `POST /request?b5=...` with a form
/// body.
fn section_3_4_1_request() -> Req {
    Req::new(
        "POST",
        "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
    )
    .header(
        "OAuth realm=\"Example\",\
             oauth_consumer_key=\"9djdj82h48djs9d2\",\
             oauth_token=\"kkk9d7dh3k39sjv7\",\
             oauth_signature_method=\"HMAC-SHA1\",\
             oauth_timestamp=\"137131201\",\
             oauth_nonce=\"7d8f3e4a\",\
             oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"",
    )
    .form("c2&a3=2+q")
}

#[test]
fn section_3_4_1_3_1_collects_and_decodes_the_parameters() {
    let req = section_3_4_1_request();
    let parsed = ParsedRequest::parse(&req.http()).unwrap();
    let mut collected: Vec<(&str, &str)> = parsed
        .parameters()
        .iter()
        .filter(|(name, _)| name != "oauth_signature")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    collected.sort();
    // The table of 3.4.1.3.1 ("fully decoded"), sorted; no realm.
    let mut table = vec![
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ];
    table.sort();
    assert_eq!(collected, table);
}

#[test]
fn section_3_4_1_3_2_normalizes_the_parameters() {
    let parsed = ParsedRequest::parse(&section_3_4_1_request().http()).unwrap();
    assert_eq!(
        parsed.normalized_parameters(),
        "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj\
         dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1\
         &oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
    );
}

#[test]
fn section_3_4_1_1_builds_the_signature_base_string() {
    let parsed = ParsedRequest::parse(&section_3_4_1_request().http()).unwrap();
    assert_eq!(parsed.method(), "POST");
    assert_eq!(parsed.base_string_uri(), "http://example.com/request");
    let base = parsed.signature_base_string();
    assert_eq!(
        base,
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
         %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
         key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
         ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
         9d7dh3k39sjv7"
    );
    // The signature 3.1 prints for this request ("bYT5CMsGcbgUdFHObYMEfcx6bsw=",
    // client secret "j49sk3j29djd", token secret "dh893hdasih9") is not
    // the HMAC-SHA1 of the base string the RFC itself prints (Python's
    // hmac gives the value below too, with or without realm, with either
    // scheme). The base string is the normative part; the signature is
    // pinned to the independently computed value.
    let signature = hmac_sha1(&base, "j49sk3j29djd", "dh893hdasih9");
    assert_eq!(signature, "r6/TJjbCOr97/+UU0NsvSne7s5g=");
    assert_ne!(signature, "bYT5CMsGcbgUdFHObYMEfcx6bsw=");
}

#[test]
fn section_3_4_1_2_builds_base_string_uris() {
    let parsed =
        ParsedRequest::parse(&Req::new("GET", "http://EXAMPLE.COM:80/r%20v/X?id=123").http())
            .unwrap();
    assert_eq!(parsed.base_string_uri(), "http://example.com/r%20v/X");
    let parsed =
        ParsedRequest::parse(&Req::new("GET", "https://www.example.net:8080/?q=1").http()).unwrap();
    assert_eq!(parsed.base_string_uri(), "https://www.example.net:8080/");
}

/// Section 1.2: the printer (client `dpf43f3p2l4k3l03`) and Jane's photos.
const PRINTER: &str = "dpf43f3p2l4k3l03";
const PRINTER_SECRET: &str = "kd94hf93k423kf44";

#[test]
fn section_1_2_printer_and_photos() {
    let provider = Provider::default();
    let nonces = MemoryNonceStore::new();
    let mut keys = Keys::default().consumer(PRINTER, PRINTER_SECRET);

    // Temporary credentials, over HTTPS.
    let initiate = Req::new("POST", "https://photos.example.net/initiate").header(
        "OAuth realm=\"Photos\",
           oauth_consumer_key=\"dpf43f3p2l4k3l03\",
           oauth_signature_method=\"HMAC-SHA1\",
           oauth_timestamp=\"137131200\",
           oauth_nonce=\"wIjqoS\",
           oauth_callback=\"http%3A%2F%2Fprinter.example.com%2Fready\",
           oauth_signature=\"74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D\""
            .replace('\n', ""),
    );
    let verified = verify(
        &provider,
        &initiate,
        Endpoint::TemporaryCredentials,
        137131200,
        &keys,
        &nonces,
    )
    .unwrap();
    assert_eq!(verified.consumer_key, PRINTER);
    assert_eq!(verified.token, None);
    assert_eq!(verified.signature_method, SignatureMethod::HmacSha1);
    let callback = verified.callback.unwrap();
    assert_eq!(
        callback,
        Callback::Uri("http://printer.example.com/ready".to_owned())
    );
    let temporary = IssuedCredentials {
        token: "hh5s93j4hdidpola".to_owned(),
        secret: Secret::new("hdhd0244k9j7ao03"),
    };
    assert_eq!(
        temporary.temporary_credentials_body(),
        "oauth_token=hh5s93j4hdidpola&oauth_token_secret=hdhd0244k9j7ao03&oauth_callback_confirmed=true"
    );
    keys = keys.token(
        PRINTER,
        "hh5s93j4hdidpola",
        "hdhd0244k9j7ao03",
        TokenKind::Temporary,
    );

    // Jane approves; her user-agent goes back to the callback.
    assert_eq!(
        callback
            .redirect("hh5s93j4hdidpola", "hfdp7dh39dks9884")
            .unwrap(),
        "http://printer.example.com/ready?oauth_token=hh5s93j4hdidpola&oauth_verifier=hfdp7dh39dks9884"
    );

    // Token credentials, over TLS.
    let token = Req::new("POST", "https://photos.example.net/token").header(
        "OAuth realm=\"Photos\",
           oauth_consumer_key=\"dpf43f3p2l4k3l03\",
           oauth_token=\"hh5s93j4hdidpola\",
           oauth_signature_method=\"HMAC-SHA1\",
           oauth_timestamp=\"137131201\",
           oauth_nonce=\"walatlh\",
           oauth_verifier=\"hfdp7dh39dks9884\",
           oauth_signature=\"gKgrFCywp7rO0OXSjdot%2FIHF7IU%3D\""
            .replace('\n', ""),
    );
    let verified = verify(
        &provider,
        &token,
        Endpoint::TokenCredentials,
        137131201,
        &keys,
        &nonces,
    )
    .unwrap();
    assert_eq!(verified.token.as_deref(), Some("hh5s93j4hdidpola"));
    let pending = PendingAuthorization {
        consumer_key: PRINTER,
        issued_at: 137131200,
        verifier: Some("hfdp7dh39dks9884"),
        used: false,
    };
    provider
        .check_exchange(&verified, &pending, 137131201)
        .unwrap();
    let access = IssuedCredentials {
        token: "nnch734d00sl2jdk".to_owned(),
        secret: Secret::new("pfkkdhi9sl3r4s00"),
    };
    assert_eq!(
        access.token_credentials_body(),
        "oauth_token=nnch734d00sl2jdk&oauth_token_secret=pfkkdhi9sl3r4s00"
    );
    // Single use: once exchanged, the same temporary credentials are refused.
    let used = PendingAuthorization {
        used: true,
        ..pending
    };
    assert!(matches!(
        provider.check_exchange(&verified, &used, 137131201),
        Err(OAuthError::TokenUsed)
    ));
    keys = keys.token(
        PRINTER,
        "nnch734d00sl2jdk",
        "pfkkdhi9sl3r4s00",
        TokenKind::Access,
    );

    // The photo. Its signature in the RFC is over the `http` URI (the
    // other two requests are over `https`).
    let photo = Req::new(
        "GET",
        "http://photos.example.net/photos?file=vacation.jpg&size=original",
    )
    .header(
        "OAuth realm=\"Photos\",
           oauth_consumer_key=\"dpf43f3p2l4k3l03\",
           oauth_token=\"nnch734d00sl2jdk\",
           oauth_signature_method=\"HMAC-SHA1\",
           oauth_timestamp=\"137131202\",
           oauth_nonce=\"chapoH\",
           oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\""
            .replace('\n', ""),
    );
    assert_eq!(
        ParsedRequest::parse(&photo.http())
            .unwrap()
            .signature_base_string(),
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26\
         oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26\
         oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26\
         oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
    );
    let verified = verify(
        &provider,
        &photo,
        Endpoint::Resource,
        137131202,
        &keys,
        &nonces,
    )
    .unwrap();
    assert_eq!(verified.token.as_deref(), Some("nnch734d00sl2jdk"));

    // Replayed, it is refused; the temporary credentials do not open
    // resources, and the access token is not a temporary one.
    let replay = verify(
        &provider,
        &photo,
        Endpoint::Resource,
        137131203,
        &keys,
        &nonces,
    );
    assert!(matches!(replay, Err(OAuthError::NonceReused)), "{replay:?}");
    let fresh = MemoryNonceStore::new();
    let again = verify(
        &provider,
        &token,
        Endpoint::Resource,
        137131201,
        &keys,
        &fresh,
    );
    assert!(matches!(again, Err(OAuthError::UnknownToken)), "{again:?}");
    let wrong = verify(
        &provider,
        &photo,
        Endpoint::TokenCredentials,
        137131202,
        &keys,
        &fresh,
    );
    assert!(
        matches!(wrong, Err(OAuthError::MissingParameter("oauth_verifier"))),
        "{wrong:?}"
    );
}

/// Sections 2.1 to 2.3: the PLAINTEXT examples at `server.example.com`.
#[test]
fn section_2_plaintext_flow() {
    let provider = provider();
    let nonces = MemoryNonceStore::new();
    let keys = Keys::default()
        .consumer("jd83jd92dhsh93js", "ja893SD9")
        .token(
            "jd83jd92dhsh93js",
            "hdk48Djdsa",
            "xyz4992k83j47x0b",
            TokenKind::Temporary,
        );
    let temporary = Req::new(
        "POST",
        "https://server.example.com/request_temp_credentials",
    )
    .header(
        "OAuth realm=\"Example\",
           oauth_consumer_key=\"jd83jd92dhsh93js\",
           oauth_signature_method=\"PLAINTEXT\",
           oauth_callback=\"http%3A%2F%2Fclient.example.net%2Fcb%3Fx%3D1\",
           oauth_signature=\"ja893SD9%26\""
            .replace('\n', ""),
    );
    let verified = verify(
        &provider,
        &temporary,
        Endpoint::TemporaryCredentials,
        1,
        &keys,
        &nonces,
    )
    .unwrap();
    assert_eq!(verified.signature_method, SignatureMethod::Plaintext);
    // 2.2: "GET /cb?x=1&oauth_token=hdk48Djdsa&oauth_verifier=473f82d3".
    assert_eq!(
        verified
            .callback
            .unwrap()
            .redirect("hdk48Djdsa", "473f82d3")
            .unwrap(),
        "http://client.example.net/cb?x=1&oauth_token=hdk48Djdsa&oauth_verifier=473f82d3"
    );

    let token = Req::new("POST", "https://server.example.com/request_token").header(
        "OAuth realm=\"Example\",
           oauth_consumer_key=\"jd83jd92dhsh93js\",
           oauth_token=\"hdk48Djdsa\",
           oauth_signature_method=\"PLAINTEXT\",
           oauth_verifier=\"473f82d3\",
           oauth_signature=\"ja893SD9%26xyz4992k83j47x0b\""
            .replace('\n', ""),
    );
    let verified = verify(
        &provider,
        &token,
        Endpoint::TokenCredentials,
        1,
        &keys,
        &nonces,
    )
    .unwrap();
    let pending = PendingAuthorization {
        consumer_key: "jd83jd92dhsh93js",
        issued_at: 1,
        verifier: Some("473f82d3"),
        used: false,
    };
    provider.check_exchange(&verified, &pending, 2).unwrap();
    let not_yet = PendingAuthorization {
        verifier: None,
        ..pending
    };
    assert!(matches!(
        provider.check_exchange(&verified, &not_yet, 2),
        Err(OAuthError::NotAuthorized)
    ));
    let other = PendingAuthorization {
        verifier: Some("473f82d4"),
        ..pending
    };
    assert!(matches!(
        provider.check_exchange(&verified, &other, 2),
        Err(OAuthError::VerifierMismatch)
    ));
    let thief = PendingAuthorization {
        consumer_key: "someone-else",
        ..pending
    };
    assert!(matches!(
        provider.check_exchange(&verified, &thief, 2),
        Err(OAuthError::UnknownToken)
    ));
    let late = 2 + provider.config().temporary_credentials_lifetime_secs;
    assert!(matches!(
        provider.check_exchange(&verified, &pending, late),
        Err(OAuthError::TokenExpired)
    ));

    // PLAINTEXT is refused on an insecure transport and when disabled.
    let insecure = common::block_on(provider.verify(
        &token.http(),
        Endpoint::TokenCredentials,
        Transport::Insecure,
        1,
        &keys,
        &nonces,
    ));
    assert!(
        matches!(insecure, Err(OAuthError::PlaintextRefused(_))),
        "{insecure:?}"
    );
    let disabled = verify(
        &Provider::new(Config::default()),
        &token,
        Endpoint::TokenCredentials,
        1,
        &keys,
        &nonces,
    );
    assert!(
        matches!(disabled, Err(OAuthError::PlaintextRefused(_))),
        "{disabled:?}"
    );
}
