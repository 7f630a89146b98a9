//! The gateway's HTTP endpoints against a real service: pages, login, the
//! RPC endpoint with every way a message can be refused, and chunk transfer
//! with its authorization.

mod common;

use bytes::Bytes;
use common::{Gateway, PASSWORD, http, new_folder};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stacksync_gateway_client::{GatewayClient, Session};
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{ChunkId, ErrorKind, wire};

/// Asserts an HTTP error response: its status and the kind in its JSON body.
async fn check_error(response: reqwest::Response, status: StatusCode, kind: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("an error body is JSON");
    assert_eq!(body["error"]["kind"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

fn rpc_body(token: &str, request: Request) -> Vec<u8> {
    wire::encode(&RpcRequest {
        request_id: uuid::Uuid::new_v4(),
        token: token.into(),
        request,
    })
}

#[tokio::test]
async fn landing_page_and_health() {
    let gw = Gateway::start().await;
    let health: Value = http()
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "version": stacksync_gateway::VERSION})
    );
    let page = http().get(&gw.url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().await.unwrap();
    // A visitor at `/` gets the website's sign-in page.
    assert!(
        text.contains("id=\"signin\"") && text.contains("name=\"password\""),
        "{text}"
    );
}

#[tokio::test]
async fn login_gives_a_session_and_refuses_wrong_passwords() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let login = format!("{}/api/v1/login", gw.url);
    let ok: Value = http()
        .post(&login)
        .json(&json!({"email": "alice@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["user"], json!(alice.id));
    assert!(ok["token"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(ok["expires_at"].as_i64().is_some());

    let wrong = http()
        .post(&login)
        .json(&json!({"email": "alice@example.org", "password": "nope"}))
        .send()
        .await
        .unwrap();
    check_error(wrong, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let garbage = http().post(&login).body("{").send().await.unwrap();
    check_error(garbage, StatusCode::BAD_REQUEST, "bad_request").await;

    let err = GatewayClient::login(&gw.url, "alice@example.org", "nope")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn rpc_round_trips_and_reports_service_errors_in_the_body() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let Reply::Account(account) = alice.client.rpc(Request::GetAccount).await.unwrap() else {
        panic!("GetAccount answers with an account");
    };
    assert_eq!(account.email, "alice@example.org");
    let Reply::Commit(result) = alice
        .client
        .rpc(new_folder(&alice.private, alice.device, "docs"))
        .await
        .unwrap()
    else {
        panic!("a commit answers with a commit result");
    };
    assert_eq!(result.workspace, alice.private.id);

    // A bad token is the service's answer: HTTP 200, the error inside.
    let rpc = format!("{}/api/v1/rpc", gw.url);
    let response = http()
        .post(&rpc)
        .body(rpc_body("not-a-token", Request::GetAccount))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let decoded: RpcResponse = wire::decode(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.result.unwrap_err().kind, ErrorKind::Unauthenticated);
    let bogus = GatewayClient::with_session(
        &gw.url,
        Session {
            token: "not-a-token".into(),
            user: alice.id,
            expires_at: 0,
        },
    )
    .unwrap();
    assert_eq!(
        bogus.rpc(Request::GetAccount).await.unwrap_err().kind,
        ErrorKind::Unauthenticated
    );

    // The bearer header fills an empty token, and must agree with a
    // present one.
    let token = &alice.client.session().token;
    let response = http()
        .post(&rpc)
        .bearer_auth(token)
        .body(rpc_body("", Request::GetAccount))
        .send()
        .await
        .unwrap();
    let decoded: RpcResponse = wire::decode(&response.bytes().await.unwrap()).unwrap();
    assert!(matches!(decoded.result, Ok(Reply::Account(_))));
    let mismatch = http()
        .post(&rpc)
        .bearer_auth(token)
        .body(rpc_body("another", Request::GetAccount))
        .send()
        .await
        .unwrap();
    check_error(mismatch, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn unreadable_rpc_messages_get_http_errors() {
    let gw = Gateway::start().await;
    let rpc = format!("{}/api/v1/rpc", gw.url);
    let post = |body: Vec<u8>| http().post(&rpc).body(body).send();

    check_error(
        post(b"{".to_vec()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    check_error(
        post(br#"{"v":1,"body":{"token":"x"}}"#.to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut future: Value = serde_json::from_slice(&rpc_body("t", Request::GetAccount)).unwrap();
    future["v"] = json!(wire::PROTOCOL_VERSION + 1);
    check_error(
        post(serde_json::to_vec(&future).unwrap()).await.unwrap(),
        StatusCode::UPGRADE_REQUIRED,
        "unsupported_version",
    )
    .await;
    check_error(
        post(vec![b' '; wire::MAX_MESSAGE_BYTES + 1]).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
}

fn chunk(seed: &str) -> (ChunkId, Bytes) {
    let data = Bytes::from(format!("encoded chunk {seed}").repeat(100));
    (ChunkId(*blake3::hash(&data).as_bytes()), data)
}

#[tokio::test]
async fn chunks_go_up_and_down_for_members_only() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let bob = gw.user("bob@example.org").await;
    let ws = alice.private.id;
    let (a, a_data) = chunk("a");
    let (b, _) = chunk("b");

    alice
        .client
        .put_chunk(ws, &a, a_data.clone())
        .await
        .unwrap();
    // Idempotent: a repeat (a retry) is fine.
    alice
        .client
        .put_chunk(ws, &a, a_data.clone())
        .await
        .unwrap();
    assert_eq!(alice.client.get_chunk(ws, &a).await.unwrap(), a_data);
    assert_eq!(
        alice.client.has_chunks(ws, &[b, a, b]).await.unwrap(),
        vec![false, true, false]
    );
    assert_eq!(
        alice.client.get_chunk(ws, &b).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    for err in [
        bob.client.get_chunk(ws, &a).await.unwrap_err(),
        bob.client
            .put_chunk(ws, &b, Bytes::from_static(b"x"))
            .await
            .unwrap_err(),
        bob.client.has_chunks(ws, &[a]).await.unwrap_err(),
    ] {
        assert!(
            matches!(err.kind, ErrorKind::Forbidden | ErrorKind::NotFound),
            "a non-member is refused: {err:?}"
        );
    }

    let base = format!("{}/api/v1/workspaces", gw.url);
    let token = alice.client.session().token.clone();
    let get = |path: String| {
        http()
            .get(format!("{base}/{path}"))
            .bearer_auth(&token)
            .send()
    };
    check_error(
        get(format!("{ws}/chunks/zz")).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    check_error(
        get(format!("not-a-uuid/chunks/{}", a.to_hex()))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let anonymous = http()
        .get(format!("{base}/{ws}/chunks/{}", a.to_hex()))
        .send()
        .await
        .unwrap();
    check_error(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let too_many: Vec<String> = vec![a.to_hex(); stacksync_gateway::MAX_EXISTS_IDS + 1];
    let response = http()
        .post(format!("{base}/{ws}/chunks/exists"))
        .bearer_auth(&token)
        .json(&too_many)
        .send()
        .await
        .unwrap();
    check_error(response, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    let garbage_ids = http()
        .post(format!("{base}/{ws}/chunks/exists"))
        .bearer_auth(&token)
        .json(&json!(["abc"]))
        .send()
        .await
        .unwrap();
    check_error(garbage_ids, StatusCode::BAD_REQUEST, "bad_request").await;
}

/// `len` bytes that differ at every offset (a stand-in for a pack).
fn pack_bytes(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

#[tokio::test]
async fn chunk_ranges_are_served_exactly() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let bob = gw.user("bob@example.org").await;
    let ws = alice.private.id;
    let pack = ChunkId([0x5a; 32]);
    let data = pack_bytes(300_000);
    alice
        .client
        .put_chunk(ws, &pack, data.clone())
        .await
        .unwrap();
    // Ranges at the start, across the local store's read block, at the end.
    for (offset, len) in [(0u64, 1u32), (17, 4096), (262_000, 1000), (299_000, 1000)] {
        let got = alice
            .client
            .get_chunk_range(ws, &pack, offset, len)
            .await
            .unwrap();
        let at = offset as usize;
        assert_eq!(got, data.slice(at..at + len as usize), "{offset}+{len}");
    }
    let past = alice
        .client
        .get_chunk_range(ws, &pack, 299_990, 20)
        .await
        .unwrap_err();
    assert_eq!(past.kind, ErrorKind::BadRequest, "{past}");
    let stranger = bob
        .client
        .get_chunk_range(ws, &pack, 0, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(stranger.kind, ErrorKind::Forbidden | ErrorKind::NotFound),
        "a non-member is refused: {stranger:?}"
    );

    let url = format!("{}/api/v1/workspaces/{ws}/chunks/{}", gw.url, pack.to_hex());
    let token = alice.client.session().token.clone();
    let get = |ranges: &[&str]| {
        let mut request = http().get(&url).bearer_auth(&token);
        for r in ranges {
            request = request.header(reqwest::header::RANGE, *r);
        }
        request.send()
    };
    let partial = get(&["bytes=10-19"]).await.unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.headers()["content-range"], "bytes 10-19/*");
    assert_eq!(partial.bytes().await.unwrap(), data.slice(10..20));
    let whole = get(&[]).await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap(), data);

    for malformed in [
        &["bytes=10-"][..],
        &["bytes=-10"],
        &["bytes=0-1,5-6"],
        &["bytes=9-5"],
        &["items=0-5"],
        &["bytes=x-y"],
        &["bytes=0-1", "bytes=5-6"],
    ] {
        let response = get(malformed).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{malformed:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "bad_request", "{malformed:?}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Range")),
            "{malformed:?}: {body}"
        );
    }
    for beyond in [
        "bytes=299990-300009",
        "bytes=300000-300000",
        "bytes=400000-400010",
    ] {
        let response = get(&[beyond]).await.unwrap();
        assert_eq!(
            response.headers()["content-range"],
            "bytes */300000",
            "{beyond}"
        );
        check_error(response, StatusCode::RANGE_NOT_SATISFIABLE, "bad_request").await;
    }
}

#[tokio::test]
async fn uploads_up_to_a_pack_are_accepted() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let ws = alice.private.id;
    let max = stacksync_proto::PackSpan::MAX_PACK_BYTES as usize;
    assert_eq!(stacksync_gateway::MAX_CHUNK_BYTES, max);
    let pack = ChunkId([0x77; 32]);
    let data = pack_bytes(max);
    alice
        .client
        .put_chunk(ws, &pack, data.clone())
        .await
        .unwrap();
    let tail = alice
        .client
        .get_chunk_range(ws, &pack, max as u64 - 10, 10)
        .await
        .unwrap();
    assert_eq!(tail, data.slice(max - 10..));

    let url = format!(
        "{}/api/v1/workspaces/{ws}/chunks/{}",
        gw.url,
        ChunkId([0x78; 32]).to_hex()
    );
    let response = http()
        .put(&url)
        .bearer_auth(&alice.client.session().token)
        .body(vec![0u8; max + 1])
        .send()
        .await
        .unwrap();
    check_error(response, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
}

/// A read-only member of a shared folder downloads its objects through the
/// gateway, but an upload is refused (403, before its body is stored).
#[tokio::test]
async fn read_only_members_download_but_never_upload() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let bob = gw.user("bob@example.org").await;
    let mut request = new_folder(&alice.private, alice.device, "Look");
    let Request::Commit(commit) = &mut request else {
        unreachable!("new_folder is a commit");
    };
    let folder = commit.items[0].id;
    alice.client.rpc(request).await.unwrap();
    let Reply::ShareProposal { proposal, .. } = alice
        .client
        .rpc(Request::CreateShareProposal {
            workspace: alice.private.id,
            folder,
            emails: vec![bob.email.clone()],
            encryption: stacksync_proto::EncryptionMode::Plain,
            read_only: true,
        })
        .await
        .unwrap()
    else {
        panic!("the proposal is made");
    };
    let Reply::ShareAnswered {
        workspace: Some(shared),
    } = bob
        .client
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: true,
        })
        .await
        .unwrap()
    else {
        panic!("bob accepts");
    };
    assert!(shared.read_only);
    let (a, a_data) = chunk("alice's");
    alice
        .client
        .put_chunk(shared.id, &a, a_data.clone())
        .await
        .unwrap();
    assert_eq!(bob.client.get_chunk(shared.id, &a).await.unwrap(), a_data);

    let (b, b_data) = chunk("bob's");
    let url = format!(
        "{}/api/v1/workspaces/{}/chunks/{}",
        gw.url,
        shared.id,
        b.to_hex()
    );
    let response = http()
        .put(&url)
        .bearer_auth(&bob.client.session().token)
        .body(b_data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "forbidden", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("you are a read-only member of the shared folder"),
        "{body}"
    );
    let e = bob
        .client
        .put_chunk(shared.id, &b, b_data)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");
    assert_eq!(
        alice.client.has_chunks(shared.id, &[a, b]).await.unwrap(),
        vec![true, false]
    );
}

/// A commit of `n` new folders.
fn many_folders(alice: &common::User, n: usize) -> Request {
    let items = (0..n)
        .flat_map(|i| {
            let Request::Commit(c) = new_folder(&alice.private, alice.device, &format!("d{i}"))
            else {
                unreachable!("new_folder is a commit")
            };
            c.items
        })
        .collect();
    Request::Commit(stacksync_proto::CommitRequest {
        workspace: alice.private.id,
        device: alice.device,
        items,
    })
}

#[tokio::test]
async fn compact_rpc_messages_are_negotiated_and_bounded() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let token = alice.client.session().token.clone();
    let rpc = format!("{}/api/v1/rpc", gw.url);
    let post = |body: Vec<u8>| http().post(&rpc).bearer_auth(&token).body(body).send();
    let message = |request| RpcRequest {
        request_id: uuid::Uuid::new_v4(),
        token: String::new(),
        request,
    };

    // An older client (no compact level) gets plain JSON and full results.
    let response = post(wire::encode(&message(many_folders(&alice, 20))))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.bytes().await.unwrap();
    assert!(!wire::is_compressed(&body));
    let decoded: RpcResponse = wire::decode(&body).unwrap();
    assert!(matches!(decoded.result, Ok(Reply::Commit(_))));

    // A client that says it reads compact messages, in a plain request and
    // then in a compressed one, gets a compressed, brief answer.
    for peer in [wire::Peer::default(), wire::Peer::CURRENT] {
        let request = many_folders(&alice, 20);
        let bytes = wire::encode_for(&message(request.clone()), peer);
        assert_eq!(wire::is_compressed(&bytes), peer.reads_compact());
        let body = post(bytes).await.unwrap().bytes().await.unwrap();
        assert!(wire::is_compressed(&body));
        let (decoded, said): (RpcResponse, _) = wire::decode_from(&body).unwrap();
        assert!(said.reads_compact());
        let reply = decoded.result.unwrap();
        assert!(matches!(reply, Reply::CommitBrief(_)), "{reply:?}");
        let Reply::Commit(full) = stacksync_proto::brief::expand_reply(&request, reply).unwrap()
        else {
            panic!("a brief commit expands to a commit");
        };
        assert_eq!(full.results.len(), 20);
    }

    // The gateway client negotiates on its own and hands out full results.
    let Reply::Commit(result) = alice.client.rpc(many_folders(&alice, 20)).await.unwrap() else {
        panic!("a commit answers with a commit result");
    };
    assert_eq!(result.results.len(), 20);

    // Hostile compressed input: a bomb, and a length over the cap.
    let mut bomb = vec![0, b'Z'];
    bomb.extend_from_slice(&1000u32.to_le_bytes());
    bomb.extend_from_slice(&zstd::bulk::compress(&vec![b' '; 32 << 20], 3).unwrap());
    check_error(
        post(bomb).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut over = wire::encode_for(&message(many_folders(&alice, 20)), wire::Peer::CURRENT);
    over[2..6].copy_from_slice(&(wire::MAX_MESSAGE_BYTES as u32 + 1).to_le_bytes());
    check_error(
        post(over).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
}

/// Sends `head` and, after a pause, `body` on `conn`; returns the head of
/// the answer (everything up to the blank line) and reads its body.
async fn answer_after_late_body(
    conn: &mut tokio::net::TcpStream,
    head: &str,
    body: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    conn.write_all(body).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while got.len() < end + length {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the answer's body");
        got.extend_from_slice(&buf[..n]);
    }
    head
}

#[tokio::test]
async fn a_refusal_before_the_body_keeps_the_connection_usable() {
    use tokio::io::AsyncReadExt;
    let gw = Gateway::start().await;
    let ws = stacksync_proto::WorkspaceId::new();
    let id = ChunkId([0x44; 32]).to_hex();
    let put = |len: usize| {
        format!(
            "PUT /api/v1/workspaces/{ws}/chunks/{id} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // A small body sent after its head (as many clients do, in two
    // writes): refused unread, yet the next request on the same connection
    // is answered.
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for round in 0..3 {
        let head = answer_after_late_body(&mut conn, &put(5), b"hello").await;
        assert!(head.starts_with("http/1.1 401"), "round {round}: {head}");
        assert!(!head.contains("connection: close"), "round {round}: {head}");
    }
    let head =
        answer_after_late_body(&mut conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A large one is not waited for: refused at once, and the answer says
    // the connection ends, so that no client sends its next request there.
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = answer_after_late_body(&mut conn, &put(64 << 20), b"").await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the connection was closed");
}
