//! A file's content through the API: the chunks a version names (only
//! those a byte range reaches), each read from where the workspace stores
//! it (one range read of its pack), decoded and checked against its id (a
//! delta applied to its base first), streamed in order with a few reads
//! ahead; memory holds those few chunks whatever the file's size.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use stacksync_blobstore::{BlobStore, ContainerName};
use stacksync_content::ChunkCodec;
use stacksync_metastore::MetaStore;
use stacksync_proto::{ChunkId, ChunkRef, Error, Workspace};

use super::{ApiNode, readable_here, to_proto};
use crate::chunks::read_stored;
use crate::error::ServiceError;
use crate::{Service, container_name};

/// Chunks read ahead of the one being sent.
const READ_AHEAD: usize = 4;

/// A file's bytes (all of them, or a range), as they are read.
pub struct Content {
    /// The whole version's size.
    pub size: u64,
    /// The bytes served: `start..end` of the version.
    pub start: u64,
    /// End of the bytes served (exclusive).
    pub end: u64,
    /// The bytes, in order; an error ends the stream (storage failed, or
    /// a chunk did not match its id).
    pub body: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("size", &self.size)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The content of the file version `node` (from [`Service::api_node`]
    /// or [`Service::api_version`]), or bytes `range` (`start..end`,
    /// inside the file) of it.
    pub async fn api_content(
        &self,
        node: &ApiNode,
        range: Option<(u64, u64)>,
    ) -> Result<Content, Error> {
        let ApiNode::Item { workspace, meta } = node else {
            return Err(Error::bad_request("a folder has no content to download"));
        };
        if meta.is_folder {
            return Err(Error::bad_request(format!(
                "{} is a folder, which has no content to download",
                meta.id
            )));
        }
        if !meta.status.is_live() {
            return Err(Error::not_found(format!(
                "this version of {} is a deletion; read an earlier version",
                meta.id
            )));
        }
        readable_here(workspace)?;
        let (start, end) = range.unwrap_or((0, meta.size));
        if start > end || end > meta.size {
            return Err(Error::bad_request(format!(
                "bytes {start}..{end} are not inside the file's {} bytes",
                meta.size
            )));
        }
        let mut parts = Vec::new();
        let mut at = 0u64;
        for chunk in &meta.chunks {
            let (from, to) = (at, at + u64::from(chunk.size));
            if to > start && from < end {
                let skip = start.saturating_sub(from) as usize;
                let take = (end.min(to) - from) as usize;
                parts.push((*chunk, skip, take));
            }
            at = to;
        }
        if at != meta.size {
            return Err(Error::internal(format!(
                "the chunks of {} version {} add up to {at} bytes, not {}",
                meta.id, meta.version, meta.size
            )));
        }
        let container = container_name(&workspace.container).map_err(to_proto)?;
        let (blobs, store, ws) = (
            self.blobs().clone(),
            self.store().clone(),
            workspace.clone(),
        );
        let body = futures::stream::iter(parts)
            .map(move |(chunk, skip, take)| {
                let (blobs, store, ws, container) =
                    (blobs.clone(), store.clone(), ws.clone(), container.clone());
                async move {
                    let plain = plain_chunk(blobs.as_ref(), &store, &ws, &container, &chunk)
                        .await
                        .map_err(|e| e.to_proto())?;
                    Ok(plain.slice(skip..take))
                }
            })
            .buffered(READ_AHEAD);
        Ok(Content {
            size: meta.size,
            start,
            end,
            body: Box::pin(body),
        })
    }
}

/// The plaintext of `chunk` of workspace `ws` (whose container is
/// `container`): its stored bytes decoded and checked against its id and
/// size; a delta (`PackSpan::base`) applied to its base, read from where
/// the workspace stores it whole. Only for workspaces whose chunks the
/// server can read (not end-to-end encrypted ones).
pub(crate) async fn plain_chunk(
    blobs: &dyn BlobStore,
    store: &MetaStore,
    ws: &Workspace,
    container: &ContainerName,
    chunk: &ChunkRef,
) -> Result<Bytes, ServiceError> {
    readable_here(ws)?;
    let stored = read_stored(blobs, container, chunk).await?;
    let base = match chunk.span.and_then(|s| s.base) {
        None => None,
        Some(base) => {
            let Some(stored_base) = store.locate_bases(ws.id, &[base]).await?.pop().flatten()
            else {
                return Err(Error::internal(format!(
                    "chunk {base}, the base of chunk {}, is not stored whole in workspace {}",
                    chunk.id, ws.id
                ))
                .into());
            };
            Some((base, read_stored(blobs, container, &stored_base).await?))
        }
    };
    let (id, size) = (chunk.id, chunk.size);
    let plain = tokio::task::spawn_blocking(move || decode(id, &stored, base))
        .await
        .map_err(|e| Error::internal(format!("decoding chunk {id}: {e}")))??;
    if plain.len() != size as usize {
        return Err(Error::internal(format!(
            "chunk {id} decodes to {} bytes, not the {size} its version says",
            plain.len()
        ))
        .into());
    }
    Ok(Bytes::from(plain))
}

/// Decodes stored chunk bytes (a delta against `base` when given).
fn decode(id: ChunkId, stored: &[u8], base: Option<(ChunkId, Bytes)>) -> Result<Vec<u8>, Error> {
    let codec = ChunkCodec::compressed();
    let failed = |e: stacksync_content::ContentError| {
        Error::internal(format!(
            "chunk {id} does not decode to what its id says: {e}"
        ))
    };
    match base {
        None => codec.decode(&id, stored).map_err(failed),
        Some((base_id, base_bytes)) => {
            let base_plain = codec.decode(&base_id, &base_bytes).map_err(failed)?;
            stacksync_content::delta::apply(&codec, &id, &base_plain, stored).map_err(failed)
        }
    }
}
