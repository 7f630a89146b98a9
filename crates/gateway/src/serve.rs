//! The accept loop: every connection gets a slot under a global and a
//! per-address cap, a header-read timeout (which also bounds keep-alive
//! idleness) and an inactivity timeout, so that idle or slowloris sockets
//! neither pile up nor starve anyone else.
//!
//! `axum::serve` has none of these: it serves through hyper-util's
//! HTTP/1+2 detection, which waits for a first byte with no timeout, and
//! sets no timer, so hyper's header timeout never runs either. Over the
//! connection caps a connection is accepted and closed at once, so that
//! the kernel's backlog never fills up with connections nobody will serve
//! (a client then sees a reset and retries, instead of hanging).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service as _;

use crate::GatewayLimits;
use crate::idle::IdleTimeout;

/// How long open connections may take to finish their requests after the
/// shutdown signal before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head hyper buffers (the request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Connections per client network, kept only while a client has some.
#[derive(Debug, Default)]
struct PerAddress {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place under both caps; released when dropped.
struct Slot {
    _global: OwnedSemaphorePermit,
    addresses: Arc<PerAddress>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.addresses.counts);
        if let Some(n) = counts.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The two caps of one server.
struct Caps {
    global: Arc<Semaphore>,
    addresses: Arc<PerAddress>,
    per_address: usize,
}

impl Caps {
    /// A slot for a connection from `ip`, or why there is none.
    fn take(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let address = stacksync_service::address_group(ip);
        let global = Arc::clone(&self.global)
            .try_acquire_owned()
            .map_err(|_| "the server's connection cap")?;
        let mut counts = lock(&self.addresses.counts);
        let n = counts.entry(address).or_insert(0);
        if *n >= self.per_address {
            return Err("the per-address connection cap");
        }
        *n += 1;
        Ok(Slot {
            _global: global,
            addresses: Arc::clone(&self.addresses),
            address,
        })
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// requests finish (up to a grace period). Each request carries
/// `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: GatewayLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let caps = Caps {
        global: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        addresses: Arc::default(),
        per_address: limits.max_connections_per_address.max(1),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next() => continue,
            () = &mut shutdown => break,
        };
        let slot = match caps.take(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                refused += 1;
                // One line per power of two: a flood must not flood the log.
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, refused, "connection refused: over {cap}");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            slot,
            app.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// An accept error is about one connection (reset before accepted) or
/// about the process (out of file descriptors): either way, go on, but do
/// not spin while descriptors are short.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    limits: GatewayLimits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout, slot));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let response: Result<_, Infallible> = app.call(request).await;
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper starts this clock whenever the connection waits for a
        // request head, so it is also the keep-alive idle timeout.
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    // `wait_for`'s guard must not live across an await: map it away.
    let stopping = async move { stop.wait_for(|stop| *stop).await.map(|_| ()) };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "connection ended with an error");
    }
}
