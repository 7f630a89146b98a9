//! Every effect the engine has goes through these traits, so that tests can
//! replace the disk, the server, the content pipeline and the clock with
//! deterministic doubles (see [`crate::sim`]).

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use async_trait::async_trait;
use stacksync_proto::{
    ChangesPage, ChunkRef, CommitResult, ContentHash, ItemId, ItemName, Millis, ProposedItem,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::FsError;
use crate::path::RelPath;
use crate::tree::{Stamp, SyncState};

/// A stream of a file's bytes; when it is a file on a real disk, also that
/// file, so that a consumer that works on its own thread (the content
/// pipeline) reads it there with blocking calls instead of hopping between
/// that thread and the async runtime for every piece (see
/// [`ByteReader::into_file`]).
pub struct ByteReader {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    /// The same open file, while nothing was read through `reader`.
    file: Option<std::fs::File>,
}

impl ByteReader {
    /// A reader that is only a stream.
    pub fn new(reader: impl AsyncRead + Send + Unpin + 'static) -> ByteReader {
        ByteReader {
            reader: Box::new(reader),
            file: None,
        }
    }

    /// A reader over `file` (an open regular file), streamed through
    /// `reader`, which must read the same open file (a duplicate of its
    /// descriptor: they share the position).
    pub fn with_file(
        reader: impl AsyncRead + Send + Unpin + 'static,
        file: std::fs::File,
    ) -> ByteReader {
        ByteReader {
            reader: Box::new(reader),
            file: Some(file),
        }
    }

    /// The open file, for blocking reads from its start, if this reader
    /// has one and nothing was read as a stream yet; the reader back
    /// otherwise.
    pub fn into_file(self) -> Result<std::fs::File, ByteReader> {
        match self.file {
            Some(file) => Ok(file),
            None => Err(self),
        }
    }
}

impl AsyncRead for ByteReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Read as a stream from here on: the file's position moves.
        this.file = None;
        Pin::new(&mut this.reader).poll_read(cx, buf)
    }
}
/// A sink for a file's bytes.
pub type ByteWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// What kind of directory entry this is.
///
/// Policy for everything that is not a regular file or folder: symlinks
/// are never followed and never synced (following them could leave the
/// folder or loop); sockets, FIFOs and devices are skipped likewise. Both
/// are reported by the scanner as skipped, and the engine never writes over
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Folder,
    /// A symbolic link (never followed).
    Symlink,
    /// Socket, FIFO, device, or anything else.
    Special,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The raw name; may not be a valid [`stacksync_proto::ItemName`]
    /// (the scanner reports such names instead of syncing them).
    pub name: String,
    /// What it is (symlinks are not followed).
    pub kind: EntryKind,
    /// Size, mtime and file id.
    pub stamp: Stamp,
}

/// Kind and stamp of one path (symlinks are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// What it is.
    pub kind: EntryKind,
    /// Size, mtime and file id.
    pub stamp: Stamp,
}

/// The synced folder on disk. Paths are relative to its root.
#[async_trait]
pub trait Fs: Send + Sync {
    /// The entries of a folder, in any order.
    async fn list_dir(&self, path: &RelPath) -> Result<Vec<DirEntry>, FsError>;
    /// Kind and stamp, or `None` if nothing is there.
    async fn stat(&self, path: &RelPath) -> Result<Option<Metadata>, FsError>;
    /// [`Fs::stat`] of each of `paths`, in order: one call for many paths,
    /// which an implementation can answer at once (a round trip per path
    /// costs more than the look-up on a real disk).
    async fn stat_all(&self, paths: &[RelPath]) -> Vec<Result<Option<Metadata>, FsError>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.stat(p).await);
        }
        out
    }
    /// Streams a regular file's content.
    async fn open_read(&self, path: &RelPath) -> Result<ByteReader, FsError>;
    /// The BLAKE3 hash of a regular file's content and its stamp; `None` if
    /// nothing is there or the file changed while being read (its stamp
    /// before differs from after). The default streams through
    /// [`Fs::stat`] and [`Fs::open_read`]; an implementation may do the
    /// same in one call.
    async fn hash_file(&self, path: &RelPath) -> Result<Option<(ContentHash, Stamp)>, FsError> {
        crate::scan::hash_file_streaming(self, path).await
    }
    /// Creates (or truncates) a temporary file at `path` for writing.
    async fn create_temp(&self, path: &RelPath) -> Result<ByteWriter, FsError>;
    /// Reopens a temporary file to continue writing after its first `keep`
    /// bytes (anything beyond is cut off): how an interrupted download
    /// resumes without fetching the chunks it already has.
    async fn resume_temp(&self, path: &RelPath, keep: u64) -> Result<ByteWriter, FsError>;
    /// Makes a finished temporary file's content durable (fsync) and
    /// renames it over `dest`, atomically replacing any file there: `dest`
    /// is then the old file or the new one, never a torn one.
    async fn persist_temp(&self, temp: &RelPath, dest: &RelPath) -> Result<(), FsError>;
    /// Creates a folder; its parent must exist.
    async fn mkdir(&self, path: &RelPath) -> Result<(), FsError>;
    /// Makes durable every change of folder entries made through this
    /// `Fs` since the last call (files put in place, folders made, entries
    /// removed or renamed). Those changes may be durable only once this
    /// returns, so that folders are synced once per batch instead of once
    /// per file; the engine calls it before it saves the state that
    /// records them.
    async fn sync_dirs(&self) -> Result<(), FsError>;
    /// Removes a regular file.
    async fn remove_file(&self, path: &RelPath) -> Result<(), FsError>;
    /// Removes an empty folder.
    async fn remove_dir(&self, path: &RelPath) -> Result<(), FsError>;
    /// Renames without clobbering: fails with `AlreadyExists` if `to`
    /// exists.
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), FsError>;
    /// Renames the entry of folder `dir` whose raw name is `from` (as
    /// [`DirEntry::name`] gave it; it need not be a valid
    /// [`stacksync_proto::ItemName`]) to `to` in the same folder, without
    /// clobbering: fails with `AlreadyExists` if `to` exists.
    async fn rename_entry(&self, dir: &RelPath, from: &str, to: &ItemName) -> Result<(), FsError>;
}

/// The sync service, seen from one device in one workspace.
#[async_trait]
pub trait Remote: Send + Sync {
    /// One page of the change feed after `since`.
    async fn get_changes(
        &self,
        since: u64,
        limit: u32,
    ) -> Result<ChangesPage, stacksync_proto::Error>;
    /// Proposes versions; the outcome of each is in the result, in order.
    async fn commit(
        &self,
        items: Vec<ProposedItem>,
    ) -> Result<CommitResult, stacksync_proto::Error>;
}

/// What an upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// BLAKE3 of the bytes actually read.
    pub hash: ContentHash,
    /// Bytes read.
    pub size: u64,
    /// The chunks the content was cut into, in order.
    pub chunks: Vec<ChunkRef>,
}

/// The content pipeline and chunk store (chunking, hashing, compression,
/// encryption, transfer).
///
/// Uploads may be *staged*: a store that gathers the chunks of many files
/// into pack objects (object stores charge per request, not per byte)
/// returns from [`ContentStore::upload`] with chunks placed in a pack it has
/// not written yet. [`ContentStore::flush`] makes them durable; the
/// executor calls it before every commit that carries content, because a
/// commit must never name a chunk that is not stored.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Reads the stream to its end, storing (or staging, see
    /// [`ContentStore::flush`]) every chunk the store does not have yet, so
    /// an interrupted upload resumes by skipping the chunks already sent.
    /// The returned chunks carry where each is stored. Memory stays
    /// bounded by the chunk size (and the store's pack buffers).
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, stacksync_proto::Error>;
    /// As [`ContentStore::upload`], for a new version of a file whose
    /// previous version had `previous` (with the locations the server
    /// gave): a store may send a changed chunk as a delta against the
    /// previous version's chunk at the same place, if it still has that
    /// chunk. What `previous` says never changes the content uploaded,
    /// only how it travels.
    async fn upload_changing(
        &self,
        content: ByteReader,
        previous: &[ChunkRef],
    ) -> Result<Uploaded, stacksync_proto::Error> {
        let _ = previous;
        self.upload(content).await
    }
    /// Makes every chunk of every upload returned so far durable. On
    /// failure the chunks of the uploads returned before it must not be
    /// committed: the caller uploads the files again (the store forgets
    /// what it failed to write, so they are staged anew). A store that
    /// writes each chunk before `upload` returns has nothing to do.
    async fn flush(&self) -> Result<(), stacksync_proto::Error> {
        Ok(())
    }
    /// A hint: `chunks` are about to be downloaded (by calls to
    /// [`ContentStore::download`] that may run in parallel), so a store
    /// can fetch neighbouring chunks of one pack with one request instead
    /// of one per chunk. A new hint replaces the previous one. Correctness
    /// never depends on it.
    fn expect_downloads(&self, chunks: &[ChunkRef]) {
        let _ = chunks;
    }
    /// Writes the plaintext of `chunks`, in order, to `dest`. The engine
    /// verifies the whole-file hash itself.
    async fn download(
        &self,
        chunks: &[ChunkRef],
        dest: &mut ByteWriter,
    ) -> Result<(), stacksync_proto::Error>;
    /// As [`ContentStore::download`], for a new version of a file whose
    /// previous version is still on disk: `local` reads that copy, and a
    /// store may take every chunk of `chunks` it finds there (cut the way
    /// it cuts uploads, each checked against its id) instead of fetching
    /// it. What `local` holds never changes what is written, only where it
    /// comes from; a store that cannot use it downloads everything.
    async fn download_reusing(
        &self,
        chunks: &[ChunkRef],
        dest: &mut ByteWriter,
        local: ByteReader,
    ) -> Result<(), stacksync_proto::Error> {
        drop(local);
        self.download(chunks, dest).await
    }
}

/// Wall-clock time, only used to name conflicted copies.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_millis(&self) -> Millis;
}

/// Where ids of new items come from (random in production, seeded in tests).
pub trait IdSource: Send + Sync {
    /// A fresh item id, never handed out before.
    fn new_item_id(&self) -> ItemId;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        // A clock before 1970 is a broken machine; name copies as of 1970.
        now.map(|d| d.as_millis() as Millis).unwrap_or(0)
    }
}

/// Random (UUIDv7) item ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_item_id(&self) -> ItemId {
        ItemId::new()
    }
}

/// Durable storage of the [`SyncState`]. `save` must be atomic: after a
/// crash, `load` returns either the previous or the new state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The last saved state, or `None` on first run.
    async fn load(&self) -> Result<Option<SyncState>, String>;
    /// Replaces the saved state. A store may write only the changes the
    /// state recorded since it last loaded or saved that same state (see
    /// [`SyncState::lineage`]): the caller calls
    /// [`SyncState::forget_changes`] after a save that succeeded, and only
    /// then.
    async fn save(&self, state: &SyncState) -> Result<(), String>;
}

/// A [`StateStore`] in memory: survives an engine being dropped (a
/// simulated crash) as long as the store itself is kept.
#[derive(Debug, Default)]
pub struct MemStateStore {
    state: Mutex<Option<SyncState>>,
    saves: std::sync::atomic::AtomicU64,
}

impl MemStateStore {
    /// An empty store (first run).
    pub fn new() -> MemStateStore {
        MemStateStore::default()
    }

    /// How many times the state was saved.
    pub fn saves(&self) -> u64 {
        self.saves.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl StateStore for MemStateStore {
    async fn load(&self) -> Result<Option<SyncState>, String> {
        Ok(self
            .state
            .lock()
            .map_err(|_| "state store lock poisoned".to_string())?
            .clone())
    }
    async fn save(&self, state: &SyncState) -> Result<(), String> {
        *self
            .state
            .lock()
            .map_err(|_| "state store lock poisoned".to_string())? = Some(state.clone());
        self.saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
