//! Deadlines on every await that depends on another process, and a record
//! of progress for the stall watchdog.
//!
//! A dead or wedged peer must become an error that the client's normal
//! retry and backoff handle, never a wait without end: every RPC and every
//! chunk or pack transfer runs under a deadline ([`WatchedConnection`],
//! [`WatchedTransport`]), and a deadline that passes is reported as
//! `Unavailable` (transient). The notification stream has its own idle
//! timeout (the gateway pings; a silent connection is reopened).
//!
//! Deadlines catch a peer that stops answering; they cannot catch a wait
//! inside the client itself (a channel nobody sends on). [`Activity`]
//! records when anything last made progress (an RPC answered, a transfer
//! finished, a file-system operation done, a piece of a file read) and
//! what is in flight; the daemon's watchdog reports a sync round that has
//! made no progress for [`Deadlines::stall`] (a warning naming what it
//! waits on, and the status as an error) and abandons it, which the engine
//! is built to survive (it is crash-safe at every step), so that the
//! retry starts afresh instead of the client hanging silently.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ChunkId, ChunkRef, Error, ErrorKind, Workspace};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ChunkTransport;
use crate::connection::{Connection, NotificationStream};

/// How long the client waits for other processes, and for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest wait for the answer to one RPC (retries included).
    pub rpc: Duration,
    /// Longest wait for one chunk or pack transfer (retries included), or
    /// one question about stored chunks.
    pub transfer: Duration,
    /// A sync round during which nothing progressed for this long is
    /// reported as stalled and abandoned (then retried with backoff).
    /// Longer than `rpc` and `transfer`, so that a slow peer is reported
    /// by its own deadline first.
    pub stall: Duration,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        // The gateway client gives up on one HTTP attempt after 120 s and
        // retries a few times; these bound the whole of it.
        Deadlines {
            rpc: Duration::from_secs(300),
            transfer: Duration::from_secs(600),
            stall: Duration::from_secs(900),
        }
    }
}

/// When the client last made progress, and what it is waiting on. Cheap
/// to clone; clones share the record.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<ActivityInner>,
}

#[derive(Debug)]
struct ActivityInner {
    epoch: Instant,
    /// Microseconds after `epoch` of the last progress.
    last: AtomicU64,
    next_id: AtomicU64,
    /// What is in flight, by id: what it is and when it started.
    pending: Mutex<BTreeMap<u64, (String, Instant)>>,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            inner: Arc::new(ActivityInner {
                epoch: Instant::now(),
                last: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
                pending: Mutex::default(),
            }),
        }
    }
}

/// An operation in flight: it is listed by [`Activity::stalled`] until
/// this is dropped, which counts as progress.
#[must_use = "the operation is in flight only while this lives"]
pub struct InFlight {
    activity: Activity,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.pending().remove(&self.id);
        self.activity.touch();
    }
}

impl Activity {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, Instant)>> {
        // Poisoning only means a panic mid-insert of a plain entry.
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records progress now.
    pub fn touch(&self) {
        let now = self.inner.epoch.elapsed().as_micros() as u64;
        self.inner.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long ago anything last progressed.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_micros(self.inner.last.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(last)
    }

    /// Lists `what` as in flight until the returned guard is dropped.
    pub fn begin(&self, what: impl Into<String>) -> InFlight {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending().insert(id, (what.into(), Instant::now()));
        InFlight {
            activity: self.clone(),
            id,
        }
    }

    /// If nothing progressed for `after`, why the client looks stalled:
    /// how long, and the oldest operations in flight.
    pub fn stalled(&self, after: Duration) -> Option<String> {
        let idle = self.idle();
        if idle < after {
            return None;
        }
        let pending = self.pending();
        let mut waits: Vec<String> = pending
            .values()
            .take(5)
            .map(|(what, since)| format!("{what} (for {} s)", since.elapsed().as_secs()))
            .collect();
        if pending.len() > waits.len() {
            waits.push(format!("{} more", pending.len() - waits.len()));
        }
        let waiting = if waits.is_empty() {
            "no transfer or RPC in flight (waiting inside the client)".to_owned()
        } else {
            format!("in flight: {}", waits.join(", "))
        };
        // What the runtime holds: tasks alive and queued, to tell a wait
        // on a task that never runs from one on a wake that never comes.
        let runtime = tokio::runtime::Handle::try_current()
            .map(|h| {
                let m = h.metrics();
                format!(
                    "; runtime: {} task(s) alive, {} queued",
                    m.num_alive_tasks(),
                    m.global_queue_depth()
                )
            })
            .unwrap_or_default();
        Some(format!(
            "stalled: no progress for {} s; {waiting}{runtime}",
            idle.as_secs()
        ))
    }
}

/// Runs `fut` as the in-flight operation `what`, failing with a transient
/// error if it takes longer than `limit`.
pub async fn within<T>(
    activity: &Activity,
    limit: Duration,
    what: String,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let _in_flight = activity.begin(what.clone());
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("{what}: no answer after {} s; giving up", limit.as_secs());
            Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: no answer after {} s", limit.as_secs()),
            ))
        }
    }
}

/// Runs `fut`, recording progress in `activity` whenever something wakes
/// it and after any poll that computed for a while. A future is polled
/// again only when something it waits on wakes it, so one that is not
/// woken for long waits on something that will never come; a poll caused
/// by anything else (the watchdog's own timer, in the same task) is not
/// counted, unless it took long (planning a large tree is progress).
pub fn woken_is_progress<F: Future>(
    activity: &Activity,
    fut: F,
) -> impl Future<Output = F::Output> {
    /// What counts as computing rather than a spurious poll.
    const LONG_POLL: Duration = Duration::from_millis(10);
    let activity = activity.clone();
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        let waker = futures::task::waker(Arc::new(TouchOnWake {
            activity: activity.clone(),
            inner: cx.waker().clone(),
        }));
        let started = Instant::now();
        let poll = fut.as_mut().poll(&mut Context::from_waker(&waker));
        if started.elapsed() >= LONG_POLL {
            activity.touch();
        }
        poll
    })
}

/// A waker that records progress before passing the wake-up on.
struct TouchOnWake {
    activity: Activity,
    inner: std::task::Waker,
}

impl futures::task::ArcWake for TouchOnWake {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.activity.touch();
        arc_self.inner.wake_by_ref();
    }
}

/// A [`ChunkTransport`] whose every call has a deadline and is recorded in
/// an [`Activity`].
pub struct WatchedTransport {
    inner: Arc<dyn ChunkTransport>,
    activity: Activity,
    limit: Duration,
}

impl WatchedTransport {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ChunkTransport>, activity: Activity, limit: Duration) -> Self {
        WatchedTransport {
            inner,
            activity,
            limit,
        }
    }
}

#[async_trait]
impl ChunkTransport for WatchedTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        let what = format!("asking whether {} object(s) exist", ids.len());
        within(&self.activity, self.limit, what, self.inner.has_chunks(ids)).await
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        let what = format!("storing object {id} ({} bytes)", data.len());
        within(
            &self.activity,
            self.limit,
            what,
            self.inner.put_chunk(id, data),
        )
        .await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        let what = format!("fetching object {id}");
        within(&self.activity, self.limit, what, self.inner.get_chunk(id)).await
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        let what = format!("fetching {len} bytes of object {id} at {offset}");
        let fut = self.inner.get_range(id, offset, len);
        within(&self.activity, self.limit, what, fut).await
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        let what = format!("asking where {} chunk(s) are stored", ids.len());
        within(
            &self.activity,
            self.limit,
            what,
            self.inner.locate_chunks(ids),
        )
        .await
    }

    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        let what = format!("asking where to read {} delta base(s)", ids.len());
        within(
            &self.activity,
            self.limit,
            what,
            self.inner.locate_bases(ids),
        )
        .await
    }
}

/// A [`Connection`] whose RPCs and chunk transfers have deadlines and are
/// recorded in an [`Activity`]. The notification stream is passed through:
/// it has its own idle timeout and is not part of a sync round.
pub struct WatchedConnection {
    inner: Arc<dyn Connection>,
    activity: Activity,
    deadlines: Deadlines,
}

impl WatchedConnection {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Connection>, activity: Activity, deadlines: Deadlines) -> Self {
        WatchedConnection {
            inner,
            activity,
            deadlines,
        }
    }
}

/// A short name for a request, for logs (its fields may be large).
fn request_name(request: &Request) -> String {
    let debug = format!("{request:?}");
    let end = debug
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}

#[async_trait]
impl Connection for WatchedConnection {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        let what = format!("RPC {}", request_name(&request));
        let fut = self.inner.rpc(request);
        within(&self.activity, self.deadlines.rpc, what, fut).await
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        let what = format!("opening the chunk store of {}", workspace.id);
        let fut = self.inner.chunks(workspace);
        let transport = within(&self.activity, self.deadlines.rpc, what, fut).await?;
        Ok(Arc::new(WatchedTransport::new(
            transport,
            self.activity.clone(),
            self.deadlines.transfer,
        )))
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        let what = "opening push notifications".to_owned();
        within(
            &self.activity,
            self.deadlines.rpc,
            what,
            self.inner.notifications(),
        )
        .await
    }
}

/// A file reader or writer that records progress in an [`Activity`] at
/// each piece it moves, so that reading or writing a large file is not
/// taken for a stall.
pub struct Touching<T> {
    inner: T,
    activity: Activity,
}

impl<T> Touching<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Activity) -> Touching<T> {
        Touching { inner, activity }
    }
}

impl<T> Touching<T> {
    fn progressed<R>(&self, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if matches!(poll, Poll::Ready(Ok(_))) {
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touching<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progressed(poll)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touching<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_never_answers_becomes_a_transient_error() {
        let activity = Activity::default();
        let never = std::future::pending::<Result<(), Error>>();
        let err = within(&activity, Duration::from_millis(20), "RPC X".into(), never)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("RPC X"), "{}", err.message);
        // The operation is no longer listed.
        assert!(activity.pending().is_empty());
    }

    #[test]
    fn stalls_name_what_is_in_flight() {
        let activity = Activity::default();
        activity.touch();
        assert_eq!(activity.stalled(Duration::from_secs(60)), None);
        let guard = activity.begin("storing object P");
        // A zero threshold: any idleness counts (no waiting in a test).
        let why = activity.stalled(Duration::ZERO).unwrap();
        assert!(why.contains("storing object P"), "{why}");
        drop(guard);
        let why = activity.stalled(Duration::ZERO).unwrap();
        assert!(why.contains("waiting inside the client"), "{why}");
    }

    /// The issue-18 symptom: a round waiting on a channel nobody sends on.
    /// Polls caused by others (the watchdog's timer) are not progress; a
    /// real wake-up is.
    #[tokio::test]
    async fn only_wake_ups_of_the_watched_future_count_as_progress() {
        let activity = Activity::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut watched = Box::pin(woken_is_progress(&activity, rx));
        let noop = futures::task::noop_waker();
        let mut cx = Context::from_waker(&noop);
        assert!(watched.as_mut().poll(&mut cx).is_pending());
        // Wait until some idleness shows, by polling (no sleeping).
        while activity.idle() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let idle = activity.idle();
        // A spurious poll does not reset it.
        assert!(watched.as_mut().poll(&mut cx).is_pending());
        assert!(activity.idle() >= idle);
        // A real wake-up does.
        tx.send(()).unwrap();
        assert!(activity.idle() < idle);
        assert!(watched.as_mut().poll(&mut cx).is_ready());
    }
}
