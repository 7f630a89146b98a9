//! How a simulated device reaches the real service: a client
//! [`Connection`] whose RPCs call [`Service::handle`] in process (the
//! client's own `WorkspaceRemote` turns it into the engine's `Remote`), and
//! a [`ChunkTransport`] over the service's chunk operations (the client's
//! own `ChunkedContentStore` turns it into the engine's `ContentStore`).
//! Both carry the device's [`Faults`].
//!
//! Every call runs to completion inside the step that made it, so a run
//! depends only on its seed, not on how threads are scheduled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_client::{ChunkTransport, Connection, NotificationStream};
use stacksync_proto::rpc::{Reply, Request, RpcRequest};
use stacksync_proto::{ChunkId, ChunkRef, Error, UserId, Workspace, WorkspaceId};
use stacksync_service::{ByteRange, Service};
use uuid::Uuid;

/// Faults armed on one device's links; each fires once per arming.
#[derive(Debug, Default)]
pub struct Faults {
    /// Commit replies to lose after the service applied the commit.
    lost_commit_replies: AtomicU32,
    /// Object writes to fail before they reach the blob store.
    failed_blob_writes: AtomicU32,
    /// Faults that fired, for the run's figures.
    pub fired: AtomicU64,
}

impl Faults {
    /// The next commit is applied but its reply never arrives.
    pub fn lose_next_commit_reply(&self) {
        self.lost_commit_replies.fetch_add(1, Ordering::SeqCst);
    }

    /// The next `n` object writes fail.
    pub fn fail_blob_writes(&self, n: u32) {
        self.failed_blob_writes.fetch_add(n, Ordering::SeqCst);
    }

    /// Disarms everything (quiescence).
    pub fn clear(&self) {
        self.lost_commit_replies.store(0, Ordering::SeqCst);
        self.failed_blob_writes.store(0, Ordering::SeqCst);
    }

    fn take(counter: &AtomicU32, fired: &AtomicU64) -> bool {
        let took = counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            fired.fetch_add(1, Ordering::SeqCst);
        }
        took
    }
}

/// One device's session with the service, in process.
pub struct SimConnection {
    service: Service,
    user: UserId,
    token: String,
    /// Request ids: deterministic, distinct per device (`(seed, n)`).
    id_seed: u64,
    next_id: AtomicU64,
    faults: Arc<Faults>,
}

impl SimConnection {
    /// A connection for `user`'s session `token`.
    pub fn new(
        service: Service,
        user: UserId,
        token: String,
        id_seed: u64,
        faults: Arc<Faults>,
    ) -> SimConnection {
        SimConnection {
            service,
            user,
            token,
            id_seed,
            next_id: AtomicU64::new(1),
            faults,
        }
    }
}

#[async_trait]
impl Connection for SimConnection {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        let is_commit = matches!(request, Request::Commit(_));
        let req = RpcRequest {
            request_id: Uuid::from_u64_pair(
                self.id_seed,
                self.next_id.fetch_add(1, Ordering::SeqCst),
            ),
            token: self.token.clone(),
            request,
        };
        let reply = self.service.handle(req, None).await.result;
        if is_commit && Faults::take(&self.faults.lost_commit_replies, &self.faults.fired) {
            return Err(Error::unavailable("the commit reply was lost (simulated)"));
        }
        reply
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        // Its own request ids: the high half of the seed says "transport".
        let conn = SimConnection::new(
            self.service.clone(),
            self.user,
            self.token.clone(),
            self.id_seed | 1 << 63,
            Arc::new(Faults::default()),
        );
        Ok(Arc::new(SimTransport {
            service: self.service.clone(),
            user: self.user,
            workspace: workspace.id,
            faults: Arc::clone(&self.faults),
            conn,
        }))
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        // The simulation reads the bus itself, so that it can drop and
        // duplicate notifications deterministically.
        Err(Error::unavailable(
            "the simulation delivers notifications itself",
        ))
    }
}

/// One workspace's objects through the service, as the gateway serves them.
pub struct SimTransport {
    service: Service,
    user: UserId,
    workspace: WorkspaceId,
    faults: Arc<Faults>,
    /// For the chunk index's RPC (`LocateChunks`).
    conn: SimConnection,
}

#[async_trait]
impl ChunkTransport for SimTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        self.service
            .has_chunks(self.user, self.workspace, ids)
            .await
    }

    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        if Faults::take(&self.faults.failed_blob_writes, &self.faults.fired) {
            return Err(Error::unavailable(format!(
                "writing object {id} failed (simulated)"
            )));
        }
        self.service
            .put_chunk(self.user, self.workspace, id, data)
            .await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        Ok(self
            .service
            .get_chunk(self.user, self.workspace, id, None)
            .await?)
    }

    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        let range = ByteRange {
            start: offset,
            end: Some(offset + u64::from(len)),
        };
        let data = self
            .service
            .get_chunk(self.user, self.workspace, id, Some(range))
            .await?;
        if data.len() != len as usize {
            return Err(Error::internal(format!(
                "asked for {len} bytes of {id}, got {}",
                data.len()
            )));
        }
        Ok(data)
    }

    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        self.locate(ids, false).await
    }

    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        self.locate(ids, true).await
    }
}

impl SimTransport {
    /// The chunk index's RPC (`LocateChunks`), in requests of at most
    /// [`Request::MAX_LOCATE_IDS`] ids.
    async fn locate(&self, ids: &[ChunkId], bases: bool) -> Result<Vec<Option<ChunkRef>>, Error> {
        let mut located = Vec::with_capacity(ids.len());
        for batch in ids.chunks(Request::MAX_LOCATE_IDS) {
            let request = Request::LocateChunks {
                workspace: self.workspace,
                ids: batch.to_vec(),
                bases,
            };
            match self.conn.rpc(request).await? {
                Reply::ChunkLocations { chunks } if chunks.len() == batch.len() => {
                    located.extend(chunks)
                }
                other => {
                    return Err(Error::internal(format!("locate_chunks answered {other:?}")));
                }
            }
        }
        Ok(located)
    }
}
