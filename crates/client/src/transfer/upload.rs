//! Upload: the engine's reader is pumped into the encoder's blocking
//! threads; encoded chunks come back to this task in batches, and each
//! chunk not stored yet is staged in a pack ([`super::pack`]).
//!
//! Where an encoded chunk may already be, asked in this order (cheapest
//! first): staged or stored by this store in this process; the upload
//! journal (a pack written before a crash, checked to exist once per pack
//! and process); for chunks of at least `ask_min_bytes`, the service's
//! chunk index (`locate_chunks`, batched). A small chunk is not asked
//! about: the question costs about what storing it in a pack does.
//!
//! A chunk that has to be sent, of a file that had a previous version, is
//! sent as a delta (`stacksync_content::delta`) against the previous
//! version's chunk at the same offset of the file (or that chunk's own
//! base, as bases are stored whole) when the base cache ([`super::bases`])
//! holds that chunk and the delta pays (`delta::delta_pays`). Chunks placed
//! whole are kept in the base cache for the next edit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use std::sync::Arc;

use stacksync_content::{ChunkCodec, ContentError, EncodeError, EncodedChunk, delta};
use stacksync_engine::ByteReader;
use stacksync_engine::io::Uploaded;
use stacksync_proto::{ChunkId, ChunkRef, ContentHash};
use tokio::sync::mpsc;

use super::bases::{self, BaseCache};
use super::pack::Staged;
use super::{ChunkedContentStore, TransferError, bridge};

impl ChunkedContentStore {
    /// Uploads a file: see [`stacksync_engine::ContentStore::upload`]. The
    /// chunks may only be staged: [`ChunkedContentStore::flush`] makes them
    /// durable.
    pub async fn upload_file(
        &self,
        content: ByteReader,
        previous: &[ChunkRef],
    ) -> Result<Uploaded, TransferError> {
        let (out_tx, out_rx) = mpsc::channel::<EncodedChunk>(self.config.max_uploads.max(1));
        let encoder = self.encoder.clone();
        // The pipeline's own content hash is keyed in encrypted workspaces;
        // the engine compares with its unkeyed scan hash, so compute that.
        let hash_plain = self.codec.is_encrypted();
        let encode_from = move |reader: Box<dyn std::io::Read + Send>| {
            let mut reader = bridge::PlainHashing::new(reader, hash_plain);
            let summary = encoder.encode(&mut reader, |chunk| out_tx.blocking_send(chunk));
            (summary, reader.plain_hash())
        };
        let (encoded, placed) = match content.into_file() {
            // A file on disk is read on the encoder's own thread: no hop
            // through the async runtime for each piece (a first sync of
            // tens of thousands of files once hung in such a hop).
            Ok(file) => {
                let encode = tokio::task::spawn_blocking(move || encode_from(Box::new(file)));
                tokio::join!(self.encoding(encode), self.place_chunks(out_rx, previous))
            }
            Err(content) => {
                let (in_tx, in_rx) = mpsc::channel(4);
                let encode = tokio::task::spawn_blocking(move || {
                    encode_from(Box::new(bridge::ChannelReader::new(in_rx)))
                });
                let (_, encoded, placed) = tokio::join!(
                    bridge::pump(content, in_tx),
                    self.encoding(encode),
                    self.place_chunks(out_rx, previous)
                );
                (encoded, placed)
            }
        };
        let (summary, plain) = encoded.map_err(|e| TransferError::Task(e.to_string()))?;
        // A failed upload stops the encoder through its sink; report the
        // cause, not the symptom.
        let placed = placed?;
        let summary = summary.map_err(|e| match e {
            EncodeError::Content(ContentError::Read { source, .. }) => TransferError::Read(source),
            EncodeError::Content(e) => TransferError::Encode(e),
            EncodeError::Sink(_) => TransferError::Task("upload stopped before the encoder".into()),
        })?;
        let chunks = summary
            .chunks
            .iter()
            .map(|c| {
                placed.get(&c.id).copied().ok_or_else(|| {
                    TransferError::Task(format!("chunk {} was encoded but never placed", c.id))
                })
            })
            .collect::<Result<Vec<ChunkRef>, _>>()?;
        Ok(Uploaded {
            hash: plain.map_or(summary.content_hash, ContentHash),
            size: summary.size,
            chunks,
        })
    }

    /// Waits for the encoder's thread, listed as in flight meanwhile (a
    /// stall report then tells an encoder that never ran or never ended
    /// from a wait elsewhere).
    async fn encoding<T>(
        &self,
        encode: tokio::task::JoinHandle<T>,
    ) -> Result<T, tokio::task::JoinError> {
        let _in_flight = self.activity.begin("encoding a file (blocking thread)");
        encode.await
    }

    /// Finds or stages every chunk coming from the encoder; returns where
    /// each is.
    async fn place_chunks(
        &self,
        mut rx: mpsc::Receiver<EncodedChunk>,
        previous: &[ChunkRef],
    ) -> Result<HashMap<ChunkId, ChunkRef>, TransferError> {
        let previous = Previous::new(previous);
        let mut placed: HashMap<ChunkId, ChunkRef> = HashMap::new();
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
            // A chunk repeated within a file is placed once.
            let mut seen = HashSet::new();
            batch.retain(|c| !placed.contains_key(&c.id) && seen.insert(c.id));
            self.keep_bases(&batch).await;
            let found = |placed: &mut HashMap<ChunkId, ChunkRef>, c: ChunkRef| {
                self.stats
                    .chunks_deduplicated
                    .fetch_add(1, Ordering::Relaxed);
                placed.insert(c.id, c);
            };
            batch.retain(|c| match self.packer.known(&c.id) {
                Some(known) => {
                    found(&mut placed, known);
                    false
                }
                None => true,
            });
            for c in self.journaled(&batch).await? {
                self.packer.remember(c);
                found(&mut placed, c);
            }
            batch.retain(|c| !placed.contains_key(&c.id));
            for c in self.located(&batch).await? {
                self.packer.remember(c);
                found(&mut placed, c);
            }
            for chunk in batch {
                if placed.contains_key(&chunk.id) {
                    continue;
                }
                let (chunk, base) = self.as_delta(chunk, &previous).await?;
                let staging = self
                    .activity
                    .begin("staging a chunk (waits for a slot to write a pack)");
                let staged = self.packer.stage(chunk, base).await?;
                drop(staging);
                match staged {
                    Staged::New(c) => {
                        placed.insert(c.id, c);
                    }
                    // Staged meanwhile by a concurrent upload.
                    Staged::Known(c) => found(&mut placed, c),
                }
            }
        }
        Ok(placed)
    }

    /// The chunks of `batch` the upload journal places in a pack that
    /// exists. The journal is an optimisation: its failures are logged and
    /// taken as "not journaled".
    async fn journaled(&self, batch: &[EncodedChunk]) -> Result<Vec<ChunkRef>, TransferError> {
        let Some(journal) = &self.journal else {
            return Ok(Vec::new());
        };
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ChunkId> = batch.iter().map(|c| c.id).collect();
        let rows = match journal.lookup(&ids).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("upload journal: {e}");
                return Ok(Vec::new());
            }
        };
        let sizes: HashMap<ChunkId, (u32, usize)> = batch
            .iter()
            .map(|c| (c.id, (c.plaintext_len, c.bytes.len())))
            .collect();
        // Only rows that describe this very encoding of the chunk.
        let rows: Vec<ChunkRef> = rows
            .into_values()
            .filter(|r| {
                sizes.get(&r.id).is_some_and(|&(size, len)| {
                    r.size == size && r.span.is_some_and(|s| s.len as usize == len)
                })
            })
            .collect();
        let packs: Vec<ChunkId> = rows.iter().filter_map(|r| r.span.map(|s| s.pack)).collect();
        let present = self.packs_present(&packs).await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.span.is_some_and(|s| present.contains(&s.pack)))
            .collect())
    }

    /// Which of `packs` exist: each asked about once per process; the
    /// journal rows of a missing one are deleted.
    async fn packs_present(&self, packs: &[ChunkId]) -> Result<HashSet<ChunkId>, TransferError> {
        let unknown: Vec<ChunkId> = {
            let checked = self.checked_packs.lock().unwrap_or_else(|p| p.into_inner());
            let mut unknown: Vec<ChunkId> = packs
                .iter()
                .filter(|p| !checked.contains_key(*p))
                .copied()
                .collect();
            unknown.sort();
            unknown.dedup();
            unknown
        };
        if !unknown.is_empty() {
            let exists = self
                .transport
                .has_chunks(&unknown)
                .await
                .map_err(|source| TransferError::Transport {
                    doing: format!("checking {} journaled pack(s)", unknown.len()),
                    source,
                })?;
            TransferError::check_answers(unknown.len(), exists.len())?;
            for (pack, exists) in unknown.iter().zip(&exists) {
                if !exists
                    && let Some(journal) = &self.journal
                    && let Err(e) = journal.forget_pack(pack).await
                {
                    tracing::warn!("upload journal: {e}");
                }
            }
            let mut checked = self.checked_packs.lock().unwrap_or_else(|p| p.into_inner());
            checked.extend(unknown.into_iter().zip(exists));
        }
        let checked = self.checked_packs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(packs
            .iter()
            .filter(|p| checked.get(*p).copied().unwrap_or(false))
            .copied()
            .collect())
    }

    /// The chunks of `batch` large enough to ask about that the service
    /// already stores, where it stores them.
    async fn located(&self, batch: &[EncodedChunk]) -> Result<Vec<ChunkRef>, TransferError> {
        let asked: Vec<&EncodedChunk> = batch
            .iter()
            .filter(|c| c.bytes.len() >= self.config.ask_min_bytes)
            .collect();
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ChunkId> = asked.iter().map(|c| c.id).collect();
        let answers = self.transport.locate_chunks(&ids).await.map_err(|source| {
            TransferError::Transport {
                doing: format!("asking where {} chunk(s) are stored", ids.len()),
                source,
            }
        })?;
        TransferError::check_answers(ids.len(), answers.len())?;
        Ok(asked
            .into_iter()
            .zip(answers)
            .filter_map(|(c, found)| {
                // A chunk id has one size; an answer naming another chunk or
                // size is not used (sending the chunk is always safe).
                found.filter(|f| f.id == c.id && f.size == c.plaintext_len)
            })
            .collect())
    }

    /// Keeps the chunks of `batch` worth it in the base cache, so the next
    /// edit of their file can be sent as a delta against them. A chunk
    /// that ends up placed as a delta (found so in the index) is useless
    /// as a base but harmless: it is only kept, never offered as one.
    async fn keep_bases(&self, batch: &[EncodedChunk]) {
        let Some(cache) = &self.bases else { return };
        let kept: Vec<(ChunkId, Vec<u8>)> = batch
            .iter()
            .filter(|c| bases::worth_keeping(c.offset, c.plaintext_len) && !cache.contains(&c.id))
            .map(|c| (c.id, c.bytes.clone()))
            .collect();
        if kept.is_empty() {
            return;
        }
        let cache = Arc::clone(cache);
        let _ = tokio::task::spawn_blocking(move || {
            for (id, bytes) in kept {
                cache.put(&id, &bytes);
            }
        })
        .await;
    }

    /// `chunk` as a delta against its base, if the previous version had a
    /// chunk at its offset, the base cache holds that chunk's base, and
    /// the delta pays; else `chunk` as it is. Any failure (a damaged cache
    /// entry, an encoder error) sends the chunk whole.
    async fn as_delta(
        &self,
        chunk: EncodedChunk,
        previous: &Previous<'_>,
    ) -> Result<(EncodedChunk, Option<ChunkId>), TransferError> {
        let Some(cache) = &self.bases else {
            return Ok((chunk, None));
        };
        let base = match previous.at(chunk.offset) {
            Some(prev) if chunk.plaintext_len >= bases::MIN_BASE_CHUNK => {
                prev.span.and_then(|s| s.base).unwrap_or(prev.id)
            }
            _ => return Ok((chunk, None)),
        };
        if base == chunk.id || !cache.contains(&base) {
            return Ok((chunk, None));
        }
        let (cache, codec) = (Arc::clone(cache), self.codec.clone());
        let _in_flight = self.activity.begin("encoding a delta (blocking thread)");
        let made = tokio::task::spawn_blocking(move || {
            let delta = encode_against(&cache, &codec, base, &chunk);
            (chunk, delta)
        })
        .await
        .map_err(|e| TransferError::Task(format!("encoding a delta: {e}")))?;
        Ok(match made {
            (chunk, Some(delta)) => {
                self.stats.deltas_uploaded.fetch_add(1, Ordering::Relaxed);
                let patch = EncodedChunk {
                    bytes: delta,
                    compressed: false,
                    ..chunk
                };
                (patch, Some(base))
            }
            (chunk, None) => (chunk, None),
        })
    }
}

/// The delta object of `chunk` against the cached chunk `base`, if the
/// cache's copy checks out and the delta pays.
fn encode_against(
    cache: &BaseCache,
    codec: &ChunkCodec,
    base: ChunkId,
    chunk: &EncodedChunk,
) -> Option<Vec<u8>> {
    let stored = cache.get(&base)?;
    let base_plain = match codec.decode(&base, &stored) {
        Ok(plain) => plain,
        Err(e) => {
            tracing::debug!("base cache: {base} fails its check: {e}");
            cache.forget(&base);
            return None;
        }
    };
    // A base written under an earlier key generation has another id under
    // the current one, which a delta written now would name: no stored
    // chunk has that id, so send the full chunk instead.
    if codec.chunk_id(&base_plain) != base {
        return None;
    }
    let target = codec.decode(&chunk.id, &chunk.bytes).ok()?;
    let delta = delta::encode_delta(codec, &base_plain, &target).ok()?;
    delta::delta_pays(delta.bytes.len(), chunk.bytes.len()).then_some(delta.bytes)
}

/// The chunks of the version a file replaces, by where each starts.
pub(super) struct Previous<'a> {
    starts: Vec<u64>,
    chunks: &'a [ChunkRef],
}

impl<'a> Previous<'a> {
    fn new(chunks: &'a [ChunkRef]) -> Previous<'a> {
        let mut at = 0u64;
        let starts = chunks
            .iter()
            .map(|c| {
                let start = at;
                at += u64::from(c.size);
                start
            })
            .collect();
        Previous { starts, chunks }
    }

    /// The chunk holding byte `offset`, if any.
    fn at(&self, offset: u64) -> Option<&'a ChunkRef> {
        let k = self
            .starts
            .partition_point(|&s| s <= offset)
            .checked_sub(1)?;
        let c = &self.chunks[k];
        (offset < self.starts[k] + u64::from(c.size)).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_chunk_at_an_offset_is_the_one_holding_it() {
        let chunks: Vec<ChunkRef> = [10u32, 5, 20]
            .iter()
            .enumerate()
            .map(|(k, &size)| ChunkRef::whole(ChunkId([k as u8; 32]), size))
            .collect();
        let previous = Previous::new(&chunks);
        let at = |offset| previous.at(offset).map(|c| c.id.0[0]);
        assert_eq!(at(0), Some(0));
        assert_eq!(at(9), Some(0));
        assert_eq!(at(10), Some(1));
        assert_eq!(at(14), Some(1));
        assert_eq!(at(15), Some(2));
        assert_eq!(at(34), Some(2));
        assert_eq!(at(35), None, "past the end of the old version");
        assert_eq!(Previous::new(&[]).at(0).map(|c| c.id), None);
    }
}
