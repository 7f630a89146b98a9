//! Content-defined chunking of a byte stream with bounded memory.
//!
//! Cut points come from FastCDC (the `fastcdc` crate's 2020 algorithm), so an
//! insertion or deletion only changes the chunks around it and every other
//! chunk keeps its id, which is what lets the client skip re-uploading them.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use fastcdc::v2020;

use crate::error::ContentError;
use crate::gear::{GearCutter, GearTable, ScanState};

/// The hard maximum size of one chunk's plaintext. Decoders refuse to
/// allocate more than this for any chunk, whatever a header claims; it is also
/// the largest maximum FastCDC supports.
pub const MAX_CHUNK_LEN: usize = 16 * 1024 * 1024;

/// Chunk size bounds for content-defined chunking, in bytes.
///
/// The default is min 256 KiB, average 1 MiB, max 4 MiB. Why this point:
/// every chunk costs one object-store request, one metadata row and up to
/// 56 bytes of header and tag, so small chunks multiply per-request latency
/// on Swift, while a local edit re-sends about one to two average chunks.
/// Measured here (`bench --sweep`, 64 MiB random data, 1-byte inserts at 8
/// places, min = avg/4, max = 4 avg):
///
/// | avg    | chunks per GiB | re-sent per insert |
/// |--------|----------------|--------------------|
/// | 128 KiB| 6720           | 175 KiB            |
/// | 256 KiB| 3376           | 311 KiB            |
/// | 1 MiB  | 832            | 1.8 MiB            |
/// | 4 MiB  | 224            | 5.4 MiB            |
///
/// At 1 MiB an edit re-sends ~2 % of a 64 MiB file (the old fixed 512 KiB
/// chunking re-sent 50 % after an insertion in the middle) and a 1 GiB file
/// is ~830 PUTs; going smaller quadruples requests to save ~1.5 MiB per
/// edit. Chunking speed differed by less than the run-to-run noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// No chunk is shorter than this, except the last chunk of a file.
    pub min: u32,
    /// Target average chunk size.
    pub avg: u32,
    /// No chunk is longer than this.
    pub max: u32,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerConfig {
    /// A configuration with the given bounds, validated.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, ContentError> {
        let config = ChunkerConfig { min, avg, max };
        config.validate()?;
        Ok(config)
    }

    /// Checks the bounds against what FastCDC accepts; FastCDC itself only
    /// checks them with debug assertions, so bad values must stop here.
    pub fn validate(&self) -> Result<(), ContentError> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let bad = |why: String| Err(ContentError::InvalidConfig(why));
        if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min) {
            return bad(format!(
                "min {min} outside {}..={}",
                v2020::MINIMUM_MIN,
                v2020::MINIMUM_MAX
            ));
        }
        if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg) {
            return bad(format!(
                "avg {avg} outside {}..={}",
                v2020::AVERAGE_MIN,
                v2020::AVERAGE_MAX
            ));
        }
        if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX.min(MAX_CHUNK_LEN)).contains(&max) {
            return bad(format!(
                "max {max} outside {}..={}",
                v2020::MAXIMUM_MIN,
                MAX_CHUNK_LEN
            ));
        }
        if !(min <= avg && avg <= max) {
            return bad(format!("need min <= avg <= max, got {min}, {avg}, {max}"));
        }
        if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
            return bad(format!("sizes must be even, got {min}, {avg}, {max}"));
        }
        Ok(())
    }
}

/// One chunk of plaintext and where it starts in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the chunk in the file.
    pub offset: u64,
    /// The chunk's bytes (at most [`ChunkerConfig::max`]).
    pub data: Vec<u8>,
}

/// A streaming chunker over any [`Read`]: yields chunks in order and holds at
/// most three maximum-size chunks of input at a time, whatever the file size.
///
/// Made by [`chunk_reader`] or [`ChunkCodec::chunk_reader`](crate::ChunkCodec::chunk_reader).
pub struct ChunkReader<R> {
    source: R,
    config: ChunkerConfig,
    /// The read window. Shared, so that the pipeline's workers can copy
    /// chunks out of it (see [`ChunkReader::next_shared`]) while this
    /// reader goes on cutting.
    buf: Arc<Vec<u8>>,
    /// Earlier windows, reused once no chunk refers to them any more.
    spare: Vec<Arc<Vec<u8>>>,
    /// What `buf` may grow to.
    capacity: usize,
    start: usize,
    end: usize,
    eof: bool,
    failed: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    cutter: GearCutter,
    /// How far the cut-point search of the next chunk got before a refill.
    scan: ScanState,
}

/// The first size of a reader's buffer, which then doubles as the input
/// turns out to need it.
const MIN_BUFFER: usize = 64 * 1024;

/// Earlier windows a reader keeps for reuse. When the reader refills, the
/// chunks in flight (a few) still hold the current window, but the one
/// before it has long been copied out: with one spare, a file needs two
/// windows in all, and every further one would only be memory held.
const SPARE_WINDOWS: usize = 1;

/// Chunks `source` with `config` the way unencrypted codecs cut files
/// (FastCDC's public gear table). The configuration is validated first.
///
/// Encrypted workspaces cut with a keyed table: use
/// [`ChunkCodec::chunk_reader`](crate::ChunkCodec::chunk_reader), which
/// cuts the way that codec's [`FileEncoder`](crate::FileEncoder) does, for
/// any codec.
pub fn chunk_reader<R: Read>(
    source: R,
    config: ChunkerConfig,
) -> Result<ChunkReader<R>, ContentError> {
    chunk_reader_with_table(source, config, &GearTable::public())
}

/// [`chunk_reader`] with the gear table `table`.
pub(crate) fn chunk_reader_with_table<R: Read>(
    source: R,
    config: ChunkerConfig,
    table: &GearTable,
) -> Result<ChunkReader<R>, ContentError> {
    // Three max-size chunks: refills then move less than one chunk of
    // leftover bytes per two chunks read, instead of StreamCDC's move of the
    // whole buffer on every chunk.
    chunk_reader_with_buffer(source, config, 3 * config.max as usize, table)
}

/// [`chunk_reader_with_table`] with a buffer of `capacity` bytes (at least three
/// maximum-size chunks). A larger buffer means fewer, larger reads and
/// proportionally fewer leftover bytes moved per refill; cut points do not
/// depend on it (see `next_slice`).
pub(crate) fn chunk_reader_with_buffer<R: Read>(
    source: R,
    config: ChunkerConfig,
    capacity: usize,
    table: &GearTable,
) -> Result<ChunkReader<R>, ContentError> {
    config.validate()?;
    let capacity = capacity.max(3 * config.max as usize);
    Ok(ChunkReader {
        source,
        config,
        // Grown as data arrives (see `refill`): most files are far smaller
        // than the window, and zeroing tens of MiB for each would cost more
        // than chunking them.
        buf: Arc::new(Vec::new()),
        spare: Vec::new(),
        capacity,
        start: 0,
        end: 0,
        eof: false,
        failed: false,
        offset: 0,
        cutter: GearCutter::new(
            config.min as usize,
            config.avg as usize,
            config.max as usize,
            table,
        ),
        scan: ScanState::default(),
    })
}

impl<R: Read> ChunkReader<R> {
    /// Moves leftover bytes to the front and reads until the buffer is full
    /// or the source ends.
    fn refill(&mut self) -> io::Result<()> {
        self.own_window();
        // Never copies: `own_window` left the window unshared.
        let buf = Arc::make_mut(&mut self.buf);
        while !self.eof {
            if self.end == buf.len() {
                if buf.len() >= self.capacity {
                    break;
                }
                // Doubling: the zeroing stays under twice what is read.
                let len = (buf.len() * 2).max(MIN_BUFFER).min(self.capacity);
                buf.resize(len, 0);
            }
            match self.source.read(&mut buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes the window one that this reader alone holds, with the leftover
    /// bytes at its front: the current one if no chunk refers to it any
    /// more, else a spare nobody refers to, else a new one.
    fn own_window(&mut self) {
        let (start, end) = (self.start, self.end);
        self.start = 0;
        self.end = end - start;
        if let Some(buf) = Arc::get_mut(&mut self.buf) {
            buf.copy_within(start..end, 0);
            return;
        }
        let fresh = match self.spare.iter().position(|w| Arc::strong_count(w) == 1) {
            Some(i) => self.spare.swap_remove(i),
            None => Arc::new(Vec::new()),
        };
        let old = std::mem::replace(&mut self.buf, fresh);
        // Never copies: the window came from nobody else.
        let buf = Arc::make_mut(&mut self.buf);
        if buf.len() < end - start {
            buf.resize((end - start).max(old.len()), 0);
        }
        buf[..end - start].copy_from_slice(&old[start..end]);
        if self.spare.len() < SPARE_WINDOWS {
            self.spare.push(old);
        }
    }

    /// Starts with windows from an earlier reader (see [`WindowPool`]):
    /// the largest becomes the first window, the others spares.
    pub(crate) fn with_windows(mut self, mut windows: Vec<Arc<Vec<u8>>>) -> Self {
        windows.sort_by_key(|w| w.len());
        if let Some(first) = windows.pop() {
            self.buf = first;
        }
        self.spare.extend(windows);
        self
    }

    /// The windows, for a [`WindowPool`].
    pub(crate) fn into_windows(self) -> Vec<Arc<Vec<u8>>> {
        let mut windows = self.spare;
        windows.push(self.buf);
        windows
    }

    /// Bytes buffered but not yet handed out.
    pub(crate) fn available(&self) -> usize {
        self.end - self.start
    }

    /// Reads until the window is full or the input ends, before the first
    /// chunk, so that [`Self::holds_all_within`] can tell a small input.
    /// Cut points do not depend on it (see `next_slice`).
    pub(crate) fn fill(&mut self) -> Result<(), ContentError> {
        self.refill().map_err(|source| {
            self.failed = true;
            ContentError::Read {
                offset: self.offset + self.available() as u64,
                source,
            }
        })
    }

    /// Whether the whole input is buffered and at most `len` bytes long.
    pub(crate) fn holds_all_within(&self, len: usize) -> bool {
        self.eof && self.available() <= len
    }
}

impl<R: Read> ChunkReader<R> {
    /// The next chunk's file offset and bytes, borrowed from the buffer until
    /// the next call: what [`Iterator::next`] returns, without the copy.
    ///
    /// Cut points never depend on how the input arrives or on the buffer
    /// size: a cut is only made with at least `max` bytes in view (or at
    /// the end of input), FastCDC never looks past `max` bytes, or the
    /// bytes in view already hold the first cut point (see
    /// `cut_resumable`, which also carries the search across a refill).
    pub(crate) fn next_slice(&mut self) -> Option<Result<(u64, &[u8]), ContentError>> {
        if self.failed {
            return None;
        }
        // With less than `max` bytes in view, a cut is final only if the
        // bytes in view already contain it (`cut_resumable`); otherwise
        // more data could move it, and the search resumes after the refill
        // where it stopped. Cutting before refilling means a refill only
        // carries over the bytes after the last cut point in the window,
        // not up to a whole maximum chunk of bytes already scanned: the
        // carried bytes are copied into the next window, and with refills
        // at `available < max` they were a third of each 12 MiB window.
        if self.available() < self.config.max as usize && !self.eof {
            let window = &self.buf[self.start..self.end];
            if let Some(len) = self.cutter.cut_resumable(window, false, &mut self.scan) {
                return Some(Ok(self.take(len)));
            }
            let buffered = self.offset + self.available() as u64;
            if let Err(source) = self.refill() {
                self.failed = true;
                return Some(Err(ContentError::Read {
                    offset: buffered,
                    source,
                }));
            }
        }
        if self.available() == 0 {
            return None;
        }
        let window = &self.buf[self.start..self.end];
        // Complete: `max` bytes or the end of input are in view, so this
        // always decides; it goes on from where the scan before the refill
        // stopped.
        let complete = true;
        let cut = self
            .cutter
            .cut_resumable(window, complete, &mut self.scan)
            .unwrap_or(window.len());
        // FastCDC never returns an empty cut for a non-empty window; taking
        // the whole window instead keeps the iterator finite regardless.
        let len = if cut == 0 { window.len() } else { cut };
        Some(Ok(self.take(len)))
    }

    /// Hands out the next `len` buffered bytes as a chunk.
    fn take(&mut self, len: usize) -> (u64, &[u8]) {
        self.scan = ScanState::default();
        let (start, offset) = (self.start, self.offset);
        self.start += len;
        self.offset += len as u64;
        (offset, &self.buf[start..start + len])
    }

    /// The next chunk as its file offset, the window holding it and its
    /// place there: [`Self::next_slice`] for another thread. The reader
    /// does not write to a window while any chunk holds it.
    pub(crate) fn next_shared(&mut self) -> Option<Result<SharedChunk, ContentError>> {
        let (offset, len) = match self.next_slice()? {
            Ok((offset, data)) => (offset, data.len()),
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(SharedChunk {
            offset,
            window: Arc::clone(&self.buf),
            range: self.start - len..self.start,
        }))
    }
}

/// Read windows kept between files. A window is tens of MiB of fresh
/// memory whose pages the kernel zeroes on first touch; allocating two per
/// file made page faults about a fifth of the pipeline's CPU on large files
/// (`perf`, bench). A pool keeps at most [`POOLED_WINDOWS`] (two windows of
/// the default size: 24 MiB held while idle) for the next file.
#[derive(Default)]
pub(crate) struct WindowPool(Mutex<Vec<Arc<Vec<u8>>>>);

/// Windows a pool keeps: what one large file uses (see [`SPARE_WINDOWS`]).
const POOLED_WINDOWS: usize = SPARE_WINDOWS + 1;

impl WindowPool {
    /// Takes the pooled windows (none if another file has them).
    pub fn take(&self) -> Vec<Arc<Vec<u8>>> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Returns windows; chunks still holding one keep it alive until they
    /// are done, and a reader only writes to a window nobody else holds.
    pub fn give(&self, windows: Vec<Arc<Vec<u8>>>) {
        if let Ok(mut pool) = self.0.lock() {
            for w in windows {
                if pool.len() < POOLED_WINDOWS && w.capacity() > 0 {
                    pool.push(w);
                }
            }
        }
    }
}

impl std::fmt::Debug for WindowPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |w| w.len());
        write!(f, "WindowPool({n} windows)")
    }
}

/// A chunk still in its reader's window.
pub(crate) struct SharedChunk {
    /// Byte offset of the chunk in the file.
    pub offset: u64,
    window: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl SharedChunk {
    /// The chunk's bytes.
    pub fn data(&self) -> &[u8] {
        &self.window[self.range.clone()]
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<Chunk, ContentError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_slice()?.map(|(offset, data)| Chunk {
            offset,
            data: data.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small file must not cost the whole read window: the window is
    /// tens of MiB, and zeroing it for each of 500 small files once took
    /// most of a first sync's CPU.
    #[test]
    fn the_buffer_grows_with_the_input_not_to_the_window() {
        let config = ChunkerConfig::default();
        let window = 20 * 1024 * 1024;
        let small = vec![7u8; 10_000];
        let mut reader =
            chunk_reader_with_buffer(&small[..], config, window, &GearTable::public()).unwrap();
        let chunk = reader.next().unwrap().unwrap();
        assert_eq!(chunk.data, small);
        assert!(reader.next().is_none());
        assert!(
            reader.buf.len() <= MIN_BUFFER,
            "a 10 kB input grew the buffer to {} bytes",
            reader.buf.len()
        );
        // A large input still fills the whole window before cutting.
        let large: Vec<u8> = (0..3 * config.max as usize)
            .map(|i| (i * 7919 % 251) as u8)
            .collect();
        let mut reader =
            chunk_reader_with_buffer(&large[..], config, window, &GearTable::public()).unwrap();
        let total: usize = reader.by_ref().map(|c| c.unwrap().data.len()).sum();
        assert_eq!(total, large.len());
        assert!(reader.buf.len() >= large.len());
    }

    /// A chunk handed to another thread keeps its bytes however far the
    /// reader goes on: a window is rewritten only once no chunk holds it.
    #[test]
    fn shared_chunks_keep_their_bytes_while_the_reader_refills() {
        let config = ChunkerConfig::new(1024, 4096, 16384).unwrap();
        let data: Vec<u8> = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let expected: Vec<(u64, usize)> = chunk_reader(&data[..], config)
            .unwrap()
            .map(|c| {
                let c = c.unwrap();
                (c.offset, c.data.len())
            })
            .collect();
        // Hold every other chunk (the reader must work around them) or
        // none (windows are reused).
        for hold_every in [2, usize::MAX] {
            let mut reader =
                chunk_reader_with_buffer(&data[..], config, 0, &GearTable::public()).unwrap();
            let mut held = Vec::new();
            let mut got = Vec::new();
            let mut n = 0;
            while let Some(chunk) = reader.next_shared() {
                let chunk = chunk.unwrap();
                let start = chunk.offset as usize;
                assert_eq!(chunk.data(), &data[start..start + chunk.data().len()]);
                got.push((chunk.offset, chunk.data().len()));
                if n % hold_every == 0 {
                    held.push(chunk);
                }
                n += 1;
            }
            assert_eq!(got, expected);
            for chunk in &held {
                let start = chunk.offset as usize;
                assert_eq!(chunk.data(), &data[start..start + chunk.data().len()]);
            }
            assert!(reader.spare.len() <= SPARE_WINDOWS);
        }
    }
}
