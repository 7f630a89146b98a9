//! Unauthenticated exhaustion (issue 17) against a real `stacksync server`
//! on loopback: idle and slowloris sockets, concurrent wrong logins,
//! password guessing, oversized and too many notification sockets.
//!
//! Attackers connect from other loopback addresses (127.0.0.2, ...) than
//! the well-behaved client (127.0.0.1), as they would from other hosts:
//! the per-address caps are what keeps them from starving everyone else.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Backend, Cluster};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{self, Message};

/// Longest any single wait may take before the test fails (a deadline, not
/// a measurement).
const DEADLINE: Duration = Duration::from_secs(30);

const PASSWORD: &str = "secret-pw";

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn server_addr(cluster: &Cluster) -> SocketAddr {
    cluster
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the server prints host:port")
}

/// A TCP connection to the server from `from`.
async fn connect_from(server: SocketAddr, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("loopback addresses can be bound");
    socket.connect(server).await.expect("the server accepts")
}

/// An HTTP answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection from `from`, with a deadline.
async fn request(
    server: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let exchange = async {
        let mut stream = connect_from(server, from).await;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("request sent");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("answer read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    };
    timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} from {from} got no answer in {DEADLINE:?}"))
}

async fn login(server: SocketAddr, from: IpAddr, email: &str, password: &str) -> Answer {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    request(server, from, "POST", "/api/v1/login", Some(&body)).await
}

/// Waits until the server closes `stream` (end of file or reset).
async fn closed_by_server(mut stream: impl AsyncReadExt + Unpin) -> bool {
    let mut buf = [0u8; 1024];
    timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The server's peak resident memory so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Finding 4: idle sockets and slowloris headers from other hosts neither
/// stop `/health` from answering nor stay open past the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_idle_and_slowloris_sockets_are_closed_and_do_not_starve_health() {
    let cluster = Cluster::start_with(
        &Backend::Embedded,
        "\n[limits]\nheader_timeout_ms = 2000\nmax_connections_per_address = 50\n",
    )
    .await;
    let server = server_addr(&cluster);

    // 300 sockets that never send a byte, from one host...
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(server, loopback(2)).await);
    }
    // ...and 20 that send a request head one byte at a time, from another.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let stream = connect_from(server, loopback(3)).await;
        let (read, mut write) = stream.into_split();
        tokio::spawn(async move {
            if write
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if write.write_all(b"X").await.is_err() {
                    return;
                }
            }
        });
        slow.push(read);
    }

    let health = request(server, loopback(1), "GET", "/health", None).await;
    assert_eq!(health.status, 200, "health: {}", health.body);

    let idle_closed = futures::future::join_all(idle.into_iter().map(closed_by_server)).await;
    let slow_closed = futures::future::join_all(slow.into_iter().map(closed_by_server)).await;
    let open = idle_closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 300 idle sockets still open");
    let open = slow_closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 20 slowloris sockets still open");

    let health = request(server, loopback(1), "GET", "/health", None).await;
    assert_eq!(health.status, 200);
}

/// Finding 5: many concurrent wrong logins do not make the server hash
/// them all at once (each Argon2 hash takes ~19 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_concurrent_wrong_logins_keep_memory_bounded() {
    // No throttling here: this is about the hashing pool alone.
    let cluster = Cluster::start_with(
        &Backend::Embedded,
        "\n[limits]\nlogin_account_failures = 1000\nlogin_address_failures = 1000\n",
    )
    .await;
    let server = server_addr(&cluster);
    let email = cluster.add_user("victim@example.org", None);
    let before = peak_rss_kib(cluster.server_pid());

    let attempts = (0..64).map(|i| {
        let email = email.clone();
        async move { login(server, loopback(2), &email, &format!("guess-{i}")).await }
    });
    let answers = futures::future::join_all(attempts).await;
    let refused = answers.iter().filter(|a| a.status == 401).count();
    let busy = answers.iter().filter(|a| a.status == 503).count();
    assert_eq!(
        refused + busy,
        64,
        "every attempt is refused one way or the other"
    );
    assert!(refused >= 2, "some attempts are checked ({refused})");
    for a in answers.iter().filter(|a| a.status == 503) {
        assert!(a.header("retry-after").is_some(), "a busy answer says when");
    }

    let peak = peak_rss_kib(cluster.server_pid());
    eprintln!("server peak RSS: {before} KiB before, {peak} KiB after 64 concurrent logins");
    // 64 hashes at once would be over 1.2 GiB; a couple at a time is ~40 MiB.
    assert!(
        peak < before + 300 * 1024,
        "peak RSS grew from {before} KiB to {peak} KiB"
    );
}

/// Finding 5: password guessing on one account is answered with 429 and a
/// `Retry-After`; during the block even the right password is refused; a
/// guesser rotating emails from one address is blocked by address while
/// everyone else still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_repeated_wrong_logins_are_blocked_with_backoff() {
    let cluster = Cluster::start_with(
        &Backend::Embedded,
        "\n[limits]\nlogin_account_failures = 3\nlogin_address_failures = 6\nlogin_backoff_base_ms = 3000\n",
    )
    .await;
    let server = server_addr(&cluster);
    let victim = cluster.add_user("victim@example.org", None);
    let bystander = cluster.add_user("bystander@example.org", None);

    // Spread over addresses, so only the account's count matters.
    for i in 0..3 {
        let a = login(server, loopback(10 + i), &victim, "wrong").await;
        assert_eq!(a.status, 401, "free failure {i}: {}", a.body);
    }
    let a = login(server, loopback(13), &victim, "wrong").await;
    assert_eq!(
        a.status, 401,
        "the failure that starts the block is still checked"
    );
    let a = login(server, loopback(1), &victim, PASSWORD).await;
    assert_eq!(
        a.status, 429,
        "the right password during the block: {}",
        a.body
    );
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert!(a.body.contains("too_many_requests"), "{}", a.body);

    // The block ends on its own; then the right password works.
    let started = Instant::now();
    loop {
        let a = login(server, loopback(1), &victim, PASSWORD).await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 429, "{}", a.body);
        assert!(started.elapsed() < DEADLINE, "the block never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One address guessing many accounts, unknown ones included.
    let attacker = loopback(20);
    // Six free failures; the seventh starts the block.
    for i in 0..7 {
        let a = login(server, attacker, &format!("nobody{i}@example.org"), "x").await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    let a = login(server, attacker, &bystander, PASSWORD).await;
    assert_eq!(a.status, 429, "the address is blocked: {}", a.body);
    let a = login(server, loopback(1), &bystander, PASSWORD).await;
    assert_eq!(a.status, 200, "others are not: {}", a.body);
}

/// Opens a notification socket with `token`, from 127.0.0.1.
async fn notification_socket(
    server: SocketAddr,
    token: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{server}/api/v1/notifications")
        .into_client_request()
        .expect("a websocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let stream = connect_from(server, loopback(1)).await;
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(socket)
}

async fn token(server: SocketAddr, email: &str) -> String {
    let a = login(server, loopback(1), email, PASSWORD).await;
    assert_eq!(a.status, 200, "login: {}", a.body);
    let reply: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    reply["token"].as_str().expect("a token").to_owned()
}

/// Finding 6: a client message far over what a client ever sends closes
/// the notification socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_a_large_websocket_message_closes_the_socket() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let server = server_addr(&cluster);
    let email = cluster.add_user("ann@example.org", None);
    let token = token(server, &email).await;
    let mut socket = notification_socket(server, &token).await.expect("opens");
    // The server may close the socket while the message is still being
    // written (the send then fails with a reset): closed, as it must be.
    if let Err(e) = socket.send(Message::Text("x".repeat(1 << 20).into())).await {
        assert!(
            matches!(
                &e,
                tokio_tungstenite::tungstenite::Error::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
            ) || matches!(
                e,
                tokio_tungstenite::tungstenite::Error::ConnectionClosed
                    | tokio_tungstenite::tungstenite::Error::AlreadyClosed
            ),
            "sending failed otherwise than by the server closing: {e}"
        );
        return;
    }
    let ended = timeout(DEADLINE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the socket stayed open after a 1 MiB message"
    );
}

/// Finding 6: a user holds at most `max_sockets_per_user` notification
/// sockets; the next is refused with 429 until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_sockets_per_user_are_capped() {
    let cluster =
        Cluster::start_with(&Backend::Embedded, "\n[limits]\nmax_sockets_per_user = 2\n").await;
    let server = server_addr(&cluster);
    let email = cluster.add_user("ann@example.org", None);
    let token = token(server, &email).await;
    let first = notification_socket(server, &token)
        .await
        .expect("first opens");
    let _second = notification_socket(server, &token)
        .await
        .expect("second opens");
    match notification_socket(server, &token).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a third socket was accepted"),
    }
    drop(first);
    // The slot frees once the server notices the close.
    let started = Instant::now();
    while notification_socket(server, &token).await.is_err() {
        assert!(
            started.elapsed() < DEADLINE,
            "the freed slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
