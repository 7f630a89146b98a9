//! Durability in batches: a download temporary is made durable by the
//! writer that filled it (so files are synced in parallel, by the transfers
//! that wrote them), and the folder entries the engine creates are made
//! durable together, once per folder, when the engine is about to record
//! them ([`Fs::sync_dirs`](stacksync_engine::Fs::sync_dirs)).
//!
//! A temporary its writer synced is not synced again when it is put in
//! place ([`SyncedFiles`]): on some file systems an `fsync` of a clean file
//! still flushes the device's cache, once per downloaded file, in the
//! ordered step.
//!
//! Syncing each file and its folder one download at a time cost about
//! 2 ms per small file; a first sync of a tree of small files was bound by
//! it. The crash guarantee is unchanged: a file is old or new, never torn
//! (its content is synced before it is renamed into place), and nothing
//! is recorded as done before its folder entry is durable.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::task::JoinHandle;

/// Folders whose entries changed and are not durable yet.
#[derive(Debug, Default)]
pub(super) struct DirtyFolders {
    folders: Mutex<BTreeSet<PathBuf>>,
}

impl DirtyFolders {
    /// Remembers that an entry of `folder` changed.
    pub(super) fn add(&self, folder: &Path) {
        self.lock().insert(folder.to_path_buf());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        // A panic elsewhere leaves a set of paths, still usable.
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the folders to sync; [`DirtyFolders::restore`] gives back
    /// those that could not be synced.
    pub(super) fn take(&self) -> BTreeSet<PathBuf> {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back folders whose sync failed, so a later call tries again.
    pub(super) fn restore(&self, folders: impl IntoIterator<Item = PathBuf>) {
        self.lock().extend(folders);
    }
}

/// The files this process synced, each with its state right after the
/// sync: a file whose state is still the same (same device, inode, size
/// and change time, which every write updates and no user can set) has
/// nothing left to sync.
#[derive(Debug, Default)]
pub(super) struct SyncedFiles {
    files: Mutex<HashMap<FileKey, FileState>>,
}

/// Device and inode.
type FileKey = (u64, u64);
/// Size and change time (seconds, nanoseconds).
type FileState = (u64, i64, i64);

impl SyncedFiles {
    /// Most files remembered: past it the record starts again (a file
    /// forgotten only costs one more sync).
    const MOST: usize = 1 << 16;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, FileState>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that the file with `meta` was just synced.
    fn add(&self, meta: &std::fs::Metadata) {
        let mut files = self.lock();
        if files.len() >= Self::MOST {
            files.clear();
        }
        files.insert(
            (meta.dev(), meta.ino()),
            (meta.size(), meta.ctime(), meta.ctime_nsec()),
        );
    }

    /// Whether the file with `meta` was synced by this process and has not
    /// changed since; it is forgotten either way.
    pub(super) fn take(&self, meta: &std::fs::Metadata) -> bool {
        self.lock().remove(&(meta.dev(), meta.ino()))
            == Some((meta.size(), meta.ctime(), meta.ctime_nsec()))
    }
}

/// Syncs each of `folders`; returns the ones that failed, with the first
/// error. A folder that no longer exists (or is no longer a folder) needs
/// nothing: whatever it held is gone with it, and its removal is an entry
/// of its parent, which the engine syncs when it removes it.
pub(super) fn sync_folders(folders: &BTreeSet<PathBuf>) -> Result<(), (Vec<PathBuf>, io::Error)> {
    let mut failed = Vec::new();
    let mut first = None;
    for folder in folders {
        match File::open(folder).and_then(|f| f.sync_all()) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => {
                failed.push(folder.clone());
                first.get_or_insert(e);
            }
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err((failed, e)),
    }
}

/// A file writer whose shutdown also syncs the file's content to disk, so
/// the task that wrote a download temporary also pays for its durability
/// (several run at once) instead of the ordered step that renames it.
pub(super) struct SyncOnShutdown {
    file: tokio::fs::File,
    /// The same open file, for `fsync` on the blocking pool.
    handle: Option<File>,
    syncing: Option<JoinHandle<io::Result<()>>>,
    /// Where a synced file is remembered.
    synced: Arc<SyncedFiles>,
}

impl SyncOnShutdown {
    /// Wraps `file`; `handle` is a clone of it (`File::try_clone`). Once
    /// synced, the file is remembered in `synced`.
    pub(super) fn new(file: File, handle: File, synced: Arc<SyncedFiles>) -> SyncOnShutdown {
        SyncOnShutdown {
            file: tokio::fs::File::from_std(file),
            handle: Some(handle),
            syncing: None,
            synced,
        }
    }
}

impl AsyncWrite for SyncOnShutdown {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.syncing.is_none() {
            // Every write reaches the file before it is synced.
            ready!(Pin::new(&mut this.file).poll_shutdown(cx))?;
            let Some(handle) = this.handle.take() else {
                // Synced by an earlier shutdown.
                return Poll::Ready(Ok(()));
            };
            let synced = Arc::clone(&this.synced);
            this.syncing = Some(tokio::task::spawn_blocking(move || {
                handle.sync_all()?;
                synced.add(&handle.metadata()?);
                Ok(())
            }));
        }
        let syncing = this.syncing.as_mut().expect("set just above");
        let done = ready!(Pin::new(syncing).poll(cx));
        this.syncing = None;
        Poll::Ready(match done {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(format!("syncing a file: {e}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn shutdown_writes_everything_and_can_be_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let handle = file.try_clone().unwrap();
        let synced = Arc::new(SyncedFiles::default());
        let mut w = SyncOnShutdown::new(file, handle, Arc::clone(&synced));
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        w.shutdown().await.unwrap();
        w.shutdown().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        // Synced, so remembered once; a write after the sync is seen.
        let meta = std::fs::metadata(&path).unwrap();
        assert!(synced.take(&meta));
        assert!(!synced.take(&meta));
    }

    #[test]
    fn a_file_written_after_its_sync_is_not_taken_as_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        io::Write::write_all(&mut file, b"one").unwrap();
        file.sync_all().unwrap();
        let synced = SyncedFiles::default();
        synced.add(&file.metadata().unwrap());
        // Change times have a clock tick of granularity: wait one out.
        std::thread::sleep(std::time::Duration::from_millis(20));
        io::Write::write_all(&mut file, b"two").unwrap();
        assert!(!synced.take(&std::fs::metadata(&path).unwrap()));
        // Nor is a file that was never synced.
        let other = dir.path().join("g");
        std::fs::write(&other, b"x").unwrap();
        assert!(!synced.take(&std::fs::metadata(&other).unwrap()));
    }

    #[test]
    fn folders_are_taken_once_and_gone_ones_need_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("now-a-file");
        std::fs::write(&file, b"x").unwrap();
        let dirty = DirtyFolders::default();
        dirty.add(dir.path());
        dirty.add(&dir.path().join("gone"));
        dirty.add(&file.join("child"));
        let taken = dirty.take();
        assert_eq!(taken.len(), 3);
        assert!(dirty.take().is_empty());
        sync_folders(&taken).unwrap();
        // What a failed call gives back is taken by the next one.
        dirty.restore(taken.clone());
        assert_eq!(dirty.take(), taken);
    }
}
