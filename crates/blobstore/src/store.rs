//! The storage trait both backends implement, and the small types it speaks.

use std::collections::HashSet;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use stacksync_proto::ChunkId;

use crate::error::{BlobError, BlobErrorKind, Result};
use crate::names::{ContainerName, StorageUser};

/// Largest object either backend accepts. Chunks are far smaller; the bound
/// keeps memory bounded where a body must be kept for a retry.
pub const MAX_OBJECT_SIZE: u64 = 64 * 1024 * 1024;

/// A stream of object bytes, in pieces of any size.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Wraps one buffer as a [`ByteStream`].
pub fn single_piece(data: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

/// Reads a whole [`ByteStream`] into one buffer, refusing more than
/// [`MAX_OBJECT_SIZE`] bytes.
pub async fn collect(mut stream: ByteStream) -> Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(piece) = stream.try_next().await? {
        if (out.len() + piece.len()) as u64 > MAX_OBJECT_SIZE {
            return Err(BlobError::new(
                BlobErrorKind::TooLarge,
                format!("object larger than {MAX_OBJECT_SIZE} bytes"),
            ));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// A byte range of an object: `start..end`, or `start..` to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, counted from 0.
    pub start: u64,
    /// One past the last byte; `None` means to the end of the object.
    pub end: Option<u64>,
}

impl ByteRange {
    /// The part of an object of `size` bytes this range covers, as
    /// `(start, end)`, clamped to the object; an empty range past the end
    /// gives `(size, size)`.
    pub fn clamp(&self, size: u64) -> (u64, u64) {
        let end = self.end.unwrap_or(size).min(size);
        let start = self.start.min(end);
        (start, end)
    }
}

/// What a store knows about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name.
    pub id: ChunkId,
    /// Stored size in bytes.
    pub size: u64,
}

/// The rights an ACL grants a storage user on a container, as Swift's
/// `X-Container-Read` / `X-Container-Write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// GET and HEAD objects, list the container.
    Read,
    /// PUT and DELETE objects.
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    /// Whether this grant includes reading.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    /// Whether this grant includes writing.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// The users a container's ACL names, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerAcl {
    /// Users who may read.
    pub read: Vec<StorageUser>,
    /// Users who may write.
    pub write: Vec<StorageUser>,
}

impl ContainerAcl {
    /// Adds `user` to the lists `access` names; idempotent.
    pub fn grant(&mut self, user: &StorageUser, access: Access) {
        for (list, on) in [
            (&mut self.read, access.reads()),
            (&mut self.write, access.writes()),
        ] {
            if on && !list.contains(user) {
                list.push(user.clone());
                list.sort();
            }
        }
    }
    /// Removes `user` from the lists `access` names; idempotent.
    pub fn revoke(&mut self, user: &StorageUser, access: Access) {
        if access.reads() {
            self.read.retain(|u| u != user);
        }
        if access.writes() {
            self.write.retain(|u| u != user);
        }
    }
}

/// Chunk object storage: containers of content-addressed objects, with
/// per-container ACLs for other storage users.
///
/// Every handle acts as one storage user: the owner (administrator of the
/// installation's account, who manages containers and ACLs) or another user
/// who reaches the owner's containers only through ACLs. Objects are opaque
/// bytes named by [`ChunkId`]; a store never interprets them, but it does
/// check that a whole object it returns is what was stored (see each
/// backend and [`BlobStore::get`] for range reads).
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Whether the objects this store writes are encrypted at rest with
    /// keys the operator holds: the local backend given an at-rest key, a
    /// Swift cluster whose proxies run the `keymaster` and `encryption`
    /// middlewares. What "server-side encryption" of a workspace requires.
    fn encrypts_at_rest(&self) -> bool;

    /// Creates a container; succeeds if it already exists.
    async fn create_container(&self, container: &ContainerName) -> Result<()>;

    /// Deletes an empty container; `Conflict` while it holds objects,
    /// `NotFound` if it does not exist.
    async fn delete_container(&self, container: &ContainerName) -> Result<()>;

    /// Stores an object from a stream, at most [`MAX_OBJECT_SIZE`] bytes
    /// (a longer stream is refused as `TooLarge` as soon as it passes the
    /// limit, and nothing is stored). The stream is written as it arrives:
    /// the local store holds one piece at a time; Swift keeps what it sent
    /// so that a failed attempt can be replayed.
    ///
    /// Objects are written once: an object appears whole or not at all,
    /// and an existing one is never replaced. Writing the same bytes again
    /// (a retry after a lost answer) succeeds; other bytes under an
    /// existing name are a `Conflict`, and the stored object is unchanged.
    async fn put(
        &self,
        container: &ContainerName,
        id: &ChunkId,
        body: ByteStream,
    ) -> Result<ObjectInfo>;

    /// Streams an object, or part of it.
    ///
    /// A whole object is integrity-checked as the stream ends: a mismatch
    /// is the stream's last item, as an `Integrity` error. A range read
    /// (`range` covering less than the whole object) is not: it costs only
    /// the range, and neither backend can check part of an object against
    /// a whole-object checksum (Swift's ETag is the whole object's MD5).
    /// Callers reading ranges check what they get themselves; chunks in a
    /// pack are verified against their ids by the chunk decoder. A range is
    /// clamped to the object: one past its end gives fewer bytes or none.
    async fn get(
        &self,
        container: &ContainerName,
        id: &ChunkId,
        range: Option<ByteRange>,
    ) -> Result<ByteStream>;

    /// An object's size, or `NotFound`.
    async fn head(&self, container: &ContainerName, id: &ChunkId) -> Result<ObjectInfo>;

    /// Deletes an object, or `NotFound`.
    async fn delete(&self, container: &ContainerName, id: &ChunkId) -> Result<()>;

    /// Every object in a container, in id order.
    async fn list(&self, container: &ContainerName) -> Result<Vec<ChunkId>>;

    /// Which of `ids` the container already holds, for deduplication.
    async fn existing(
        &self,
        container: &ContainerName,
        ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>>;

    /// Lets `user` read and/or write a container (owner only).
    async fn grant(
        &self,
        container: &ContainerName,
        user: &StorageUser,
        access: Access,
    ) -> Result<()>;

    /// Takes back what [`BlobStore::grant`] gave (owner only).
    async fn revoke(
        &self,
        container: &ContainerName,
        user: &StorageUser,
        access: Access,
    ) -> Result<()>;

    /// The container's ACL (owner only).
    async fn acl(&self, container: &ContainerName) -> Result<ContainerAcl>;

    /// Whether the store answers at all, cheaply (the server's `/ready`):
    /// the local store lists its root folder, Swift answers a `HEAD` of
    /// the account. Touches no object.
    async fn ready(&self) -> Result<()>;

    /// Stores an object held in memory.
    async fn put_bytes(
        &self,
        container: &ContainerName,
        id: &ChunkId,
        data: Bytes,
    ) -> Result<ObjectInfo> {
        self.put(container, id, single_piece(data)).await
    }

    /// Reads a whole object into memory, integrity checked.
    async fn get_bytes(&self, container: &ContainerName, id: &ChunkId) -> Result<Bytes> {
        collect(self.get(container, id, None).await?).await
    }
}

/// Stores many objects with at most `concurrency` in flight; returns how
/// many bytes were stored. The first error stops the batch.
pub async fn put_many(
    store: &dyn BlobStore,
    container: &ContainerName,
    objects: Vec<(ChunkId, Bytes)>,
    concurrency: usize,
) -> Result<u64> {
    futures::stream::iter(objects)
        .map(|(id, data)| async move { store.put_bytes(container, &id, data).await })
        .buffer_unordered(concurrency.max(1))
        .try_fold(0u64, |total, info| async move { Ok(total + info.size) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_clamp() {
        let r = |start, end| ByteRange { start, end };
        assert_eq!(r(0, None).clamp(10), (0, 10));
        assert_eq!(r(2, Some(5)).clamp(10), (2, 5));
        assert_eq!(r(2, Some(50)).clamp(10), (2, 10));
        assert_eq!(r(20, None).clamp(10), (10, 10));
        assert_eq!(r(7, Some(3)).clamp(10), (3, 3));
    }

    #[test]
    fn acl_grant_and_revoke_are_idempotent() {
        let a = StorageUser::new("t:a").unwrap();
        let b = StorageUser::new("t:b").unwrap();
        let mut acl = ContainerAcl::default();
        acl.grant(&b, Access::ReadWrite);
        acl.grant(&a, Access::Read);
        acl.grant(&a, Access::Read);
        assert_eq!(acl.read, vec![a.clone(), b.clone()]);
        assert_eq!(acl.write, vec![b.clone()]);
        acl.revoke(&b, Access::Write);
        acl.revoke(&b, Access::Write);
        assert_eq!(acl.read, vec![a, b]);
        assert!(acl.write.is_empty());
    }
}
