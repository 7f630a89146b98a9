//! The engine's [`ContentStore`]: files cut, compressed (and maybe
//! encrypted) by the content pipeline, and the chunks moved by a
//! [`ChunkTransport`].
//!
//! Object stores charge per request, not per byte, so chunks travel in
//! packs: an upload stages the chunks the store lacks in a shared open pack
//! ([`pack`]) that is written in the background once it reaches a few MiB,
//! and [`ContentStore::flush`] (called by the engine before it commits)
//! writes what is left and waits. An upload journal ([`journal`]) records
//! each pack's chunks before the pack is written, so an upload interrupted
//! by a crash resumes without sending them again ([`upload`] has the order
//! in which a chunk's existing copies are looked for). Downloads take each
//! chunk from a read-ahead of whole pack ranges when the engine announced
//! them ([`readahead`]), else fetch it alone ([`download`]); every chunk is
//! decoded and checked against its id.
//!
//! Memory stays bounded whatever the file sizes: bounded channels between
//! the reader, the encoder and the packer, a bounded number of packs in
//! flight, and a byte budget for the read-ahead.

pub mod bases;
mod bridge;
mod download;
pub mod journal;
mod limit;
mod pack;
pub(crate) mod readahead;
mod reuse;
mod transport;
mod upload;
pub mod watchdog;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stacksync_content::{ChunkCodec, ContentError, FileEncoder, PipelineConfig};
use stacksync_engine::io::Uploaded;
use stacksync_engine::{ByteReader, ByteWriter, ContentStore};
use stacksync_proto::{ChunkId, ChunkRef, ContentHash, Error as ProtoError, ErrorKind, PackSpan};

pub use bases::BaseCache;
pub use journal::{JournalError, UploadJournal};
pub use limit::TokenBucket;
pub use transport::{BlobTransport, ChunkTransport};
pub use watchdog::{
    Activity, Deadlines, InFlight, WatchedConnection, WatchedTransport, woken_is_progress,
};

use pack::{Packer, PackerConfig};
use readahead::{RangeLimits, ReadAhead};

/// How a [`ChunkedContentStore`] cuts files and how much it does at once.
#[derive(Debug, Clone, Copy)]
pub struct TransferConfig {
    /// Chunk sizes and encoder threads.
    pub pipeline: PipelineConfig,
    /// Most chunk ids looked up (journal, service) in one batch.
    pub batch_chunks: usize,
    /// Most encoded bytes gathered into one batch.
    pub batch_bytes: usize,
    /// Pack objects written at once.
    pub max_uploads: usize,
    /// Chunk and range reads in flight at once (per download, and for the
    /// read-ahead).
    pub max_downloads: usize,
    /// Encoded chunks smaller than this are packed without asking the
    /// service whether it stores them already: the question costs about
    /// what storing a small chunk in a pack does, and a small file is a
    /// single small chunk. 0 asks about every chunk.
    pub ask_min_bytes: usize,
    /// Size at which a pack is sealed and written (at most
    /// [`PackSpan::MAX_PACK_BYTES`]); a chunk at least this large goes
    /// alone in its own pack.
    pub pack_bytes: usize,
    /// Most bytes read ahead for the downloads the engine announced.
    pub read_ahead_bytes: u64,
    /// Largest gap between two chunks of a pack read through in one range.
    pub range_gap_bytes: u64,
    /// Largest range read at once.
    pub max_range_bytes: u64,
    /// Upload limit in (encoded) bytes per second; `None` for none.
    pub upload_limit: Option<u64>,
    /// Download limit in (encoded) bytes per second; `None` for none.
    pub download_limit: Option<u64>,
    /// Budget of the base cache ([`bases`]) in encoded bytes, where the
    /// client opens one; 0 keeps none (every chunk is then sent whole).
    pub base_cache_bytes: u64,
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
            pack_bytes: 4 * 1024 * 1024,
            read_ahead_bytes: 64 * 1024 * 1024,
            range_gap_bytes: 256 * 1024,
            max_range_bytes: 16 * 1024 * 1024,
            upload_limit: None,
            download_limit: None,
            base_cache_bytes: bases::DEFAULT_BASE_CACHE_BYTES,
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
        /// What was being done, naming the chunk or pack.
        doing: String,
        /// The transport's error.
        #[source]
        source: ProtoError,
    },
    /// The transport answered a question about `asked` ids with `got`
    /// answers.
    #[error("asked about {asked} ids, the transport answered {got}")]
    BadAnswer {
        /// Ids asked about.
        asked: usize,
        /// Answers received.
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

    /// Fails with [`TransferError::BadAnswer`] unless the transport gave
    /// one answer per id asked about.
    fn check_answers(asked: usize, got: usize) -> Result<(), TransferError> {
        if asked == got {
            Ok(())
        } else {
            Err(TransferError::BadAnswer { asked, got })
        }
    }
}

/// Counters of what a store moved, for status and tests.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Chunks written to the store (inside packs).
    pub chunks_uploaded: AtomicU64,
    /// Encoded bytes written to the store.
    pub bytes_uploaded: AtomicU64,
    /// Pack objects written.
    pub packs_uploaded: AtomicU64,
    /// Chunks not written because the store had them (or this store had
    /// staged them already for another file).
    pub chunks_deduplicated: AtomicU64,
    /// Chunks fetched.
    pub chunks_downloaded: AtomicU64,
    /// Encoded bytes fetched.
    pub bytes_downloaded: AtomicU64,
    /// Chunks taken from the local copy of the file a download replaced.
    pub chunks_reused: AtomicU64,
    /// Plaintext bytes taken from such local copies.
    pub bytes_reused: AtomicU64,
    /// Chunks sent as deltas against a chunk of the version they replace.
    pub deltas_uploaded: AtomicU64,
    /// Chunks read as deltas (each applied to its base).
    pub deltas_downloaded: AtomicU64,
}

/// The engine's [`ContentStore`] over the content pipeline and a
/// [`ChunkTransport`]. Clones share their packs, read-ahead and counters.
#[derive(Clone)]
pub struct ChunkedContentStore {
    codec: ChunkCodec,
    encoder: FileEncoder,
    transport: Arc<dyn ChunkTransport>,
    config: TransferConfig,
    stats: Arc<TransferStats>,
    download_limit: Option<Arc<TokenBucket>>,
    journal: Option<UploadJournal>,
    packer: Arc<Packer>,
    readahead: Arc<ReadAhead>,
    /// Journaled packs checked for existence in this process.
    checked_packs: Arc<Mutex<HashMap<ChunkId, bool>>>,
    /// Where uploads, downloads and flushes are listed while in flight,
    /// for the stall watchdog.
    activity: Activity,
    /// Chunks kept to send (and read) deltas against, if any.
    bases: Option<Arc<BaseCache>>,
}

impl ChunkedContentStore {
    /// A store encoding with `codec` and moving chunks with `transport`,
    /// without an upload journal (an upload interrupted by a crash sends
    /// its packs again); fails if the chunker configuration is invalid.
    pub fn new(
        codec: ChunkCodec,
        transport: Arc<dyn ChunkTransport>,
        config: TransferConfig,
    ) -> Result<ChunkedContentStore, TransferError> {
        Self::with_journal(codec, transport, config, None)
    }

    /// A store as [`ChunkedContentStore::new`] that records the chunks of
    /// each pack in `journal` before writing it, and reuses journaled
    /// packs that exist.
    pub fn with_journal(
        codec: ChunkCodec,
        transport: Arc<dyn ChunkTransport>,
        config: TransferConfig,
        journal: Option<UploadJournal>,
    ) -> Result<ChunkedContentStore, TransferError> {
        Self::counting_into(codec, transport, config, journal, Arc::default())
    }

    /// [`ChunkedContentStore::with_journal`] counting what it moves in
    /// `stats` (which the stores of a client's several workspaces share).
    pub fn counting_into(
        codec: ChunkCodec,
        transport: Arc<dyn ChunkTransport>,
        config: TransferConfig,
        journal: Option<UploadJournal>,
        stats: Arc<TransferStats>,
    ) -> Result<ChunkedContentStore, TransferError> {
        let encoder =
            FileEncoder::new(codec.clone(), config.pipeline).map_err(TransferError::Encode)?;
        let upload_limit = config.upload_limit.map(|r| Arc::new(TokenBucket::new(r)));
        let download_limit = config.download_limit.map(|r| Arc::new(TokenBucket::new(r)));
        let packer = Packer::new(PackerConfig {
            transport: Arc::clone(&transport),
            journal: journal.clone(),
            stats: Arc::clone(&stats),
            limit: upload_limit,
            target: config.pack_bytes,
            max_uploads: config.max_uploads,
        });
        let readahead = ReadAhead::new(
            Arc::clone(&transport),
            download_limit.clone(),
            RangeLimits {
                gap: config.range_gap_bytes,
                max_range: config.max_range_bytes.min(PackSpan::MAX_PACK_BYTES),
                budget: config.read_ahead_bytes,
            },
            config.max_downloads,
        );
        Ok(ChunkedContentStore {
            codec,
            encoder,
            transport,
            config,
            stats,
            download_limit,
            journal,
            packer: Arc::new(packer),
            readahead: Arc::new(readahead),
            checked_packs: Arc::default(),
            activity: Activity::default(),
            bases: None,
        })
    }

    /// Keeps recently synced chunks in `cache`, and sends a changed chunk
    /// as a delta against the previous version's when the cache holds it
    /// (see [`bases`]). Without a cache every chunk is sent whole.
    pub fn with_base_cache(mut self, cache: Arc<BaseCache>) -> ChunkedContentStore {
        self.bases = Some(cache);
        self
    }

    /// Lists this store's uploads, downloads and flushes in `activity`
    /// while they are in flight (for the stall watchdog).
    pub fn watched_by(mut self, activity: Activity) -> ChunkedContentStore {
        self.activity = activity;
        self
    }

    /// What this store has moved so far.
    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    /// Writes every pack staged so far and waits for them: see
    /// [`ContentStore::flush`].
    pub async fn flush(&self) -> Result<(), TransferError> {
        let _in_flight = self.activity.begin("writing the staged packs");
        self.packer.flush().await
    }

    /// Starts reading ahead the packed chunks of `chunks`: see
    /// [`ContentStore::expect_downloads`].
    pub fn expect_downloads(&self, chunks: &[ChunkRef]) {
        self.readahead.expect(chunks);
    }
}

#[async_trait]
impl ContentStore for ChunkedContentStore {
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, ProtoError> {
        let _in_flight = self.activity.begin("uploading a file");
        self.upload_file(content, &[])
            .await
            .map_err(|e| e.to_proto())
    }

    /// Sends changed chunks as deltas where the base cache allows.
    async fn upload_changing(
        &self,
        content: ByteReader,
        previous: &[ChunkRef],
    ) -> Result<Uploaded, ProtoError> {
        let _in_flight = self.activity.begin("uploading a changed file");
        self.upload_file(content, previous)
            .await
            .map_err(|e| e.to_proto())
    }

    async fn flush(&self) -> Result<(), ProtoError> {
        ChunkedContentStore::flush(self)
            .await
            .map_err(|e| e.to_proto())
    }

    fn expect_downloads(&self, chunks: &[ChunkRef]) {
        ChunkedContentStore::expect_downloads(self, chunks);
    }

    /// Checks each chunk; the engine checks the whole file on disk.
    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), ProtoError> {
        let _in_flight = self
            .activity
            .begin(format!("downloading a file of {} chunk(s)", chunks.len()));
        self.download_to(chunks, dest, None)
            .await
            .map_err(|e| e.to_proto())
    }

    /// Takes what the local copy holds from there (see [`reuse`]).
    async fn download_reusing(
        &self,
        chunks: &[ChunkRef],
        dest: &mut ByteWriter,
        local: ByteReader,
    ) -> Result<(), ProtoError> {
        let _in_flight = self.activity.begin(format!(
            "downloading a file of {} chunk(s) over its local copy",
            chunks.len()
        ));
        self.download_reusing_to(chunks, dest, local)
            .await
            .map_err(|e| e.to_proto())
    }
}
