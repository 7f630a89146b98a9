//! The engine's [`ContentStore`]: files cut, compressed (and maybe
//! encrypted) by the content pipeline, and the chunks moved by a
//! [`ChunkTransport`].
//!
//! Upload runs three stages at once, joined by bounded channels so memory
//! stays bounded by a few chunks whatever the file size: the engine's
//! reader is pumped into the encoder's blocking threads; encoded chunks come
//! back to this task, are asked about in batches (`has_chunks`), and only
//! the missing ones are sent, a bounded number at a time. Download fetches
//! chunks with bounded parallelism, keeps their order, decodes each on the
//! blocking pool (which checks it against its id) and writes the plaintext.

mod bridge;
mod limit;
mod transport;

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_content::{
    ChunkCodec, ContentError, EncodeError, EncodedChunk, FileEncoder, PipelineConfig,
};
use stacksync_engine::io::Uploaded;
use stacksync_engine::{ByteReader, ByteWriter, ContentStore};
use stacksync_proto::{ChunkId, ChunkRef, ContentHash, Error as ProtoError, ErrorKind};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

pub use limit::TokenBucket;
pub use transport::{BlobTransport, ChunkTransport};

/// How a [`ChunkedContentStore`] cuts files and how much it does at once.
#[derive(Debug, Clone, Copy)]
pub struct TransferConfig {
    /// Chunk sizes and encoder threads.
    pub pipeline: PipelineConfig,
    /// Most chunk ids asked about in one `has_chunks` call.
    pub batch_chunks: usize,
    /// Most encoded bytes gathered into one batch.
    pub batch_bytes: usize,
    /// Chunk uploads in flight at once.
    pub max_uploads: usize,
    /// Chunk downloads in flight at once.
    pub max_downloads: usize,
    /// Encoded chunks smaller than this are sent without asking whether
    /// the store has them: the question costs a round trip and a storage
    /// request (a HEAD on Swift), about what sending a small chunk costs, and
    /// a small file is a single small chunk. 0 asks about every chunk.
    pub ask_min_bytes: usize,
    /// Upload limit in (encoded) bytes per second; `None` for none.
    pub upload_limit: Option<u64>,
    /// Download limit in (encoded) bytes per second; `None` for none.
    pub download_limit: Option<u64>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            pipeline: PipelineConfig::default(),
            batch_chunks: 64,
            batch_bytes: 16 * 1024 * 1024,
            max_uploads: 4,
            max_downloads: 4,
            ask_min_bytes: 64 * 1024,
            upload_limit: None,
            download_limit: None,
        }
    }
}

/// Why an upload or download failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading the file to upload failed.
    #[error("reading the file to upload: {0}")]
    Read(#[source] io::Error),
    /// Chunking or encoding failed.
    #[error("encoding: {0}")]
    Encode(#[source] ContentError),
    /// The transport failed.
    #[error("{doing}: {source}")]
    Transport {
        /// What was being done, naming the chunk.
        doing: String,
        /// The transport's error.
        #[source]
        source: ProtoError,
    },
    /// The transport answered `has_chunks` with the wrong number of flags.
    #[error("has_chunks answered {got} flags for {asked} ids")]
    BadAnswer {
        /// Ids asked about.
        asked: usize,
        /// Flags received.
        got: usize,
    },
    /// A fetched chunk failed to decode or is not the chunk asked for.
    #[error("chunk {id} is damaged or not the chunk asked for: {source}")]
    Damaged {
        /// The chunk.
        id: ChunkId,
        /// What the decoder found.
        #[source]
        source: ContentError,
    },
    /// A chunk's plaintext length differs from the chunk list's.
    #[error("chunk {id} has {actual} bytes, the chunk list says {declared}")]
    SizeMismatch {
        /// The chunk.
        id: ChunkId,
        /// Size in the chunk list.
        declared: u32,
        /// Size decoded.
        actual: usize,
    },
    /// The whole file does not have the expected hash.
    #[error("downloaded content hashes to {actual}, expected {expected}")]
    HashMismatch {
        /// Hash in the metadata.
        expected: ContentHash,
        /// Hash of what was written.
        actual: ContentHash,
    },
    /// Writing the downloaded plaintext failed.
    #[error("writing downloaded content: {0}")]
    Write(#[source] io::Error),
    /// A worker task died (a bug); the transfer is abandoned.
    #[error("transfer task failed: {0}")]
    Task(String),
}

impl TransferError {
    /// The protocol error reported to the engine: the transport's own kind
    /// (so `Unavailable` stays retryable), `Internal` for everything local.
    pub fn to_proto(&self) -> ProtoError {
        match self {
            TransferError::Transport { source, .. } => {
                ProtoError::new(source.kind, self.to_string())
            }
            _ => ProtoError::new(ErrorKind::Internal, self.to_string()),
        }
    }
}

/// Counters of what a store moved, for status and tests.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Chunks sent to the transport.
    pub chunks_uploaded: AtomicU64,
    /// Encoded bytes sent.
    pub bytes_uploaded: AtomicU64,
    /// Chunks not sent because the store had them.
    pub chunks_deduplicated: AtomicU64,
    /// Chunks fetched.
    pub chunks_downloaded: AtomicU64,
    /// Encoded bytes fetched.
    pub bytes_downloaded: AtomicU64,
}

/// The engine's [`ContentStore`] over the content pipeline and a
/// [`ChunkTransport`].
#[derive(Clone)]
pub struct ChunkedContentStore {
    codec: ChunkCodec,
    encoder: FileEncoder,
    transport: Arc<dyn ChunkTransport>,
    config: TransferConfig,
    stats: Arc<TransferStats>,
    upload_limit: Option<Arc<TokenBucket>>,
    download_limit: Option<Arc<TokenBucket>>,
}

impl ChunkedContentStore {
    /// A store encoding with `codec` and moving chunks with `transport`;
    /// fails if the chunker configuration is invalid.
    pub fn new(
        codec: ChunkCodec,
        transport: Arc<dyn ChunkTransport>,
        config: TransferConfig,
    ) -> Result<ChunkedContentStore, TransferError> {
        let encoder =
            FileEncoder::new(codec.clone(), config.pipeline).map_err(TransferError::Encode)?;
        Ok(ChunkedContentStore {
            codec,
            encoder,
            transport,
            config,
            stats: Arc::new(TransferStats::default()),
            upload_limit: config.upload_limit.map(|r| Arc::new(TokenBucket::new(r))),
            download_limit: config.download_limit.map(|r| Arc::new(TokenBucket::new(r))),
        })
    }

    /// What this store has moved so far.
    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    /// Uploads a file: see [`ContentStore::upload`].
    pub async fn upload_file(&self, content: ByteReader) -> Result<Uploaded, TransferError> {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel::<EncodedChunk>(self.config.max_uploads.max(1));
        let encoder = self.encoder.clone();
        // The pipeline's own content hash is keyed in encrypted workspaces;
        // the engine compares with its unkeyed scan hash, so compute that.
        let hash_plain = self.codec.is_encrypted();
        let encode = tokio::task::spawn_blocking(move || {
            let mut reader = bridge::ChannelReader::new(in_rx, hash_plain);
            let summary = encoder.encode(&mut reader, |chunk| out_tx.blocking_send(chunk));
            (summary, reader.plain_hash())
        });
        let (_, encoded, sent) = tokio::join!(
            bridge::pump(content, in_tx),
            encode,
            self.send_chunks(out_rx)
        );
        let (summary, plain) = encoded.map_err(|e| TransferError::Task(e.to_string()))?;
        // A failed upload stops the encoder through its sink; report the
        // cause, not the symptom.
        sent?;
        let summary = summary.map_err(|e| match e {
            EncodeError::Content(ContentError::Read { source, .. }) => TransferError::Read(source),
            EncodeError::Content(e) => TransferError::Encode(e),
            EncodeError::Sink(_) => TransferError::Task("upload stopped before the encoder".into()),
        })?;
        Ok(Uploaded {
            hash: plain.map_or(summary.content_hash, ContentHash),
            size: summary.size,
            chunks: summary.chunks,
        })
    }

    /// Sends the chunks the store lacks, as they come from the encoder.
    async fn send_chunks(&self, mut rx: mpsc::Receiver<EncodedChunk>) -> Result<(), TransferError> {
        let mut seen = HashSet::new();
        let mut uploads = JoinSet::new();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.bytes.len();
            let mut batch = vec![first];
            // Batch what is ready now; waiting for more would idle the link.
            while batch.len() < self.config.batch_chunks && bytes < self.config.batch_bytes {
                match rx.try_recv() {
                    Ok(c) => {
                        bytes += c.bytes.len();
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            // A chunk repeated within a file is sent once.
            batch.retain(|c| seen.insert(c.id));
            if batch.is_empty() {
                continue;
            }
            let (batch, small): (Vec<EncodedChunk>, Vec<EncodedChunk>) = batch
                .into_iter()
                .partition(|c| c.bytes.len() >= self.config.ask_min_bytes);
            let present = if batch.is_empty() {
                Vec::new()
            } else {
                let ids: Vec<ChunkId> = batch.iter().map(|c| c.id).collect();
                let present = self.transport.has_chunks(&ids).await.map_err(|source| {
                    TransferError::Transport {
                        doing: format!("asking about {} chunks", ids.len()),
                        source,
                    }
                })?;
                if present.len() != ids.len() {
                    return Err(TransferError::BadAnswer {
                        asked: ids.len(),
                        got: present.len(),
                    });
                }
                present
            };
            let unasked = small.into_iter().map(|c| (c, false));
            for (chunk, has) in batch.into_iter().zip(present).chain(unasked) {
                if has {
                    self.stats
                        .chunks_deduplicated
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while uploads.len() >= self.config.max_uploads.max(1) {
                    join_upload(uploads.join_next().await)?;
                }
                // Spawned, so uploads progress while this task batches.
                let (transport, stats) = (Arc::clone(&self.transport), Arc::clone(&self.stats));
                let limit = self.upload_limit.clone();
                uploads.spawn(async move {
                    let len = chunk.bytes.len() as u64;
                    if let Some(limit) = limit {
                        limit.take(len).await;
                    }
                    transport
                        .put_chunk(&chunk.id, Bytes::from(chunk.bytes))
                        .await
                        .map_err(|source| TransferError::Transport {
                            doing: format!("uploading chunk {}", chunk.id),
                            source,
                        })?;
                    stats.chunks_uploaded.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
                    Ok(())
                });
            }
        }
        while let Some(r) = uploads.join_next().await {
            join_upload(Some(r))?;
        }
        Ok(())
    }

    /// Writes the plaintext of `chunks` to `dest`, checking every chunk
    /// against its id and size, and the whole file against `expected` when
    /// given. Does not flush or shut `dest` down.
    pub async fn download_to<W>(
        &self,
        chunks: &[ChunkRef],
        dest: &mut W,
        expected: Option<ContentHash>,
    ) -> Result<(), TransferError>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        let mut hasher = blake3::Hasher::new();
        let mut fetched = futures::stream::iter(chunks.to_vec())
            .map(|c| AbortOnDrop(tokio::spawn(fetch_one(self.clone(), c))))
            .buffered(self.config.max_downloads.max(1));
        while let Some(plain) = fetched.try_next().await? {
            hasher.update(&plain);
            dest.write_all(&plain).await.map_err(TransferError::Write)?;
        }
        let actual = ContentHash(*hasher.finalize().as_bytes());
        match expected {
            Some(expected) if expected != actual => {
                Err(TransferError::HashMismatch { expected, actual })
            }
            _ => Ok(()),
        }
    }
}

fn join_upload(
    r: Option<Result<Result<(), TransferError>, tokio::task::JoinError>>,
) -> Result<(), TransferError> {
    match r {
        None => Ok(()),
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(TransferError::Task(e.to_string())),
    }
}

/// Fetches and decodes one chunk.
async fn fetch_one(store: ChunkedContentStore, chunk: ChunkRef) -> Result<Bytes, TransferError> {
    let encoded = store
        .transport
        .get_chunk(&chunk.id)
        .await
        .map_err(|source| TransferError::Transport {
            doing: format!("downloading chunk {}", chunk.id),
            source,
        })?;
    if let Some(limit) = &store.download_limit {
        limit.take(encoded.len() as u64).await;
    }
    store
        .stats
        .chunks_downloaded
        .fetch_add(1, Ordering::Relaxed);
    store
        .stats
        .bytes_downloaded
        .fetch_add(encoded.len() as u64, Ordering::Relaxed);
    let codec = store.codec.clone();
    let plain = tokio::task::spawn_blocking(move || codec.decode(&chunk.id, &encoded))
        .await
        .map_err(|e| TransferError::Task(e.to_string()))?
        .map_err(|source| TransferError::Damaged {
            id: chunk.id,
            source,
        })?;
    if plain.len() != chunk.size as usize {
        return Err(TransferError::SizeMismatch {
            id: chunk.id,
            declared: chunk.size,
            actual: plain.len(),
        });
    }
    Ok(Bytes::from(plain))
}

/// A spawned task that is cancelled if its result is no longer wanted (a
/// download that failed on an earlier chunk).
struct AbortOnDrop<T>(JoinHandle<Result<T, TransferError>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, TransferError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|e| Err(TransferError::Task(e.to_string()))))
    }
}

#[async_trait]
impl ContentStore for ChunkedContentStore {
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, ProtoError> {
        self.upload_file(content).await.map_err(|e| e.to_proto())
    }

    /// Checks each chunk; the engine checks the whole file on disk.
    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), ProtoError> {
        self.download_to(chunks, dest, None)
            .await
            .map_err(|e| e.to_proto())
    }
}
