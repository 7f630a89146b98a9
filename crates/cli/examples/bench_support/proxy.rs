//! A loopback TCP proxy that counts what crosses it: every byte in each
//! direction (HTTP heads and bodies, WebSocket frames: what the
//! application writes to its sockets, without TCP/IP headers), and, by
//! following HTTP/1.1 framing on each connection, the requests by method
//! and path and the bytes spent on heads.
//!
//! Bytes are counted when the proxy reads them, before it forwards them,
//! so a client that got its last response has been charged for all of it.
//! One proxy per device keeps each device's traffic apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A head larger than this is not HTTP we understand: framing stops there
/// (bytes are still counted).
const MAX_HEAD: usize = 64 * 1024;

/// Traffic through a proxy, from its start or over an interval.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Client to server.
    pub up: u64,
    /// Server to client.
    pub down: u64,
    /// Bytes of HTTP heads (request line or status line and headers), both
    /// directions.
    pub head_bytes: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// Connections that switched protocols (WebSockets).
    pub upgrades: u64,
    /// Requests by "METHOD /path" (ids in paths shown as `*`).
    pub requests: BTreeMap<String, u64>,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.up + self.down
    }

    pub fn request_count(&self) -> u64 {
        self.requests.values().sum()
    }

    /// What happened after `before` was taken.
    pub fn since(&self, before: &Traffic) -> Traffic {
        let mut requests = self.requests.clone();
        for (k, n) in &before.requests {
            if let Some(v) = requests.get_mut(k) {
                *v = v.saturating_sub(*n);
            }
        }
        requests.retain(|_, n| *n > 0);
        Traffic {
            up: self.up.saturating_sub(before.up),
            down: self.down.saturating_sub(before.down),
            head_bytes: self.head_bytes.saturating_sub(before.head_bytes),
            connections: self.connections.saturating_sub(before.connections),
            upgrades: self.upgrades.saturating_sub(before.upgrades),
            requests,
        }
    }

    /// "POST /api/v1/rpc x3, PUT /api/v1/workspaces/*/chunks/* x1".
    pub fn requests_summary(&self) -> String {
        if self.requests.is_empty() {
            return "no request".into();
        }
        self.requests
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default)]
struct Meter {
    up: AtomicU64,
    down: AtomicU64,
    head_bytes: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    upgrades: AtomicU64,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl Meter {
    fn record(&self, event: Event) {
        match event {
            Event::Head(n) => {
                self.head_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Event::Request(key) => {
                // A poisoned lock only means another relay panicked while
                // counting; the counts are still usable.
                let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                *map.entry(key).or_default() += 1;
            }
            Event::Upgraded => {
                self.upgrades.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A proxy on 127.0.0.1 in front of one upstream address; stops (and cuts
/// every connection) when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`: give this to a client instead of the server's.
    pub url: String,
    meter: Arc<Meter>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the server at `upstream_url` (`http://HOST:PORT`).
    pub async fn start(upstream_url: &str) -> anyhow::Result<Proxy> {
        let upstream = upstream_url
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .with_context(|| format!("the proxy needs an http:// upstream, not {upstream_url}"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let meter = Arc::new(Meter::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, meter.clone()));
        Ok(Proxy { url, meter, accept })
    }

    /// Everything counted since the proxy started.
    pub fn snapshot(&self) -> Traffic {
        let m = &self.meter;
        Traffic {
            up: m.up.load(Ordering::Relaxed),
            down: m.down.load(Ordering::Relaxed),
            head_bytes: m.head_bytes.load(Ordering::Relaxed),
            connections: m.connections.load(Ordering::Relaxed),
            upgrades: m.upgrades.load(Ordering::Relaxed),
            requests: m.requests.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> u64 {
        self.meter.open.load(Ordering::Relaxed)
    }

    /// Waits (at most `max`) until no more than `open` connections remain,
    /// so the closing bytes of a process that just exited are counted.
    pub async fn settle(&self, open: u64, max: Duration) {
        let started = Instant::now();
        while self.open_connections() > open && started.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop owns the relays: aborting it drops them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, meter: Arc<Meter>) {
    let mut relays = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                relays.spawn(relay(client, upstream.clone(), meter.clone()));
            }
            Some(_) = relays.join_next() => {}
        }
    }
}

/// One client connection, relayed to its own upstream connection.
async fn relay(client: TcpStream, upstream: String, meter: Arc<Meter>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    meter.connections.fetch_add(1, Ordering::Relaxed);
    meter.open.fetch_add(1, Ordering::Relaxed);
    // The proxy must not add Nagle delays the direct path would not have.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, Side::Request, &meter),
        pump(server_read, client_write, Side::Response, &meter),
    );
    meter.open.fetch_sub(1, Ordering::Relaxed);
}

/// Copies one direction until it ends, counting as it goes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, side: Side, meter: &Meter) {
    let counter = match side {
        Side::Request => &meter.up,
        Side::Response => &meter.down,
    };
    let mut framer = Framer::new(side);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        for event in framer.feed(&buf[..n]) {
            meter.record(event);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

// ------------------------------------------------------------- framing ---

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Side {
    Request,
    Response,
}

#[derive(Debug, PartialEq)]
pub enum Event {
    /// A complete head of this many bytes.
    Head(usize),
    /// A request, as "METHOD /path".
    Request(String),
    /// The server switched protocols: the rest is not HTTP.
    Upgraded,
}

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes left to skip.
    ChunkEnd(u8),
    Trailer,
    /// Not HTTP (any more), or a body that ends with the connection.
    Opaque,
}

/// Follows the HTTP/1.1 messages of one direction of one connection
/// (Content-Length and chunked bodies, upgrades), so requests can be
/// counted without buffering bodies.
pub struct Framer {
    side: Side,
    state: State,
    line: Vec<u8>,
}

impl Framer {
    pub fn new(side: Side) -> Framer {
        Framer {
            side,
            state: State::Head,
            line: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream; returns what completed in them.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        while !data.is_empty() {
            match self.state {
                State::Opaque => break,
                State::Body(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if left == take as u64 {
                        State::Head
                    } else {
                        State::Body(left - take as u64)
                    };
                }
                State::ChunkData(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if left == take as u64 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - take as u64)
                    };
                }
                State::ChunkEnd(left) => {
                    let take = (left as usize).min(data.len());
                    data = &data[take..];
                    self.state = if left as usize == take {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left - take as u8)
                    };
                }
                State::Head => {
                    let (used, done) = self.take_until(data, b"\r\n\r\n");
                    data = &data[used..];
                    if done {
                        let head = std::mem::take(&mut self.line);
                        events.push(Event::Head(head.len()));
                        self.state = self.after_head(&head, &mut events);
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                }
                State::ChunkSize => {
                    let (used, done) = self.take_until(data, b"\n");
                    data = &data[used..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        let text = String::from_utf8_lossy(&line);
                        let size = text.split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(size, 16) {
                            Ok(0) => State::Trailer,
                            Ok(n) => State::ChunkData(n),
                            Err(_) => State::Opaque,
                        };
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                }
                State::Trailer => {
                    let (used, done) = self.take_until(data, b"\n");
                    data = &data[used..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        if line == b"\r\n" || line == b"\n" {
                            self.state = State::Head;
                        }
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                }
            }
        }
        events
    }

    /// Moves bytes into `self.line` until it ends with `end`; returns how
    /// many bytes of `data` it took and whether `end` was reached.
    fn take_until(&mut self, data: &[u8], end: &[u8]) -> (usize, bool) {
        for (i, b) in data.iter().enumerate() {
            self.line.push(*b);
            if self.line.ends_with(end) {
                return (i + 1, true);
            }
        }
        (data.len(), false)
    }

    /// Records a complete head and says what follows it.
    fn after_head(&self, head: &[u8], events: &mut Vec<Event>) -> State {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or("");
        let mut length = None;
        let mut chunked = false;
        let mut upgrade = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "upgrade" => upgrade = true,
                _ => {}
            }
        }
        let body = if chunked {
            State::ChunkSize
        } else {
            match length {
                Some(0) => State::Head,
                Some(n) => State::Body(n),
                None => State::Head,
            }
        };
        match self.side {
            Side::Request => {
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or("?");
                let path = parts.next().map_or("?".to_owned(), request_path);
                events.push(Event::Request(format!("{method} {path}")));
                // After an upgrade request the client waits for 101 and
                // then speaks another protocol.
                if upgrade { State::Opaque } else { body }
            }
            Side::Response => {
                let status: u16 = first
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                match status {
                    101 => {
                        events.push(Event::Upgraded);
                        State::Opaque
                    }
                    100..=199 | 204 | 304 => State::Head,
                    // No length and not chunked: the body ends with the
                    // connection. (Our clients never send HEAD.)
                    _ if !chunked && length.is_none() => State::Opaque,
                    _ => body,
                }
            }
        }
    }
}

/// A request target without its query, with id-like segments as `*`.
fn request_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    path.split('/')
        .map(|seg| {
            let digits = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
            if seg.len() > 20 || digits { "*" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(side: Side, pieces: &[&[u8]]) -> Vec<Event> {
        let mut f = Framer::new(side);
        pieces.iter().flat_map(|p| f.feed(p)).collect()
    }

    #[test]
    fn sized_and_chunked_requests_are_counted_across_reads() {
        let events = requests(
            Side::Request,
            &[
                b"POST /api/v1/rpc HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
                b"loPUT /api/v1/workspaces/01234567-89ab-cdef-0123-456789abcdef/chunks/42 HTTP/1.1\r\n",
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            ],
        );
        let names: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Request(_)))
            .collect();
        assert_eq!(
            names,
            [
                &Event::Request("POST /api/v1/rpc".into()),
                &Event::Request("PUT /api/v1/workspaces/*/chunks/*".into()),
                &Event::Request("GET /".into()),
            ]
        );
    }

    #[test]
    fn an_upgrade_ends_http_framing() {
        let events = requests(
            Side::Response,
            &[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"],
        );
        assert!(events.contains(&Event::Upgraded));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Head(_)))
                .count(),
            1
        );
    }

    #[test]
    fn responses_without_bodies_keep_framing() {
        let events = requests(
            Side::Response,
            &[b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"],
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Head(_)))
                .count(),
            3
        );
    }
}
