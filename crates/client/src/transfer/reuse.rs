//! Downloads that reuse the local copy: when a new version of a file
//! replaces one still on disk, most of its chunks are usually there already
//! (content-defined chunking keeps the chunks an edit did not touch). The
//! local copy is cut the way uploads are cut, each piece named the way
//! chunks are named (keyed in encrypted workspaces), and every wanted chunk
//! found there is taken from the local bytes; only the others are fetched,
//! read ahead in coalesced ranges of their packs.
//!
//! A chunk taken locally is the chunk asked for: its id is the hash of its
//! bytes, computed when cutting, and computed again when it is read back to
//! be written (the file may change in between; a chunk that no longer
//! matches is fetched instead). What the local copy holds only decides
//! where bytes come from, never what is written.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_content::{ChunkCodec, ChunkerConfig};
use stacksync_engine::ByteReader;
use stacksync_proto::{ChunkId, ChunkRef, PackSpan};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::bases;
use super::download::{AbortOnDrop, fetch_one, with_offsets};
use super::readahead::{RangeLimits, ReadAhead};
use super::{ChunkedContentStore, TransferError, bridge};

/// Where the wanted chunks found in a local copy are.
pub(super) enum Found {
    /// In a file on disk, at these offsets; read back when written.
    File {
        file: Arc<Mutex<std::fs::File>>,
        at: HashMap<ChunkId, (u64, u32)>,
    },
    /// Read from a stream and kept (up to a byte budget).
    Memory(HashMap<ChunkId, Bytes>),
}

impl Found {
    fn has(&self, id: &ChunkId) -> bool {
        match self {
            Found::File { at, .. } => at.contains_key(id),
            Found::Memory(kept) => kept.contains_key(id),
        }
    }
}

/// Cuts `source` with `chunker` where `codec` cuts (keyed boundaries in
/// encrypted workspaces), naming pieces with `codec`, and calls
/// `keep` with each piece whose id and size are wanted (any size for an id
/// wanted with `None`: a delta's base, whose size the chunk list does not
/// give), until it says stop.
fn cut(
    source: impl Read,
    chunker: ChunkerConfig,
    codec: &ChunkCodec,
    wanted: &HashMap<ChunkId, Option<u32>>,
    mut keep: impl FnMut(ChunkId, u64, Vec<u8>) -> bool,
) -> Result<(), stacksync_content::ContentError> {
    for piece in codec.chunk_reader(source, chunker)? {
        let piece = piece?;
        let id = codec.chunk_id(&piece.data);
        let size = piece.data.len() as u32;
        if wanted.get(&id).is_some_and(|w| w.is_none_or(|w| w == size))
            && !keep(id, piece.offset, piece.data)
        {
            break;
        }
    }
    Ok(())
}

impl ChunkedContentStore {
    /// Writes the plaintext of `chunks` to `dest` as
    /// [`ChunkedContentStore::download_to`] does, taking every chunk that
    /// `local` holds from there. A local copy that cannot be read is only
    /// a lost saving: everything is then fetched.
    pub async fn download_reusing_to<W>(
        &self,
        chunks: &[ChunkRef],
        dest: &mut W,
        local: ByteReader,
    ) -> Result<(), TransferError>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        // A delta's base is usually the chunk the local copy has at the
        // same place: wanted too.
        let bases = chunks.iter().filter_map(|c| c.span.and_then(|s| s.base));
        let wanted: HashMap<ChunkId, Option<u32>> = bases
            .map(|b| (b, None))
            .chain(chunks.iter().map(|c| (c.id, Some(c.size))))
            .collect();
        let found = match self.find_local(local, wanted).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("local copy not reused: {e}");
                Found::Memory(HashMap::new())
            }
        };
        // The chunks still to fetch, read ahead by a read-ahead of this
        // download's own (the store's serves the window's other files).
        let missing: Vec<ChunkRef> = chunks
            .iter()
            .filter(|c| !found.has(&c.id))
            .cloned()
            .collect();
        let own = (!missing.is_empty()).then(|| {
            let ahead = ReadAhead::new(
                Arc::clone(&self.transport),
                self.download_limit.clone(),
                RangeLimits {
                    gap: self.config.range_gap_bytes,
                    max_range: self.config.max_range_bytes.min(PackSpan::MAX_PACK_BYTES),
                    budget: self.config.read_ahead_bytes,
                },
                self.config.max_downloads,
            );
            ahead.expect(&missing);
            Arc::new(ahead)
        });
        let found = Arc::new(found);
        let mut written = futures::stream::iter(with_offsets(chunks))
            .map(|(c, at)| {
                let store = self.clone();
                let found = Arc::clone(&found);
                let own = own.clone();
                let keep = bases::worth_keeping(at, c.size);
                AbortOnDrop(tokio::spawn(async move {
                    match take_local(&store, &found, &c).await? {
                        Some(plain) => Ok(plain),
                        None => fetch_one(store, c, own, keep, Some(found)).await,
                    }
                }))
            })
            .buffered(self.config.max_downloads.max(1));
        while let Some(plain) = written.try_next().await? {
            dest.write_all(&plain).await.map_err(TransferError::Write)?;
        }
        Ok(())
    }

    /// Cuts the local copy on a blocking thread and notes where each
    /// wanted chunk is.
    async fn find_local(
        &self,
        local: ByteReader,
        wanted: HashMap<ChunkId, Option<u32>>,
    ) -> Result<Found, TransferError> {
        let codec = self.codec.clone();
        let chunker = self.config.pipeline.chunker;
        let task = |e: tokio::task::JoinError| TransferError::Task(e.to_string());
        match local.into_file() {
            Ok(file) => {
                let cut_file = move || {
                    let mut at = HashMap::new();
                    cut(&file, chunker, &codec, &wanted, |id, offset, data| {
                        at.insert(id, (offset, data.len() as u32));
                        true
                    })?;
                    Ok(Found::File {
                        file: Arc::new(Mutex::new(file)),
                        at,
                    })
                };
                tokio::task::spawn_blocking(cut_file)
                    .await
                    .map_err(task)?
                    .map_err(TransferError::Encode)
            }
            Err(stream) => {
                // Kept in memory: as much as the read-ahead may hold.
                let budget = self.config.read_ahead_bytes;
                let (tx, rx) = mpsc::channel(4);
                let cut_stream = tokio::task::spawn_blocking(move || {
                    let mut kept = HashMap::new();
                    let mut held = 0u64;
                    cut(
                        bridge::ChannelReader::new(rx),
                        chunker,
                        &codec,
                        &wanted,
                        |id, _, data| {
                            held += data.len() as u64;
                            if held > budget {
                                return false;
                            }
                            kept.insert(id, Bytes::from(data));
                            true
                        },
                    )?;
                    Ok(Found::Memory(kept))
                });
                let (_, found) = tokio::join!(bridge::pump(stream, tx), cut_stream);
                found.map_err(task)?.map_err(TransferError::Encode)
            }
        }
    }
}

/// The plaintext of `chunk` from the local copy, checked against its id;
/// `None` if it is not there (any more).
pub(super) async fn take_local(
    store: &ChunkedContentStore,
    found: &Arc<Found>,
    chunk: &ChunkRef,
) -> Result<Option<Bytes>, TransferError> {
    let plain = match &**found {
        Found::Memory(kept) => kept.get(&chunk.id).cloned(),
        Found::File { file, at } => {
            let Some(&(offset, len)) = at.get(&chunk.id) else {
                return Ok(None);
            };
            let file = Arc::clone(file);
            let codec = store.codec.clone();
            let id = chunk.id;
            tokio::task::spawn_blocking(move || read_back(&file, offset, len, &codec, &id))
                .await
                .map_err(|e| TransferError::Task(e.to_string()))?
        }
    };
    if let Some(plain) = &plain {
        store.stats.chunks_reused.fetch_add(1, Ordering::Relaxed);
        store
            .stats
            .bytes_reused
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
    }
    Ok(plain)
}

/// Reads `len` bytes at `offset` and returns them if they still hash to
/// `id` (the file may have changed since it was cut).
fn read_back(
    file: &Mutex<std::fs::File>,
    offset: u64,
    len: u32,
    codec: &ChunkCodec,
    id: &ChunkId,
) -> Option<Bytes> {
    let mut data = vec![0u8; len as usize];
    {
        // One position for all read-backs: a seek and its read go together.
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut data).ok()?;
    }
    (codec.chunk_id(&data) == *id).then(|| Bytes::from(data))
}
