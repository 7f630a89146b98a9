//! How the client reaches the sync service: a [`Connection`] carries RPCs,
//! opens push-notification streams and hands out a [`ChunkTransport`] per
//! workspace. Two implementations: [`GatewayConnection`] (the server's
//! HTTP/WebSocket gateway, chunks through the server) and the direct one in
//! [`crate::direct`] (RabbitMQ for metadata and push, Swift for chunks).
//! [`WorkspaceRemote`] turns any connection into the engine's [`Remote`]
//! for one workspace.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use stacksync_engine::Remote;
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChangesPage, ChunkId, ChunkRef, CommitRequest, CommitResult, DeviceId, Error, Notification,
    ProposedItem, Workspace, WorkspaceId,
};

use crate::own_changes::OwnChanges;
use crate::transfer::ChunkTransport;

/// Push notifications for every workspace of the logged-in user. They are
/// hints: a `Resync` (or any gap) means "re-read your change feeds". The
/// stream yields an error and ends only when the service refuses the
/// session; transport failures are retried inside it.
pub type NotificationStream = BoxStream<'static, Result<Notification, Error>>;

/// A logged-in connection to the sync service.
#[async_trait]
pub trait Connection: Send + Sync {
    /// One sync-service operation (retried under one request id on
    /// transient failures, so retries are safe).
    async fn rpc(&self, request: Request) -> Result<Reply, Error>;
    /// Moves the chunks of one workspace.
    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error>;
    /// Opens a push-notification stream.
    async fn notifications(&self) -> Result<NotificationStream, Error>;
}

/// Fails with a protocol error naming what was expected.
pub(crate) fn unexpected(op: &str, reply: Reply) -> Error {
    Error::internal(format!(
        "the service answered {op} with an unexpected reply: {reply:?}"
    ))
}

/// The account's workspaces.
pub async fn workspaces(conn: &dyn Connection) -> Result<Vec<Workspace>, Error> {
    match conn.rpc(Request::GetWorkspaces).await? {
        Reply::Workspaces { workspaces } => Ok(workspaces),
        other => Err(unexpected("get_workspaces", other)),
    }
}

/// Where the service stores each of `ids` in `workspace` (with `bases`,
/// where to read each as the base of a delta), asked through `rpc` in
/// requests of at most [`Request::MAX_LOCATE_IDS`] ids. An answer
/// of the wrong length or naming another chunk is an error: the service is
/// broken, and guessing which answer belongs to which id could commit a
/// chunk at someone else's location.
pub(crate) async fn locate_chunks<F, Fut>(
    workspace: WorkspaceId,
    ids: &[ChunkId],
    bases: bool,
    rpc: F,
) -> Result<Vec<Option<ChunkRef>>, Error>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Reply, Error>>,
{
    let mut located = Vec::with_capacity(ids.len());
    for batch in ids.chunks(Request::MAX_LOCATE_IDS) {
        let request = Request::LocateChunks {
            workspace,
            ids: batch.to_vec(),
            bases,
        };
        let chunks = match rpc(request).await? {
            Reply::ChunkLocations { chunks } => chunks,
            other => return Err(unexpected("locate_chunks", other)),
        };
        if chunks.len() != batch.len() {
            return Err(Error::internal(format!(
                "the service located {} chunks when asked about {}",
                chunks.len(),
                batch.len()
            )));
        }
        for (id, chunk) in batch.iter().zip(chunks) {
            if let Some(c) = &chunk
                && c.id != *id
            {
                return Err(Error::internal(format!(
                    "asked where chunk {id} is, the service answered about {}",
                    c.id
                )));
            }
            located.push(chunk);
        }
    }
    Ok(located)
}

/// The engine's view of one workspace through a connection.
#[derive(Clone)]
pub struct WorkspaceRemote {
    conn: Arc<dyn Connection>,
    workspace: WorkspaceId,
    device: DeviceId,
    /// This device's latest commits, which answer the feed read that
    /// follows them without downloading them again.
    own: Arc<Mutex<OwnChanges>>,
    /// Looks at every page read from the server before the engine does.
    guard: Option<Arc<dyn FeedGuard>>,
    /// Whether a `SealedRemote` opens what this remote reads (the
    /// workspace is end-to-end encrypted); otherwise a listed version with
    /// a sealed record is refused, so that no sealed name or chunk list
    /// ever reaches an engine that would take it as plain.
    sealed: bool,
}

/// Looks at a change-feed page before the engine applies it, and may stop
/// it (the read fails with the guard's error, the cursor stays where it
/// was, and the engine reads the page again on its next round). The
/// daemon's guard on the private workspace makes sure a folder the server
/// moved into a shared workspace is mounted before its deletion is seen.
#[async_trait]
pub trait FeedGuard: Send + Sync {
    /// `Err` to keep the engine from seeing `page` now.
    async fn check(&self, page: &ChangesPage) -> Result<(), Error>;
}

impl WorkspaceRemote {
    /// `device` is named in every commit (it is how other devices tell
    /// their own changes from others').
    pub fn new(conn: Arc<dyn Connection>, workspace: WorkspaceId, device: DeviceId) -> Self {
        WorkspaceRemote {
            conn,
            workspace,
            device,
            own: Arc::default(),
            guard: None,
            sealed: false,
        }
    }

    /// This remote as the inner half of a `SealedRemote`.
    pub fn sealed(mut self) -> Self {
        self.sealed = true;
        self
    }

    /// This remote with `guard` looking at every page read from the server.
    pub fn guarded_by(mut self, guard: Arc<dyn FeedGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    fn own(&self) -> std::sync::MutexGuard<'_, OwnChanges> {
        // Plain data, updated in one call: a panic elsewhere cannot leave
        // it half-written.
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Remote for WorkspaceRemote {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        if let Some(page) = self.own().page(self.workspace, since, limit) {
            return Ok(page);
        }
        let request = Request::GetChanges {
            workspace: self.workspace,
            since,
            limit,
        };
        let page = match self.conn.rpc(request).await? {
            Reply::Changes(page) => page,
            other => return Err(unexpected("get_changes", other)),
        };
        if !self.sealed && page.items.iter().any(|m| m.record.is_some()) {
            return Err(Error::unavailable(format!(
                "workspace {} is end-to-end encrypted now; this device reopens it before it \
                 syncs again",
                self.workspace
            )));
        }
        if let Some(guard) = &self.guard {
            guard.check(&page).await?;
        }
        Ok(page)
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        // The engine sends plans of any size; the service takes batches of
        // at most MAX_ITEMS. Each batch is its own transaction; the results
        // are concatenated in order and the last revision is reported.
        let mut total: Option<CommitResult> = None;
        let mut rest = items;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(CommitRequest::MAX_ITEMS));
            let request = Request::Commit(CommitRequest {
                workspace: self.workspace,
                device: self.device,
                items: std::mem::replace(&mut rest, tail),
            });
            let result = match self.conn.rpc(request).await? {
                Reply::Commit(result) => result,
                other => return Err(unexpected("commit", other)),
            };
            self.own().committed(&result);
            match &mut total {
                None => total = Some(result),
                Some(t) => {
                    t.results.extend(result.results);
                    t.revision = t.revision.max(result.revision);
                }
            }
        }
        Ok(total.unwrap_or(CommitResult {
            workspace: self.workspace,
            device: self.device,
            results: Vec::new(),
            revision: 0,
        }))
    }
}

/// A connection through the server's HTTP/WebSocket gateway.
#[derive(Debug, Clone)]
pub struct GatewayConnection {
    client: GatewayClient,
}

impl GatewayConnection {
    /// Wraps a logged-in gateway client.
    pub fn new(client: GatewayClient) -> GatewayConnection {
        GatewayConnection { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &GatewayClient {
        &self.client
    }
}

#[async_trait]
impl Connection for GatewayConnection {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        self.client.rpc(request).await
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        Ok(Arc::new(GatewayTransport {
            client: self.client.clone(),
            workspace: workspace.id,
        }))
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        // The daemon takes a commit notification as a hint to re-read the
        // change feed; its items would cross the wire for nothing.
        Ok(self.client.notification_hints()?.boxed())
    }
}

/// Chunks and packs of one workspace through the gateway (range reads
/// included), and the service's chunk index through its RPC.
#[derive(Debug, Clone)]
pub struct GatewayTransport {
    client: GatewayClient,
    workspace: WorkspaceId,
}

impl GatewayTransport {
    /// Chunks of `workspace` through `client`'s gateway.
    pub fn new(client: GatewayClient, workspace: WorkspaceId) -> GatewayTransport {
        GatewayTransport { client, workspace }
    }
}

#[async_trait]
impl ChunkTransport for GatewayTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        self.client.has_chunks(self.workspace, ids).await
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        self.client.put_chunk(self.workspace, id, data).await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        self.client.get_chunk(self.workspace, id).await
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        self.client
            .get_chunk_range(self.workspace, id, offset, len)
            .await
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        locate_chunks(self.workspace, ids, false, |r| self.client.rpc(r)).await
    }

    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        locate_chunks(self.workspace, ids, true, |r| self.client.rpc(r)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn id(n: usize) -> ChunkId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(n as u64).to_le_bytes());
        ChunkId(b)
    }

    /// Answers like the service, storing every chunk whose number is even.
    fn answer(request: &Request) -> Vec<Option<ChunkRef>> {
        let Request::LocateChunks { ids, .. } = request else {
            panic!("not a locate request: {request:?}");
        };
        ids.iter()
            .map(|i| (i.0[0] % 2 == 0).then(|| ChunkRef::whole(*i, 7)))
            .collect()
    }

    #[tokio::test]
    async fn large_asks_are_split_and_answers_kept_in_order() {
        let ids: Vec<ChunkId> = (0..2500).map(id).collect();
        let sizes = Mutex::new(Vec::new());
        let located = locate_chunks(WorkspaceId::NIL, &ids, false, |r| {
            let Request::LocateChunks { ids, .. } = &r else {
                panic!("not a locate request");
            };
            sizes.lock().unwrap().push(ids.len());
            let chunks = answer(&r);
            async move { Ok(Reply::ChunkLocations { chunks }) }
        })
        .await
        .unwrap();
        assert_eq!(*sizes.lock().unwrap(), vec![1000, 1000, 500]);
        assert_eq!(located.len(), 2500);
        for (n, c) in located.iter().enumerate() {
            assert_eq!(c.map(|c| c.id), (n % 2 == 0).then(|| id(n)), "{n}");
        }
    }

    #[tokio::test]
    async fn answers_about_other_chunks_or_of_another_length_are_refused() {
        let ids: Vec<ChunkId> = (0..3).map(id).collect();
        let short = locate_chunks(WorkspaceId::NIL, &ids, false, |_| async {
            Ok(Reply::ChunkLocations { chunks: vec![None] })
        })
        .await
        .unwrap_err();
        assert!(
            short
                .message
                .contains("located 1 chunks when asked about 3"),
            "{short}"
        );
        let swapped = locate_chunks(WorkspaceId::NIL, &ids, false, |_| async {
            Ok(Reply::ChunkLocations {
                chunks: vec![Some(ChunkRef::whole(id(1), 7)), None, None],
            })
        })
        .await
        .unwrap_err();
        assert!(swapped.message.contains("answered about"), "{swapped}");
        let wrong = locate_chunks(WorkspaceId::NIL, &ids, false, |_| async {
            Ok(Reply::Members { members: vec![] })
        })
        .await
        .unwrap_err();
        assert!(wrong.message.contains("locate_chunks"), "{wrong}");
    }
}
