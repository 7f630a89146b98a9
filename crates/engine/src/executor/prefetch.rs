//! Transfers started before a plan is applied, N at a time: the content of
//! every file the plan uploads, and of every file it downloads.
//!
//! Nothing here changes the sync state or a user's file, so no crash-safety
//! argument depends on it: an upload is idempotent (a prefetched upload
//! whose commit never happens costs only bytes), and a download only fills
//! a download temporary, which the ordered `Download` operation verifies
//! and puts in place (or a later round resumes or removes). The ordered
//! operations use a prefetched result only when the file is provably the
//! one that was read (same stamp, same expected hash), and do the transfer
//! themselves otherwise.
//!
//! Where a prefetched download is written: a download temporary normally
//! lives in the destination folder (so putting it in place is a rename
//! within one folder). A plan may download into a folder that an earlier
//! operation of the same plan creates (a first sync creates every folder),
//! so that folder does not exist yet while prefetching. Such downloads are
//! prefetched into the synced folder's root instead, which always exists;
//! the ordered operation then moves the temporary from there. Temporaries
//! in an existing folder are located by the folder's key, not its path, so
//! they are found even after the plan moved the folder (the temporary moved
//! with it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use stacksync_proto::{ChunkRef, ContentHash, ItemName};
use tokio::io::AsyncWriteExt;

use crate::error::{EngineError, FsError, FsErrorKind};
use crate::ignore::DOWNLOAD_TEMP_PREFIX;
use crate::io::{ByteReader, ByteWriter, ContentStore, EntryKind, Fs, Uploaded};
use crate::path::RelPath;
use crate::planner::{Key, LocalItem, Op, RemoteChange, RemoteContent, path_in};
use crate::tree::{RemoteTree, Stamp};
use write_watch::WriteWatch;

/// An upload done ahead of its commit.
pub(super) struct PrefetchedUpload {
    /// The stamp the file had before and after it was read.
    pub stamp: Stamp,
    /// What was uploaded (its hash is the one the plan expected).
    pub uploaded: Uploaded,
}

/// Results of the prefetch stage of one plan.
#[derive(Default)]
pub(super) struct Prefetched {
    /// Uploads by the key of the item whose commit will use them.
    pub uploads: BTreeMap<Key, PrefetchedUpload>,
    /// Content hashes whose download temporary is complete, with the folder
    /// holding it (`None`: the root).
    pub downloads: BTreeMap<ContentHash, Option<Key>>,
}

/// The name of the download temporary of `hash`.
pub(super) fn temp_name(hash: &ContentHash) -> ItemName {
    ItemName::new(format!("{DOWNLOAD_TEMP_PREFIX}{}", hash.to_hex()))
        .expect("a fixed prefix and hex digits make a valid name")
}

/// How many leading chunks a partial file of `size` bytes holds whole, and
/// their total size.
fn resume_point(chunks: &[stacksync_proto::ChunkRef], size: u64) -> (usize, u64) {
    let mut done = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        let next = done + u64::from(c.size);
        if next > size {
            return (i, done);
        }
        done = next;
    }
    (chunks.len(), done)
}

/// The file a download replaces, as the plan saw it: the store may take
/// the chunks the new version shares with it from there instead of the
/// network.
pub(super) struct Origin {
    /// Where it is.
    pub path: RelPath,
    /// Its stamp when the plan was made (when it matched the synced
    /// version).
    pub stamp: Stamp,
}

impl Origin {
    /// The local copy `key` has if `replace` says the download overwrites
    /// it unchanged.
    pub(super) fn of(local: &BTreeMap<Key, LocalItem>, key: Key, replace: bool) -> Option<Origin> {
        let item = local.get(&key).filter(|l| replace && !l.is_folder)?;
        Some(Origin {
            path: path_in(local, key)?,
            stamp: item.stamp,
        })
    }

    /// A reader of the file if it still has the stamp the plan saw; `None`
    /// otherwise or on any failure (it only saves transfer: the download
    /// then fetches everything).
    async fn open(&self, fs: &dyn Fs) -> Option<ByteReader> {
        let now = fs.stat(&self.path).await.ok()??;
        if now.kind != EntryKind::File || now.stamp != self.stamp {
            return None;
        }
        fs.open_read(&self.path).await.ok()
    }
}

/// Why a file was not uploaded.
pub(super) enum NotUploaded {
    /// The file is not the one the plan saw, or changed while being read.
    Changed(String),
    /// An item-level file-system failure (the caller decides).
    Fs(FsError),
}

/// The chunks of the live file version the server has for `key`, which
/// an upload for `key` replaces (none for a new item or a folder).
pub(super) fn previous_chunks(remote: &RemoteTree, key: Key) -> &[ChunkRef] {
    match key {
        Key::Item(id) => remote
            .live(id)
            .filter(|m| !m.is_folder)
            .map_or(&[], |m| m.chunks.as_slice()),
        Key::New(_) => &[],
    }
}

/// Reads and uploads the file at `path`, making sure it still has `stamp`
/// before and after the read and that its content has `hash`; `previous`
/// is the chunk list of the version it replaces (empty for a new file).
pub(super) async fn upload_file(
    fs: &dyn Fs,
    content: &dyn ContentStore,
    path: &RelPath,
    stamp: Stamp,
    hash: Option<ContentHash>,
    previous: &[ChunkRef],
) -> Result<Result<Uploaded, NotUploaded>, EngineError> {
    let before = match fs.stat(path).await {
        Ok(m) => m.map(|m| m.stamp),
        Err(e) => return Ok(Err(NotUploaded::Fs(e))),
    };
    if before != Some(stamp) {
        return Ok(Err(NotUploaded::Changed(format!(
            "{path} changed since the scan"
        ))));
    }
    let reader = match fs.open_read(path).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(NotUploaded::Fs(e))),
    };
    let up = content
        .upload_changing(reader, previous)
        .await
        .map_err(|source| EngineError::Remote {
            doing: format!("uploading {path}"),
            source,
        })?;
    let after = match fs.stat(path).await {
        Ok(m) => m.map(|m| m.stamp),
        Err(e) => return Ok(Err(NotUploaded::Fs(e))),
    };
    if after != before || Some(up.hash) != hash {
        return Ok(Err(NotUploaded::Changed(format!(
            "{path} changed while being read; retried later"
        ))));
    }
    Ok(Ok(up))
}

/// Makes `temp` hold the whole `content`: continues a partial temporary
/// after its last whole chunk, does nothing if it is complete already.
/// Chunks the replaced file (`origin`) still holds may come from there.
/// The caller verifies the hash of what is on disk. On failure the
/// temporary is kept, so that the next attempt resumes it.
pub(super) async fn fill_temp(
    fs: &dyn Fs,
    store: &dyn ContentStore,
    temp: &RelPath,
    content: &RemoteContent,
    origin: Option<&Origin>,
) -> Result<(), EngineError> {
    let partial = fs
        .stat(temp)
        .await?
        .filter(|m| m.kind == EntryKind::File && m.stamp.size > 0)
        .map(|m| m.stamp.size);
    let (writer, skip) = match partial {
        Some(size) if size == content.size => return Ok(()),
        Some(size) => {
            let (skip, keep) = resume_point(&content.chunks, size);
            (fs.resume_temp(temp, keep).await?, skip)
        }
        None => (fs.create_temp(temp).await?, 0),
    };
    // What the store reports as its own failure may be this disk's (full,
    // say): the sink remembers, so the error names the disk, not the server.
    let (sink, disk) = WriteWatch::new(writer);
    let mut writer: ByteWriter = Box::new(sink);
    let wanted = &content.chunks[skip..];
    let local = match origin {
        Some(o) if !wanted.is_empty() => o.open(fs).await,
        _ => None,
    };
    let fetched = match local {
        Some(local) => store.download_reusing(wanted, &mut writer, local).await,
        None => store.download(wanted, &mut writer).await,
    };
    let flushed = writer.shutdown().await;
    drop(writer);
    if let Err(source) = fetched {
        if let Some(message) = disk.first_error() {
            return Err(EngineError::Fs(FsError::new(
                FsErrorKind::Other,
                temp,
                format!("writing the download: {message}"),
            )));
        }
        return Err(EngineError::Remote {
            doing: format!("downloading into {temp}"),
            source,
        });
    }
    flushed.map_err(|e| EngineError::Fs(FsError::new(FsErrorKind::Other, temp, e.to_string())))
}

/// Uploads the content of every file `ops` will commit with `upload`, up to
/// `parallel` at a time. A file that changed, or any failure, leaves its
/// commit to upload by itself; a server failure stops starting new uploads
/// (the ordered commit then meets it and reports it). A file the server
/// has a version of is uploaded as a change of that version's chunks.
pub(super) async fn uploads(
    fs: &dyn Fs,
    store: &dyn ContentStore,
    local: &BTreeMap<Key, LocalItem>,
    remote: &RemoteTree,
    ops: &[Op],
    parallel: usize,
) -> BTreeMap<Key, PrefetchedUpload> {
    let jobs: Vec<(Key, RelPath, Stamp, ContentHash, Vec<ChunkRef>)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Commit {
                key,
                change:
                    RemoteChange::Put {
                        is_folder: false,
                        upload: true,
                        ..
                    },
            } => {
                let l = local.get(key)?;
                let previous = previous_chunks(remote, *key).to_vec();
                Some((*key, path_in(local, *key)?, l.stamp, l.hash?, previous))
            }
            _ => None,
        })
        .collect();
    if jobs.len() < 2 {
        // Nothing to overlap: the commit uploads by itself.
        return BTreeMap::new();
    }
    let stopped = AtomicBool::new(false);
    let stopped = &stopped;
    futures::stream::iter(jobs)
        .map(|(key, path, stamp, hash, previous)| async move {
            if stopped.load(Ordering::Relaxed) {
                return None;
            }
            match upload_file(fs, store, &path, stamp, Some(hash), &previous).await {
                Ok(Ok(uploaded)) => Some((key, PrefetchedUpload { stamp, uploaded })),
                Ok(Err(_)) => None,
                Err(e) => {
                    tracing::debug!("prefetching uploads stopped: {e}");
                    stopped.store(true, Ordering::Relaxed);
                    None
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Downloads the content of every file `ops` downloads into its temporary,
/// up to `parallel` at a time (each content once). Where the temporary
/// goes: see the module documentation. The store is first told every chunk
/// the window will fetch (after what partial temporaries already hold), so
/// it can read neighbouring chunks of a pack at once. A failure stops
/// starting new downloads and leaves the rest to the ordered operations.
/// Only temporaries in `ours` (recorded as this client's) are written.
pub(super) async fn downloads(
    fs: &dyn Fs,
    store: &dyn ContentStore,
    local: &BTreeMap<Key, LocalItem>,
    ops: &[Op],
    ours: &BTreeSet<RelPath>,
    parallel: usize,
) -> BTreeMap<ContentHash, Option<Key>> {
    let mut seen = BTreeSet::new();
    let wanted: Vec<(Option<Key>, RelPath, &RemoteContent, Option<Origin>)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Download {
                key,
                pos,
                content,
                replace,
            } if seen.insert(content.hash) => {
                // The destination folder, if it is on disk as the plan starts.
                let holder = pos
                    .parent
                    .filter(|p| local.get(p).is_some_and(|l| l.is_folder))
                    .and_then(|p| Some((Some(p), path_in(local, p)?)));
                let (holder, dir) = holder.unwrap_or((None, RelPath::root()));
                let origin = Origin::of(local, *key, *replace);
                Some((holder, dir.join(&temp_name(&content.hash)), content, origin))
            }
            _ => None,
        })
        .collect();
    // An earlier prefetch, interrupted, may have left a content at the
    // root while its folder did not exist yet: it is continued there.
    let at_root = |content: &RemoteContent| RelPath::root().join(&temp_name(&content.hash));
    let root_temps: Vec<RelPath> = wanted
        .iter()
        .filter(|(holder, ..)| holder.is_some())
        .map(|(_, _, content, _)| at_root(content))
        .filter(|t| ours.contains(t))
        .collect();
    let left_at_root: BTreeSet<RelPath> = root_temps
        .iter()
        .zip(fs.stat_all(&root_temps).await)
        .filter(|(_, m)| matches!(m, Ok(Some(m)) if m.kind == EntryKind::File))
        .map(|(t, _)| t.clone())
        .collect();
    let wanted: Vec<_> = wanted
        .into_iter()
        .map(|(holder, temp, content, origin)| {
            let root = at_root(content);
            if holder.is_some() && left_at_root.contains(&root) {
                (None, root, content, origin)
            } else {
                (holder, temp, content, origin)
            }
        })
        // Someone else's file has the name: the ordered operation reports
        // it.
        .filter(|(_, temp, ..)| ours.contains(temp))
        .collect();
    // What `fill_temp` will skip: the whole chunks already there.
    let temps: Vec<RelPath> = wanted.iter().map(|(_, temp, ..)| temp.clone()).collect();
    let partials = fs.stat_all(&temps).await;
    let mut jobs = Vec::with_capacity(wanted.len());
    let mut expected = Vec::new();
    for ((holder, temp, content, origin), partial) in wanted.into_iter().zip(partials) {
        let partial = match partial {
            Ok(Some(m)) if m.kind == EntryKind::File => m.stamp.size,
            _ => 0,
        };
        let skip = if partial == content.size {
            content.chunks.len()
        } else {
            resume_point(&content.chunks, partial).0
        };
        // A file replacing a local copy gets most of its chunks from
        // there: the store reads ahead only what it lacks, once it knows.
        if origin.is_none() {
            expected.extend_from_slice(&content.chunks[skip..]);
        }
        jobs.push((holder, temp, content, origin));
    }
    // Also when one file is left: the ordered operation downloads it, and
    // its chunks still come in fewer requests.
    if !expected.is_empty() {
        store.expect_downloads(&expected);
    }
    if jobs.len() < 2 {
        return BTreeMap::new();
    }
    let stopped = AtomicBool::new(false);
    let stopped = &stopped;
    futures::stream::iter(jobs)
        .map(|(holder, temp, content, origin)| async move {
            if stopped.load(Ordering::Relaxed) {
                return None;
            }
            match fill_temp(fs, store, &temp, content, origin.as_ref()).await {
                Ok(()) => Some((content.hash, holder)),
                // About this one file (its folder went away): the ordered
                // operation sees it again.
                Err(EngineError::Fs(e)) if e.kind != FsErrorKind::Other => None,
                Err(e) => {
                    tracing::debug!("prefetching downloads stopped: {e}");
                    stopped.store(true, Ordering::Relaxed);
                    None
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

mod write_watch {
    //! A download sink that remembers the first error writing to it.

    use std::io;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use tokio::io::AsyncWrite;

    use crate::io::ByteWriter;

    /// Passes writes to the inner sink and keeps the first error it gave.
    pub(super) struct WriteWatch {
        inner: ByteWriter,
        seen: Arc<Mutex<Option<String>>>,
    }

    /// The watcher's view of what went wrong.
    pub(super) struct Seen(Arc<Mutex<Option<String>>>);

    impl Seen {
        /// The first error writing to the sink, if any.
        pub fn first_error(&self) -> Option<String> {
            self.0.lock().expect("write watch").clone()
        }
    }

    impl WriteWatch {
        pub fn new(inner: ByteWriter) -> (WriteWatch, Seen) {
            let seen = Arc::new(Mutex::new(None));
            (
                WriteWatch {
                    inner,
                    seen: Arc::clone(&seen),
                },
                Seen(seen),
            )
        }

        fn note<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
            if let Poll::Ready(Err(e)) = &result {
                self.seen
                    .lock()
                    .expect("write watch")
                    .get_or_insert_with(|| e.to_string());
            }
            result
        }
    }

    impl AsyncWrite for WriteWatch {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            self.note(r)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let r = Pin::new(&mut self.inner).poll_flush(cx);
            self.note(r)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let r = Pin::new(&mut self.inner).poll_shutdown(cx);
            self.note(r)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            self.note(r)
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }
    }
}
