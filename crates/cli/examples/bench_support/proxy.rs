//! A loopback TCP proxy that counts what crosses it: every byte in each
//! direction (HTTP heads and bodies, WebSocket frames: what the
//! application writes to its sockets, without TCP/IP headers), and, by
//! following HTTP/1.1 framing on each connection (`framing`), the
//! requests by method and path (RPCs by operation), the bytes of each kind
//! of exchange in each direction, and the bytes spent on heads.
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

use super::framing::{Event, Framer, Pending, Side};

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
    /// Exchanges by "METHOD /path" (ids in paths shown as `*`), "RPC op"
    /// or "WS /path" (a WebSocket's frames).
    pub requests: BTreeMap<String, Exchange>,
}

/// The requests of one kind and the bytes they moved.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Exchange {
    pub count: u64,
    pub up: u64,
    pub down: u64,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.up + self.down
    }

    pub fn request_count(&self) -> u64 {
        self.requests.values().map(|e| e.count).sum()
    }

    /// What happened after `before` was taken.
    pub fn since(&self, before: &Traffic) -> Traffic {
        let mut requests = self.requests.clone();
        for (k, b) in &before.requests {
            if let Some(v) = requests.get_mut(k) {
                v.count = v.count.saturating_sub(b.count);
                v.up = v.up.saturating_sub(b.up);
                v.down = v.down.saturating_sub(b.down);
            }
        }
        requests.retain(|_, e| *e != Exchange::default());
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
            .filter(|(_, e)| e.count > 0)
            .map(|(k, e)| format!("{k} x{}", e.count))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per kind of exchange: count, bytes up and down.
    pub fn breakdown(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|(k, e)| {
                format!(
                    "{k:<44} x{:<4} {:>9} B up {:>9} B down",
                    e.count, e.up, e.down
                )
            })
            .collect()
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
    requests: Mutex<BTreeMap<String, Exchange>>,
}

impl Meter {
    fn record(&self, side: Side, event: Event) {
        match event {
            Event::Head(n) => {
                self.head_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Event::Request(key) => {
                // A poisoned lock only means another relay panicked while
                // counting; the counts are still usable.
                let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(key).or_default().count += 1;
            }
            Event::Bytes(key, n) => {
                let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                let e = map.entry(key).or_default();
                match side {
                    Side::Request => e.up += n,
                    Side::Response => e.down += n,
                }
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
    let exchanges = Pending::default();
    tokio::join!(
        pump(
            client_read,
            server_write,
            Framer::new(Side::Request, exchanges.clone()),
            &meter
        ),
        pump(
            server_read,
            client_write,
            Framer::new(Side::Response, exchanges),
            &meter
        ),
    );
    meter.open.fetch_sub(1, Ordering::Relaxed);
}

/// Copies one direction until it ends, counting as it goes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut framer: Framer, meter: &Meter) {
    let side = framer.side();
    let counter = match side {
        Side::Request => &meter.up,
        Side::Response => &meter.down,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        for event in framer.feed(&buf[..n]) {
            meter.record(side, event);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
