//! New content through the API: the body is streamed through the chunker
//! and codec a plain workspace's client uses (content-defined chunks,
//! BLAKE3 ids, zstd where it pays), chunks the workspace already stores are
//! not stored again, the rest are appended to packs written once (each
//! charged to the workspace owner's quota before it is stored), and the
//! file is committed through the one commit path. Memory stays bounded
//! whatever the size: the encoder holds a few windows, the channel two
//! packs, and at most [`PUTS_IN_FLIGHT`] packs are being written.

use std::collections::HashMap;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use stacksync_blobstore::ByteStream;
use stacksync_content::{
    ChunkCodec, EncodeError, EncodedChunk, FileEncoder, FileSummary, PipelineConfig,
};
use stacksync_proto::{
    ChunkId, ChunkRef, Error, ItemId, ItemStatus, PackSpan, ProposedItem, UserId, Workspace,
};
use uuid::Uuid;

use super::{ApiNode, api_name, check_if_match, readable_here, to_proto};
use crate::auth::now_ms;
use crate::error::BlobContext;
use crate::{ApiCaller, Service, container_name};

/// Encoded bytes gathered before they are written as one pack. Larger
/// than a desktop client's packs: the API's uploads are whole files
/// streamed at once, where fewer, larger writes pay.
const PACK_TARGET: usize = 8 * 1024 * 1024;

/// Packs being written at once by one upload.
const PUTS_IN_FLIGHT: usize = 2;

/// Where an upload goes.
#[derive(Debug, Clone)]
pub enum UploadTo {
    /// A new file named `name` in folder `parent` (`None`: the top folder).
    New {
        /// The folder's API id.
        parent: Option<Uuid>,
        /// The file's name.
        name: String,
    },
    /// A new version of file `id`, if its current version is `if_match`
    /// (when given).
    Existing {
        /// The file's id.
        id: Uuid,
        /// The version the caller read (`If-Match`).
        if_match: Option<u64>,
    },
}

/// The bytes of an upload.
pub struct NewContent {
    /// The body as it arrives; an error (the client went away) fails the
    /// upload and commits nothing.
    pub body: ByteStream,
    /// The file's MIME type, if the client said it.
    pub mimetype: Option<String>,
}

impl NewContent {
    /// The content of an upload streamed from any byte stream (an HTTP
    /// body); a failure of the stream fails the upload.
    pub fn from_stream<S, E>(body: S, mimetype: Option<String>) -> NewContent
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let body = body.map_err(|e| {
            let message = format!("reading the upload: {e}");
            stacksync_blobstore::BlobError::with_source(
                stacksync_blobstore::BlobErrorKind::Io,
                message,
                e,
            )
        });
        NewContent {
            body: Box::pin(body),
            mimetype,
        }
    }
}

impl std::fmt::Debug for NewContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewContent")
            .field("mimetype", &self.mimetype)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Stores `content` as a new file or a new version of one and commits
    /// it as the app's device.
    pub async fn api_upload(
        &self,
        caller: &ApiCaller,
        to: UploadTo,
        content: NewContent,
    ) -> Result<ApiNode, Error> {
        let (ws, proposal) = match to {
            UploadTo::New { parent, name } => {
                let node = self.api_node(caller.user, parent).await?;
                let (ws, parent) = node.as_parent()?;
                let proposal = ProposedItem {
                    id: ItemId::new(),
                    parent,
                    name: api_name(&name)?,
                    is_folder: false,
                    mimetype: content.mimetype,
                    status: ItemStatus::New,
                    version: 1,
                    content_hash: None,
                    size: 0,
                    client_modified: 0,
                    chunks: Vec::new(),
                    record: None,
                };
                (ws.clone(), proposal)
            }
            UploadTo::Existing { id, if_match } => {
                let node = self.api_node_of_kind(caller.user, id, false).await?;
                let ApiNode::Item { workspace, meta } = node else {
                    return Err(Error::not_found(format!("no file {id}")));
                };
                if !meta.status.is_live() {
                    return Err(Error::not_found(format!("file {id} was deleted")));
                }
                check_if_match(&meta, if_match)?;
                let proposal = ProposedItem {
                    id: meta.id,
                    parent: meta.parent,
                    name: meta.name.clone(),
                    is_folder: false,
                    mimetype: content.mimetype.or(meta.mimetype.clone()),
                    status: ItemStatus::Changed,
                    version: meta.version + 1,
                    content_hash: None,
                    size: 0,
                    client_modified: 0,
                    chunks: Vec::new(),
                    record: None,
                };
                (workspace, proposal)
            }
        };
        let ws = self
            .writable_member_of(caller.user, ws.id)
            .await
            .map_err(to_proto)?;
        readable_here(&ws)?;
        let device = self.api_device(caller).await?;
        let summary = self.store_content(caller.user, &ws, content.body).await?;
        let proposal = ProposedItem {
            content_hash: Some(summary.content_hash),
            size: summary.size,
            client_modified: now_ms(),
            chunks: summary.chunks,
            ..proposal
        };
        self.api_commit_one(caller.user, &ws, device, proposal)
            .await
    }

    /// Chunks, encodes and stores `body` in `ws`'s container; the summary's
    /// chunks say where each one is stored.
    async fn store_content(
        &self,
        user: UserId,
        ws: &Workspace,
        body: ByteStream,
    ) -> Result<FileSummary, Error> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EncodedChunk>>(2);
        let body = body.map_err(|e| std::io::Error::other(e.to_string()));
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        let encoder = FileEncoder::new(ChunkCodec::compressed(), PipelineConfig::default())
            .map_err(|e| Error::internal(format!("starting the encoder: {e}")))?;
        let encoding = tokio::task::spawn_blocking(move || {
            let mut batch: Vec<EncodedChunk> = Vec::new();
            let mut batch_bytes = 0;
            let summary = encoder.encode(reader, |chunk| {
                batch_bytes += chunk.bytes.len();
                batch.push(chunk);
                if batch_bytes >= PACK_TARGET {
                    batch_bytes = 0;
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| ())?;
                }
                Ok::<(), ()>(())
            });
            match summary {
                Ok(summary) => {
                    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                        return Ok(None);
                    }
                    Ok(Some(summary))
                }
                // The storing side stopped; its error says why.
                Err(EncodeError::Sink(())) => Ok(None),
                Err(EncodeError::Content(e)) => Err(e),
            }
        });

        let container = container_name(&ws.container).map_err(to_proto)?;
        let mut placed: HashMap<ChunkId, ChunkRef> = HashMap::new();
        let mut puts = FuturesUnordered::new();
        let stored: Result<(), Error> = async {
            while let Some(batch) = rx.recv().await {
                let mut fresh: Vec<EncodedChunk> = Vec::with_capacity(batch.len());
                for chunk in batch {
                    if !placed.contains_key(&chunk.id) && !fresh.iter().any(|c| c.id == chunk.id) {
                        fresh.push(chunk);
                    }
                }
                if fresh.is_empty() {
                    continue;
                }
                let ids: Vec<ChunkId> = fresh.iter().map(|c| c.id).collect();
                let known = self
                    .store()
                    .locate_chunks(ws.id, &ids)
                    .await
                    .map_err(to_proto)?;
                let pack_id = random_pack_id()?;
                let mut pack: Vec<u8> = Vec::new();
                for (chunk, known) in fresh.into_iter().zip(known) {
                    if let Some(stored) = known {
                        placed.insert(chunk.id, stored);
                        continue;
                    }
                    let span = PackSpan::new(pack_id, pack.len() as u64, chunk.bytes.len() as u32)?;
                    pack.extend_from_slice(&chunk.bytes);
                    placed.insert(
                        chunk.id,
                        ChunkRef {
                            id: chunk.id,
                            size: chunk.plaintext_len,
                            span: Some(span),
                        },
                    );
                }
                if pack.is_empty() {
                    continue;
                }
                // Charged before it is stored: past the quota, nothing lands.
                self.record_upload(user, ws, &pack_id, pack.len() as u64)
                    .await
                    .map_err(to_proto)?;
                let (blobs, container) = (self.blobs().clone(), container.clone());
                puts.push(async move {
                    blobs
                        .put_bytes(&container, &pack_id, Bytes::from(pack))
                        .await
                        .blob(|| format!("storing pack {pack_id} in {container}"))
                        .map_err(to_proto)
                });
                while puts.len() >= PUTS_IN_FLIGHT {
                    if let Some(done) = puts.next().await {
                        done?;
                    }
                }
            }
            while let Some(done) = puts.next().await {
                done?;
            }
            Ok(())
        }
        .await;
        // Dropping the receiver stops the encoder at its next chunk.
        drop(rx);
        let encoded = encoding
            .await
            .map_err(|e| Error::internal(format!("the encoder failed: {e}")));
        stored?;
        let summary = encoded?
            .map_err(|e| Error::bad_request(format!("reading the upload: {e}")))?
            .ok_or_else(|| Error::internal("the encoder stopped without a reason"))?;
        let chunks = summary
            .chunks
            .iter()
            .map(|c| {
                placed
                    .get(&c.id)
                    .copied()
                    .ok_or_else(|| Error::internal(format!("chunk {} was never stored", c.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FileSummary { chunks, ..summary })
    }
}

/// A random name for a new pack.
fn random_pack_id() -> Result<ChunkId, Error> {
    let mut id = [0u8; 32];
    getrandom::fill(&mut id)
        .map_err(|e| Error::internal(format!("no randomness to name a pack: {e}")))?;
    Ok(ChunkId(id))
}
