//! Whole files: a parallel, bounded-memory encoder from a `Read` to encoded
//! chunks in order, and a sequential decoder back to a `Write`.
//!
//! The encoder runs one reader thread (reads into 12 MiB windows and finds
//! cut points, the only inherently sequential work) and a pool of workers
//! that copy each chunk out of its window, compute its id, compress,
//! encrypt and hash 64 KiB blocks for the whole-file hash. A chunk's
//! plaintext is copied once after the read, by a worker, into the buffer
//! that becomes its encoded object (header room in front, encrypted in
//! place); each 64 KiB block of the file hash is hashed right after it is
//! copied (`copy_and_hash`), then the chunk id over the copy, which the
//! L2 cache still holds for a typical chunk (hashing the id block by block
//! beside the copy instead measured no faster). The reader only
//! reads and cuts, cuts before it refills where the bytes in view already
//! decide the cut (so a refill carries less than a chunk into the next
//! window), and reuses a window once no chunk in flight refers to it;
//! windows are kept for the encoder's next file (`WindowPool`), because
//! fresh ones cost a page fault per 4 KiB.
//!
//! Where the CPU goes (`perf record`, bench, incompressible data, per GB):
//! about 0.9 CPU-s without encryption. The two BLAKE3 passes are ~0.3
//! (a chunk id is BLAKE3 of the chunk and the file hash BLAKE3 of the
//! file; BLAKE3 chunk counters differ between the two trees, so no work
//! can be shared, and both are pinned by stored data), the cut-point
//! search ~0.2, the two copies (the read into the window, which a `Read`
//! makes inevitable, and the worker's copy into the chunk's own buffer)
//! ~0.2, the sampled compressibility test ~0.03; AES-256-GCM adds
//! 0.35-0.5 (XChaCha20-Poly1305: 1.1 s). The reader's share (read and cut)
//! is ~0.3 and the workers' ~0.6, so two idle cores can pass about 2.2
//! GB/s.
//! The calling thread puts results back in order and hands them to the
//! sink. At most `max_in_flight` chunks exist between the reader and the
//! sink, so memory stays bounded whatever the file size and however slow
//! the sink (an upload) is.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use blake3::hazmat::ChainingValue;
use stacksync_proto::{ChunkRef, ContentHash};

use crate::chunker::{
    ChunkReader, ChunkerConfig, SharedChunk, WindowPool, chunk_reader_with_buffer,
};
use crate::codec::{ChunkCodec, ContentHasher, EncodedChunk};
use crate::error::ContentError;
use crate::filehash::{BlockSplitter, BlockWork, CvStack, copy_and_hash};

/// How a file is cut and how many threads work on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineConfig {
    /// Chunk size bounds.
    pub chunker: ChunkerConfig,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Chunks allowed between reading and the sink; 0 means twice the
    /// workers plus two, enough to keep every worker busy while the sink
    /// takes a chunk.
    pub max_in_flight: usize,
}

/// What a file became: the metadata a commit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// BLAKE3 (keyed in encrypted workspaces) of the whole plaintext.
    pub content_hash: ContentHash,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// Failure of [`FileEncoder::encode`]: the pipeline's own, or the sink's.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError<E> {
    /// Reading, chunking or encoding failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The sink refused a chunk; encoding stopped there.
    #[error("chunk sink failed: {0}")]
    Sink(E),
}

/// Encodes whole files with a [`ChunkCodec`] on a pool of threads.
#[derive(Debug, Clone)]
pub struct FileEncoder {
    codec: ChunkCodec,
    config: PipelineConfig,
    /// Read windows kept from one file to the next, shared by clones.
    windows: Arc<WindowPool>,
}

/// One chunk for a worker, still in the reader's window: the worker copies
/// it out once, into the buffer that becomes its encoded object, so the
/// copy runs in parallel instead of on the reader, the one sequential
/// stage. The window stays untouched until every job holding it is done.
struct Job {
    seq: u64,
    chunk: SharedChunk,
    work: BlockWork,
}

/// The reader's window: 8 MiB past the largest chunk. Larger windows move
/// a smaller share of leftover bytes at each refill (under one maximum
/// chunk), but each window is fresh memory whose page faults the reader
/// pays once per file, and with workers copying chunks out of windows a
/// file uses two of them. On the bench's 128 MiB files the reader spent
/// less CPU with 8 MiB than with 16 MiB, and no less with 4 MiB.
fn read_buffer_len(chunker: ChunkerConfig) -> usize {
    chunker.max as usize + 8 * 1024 * 1024
}

enum Msg {
    Done {
        seq: u64,
        result: Result<EncodedChunk, ContentError>,
        cvs: Vec<ChainingValue>,
    },
    ReadDone {
        chunks: u64,
        size: u64,
        tail: Vec<u8>,
    },
    Failed(ContentError),
}

impl FileEncoder {
    /// An encoder; fails if the chunker configuration is invalid.
    pub fn new(codec: ChunkCodec, config: PipelineConfig) -> Result<FileEncoder, ContentError> {
        config.chunker.validate()?;
        Ok(FileEncoder {
            codec,
            config,
            windows: Arc::default(),
        })
    }

    fn workers(&self) -> usize {
        match self.config.workers {
            0 => thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Reads `reader` to the end and calls `sink` with each encoded chunk in
    /// file order, on the calling thread. Returns the content hash and chunk
    /// list. Stops at the first error, from either side.
    pub fn encode<R, E>(
        &self,
        reader: R,
        mut sink: impl FnMut(EncodedChunk) -> Result<(), E>,
    ) -> Result<FileSummary, EncodeError<E>>
    where
        R: Read + Send,
    {
        // A file of at most one maximum chunk is encoded on the calling
        // thread: starting a reader and workers costs more than its work (a
        // first sync of 10,000 small files spent most of its CPU starting
        // threads and switching between them). Cut points never depend on
        // how the input arrives, so both ways give the same chunks.
        //
        // The first read goes straight into the reader's window, which
        // the reader then starts from (no separate prefix buffer, no copy
        // of it into the window; a small file's bytes are copied once, by
        // the read, before the chunk's own copy).
        let chunker = self.config.chunker;
        let table = self.codec.gear_table();
        let mut chunks =
            chunk_reader_with_buffer(reader, chunker, read_buffer_len(chunker), &table)?
                .with_windows(self.windows.take());
        chunks.fill()?;
        if chunks.holds_all_within(chunker.max as usize) {
            return self.encode_here(chunks, sink);
        }
        let workers = self.workers();
        let in_flight = match self.config.max_in_flight {
            0 => 2 * workers + 2,
            n => n,
        };
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(in_flight);
        let (res_tx, res_rx) = mpsc::channel::<Msg>();
        let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
        // Workers own the job receiver jointly, so that when they all stop
        // the reader's next send fails instead of blocking forever.
        let job_rx = Arc::new(Mutex::new(job_rx));
        let codec = &self.codec;
        let windows = &*self.windows;

        thread::scope(|scope| {
            let mut handles = Vec::with_capacity(workers + 1);
            let reader_tx = res_tx.clone();
            handles.push(scope.spawn(move || {
                let on_panic = reader_tx.clone();
                guard(&on_panic, "the reader", || {
                    read_chunks(chunks, windows, token_tx, job_tx, reader_tx)
                });
            }));
            for _ in 0..workers {
                let (rx, tx) = (Arc::clone(&job_rx), res_tx.clone());
                handles.push(
                    scope.spawn(move || guard(&tx, "a worker", || encode_jobs(codec, &rx, &tx))),
                );
            }
            drop((res_tx, job_rx));
            let outcome = collect(codec, &res_rx, &token_rx, &mut sink);
            // Closing our ends unblocks any thread still sending.
            drop((res_rx, token_rx));
            let mut panicked = false;
            for h in handles {
                panicked |= h.join().is_err();
            }
            match outcome {
                Err(e) => Err(e),
                Ok(_) if panicked => {
                    Err(ContentError::Worker("a pipeline thread panicked".into()).into())
                }
                Ok(summary) => Ok(summary),
            }
        })
    }
}

impl FileEncoder {
    /// Encodes a file whose bytes `chunks` already holds (at most one
    /// maximum chunk) on the calling thread, with the pipeline's own stages
    /// run one after the other.
    fn encode_here<R: Read, E>(
        &self,
        chunks: ChunkReader<R>,
        mut sink: impl FnMut(EncodedChunk) -> Result<(), E>,
    ) -> Result<FileSummary, EncodeError<E>> {
        // Room for every chunk at once: FastCDC never cuts below `min`.
        let room = chunks.available() / self.config.chunker.min.max(1) as usize + 2;
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(room);
        let (res_tx, res_rx) = mpsc::channel::<Msg>();
        let (token_tx, token_rx) = mpsc::sync_channel::<()>(room);
        read_chunks(chunks, &self.windows, token_tx, job_tx, res_tx.clone());
        encode_jobs(&self.codec, &Mutex::new(job_rx), &res_tx);
        drop(res_tx);
        collect(&self.codec, &res_rx, &token_rx, &mut sink)
    }
}

/// Runs a pipeline thread's body, turning a panic (a bug) into an error
/// message, so the collector stops and drops its receivers, which releases
/// every blocked thread, instead of waiting forever for a chunk that will
/// never come.
fn guard(results: &mpsc::Sender<Msg>, who: &str, body: impl FnOnce()) {
    if panic::catch_unwind(AssertUnwindSafe(body)).is_err() {
        let _ = results.send(Msg::Failed(ContentError::Worker(format!("{who} panicked"))));
    }
}

/// The reader thread: chunk, take a token per chunk (the in-flight bound),
/// plan block hashing, dispatch.
fn read_chunks<R: Read>(
    mut chunks: ChunkReader<R>,
    windows: &WindowPool,
    token_tx: SyncSender<()>,
    job_tx: SyncSender<Job>,
    res_tx: mpsc::Sender<Msg>,
) {
    let mut splitter = BlockSplitter::default();
    let (mut seq, mut size) = (0u64, 0u64);
    while let Some(item) = chunks.next_shared() {
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                let _ = res_tx.send(Msg::Failed(e));
                return;
            }
        };
        if token_tx.send(()).is_err() {
            return; // the collector stopped
        }
        size = chunk.offset + chunk.data().len() as u64;
        let work = splitter.split(chunk.data());
        let job = Job { seq, chunk, work };
        if job_tx.send(job).is_err() {
            return; // every worker stopped
        }
        seq += 1;
    }
    windows.give(chunks.into_windows());
    let _ = res_tx.send(Msg::ReadDone {
        chunks: seq,
        size,
        tail: splitter.into_tail(),
    });
}

/// A worker thread: id, block hashes, encode.
fn encode_jobs(codec: &ChunkCodec, jobs: &Mutex<Receiver<Job>>, results: &mpsc::Sender<Msg>) {
    loop {
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return, // another worker panicked holding the lock
        };
        let Ok(Job { seq, chunk, work }) = next else {
            return;
        };
        let mut buf = codec.chunk_buffer(chunk.data().len());
        let cvs = copy_and_hash(codec.content_key(), &work, chunk.data(), &mut buf);
        let offset = chunk.offset;
        // Done with the window, as early as possible: the reader reuses it.
        drop(chunk);
        let id = codec.chunk_id(&buf[codec.header_room()..]);
        let result = codec.encode_in_place(buf, id).map(|mut e| {
            e.offset = offset;
            e
        });
        if results.send(Msg::Done { seq, result, cvs }).is_err() {
            return;
        }
    }
}

/// The calling thread: reorder, feed the file hash, call the sink, release
/// a token per chunk consumed.
fn collect<E>(
    codec: &ChunkCodec,
    results: &Receiver<Msg>,
    tokens: &Receiver<()>,
    sink: &mut impl FnMut(EncodedChunk) -> Result<(), E>,
) -> Result<FileSummary, EncodeError<E>> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut stack = CvStack::new(codec.content_key());
    let mut refs = Vec::new();
    let mut end: Option<(u64, u64, Vec<u8>)> = None;
    loop {
        while let Some((result, cvs)) = pending.remove(&next) {
            let encoded: EncodedChunk = result?;
            for cv in cvs {
                stack.push(cv);
            }
            refs.push(ChunkRef::whole(encoded.id, encoded.plaintext_len));
            sink(encoded).map_err(EncodeError::Sink)?;
            // The reader sent this chunk's token before dispatching it, so
            // this returns at once; it lets the reader read one more.
            let _ = tokens.recv();
            next += 1;
        }
        if let Some((chunks, size, tail)) = &end
            && *chunks == next
        {
            let content_hash = stack.finish(tail);
            return Ok(FileSummary {
                content_hash,
                chunks: refs,
                size: *size,
            });
        }
        match results.recv() {
            Ok(Msg::Done { seq, result, cvs }) => {
                pending.insert(seq, (result, cvs));
            }
            Ok(Msg::ReadDone { chunks, size, tail }) => end = Some((chunks, size, tail)),
            Ok(Msg::Failed(e)) => return Err(e.into()),
            Err(_) => {
                return Err(
                    ContentError::Worker("pipeline threads stopped before the end".into()).into(),
                );
            }
        }
    }
}

/// Reassembles a file from its encoded chunks, writing plaintext to `W` and
/// checking each chunk's id and size and, at the end, the content hash.
///
/// Bytes reach the writer before the whole-file check; write to a temporary
/// file and move it into place only after [`FileDecoder::finish`] succeeds.
pub struct FileDecoder<W: Write> {
    codec: ChunkCodec,
    expected: ContentHash,
    hasher: ContentHasher,
    out: W,
    written: u64,
}

impl<W: Write> FileDecoder<W> {
    /// A decoder for a file whose metadata says `expected`.
    pub fn new(codec: &ChunkCodec, expected: ContentHash, out: W) -> FileDecoder<W> {
        FileDecoder {
            codec: codec.clone(),
            expected,
            hasher: codec.content_hasher(),
            out,
            written: 0,
        }
    }

    /// Decodes the next chunk of the file (in chunk-list order) and writes it.
    pub fn push(&mut self, chunk: &ChunkRef, encoded: &[u8]) -> Result<(), ContentError> {
        let plaintext = self.codec.decode(&chunk.id, encoded)?;
        if plaintext.len() != chunk.size as usize {
            return Err(ContentError::ChunkSizeMismatch {
                id: chunk.id,
                declared: chunk.size,
                actual: plaintext.len(),
            });
        }
        self.hasher.update(&plaintext);
        self.out
            .write_all(&plaintext)
            .map_err(|source| ContentError::Write {
                offset: self.written,
                source,
            })?;
        self.written += plaintext.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and checks the whole-file hash; returns the writer.
    pub fn finish(mut self) -> Result<W, ContentError> {
        self.out.flush().map_err(|source| ContentError::Write {
            offset: self.written,
            source,
        })?;
        let actual = self.hasher.finalize();
        if actual != self.expected {
            return Err(ContentError::ContentHashMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(self.out)
    }
}
