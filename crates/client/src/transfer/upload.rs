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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use stacksync_content::{ContentError, EncodeError, EncodedChunk};
use stacksync_engine::ByteReader;
use stacksync_engine::io::Uploaded;
use stacksync_proto::{ChunkId, ChunkRef, ContentHash};
use tokio::sync::mpsc;

use super::pack::Staged;
use super::{ChunkedContentStore, TransferError, bridge};

impl ChunkedContentStore {
    /// Uploads a file: see [`stacksync_engine::ContentStore::upload`]. The
    /// chunks may only be staged: [`ChunkedContentStore::flush`] makes them
    /// durable.
    pub async fn upload_file(&self, content: ByteReader) -> Result<Uploaded, TransferError> {
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
                tokio::join!(self.encoding(encode), self.place_chunks(out_rx))
            }
            Err(content) => {
                let (in_tx, in_rx) = mpsc::channel(4);
                let encode = tokio::task::spawn_blocking(move || {
                    encode_from(Box::new(bridge::ChannelReader::new(in_rx)))
                });
                let (_, encoded, placed) = tokio::join!(
                    bridge::pump(content, in_tx),
                    self.encoding(encode),
                    self.place_chunks(out_rx)
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
    ) -> Result<HashMap<ChunkId, ChunkRef>, TransferError> {
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
                let staging = self
                    .activity
                    .begin("staging a chunk (waits for a slot to write a pack)");
                let staged = self.packer.stage(chunk).await?;
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
}
