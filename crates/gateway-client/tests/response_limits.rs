//! Finding 7 of issue 17: a hostile or broken server answering far more
//! than any right answer can hold. The client must refuse each answer while
//! it streams in, so that its memory stays bounded, and say why.
//!
//! The server here is a bare tokio listener that answers every request with
//! an endless-looking body (512 MiB, chunked or with its length announced).

use std::net::SocketAddr;

use stacksync_gateway_client::{GatewayClient, RetryPolicy, Session};
use stacksync_proto::rpc::Request;
use stacksync_proto::{ChunkId, UserId, WorkspaceId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake server sends per answer: far more than the client's
/// process should ever hold.
const HUGE: u64 = 512 << 20;

const PIECE: usize = 64 * 1024;

/// Reads one request head (the body, if any, is ignored: the answer does
/// not depend on it).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Answers with `HUGE` bytes: chunked, except to plain chunk GETs, which
/// get an announced `Content-Length` (both ways must be refused).
async fn answer(mut stream: TcpStream) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let ranged = head.to_ascii_lowercase().contains("\r\nrange:");
    let status = if ranged {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let announced = head.starts_with("GET ") && !ranged;
    let framing = if announced {
        format!("Content-Length: {HUGE}")
    } else {
        "Transfer-Encoding: chunked".to_owned()
    };
    let reply = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let piece = vec![b' '; PIECE];
    let mut sent = 0u64;
    while sent < HUGE {
        let result = if announced {
            stream.write_all(&piece).await
        } else {
            let mut framed = format!("{PIECE:x}\r\n").into_bytes();
            framed.extend_from_slice(&piece);
            framed.extend_from_slice(b"\r\n");
            stream.write_all(&framed).await
        };
        // The client hung up: that is the point.
        if result.is_err() {
            return;
        }
        sent += PIECE as u64;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
}

async fn hostile_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    addr
}

/// This process's peak resident memory, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("a Linux /proc");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024
}

fn assert_refused_as_too_large(
    what: &str,
    result: Result<impl std::fmt::Debug, stacksync_proto::Error>,
) {
    let err = result.expect_err(what);
    assert!(
        err.message.contains("response over"),
        "{what}: unexpected error {err}"
    );
}

/// Finding 7: login, RPC, whole and ranged chunk reads each refuse an
/// oversized answer, and the client's memory stays far below what was sent.
#[tokio::test]
async fn finding_7_oversized_answers_are_refused_while_streaming() {
    let addr = hostile_server().await;
    let url = format!("http://{addr}/");

    let login = GatewayClient::login(&url, "ann@example.org", "pw").await;
    assert_refused_as_too_large("login", login);

    let session = Session {
        token: "ab".repeat(32),
        user: UserId::new(),
        expires_at: i64::MAX,
    };
    let client = GatewayClient::with_session(&url, session)
        .expect("a client")
        .with_retry(RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        });
    assert_refused_as_too_large("rpc", client.rpc(Request::GetAccount).await);

    let ws = WorkspaceId::new();
    let id = ChunkId([7; 32]);
    assert_refused_as_too_large("chunk GET", client.get_chunk(ws, &id).await);
    assert_refused_as_too_large("ranged GET", client.get_chunk_range(ws, &id, 0, 1024).await);
    assert_refused_as_too_large("exists", client.has_chunks(ws, &[id]).await);

    let peak = peak_rss_mib();
    eprintln!(
        "client peak RSS: {peak} MiB after five answers of {} MiB",
        HUGE >> 20
    );
    assert!(peak < 200, "the client held {peak} MiB");
}
