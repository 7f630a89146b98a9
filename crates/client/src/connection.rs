//! How the client reaches the sync service: a [`Connection`] carries RPCs,
//! opens push-notification streams and hands out a [`ChunkTransport`] per
//! workspace. Two implementations: [`GatewayConnection`] (the server's
//! HTTP/WebSocket gateway, chunks through the server) and the direct one in
//! [`crate::direct`] (RabbitMQ for metadata and push, Swift for chunks).
//! [`WorkspaceRemote`] turns any connection into the engine's [`Remote`]
//! for one workspace.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use stacksync_engine::Remote;
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChangesPage, ChunkId, CommitRequest, CommitResult, DeviceId, Error, Notification, ProposedItem,
    Workspace, WorkspaceId,
};

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

/// The engine's view of one workspace through a connection.
#[derive(Clone)]
pub struct WorkspaceRemote {
    conn: Arc<dyn Connection>,
    workspace: WorkspaceId,
    device: DeviceId,
}

impl WorkspaceRemote {
    /// `device` is named in every commit (it is how other devices tell
    /// their own changes from others').
    pub fn new(conn: Arc<dyn Connection>, workspace: WorkspaceId, device: DeviceId) -> Self {
        WorkspaceRemote {
            conn,
            workspace,
            device,
        }
    }
}

#[async_trait]
impl Remote for WorkspaceRemote {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        let request = Request::GetChanges {
            workspace: self.workspace,
            since,
            limit,
        };
        match self.conn.rpc(request).await? {
            Reply::Changes(page) => Ok(page),
            other => Err(unexpected("get_changes", other)),
        }
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
        Ok(self.client.notifications()?.boxed())
    }
}

/// Chunks of one workspace through the gateway.
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
}
