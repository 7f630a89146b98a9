//! Fuzzing entry points for what this crate reads from outside: names
//! (containers, storage users), and what a Swift cluster or Keystone
//! answers (a container listing, ACL headers, a token's catalog and the
//! storage URL in it, the admin `/info`), read by a real [`SwiftStore`]
//! from a fake server on loopback that answers with the input's bytes.
//! They must never panic; the `fuzz/` cargo-fuzz project and
//! `tests/fuzz.rs` both call them.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::store::BlobStore;
use crate::{ContainerName, RetryPolicy, StorageUser, SwiftAuth, SwiftConfig, SwiftStore};

/// Reads `data` as a container name and as a storage user: what is
/// accepted reads the same written back (and through JSON, for users).
/// Returns how many accepted it.
pub fn names(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let mut n = 0;
    if let Ok(c) = ContainerName::new(&text) {
        assert_eq!(c.as_str(), text, "a container name changed");
        assert!(ContainerName::new(c.as_str()).is_ok());
        n += 1;
    }
    if let Ok(u) = StorageUser::new(&text) {
        let json = serde_json::to_string(&u).expect("a user encodes");
        let back: StorageUser = serde_json::from_str(&json).expect("a user decodes");
        assert_eq!(back, u, "a storage user changed through JSON");
        n += 1;
    }
    n
}

/// What the fake server answers, set before each input.
#[derive(Default)]
struct Answers {
    listing: Vec<u8>,
    token_body: Vec<u8>,
    acl: Vec<u8>,
    info: Vec<u8>,
}

struct Fake {
    runtime: tokio::runtime::Runtime,
    base: String,
    answers: Arc<Mutex<Answers>>,
}

fn fake() -> &'static Fake {
    static FAKE: OnceLock<Fake> = OnceLock::new();
    FAKE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fake Swift");
        let answers = Arc::new(Mutex::new(Answers::default()));
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let (b, a) = (base.clone(), Arc::clone(&answers));
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, b.clone(), Arc::clone(&a)));
            }
        });
        Fake {
            runtime,
            base,
            answers,
        }
    })
}

/// Answers one request (and closes the connection): TempAuth and Keystone
/// logins, a container listing, a container's ACL, the admin `/info`.
async fn answer(mut stream: TcpStream, base: String, answers: Arc<Mutex<Answers>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let line = head.lines().next().unwrap_or_default().to_owned();
    let (status, headers, body): (&str, Vec<u8>, Vec<u8>) = {
        let a = answers.lock().unwrap_or_else(|p| p.into_inner());
        if line.starts_with("GET /auth/v1.0") {
            let h = format!("X-Auth-Token: tok\r\nX-Storage-Url: {base}/v1/AUTH_fuzz\r\n");
            ("200 OK", h.into_bytes(), Vec::new())
        } else if line.starts_with("POST /v3/auth/tokens") {
            (
                "201 Created",
                b"X-Subject-Token: tok\r\n".to_vec(),
                a.token_body.clone(),
            )
        } else if line.starts_with("GET /info") {
            ("200 OK", Vec::new(), a.info.clone())
        } else if line.starts_with("HEAD ") {
            let mut h = b"X-Container-Read: ".to_vec();
            h.extend_from_slice(&a.acl);
            h.extend_from_slice(b"\r\nX-Container-Write: ");
            h.extend_from_slice(a.acl.rsplit(|b| *b == b',').next().unwrap_or_default());
            h.extend_from_slice(b"\r\n");
            ("204 No Content", h, Vec::new())
        } else if line.starts_with("GET ") {
            ("200 OK", Vec::new(), a.listing.clone())
        } else {
            ("404 Not Found", Vec::new(), Vec::new())
        }
    };
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n").into_bytes();
    out.extend_from_slice(&headers);
    if !status.starts_with("204") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

fn config(auth: SwiftAuth) -> SwiftConfig {
    SwiftConfig {
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay_ms: 1,
            max_delay_ms: 1,
        },
        connect_timeout_ms: 2_000,
        read_timeout_ms: 5_000,
        ..SwiftConfig::new(auth)
    }
}

/// Splits `data` at NUL bytes into a container listing, a Keystone token
/// body, an ACL header value and an admin `/info` body, which the fake
/// cluster answers with, and has a [`SwiftStore`] read them: the listing
/// (ids sorted), the ACL (only valid storage users, each named in the
/// header), a Keystone login (the storage URL one of the catalog's, moved
/// to another account) and the encryption setting. Returns how many
/// answers were accepted.
pub fn swift_answers(data: &[u8]) -> usize {
    let fake = fake();
    let mut parts = data.splitn(4, |b| *b == 0);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let answers = Answers {
        listing: next(),
        token_body: next(),
        acl: next(),
        info: next(),
    };
    let (acl_text, token_body) = (
        String::from_utf8_lossy(&answers.acl).into_owned(),
        String::from_utf8_lossy(&answers.token_body).into_owned(),
    );
    *fake.answers.lock().unwrap_or_else(|p| p.into_inner()) = answers;
    let base = &fake.base;
    fake.runtime.block_on(async {
        let mut accepted = 0;
        let v1 = SwiftStore::new(SwiftConfig {
            info_admin_key: Some("admin".into()),
            ..config(SwiftAuth::V1 {
                auth_url: format!("{base}/auth/v1.0"),
                user: "fuzz:fuzz".into(),
                key: "key".into(),
            })
        })
        .expect("a store");
        let c = ContainerName::new("fuzz").expect("a valid name");
        if let Ok(ids) = v1.list(&c).await {
            assert!(ids.is_sorted(), "a listing out of order");
            accepted += 1;
        }
        if let Ok(acl) = v1.acl(&c).await {
            for u in acl.read.iter().chain(&acl.write) {
                assert!(acl_text.contains(u.as_str()), "a user the ACL did not name");
            }
            accepted += 1;
        }
        if v1.encryption_enabled().await.is_ok() {
            accepted += 1;
        }
        let keystone = SwiftStore::new(SwiftConfig {
            account: Some("AUTH_other".into()),
            ..config(SwiftAuth::KeystoneV3 {
                auth_url: format!("{base}/v3"),
                user: "u".into(),
                password: "p".into(),
                user_domain: "Default".into(),
                project: "p".into(),
                project_domain: "Default".into(),
                region: None,
                interface: "public".into(),
            })
        })
        .expect("a store");
        if let Ok(url) = keystone.storage_url().await {
            assert!(
                url.ends_with("/AUTH_other"),
                "the account was not put in {url:?}"
            );
            assert!(token_body.contains("object-store"));
            accepted += 1;
        }
        accepted
    })
}

/// Valid answers: a listing, a catalog, an ACL and an `/info`, joined as
/// [`swift_answers`] reads them; and names.
pub fn seeds() -> Vec<Vec<u8>> {
    let catalog = serde_json::json!({"token": {"catalog": [
        {"type": "identity", "endpoints": [{"interface": "public", "url": "http://unused"}]},
        {"type": "object-store", "endpoints": [
            {"interface": "internal", "region": "RegionOne", "url": "http://127.0.0.1:9/v1/AUTH_proj"},
            {"interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:9/v1/AUTH_proj/"}
        ]}
    ]}});
    let listing = serde_json::json!([
        {"name": "4242424242424242424242424242424242424242424242424242424242424242", "bytes": 3},
        {"name": "not-a-chunk"},
        {"name": "0101010101010101010101010101010101010101010101010101010101010101"}
    ]);
    let info = serde_json::json!({"swift": {}, "admin": {"encryption": {"enabled": true}}});
    let joined = [
        listing.to_string().into_bytes(),
        catalog.to_string().into_bytes(),
        b"acct:alice, .r:*,acct:bob".to_vec(),
        info.to_string().into_bytes(),
    ]
    .join(&0u8);
    vec![
        joined,
        b"ws-0123456789abcdef".to_vec(),
        b"AUTH_stacksync:user".to_vec(),
    ]
}
