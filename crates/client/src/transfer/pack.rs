//! The pack writer: encoded chunks of all concurrent uploads of one store
//! are appended to one open pack, which is sealed at a target size and
//! written in the background.
//!
//! Object stores charge per request, not per byte, so a pack of a few MiB
//! costs about what one small chunk would. A chunk at least as large as the
//! target goes alone in a pack of its own (it gains nothing from company).
//! Packs are named by 32 random bytes: a pack is written once, by one
//! client, and never collides with a content-named chunk.
//!
//! Memory: at most `max_uploads` packs are written at once; sealing a pack
//! waits for a free slot, and so does the upload that sealed it, which
//! stops its encoder. What is held is the open pack, the packs in flight,
//! and at most one sealed pack per upload waiting for a slot.
//!
//! [`Packer::flush`] seals the open pack and waits for every pack sealed
//! before it. A pack that fails to be written makes the next flush that
//! covers it fail, and its chunks are forgotten, so that a later upload
//! stages them again; the chunk references handed out before that flush
//! must not be committed (the engine uploads again after a failed flush).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use stacksync_content::EncodedChunk;
use stacksync_proto::{ChunkId, ChunkRef, Error as ProtoError, PackSpan};
use tokio::sync::{Semaphore, oneshot, watch};

use super::journal::{JournalEntry, UploadJournal};
use super::{ChunkTransport, TokenBucket, TransferError, TransferStats};

/// Most chunk locations remembered before those of written packs are
/// dropped (the journal and the service still know them): bounds the
/// memory of a long-running daemon to a few tens of MiB.
const KNOWN_MAX: usize = 256 * 1024;

/// What the pack writer needs from its store.
pub(crate) struct PackerConfig {
    pub transport: Arc<dyn ChunkTransport>,
    pub journal: Option<UploadJournal>,
    pub stats: Arc<TransferStats>,
    pub limit: Option<Arc<TokenBucket>>,
    /// Target pack size in bytes.
    pub target: usize,
    /// Packs written at once.
    pub max_uploads: usize,
}

/// Where a chunk this store handled is.
#[derive(Debug, Clone, Copy)]
struct Known {
    chunk: ChunkRef,
    /// Stored for sure (written by this store, or found in the store),
    /// rather than staged in a pack not written yet.
    stored: bool,
}

/// A pack written (or about to be).
struct SealedPack {
    seq: u64,
    id: ChunkId,
    bytes: Bytes,
    entries: Vec<JournalEntry>,
}

/// A pack being filled.
struct OpenPack {
    /// Order of opening: a flush waits for every pack opened before it.
    seq: u64,
    id: ChunkId,
    bytes: Vec<u8>,
    entries: Vec<JournalEntry>,
}

#[derive(Default)]
struct PackState {
    open: Option<OpenPack>,
    next_seq: u64,
    known: HashMap<ChunkId, Known>,
    /// Packs sealed (or open) and not written yet, by sequence.
    unfinished: BTreeSet<u64>,
    /// Packs that failed to be written, not yet reported by a flush.
    failures: BTreeMap<u64, (String, ProtoError)>,
}

/// The pack writer of one store; shared by its clones.
pub(crate) struct Packer {
    config: PackerConfig,
    slots: Arc<Semaphore>,
    state: Mutex<PackState>,
    /// Bumped whenever a pack is finished, for flushes to wait on.
    finished: watch::Sender<u64>,
}

/// How a chunk got its location.
pub(crate) enum Staged {
    /// Appended to a pack by this call.
    New(ChunkRef),
    /// Already staged or stored by this store.
    Known(ChunkRef),
}

impl Packer {
    pub(crate) fn new(config: PackerConfig) -> Packer {
        let slots = Arc::new(Semaphore::new(config.max_uploads.max(1)));
        Packer {
            config: PackerConfig {
                target: config.target.clamp(1, PackSpan::MAX_PACK_BYTES as usize),
                ..config
            },
            slots,
            state: Mutex::default(),
            finished: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PackState> {
        // Poisoning only means a panic elsewhere mid-update; the maps are
        // still consistent enough to keep uploading (a lost entry costs a
        // re-send, never a wrong location: entries are inserted whole).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `id` is, if this store staged or stored it.
    pub(crate) fn known(&self, id: &ChunkId) -> Option<ChunkRef> {
        self.lock().known.get(id).map(|k| k.chunk)
    }

    /// Remembers where the store already has a chunk (found in the
    /// journal or by the service), so repeats need not ask again.
    pub(crate) fn remember(&self, chunk: ChunkRef) {
        let mut st = self.lock();
        make_room(&mut st.known);
        st.known.entry(chunk.id).or_insert(Known {
            chunk,
            stored: true,
        });
    }

    /// Places `chunk` in a pack, unless this store already has it
    /// somewhere. May wait for a slot to write a sealed pack.
    /// `chunk.bytes` are a delta against chunk `base` when it is set.
    pub(crate) async fn stage(
        self: &Arc<Self>,
        chunk: EncodedChunk,
        base: Option<ChunkId>,
    ) -> Result<Staged, TransferError> {
        let (staged, sealed) = {
            let mut st = self.lock();
            if let Some(k) = st.known.get(&chunk.id) {
                return Ok(Staged::Known(k.chunk));
            }
            let len = chunk.bytes.len();
            let mut sealed = Vec::new();
            let (id, size) = (chunk.id, chunk.plaintext_len);
            let span = if len >= self.config.target {
                let mut alone = OpenPack::new(next_seq(&mut st))?;
                let span = alone.push(chunk.id, chunk.plaintext_len, chunk.bytes, base);
                sealed.push(alone);
                span
            } else {
                if st
                    .open
                    .as_ref()
                    .is_some_and(|o| o.bytes.len() + len > self.config.target)
                {
                    sealed.extend(st.open.take());
                }
                if st.open.is_none() {
                    let pack = OpenPack::new(next_seq(&mut st))?;
                    st.unfinished.insert(pack.seq);
                    st.open = Some(pack);
                }
                let open = st.open.as_mut().expect("an open pack was just ensured");
                let span = open.push(id, size, chunk.bytes, base);
                if open.bytes.len() >= self.config.target {
                    sealed.extend(st.open.take());
                }
                span
            };
            for pack in &sealed {
                st.unfinished.insert(pack.seq);
            }
            let chunk = ChunkRef {
                id,
                size,
                span: Some(span),
            };
            make_room(&mut st.known);
            st.known.insert(
                chunk.id,
                Known {
                    chunk,
                    stored: false,
                },
            );
            (Staged::New(chunk), sealed)
        };
        for pack in sealed {
            self.write(pack).await;
        }
        Ok(staged)
    }

    /// Seals the open pack and waits until every pack opened so far is
    /// written; the first failure among them is returned (and forgotten).
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<(), TransferError> {
        let mut finished = self.finished.subscribe();
        let (sealed, last) = {
            let mut st = self.lock();
            (st.open.take(), st.next_seq)
        };
        if let Some(pack) = sealed {
            self.write(pack).await;
        }
        loop {
            finished.borrow_and_update();
            {
                let mut st = self.lock();
                if st.unfinished.range(..last).next().is_none() {
                    let failed: Vec<u64> = st.failures.range(..last).map(|(s, _)| *s).collect();
                    let first = failed.first().and_then(|s| st.failures.remove(s));
                    for s in &failed {
                        st.failures.remove(s);
                    }
                    return match first {
                        None => Ok(()),
                        Some((doing, source)) => Err(TransferError::Transport { doing, source }),
                    };
                }
            }
            if finished.changed().await.is_err() {
                return Err(TransferError::Task("the pack writer is gone".into()));
            }
        }
    }

    /// Writes a sealed pack in the background; returns once it has a
    /// slot (the back-pressure that bounds memory). The pack is written
    /// even if the caller is dropped meanwhile (an upload cancelled while
    /// it waits), so that a flush never waits for a pack nobody writes.
    async fn write(self: &Arc<Self>, pack: OpenPack) {
        let (slot_tx, slot_rx) = oneshot::channel();
        let writing = Writing {
            packer: Arc::clone(self),
            pack: Some(SealedPack {
                seq: pack.seq,
                id: pack.id,
                bytes: Bytes::from(pack.bytes),
                entries: pack.entries,
            }),
        };
        tokio::spawn(async move {
            let slot = Arc::clone(&writing.packer.slots)
                .acquire_owned()
                .await
                .expect("the pack writer never closes its semaphore");
            let _ = slot_tx.send(());
            let pack = writing.pack.as_ref().expect("taken only by `done`");
            let result = writing.packer.put(pack).await;
            drop(slot);
            writing.done(result).await;
        });
        // Err only if the task died, which `Writing` reports as a failure.
        let _ = slot_rx.await;
    }

    /// Records the pack in the journal, then stores it.
    async fn put(&self, pack: &SealedPack) -> Result<(), ProtoError> {
        let c = &self.config;
        if let Some(journal) = &c.journal
            && let Err(e) = journal.record(&pack.entries).await
        {
            // The journal only saves re-sending after a crash.
            tracing::warn!(
                "upload journal: {e}; an interrupted upload will send pack {} again",
                pack.id
            );
        }
        let len = pack.bytes.len() as u64;
        if let Some(limit) = &c.limit {
            limit.take(len).await;
        }
        c.transport.put_chunk(&pack.id, pack.bytes.clone()).await?;
        c.stats.packs_uploaded.fetch_add(1, Ordering::Relaxed);
        c.stats
            .chunks_uploaded
            .fetch_add(pack.entries.len() as u64, Ordering::Relaxed);
        c.stats.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Records the outcome of a pack's write and wakes the flushes.
    fn settle(&self, pack: SealedPack, result: Result<(), ProtoError>) {
        {
            let mut st = self.lock();
            st.unfinished.remove(&pack.seq);
            let here = |k: &Known| k.chunk.span.is_some_and(|s| s.pack == pack.id);
            match result {
                Ok(()) => {
                    for e in &pack.entries {
                        if let Some(k) = st.known.get_mut(&e.id).filter(|k| here(k)) {
                            k.stored = true;
                        }
                    }
                }
                Err(source) => {
                    for e in &pack.entries {
                        if st.known.get(&e.id).is_some_and(here) {
                            st.known.remove(&e.id);
                        }
                    }
                    let doing = format!(
                        "writing pack {} ({} chunks, {} bytes)",
                        pack.id,
                        pack.entries.len(),
                        pack.bytes.len()
                    );
                    st.failures.insert(pack.seq, (doing, source));
                }
            }
        }
        self.finished.send_modify(|n| *n += 1);
    }
}

/// A pack being written by a background task. If the task ends without
/// reporting (a panic, or the runtime shutting down), dropping this
/// reports the pack as failed, so no flush waits for it forever.
struct Writing {
    packer: Arc<Packer>,
    pack: Option<SealedPack>,
}

impl Writing {
    async fn done(mut self, result: Result<(), ProtoError>) {
        let Some(pack) = self.pack.take() else { return };
        if result.is_err()
            && let Some(journal) = &self.packer.config.journal
            && let Err(e) = journal.forget_pack(&pack.id).await
        {
            // Harmless: the pack's existence is checked before its rows
            // are used.
            tracing::debug!("upload journal: {e}");
        }
        self.packer.settle(pack, result);
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some(pack) = self.pack.take() {
            let stopped =
                ProtoError::internal("the pack writer stopped before the pack was written");
            self.packer.settle(pack, Err(stopped));
        }
    }
}

fn next_seq(st: &mut PackState) -> u64 {
    st.next_seq += 1;
    st.next_seq - 1
}

/// Drops the locations of stored chunks when too many are remembered;
/// staged ones are kept (they are the only record of an unwritten pack).
fn make_room(known: &mut HashMap<ChunkId, Known>) {
    if known.len() >= KNOWN_MAX {
        known.retain(|_, k| !k.stored);
    }
}

impl OpenPack {
    fn new(seq: u64) -> Result<OpenPack, TransferError> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id)
            .map_err(|e| TransferError::Task(format!("no randomness to name a pack: {e}")))?;
        Ok(OpenPack {
            seq,
            id: ChunkId(id),
            bytes: Vec::new(),
            entries: Vec::new(),
        })
    }

    /// Appends encoded chunk `id` of `size` plaintext bytes; returns where
    /// it is.
    fn push(
        &mut self,
        id: ChunkId,
        size: u32,
        encoded: Vec<u8>,
        base: Option<ChunkId>,
    ) -> PackSpan {
        let span = PackSpan {
            pack: self.id,
            offset: self.bytes.len() as u64,
            len: encoded.len() as u32,
            base,
        };
        if self.bytes.is_empty() {
            // The first chunk's buffer becomes the pack's: no copy (a
            // chunk alone in its pack is never copied).
            self.bytes = encoded;
        } else {
            self.bytes.extend_from_slice(&encoded);
        }
        self.entries.push(JournalEntry { id, size, span });
        span
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use futures::FutureExt;

    use super::*;

    /// Stores objects in memory once its gate lets each PUT through.
    struct Gated {
        gate: Semaphore,
        objects: Mutex<HashMap<ChunkId, Bytes>>,
    }

    impl Default for Gated {
        fn default() -> Self {
            Gated {
                gate: Semaphore::new(0),
                objects: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl ChunkTransport for Gated {
        async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ProtoError> {
            let objects = self.objects.lock().unwrap();
            Ok(ids.iter().map(|id| objects.contains_key(id)).collect())
        }
        async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), ProtoError> {
            drop(self.gate.acquire().await.expect("never closed"));
            self.objects.lock().unwrap().insert(*id, data);
            Ok(())
        }
        async fn get_chunk(&self, _: &ChunkId) -> Result<Bytes, ProtoError> {
            unreachable!("nothing is read")
        }
        async fn get_range(&self, _: &ChunkId, _: u64, _: u32) -> Result<Bytes, ProtoError> {
            unreachable!("nothing is read")
        }
        async fn locate_chunks(
            &self,
            ids: &[ChunkId],
        ) -> Result<Vec<Option<ChunkRef>>, ProtoError> {
            Ok(vec![None; ids.len()])
        }
        async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, ProtoError> {
            Ok(vec![None; ids.len()])
        }
    }

    fn chunk(n: u8, len: usize) -> EncodedChunk {
        EncodedChunk {
            id: ChunkId([n; 32]),
            bytes: vec![n; len],
            plaintext_len: len as u32,
            offset: 0,
            compressed: false,
        }
    }

    #[tokio::test]
    async fn a_stage_dropped_while_its_pack_waits_for_a_slot_does_not_hang_the_flush() {
        let transport = Arc::new(Gated::default());
        let packer = Arc::new(Packer::new(PackerConfig {
            transport: transport.clone(),
            journal: None,
            stats: Arc::default(),
            limit: None,
            target: 100,
            max_uploads: 1,
        }));
        // Each chunk fills a pack. The first takes the only slot and waits
        // at the gate; the second's stage waits for the slot, and is
        // dropped there (an upload cancelled when the daemon stops).
        assert!(matches!(
            packer.stage(chunk(1, 100), None).await,
            Ok(Staged::New(_))
        ));
        assert!(packer.stage(chunk(2, 100), None).now_or_never().is_none());
        transport.gate.add_permits(10);
        tokio::time::timeout(Duration::from_secs(60), packer.flush())
            .await
            .expect("the flush waited for a pack nobody writes")
            .unwrap();
        // Both packs were written, and the dropped stage's chunk is known.
        assert_eq!(transport.objects.lock().unwrap().len(), 2);
        assert!(packer.known(&ChunkId([2; 32])).is_some());
    }

    #[tokio::test]
    async fn packs_stay_under_the_target_and_large_chunks_go_alone() {
        let transport = Arc::new(Gated::default());
        transport.gate.add_permits(100);
        let stats = Arc::new(TransferStats::default());
        let packer = Arc::new(Packer::new(PackerConfig {
            transport: transport.clone(),
            journal: None,
            stats: stats.clone(),
            limit: None,
            target: 100,
            max_uploads: 2,
        }));
        let mut spans = Vec::new();
        for (n, len) in [(1, 40), (2, 40), (3, 40), (4, 150), (5, 10)] {
            let Ok(Staged::New(c)) = packer.stage(chunk(n, len), None).await else {
                panic!("chunk {n} was not staged");
            };
            spans.push(c.span.unwrap());
        }
        // A repeat is not staged again.
        assert!(matches!(
            packer.stage(chunk(2, 40), None).await,
            Ok(Staged::Known(c)) if c.span == Some(spans[1])
        ));
        packer.flush().await.unwrap();
        let objects = transport.objects.lock().unwrap().clone();
        // 1 and 2 share a pack (80 bytes); 3 would make it 120, so it opens
        // the next one, which 5 joins; 4 is alone.
        assert_eq!(spans[0].pack, spans[1].pack);
        assert_eq!((spans[2].pack, spans[2].offset), (spans[4].pack, 0));
        assert_eq!(spans[4].offset, 40);
        assert_eq!(objects[&spans[3].pack].len(), 150);
        assert_eq!(objects.len(), 3);
        for s in &spans {
            let object = &objects[&s.pack];
            assert!(s.end() <= object.len() as u64);
        }
        assert_eq!(stats.chunks_uploaded.load(Ordering::Relaxed), 5);
        assert_eq!(stats.packs_uploaded.load(Ordering::Relaxed), 3);
        assert_eq!(stats.bytes_uploaded.load(Ordering::Relaxed), 280);
    }
}
