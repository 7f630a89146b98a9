//! The engine's [`Fs`] on a real folder.
//!
//! Every call runs on tokio's blocking pool: the standard library's file
//! calls block, and a slow disk must not stall the runtime. Paths are built
//! only from a [`RelPath`] (whose components can be neither `.`, `..`, empty
//! nor contain `/`), and every folder on the way is checked not to be a
//! symlink, so no call can reach outside the root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rustix::fs::{CWD, OFlags, RenameFlags};
use rustix::io::Errno;
use stacksync_engine::io::{DirEntry, EntryKind, Metadata};
use stacksync_engine::{ByteReader, ByteWriter, Fs, FsError, FsErrorKind, RelPath, Stamp};
use stacksync_proto::{ContentHash, ItemName};

use crate::transfer::watchdog::{Activity, Touching};

mod durable;

use durable::{DirtyFolders, SyncOnShutdown, SyncedFiles};

/// The synced folder on the local disk.
#[derive(Debug, Clone)]
pub struct LocalFs {
    root: Arc<PathBuf>,
    /// Each finished call and each piece of a file read or written counts
    /// as progress for the stall watchdog.
    activity: Activity,
    /// Folders with entries created and not yet synced (see `durable`).
    dirty: Arc<DirtyFolders>,
    /// Temporaries synced by their writer (see `durable`).
    synced: Arc<SyncedFiles>,
}

/// Why a [`LocalFs`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenFolderError {
    /// The root could not be examined.
    #[error("cannot open synced folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The platform error.
        #[source]
        source: io::Error,
    },
    /// The root is not a real folder (a file, or a symlink, which is
    /// refused so that the synced folder is exactly the one configured).
    #[error("synced folder {0} is not a folder")]
    NotAFolder(PathBuf),
}

impl LocalFs {
    /// Opens the folder at `root`, which must exist and be a real folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalFs, OpenFolderError> {
        let root = root.into();
        let meta = fs::symlink_metadata(&root).map_err(|source| OpenFolderError::Io {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(OpenFolderError::NotAFolder(root));
        }
        Ok(LocalFs {
            root: Arc::new(root),
            activity: Activity::default(),
            dirty: Arc::default(),
            synced: Arc::default(),
        })
    }

    /// Records this folder's progress in `activity` (for the stall
    /// watchdog).
    pub fn watched_by(mut self, activity: Activity) -> LocalFs {
        self.activity = activity;
        self
    }

    /// The folder's absolute location.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `f` with the absolute path of `rel` on the blocking pool, after
    /// checking that no folder between the root and `rel` is a symlink.
    async fn blocking<T, F>(&self, rel: &RelPath, f: F) -> Result<T, FsError>
    where
        T: Send + 'static,
        F: FnOnce(PathBuf) -> Result<T, FsError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        let rel2 = rel.clone();
        let job = tokio::task::spawn_blocking(move || f(resolve(&root, &rel2)?));
        let done = job.await;
        self.activity.touch();
        match done {
            Ok(r) => r,
            Err(e) => Err(FsError::new(
                FsErrorKind::Other,
                rel,
                format!("file-system task failed: {e}"),
            )),
        }
    }
}

/// The absolute path of `rel` under `root`. Refuses (as `WrongKind`) a path
/// whose folders include a symlink, which could point anywhere; a missing
/// folder on the way is `NotFound`.
fn resolve(root: &Path, rel: &RelPath) -> Result<PathBuf, FsError> {
    let mut path = root.to_path_buf();
    let parts = rel.components();
    for (i, name) in parts.iter().enumerate() {
        path.push(name.as_str());
        if i + 1 == parts.len() {
            break;
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| io_error(rel, "resolve", &e))?;
        if meta.file_type().is_symlink() {
            return Err(FsError::new(
                FsErrorKind::WrongKind,
                rel,
                format!(
                    "{} is a symlink; refusing to leave the synced folder",
                    path.display()
                ),
            ));
        }
        if !meta.is_dir() {
            return Err(FsError::new(
                FsErrorKind::WrongKind,
                rel,
                format!("{} is not a folder", path.display()),
            ));
        }
    }
    Ok(path)
}

/// Maps an io error to the engine's kinds, which decide retry or skip.
fn io_error(path: &RelPath, doing: &str, e: &io::Error) -> FsError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => FsErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => FsErrorKind::AlreadyExists,
        io::ErrorKind::DirectoryNotEmpty => FsErrorKind::NotEmpty,
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => FsErrorKind::WrongKind,
        // O_NOFOLLOW on a symlink.
        _ if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => FsErrorKind::WrongKind,
        _ => FsErrorKind::Other,
    };
    FsError::new(kind, path, format!("{doing}: {e}"))
}

fn kind_of(meta: &fs::Metadata) -> EntryKind {
    let t = meta.file_type();
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Folder
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Special
    }
}

fn stamp_of(meta: &fs::Metadata) -> Stamp {
    if meta.is_dir() {
        return Stamp::folder(Some(meta.ino()));
    }
    Stamp {
        size: meta.len(),
        mtime: meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000,
        file_id: Some(meta.ino()),
    }
}

/// Kind and stamp of `rel` under `root` (blocking), `None` if nothing of
/// ours is there: a missing folder on the way, or one that is a file or a
/// symlink, means nothing is.
fn stat_in(root: &Path, rel: &RelPath) -> Result<Option<Metadata>, FsError> {
    let found = resolve(root, rel).and_then(|abs| match fs::symlink_metadata(&abs) {
        Ok(meta) => Ok(Some(Metadata {
            kind: kind_of(&meta),
            stamp: stamp_of(&meta),
        })),
        Err(e) => Err(io_error(rel, "stat", &e)),
    });
    match found {
        Err(e) if matches!(e.kind, FsErrorKind::NotFound | FsErrorKind::WrongKind) => Ok(None),
        other => other,
    }
}

/// Opens a file for writing without following a symlink at `path`.
fn open_for_write(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(create)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

fn refuse_root(rel: &RelPath, doing: &str) -> Result<(), FsError> {
    if rel.is_root() {
        return Err(FsError::new(
            FsErrorKind::WrongKind,
            rel,
            format!("{doing}: not allowed on the synced folder itself"),
        ));
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists, atomically where the kernel
/// and file system support `RENAME_NOREPLACE`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Older kernels and some file systems (network, FUSE) lack the flag.
        Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::NOTSUP) => rename_fallback(from, to),
        Err(e) => Err(e.into()),
    }
}

/// No-clobber rename without `RENAME_NOREPLACE`.
fn rename_fallback(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_file() {
        // link(2) never replaces its target: atomic no-clobber, and the
        // inode (the engine's file id) is kept.
        fs::hard_link(from, to)?;
        fs::remove_file(from)
    } else {
        // Folders cannot be hard-linked; a window remains between the
        // check and the rename, the best such a system allows.
        match fs::symlink_metadata(to) {
            Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(from, to),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Fs for LocalFs {
    async fn list_dir(&self, path: &RelPath) -> Result<Vec<DirEntry>, FsError> {
        let rel = path.clone();
        self.blocking(path, move |abs| {
            let err = |e: io::Error| io_error(&rel, "list", &e);
            let meta = fs::symlink_metadata(&abs).map_err(err)?;
            if !meta.is_dir() {
                return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a folder"));
            }
            let mut out = Vec::new();
            for entry in fs::read_dir(&abs).map_err(err)? {
                let entry = entry.map_err(err)?;
                // DirEntry::metadata does not follow symlinks on Unix.
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // vanished
                    Err(e) => return Err(err(e)),
                };
                let (name, kind) = match entry.file_name().into_string() {
                    Ok(name) => (name, kind_of(&meta)),
                    // A name that is not UTF-8 cannot be synced; report it
                    // as special so the scanner skips it rather than look up
                    // a lossy name that names another file.
                    Err(raw) => (raw.to_string_lossy().into_owned(), EntryKind::Special),
                };
                out.push(DirEntry {
                    name,
                    kind,
                    stamp: stamp_of(&meta),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Metadata>, FsError> {
        let root = Arc::clone(&self.root);
        let rel = path.clone();
        self.blocking(&RelPath::root(), move |_| Ok(stat_in(&root, &rel)))
            .await?
    }

    async fn stat_all(&self, paths: &[RelPath]) -> Vec<Result<Option<Metadata>, FsError>> {
        let root = Arc::clone(&self.root);
        let rels = paths.to_vec();
        let done = self
            .blocking(&RelPath::root(), move |_| {
                Ok(rels.iter().map(|rel| stat_in(&root, rel)).collect())
            })
            .await;
        match done {
            Ok(all) => all,
            Err(e) => paths.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn open_read(&self, path: &RelPath) -> Result<ByteReader, FsError> {
        let rel = path.clone();
        let file = self
            .blocking(path, move |abs| {
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                    .open(&abs)
                    .map_err(|e| io_error(&rel, "open", &e))?;
                let meta = file.metadata().map_err(|e| io_error(&rel, "open", &e))?;
                if !meta.is_file() {
                    return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a file"));
                }
                // A second descriptor of the same open file: the stream
                // reads one, a blocking consumer takes the other.
                let stream = file.try_clone().map_err(|e| io_error(&rel, "open", &e))?;
                Ok((stream, file))
            })
            .await?;
        let (stream, file) = file;
        Ok(ByteReader::with_file(
            Touching::new(tokio::fs::File::from_std(stream), self.activity.clone()),
            file,
        ))
    }

    async fn hash_file(&self, path: &RelPath) -> Result<Option<(ContentHash, Stamp)>, FsError> {
        let root = Arc::clone(&self.root);
        let rel = path.clone();
        let activity = self.activity.clone();
        self.blocking(&RelPath::root(), move |_| {
            let Some(before) = stat_in(&root, &rel)? else {
                return Ok(None);
            };
            let err = |e: io::Error| io_error(&rel, "read", &e);
            let abs = resolve(&root, &rel)?;
            let mut file = match OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                .open(&abs)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(err(e)),
            };
            if !file.metadata().map_err(err)?.is_file() {
                return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a file"));
            }
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(err(e)),
                };
                hasher.update(&buf[..n]);
                activity.touch();
            }
            let after = stat_in(&root, &rel)?;
            if after.map(|m| m.stamp) != Some(before.stamp) {
                return Ok(None);
            }
            Ok(Some((
                ContentHash(*hasher.finalize().as_bytes()),
                before.stamp,
            )))
        })
        .await
    }

    async fn create_temp(&self, path: &RelPath) -> Result<ByteWriter, FsError> {
        refuse_root(path, "create")?;
        let rel = path.clone();
        let (file, handle) = self
            .blocking(path, move |abs| {
                let err = |e: io::Error| io_error(&rel, "create", &e);
                let file = open_for_write(&abs, true).map_err(err)?;
                let handle = file.try_clone().map_err(err)?;
                Ok((file, handle))
            })
            .await?;
        Ok(Box::new(Touching::new(
            SyncOnShutdown::new(file, handle, Arc::clone(&self.synced)),
            self.activity.clone(),
        )))
    }

    async fn resume_temp(&self, path: &RelPath, keep: u64) -> Result<ByteWriter, FsError> {
        refuse_root(path, "resume")?;
        let rel = path.clone();
        let (file, handle) = self
            .blocking(path, move |abs| {
                let err = |e: io::Error| io_error(&rel, "resume", &e);
                let mut file = open_for_write(&abs, false).map_err(err)?;
                if !file.metadata().map_err(err)?.is_file() {
                    return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a file"));
                }
                file.set_len(keep).map_err(err)?;
                file.seek(SeekFrom::Start(keep)).map_err(err)?;
                let handle = file.try_clone().map_err(err)?;
                Ok((file, handle))
            })
            .await?;
        Ok(Box::new(Touching::new(
            SyncOnShutdown::new(file, handle, Arc::clone(&self.synced)),
            self.activity.clone(),
        )))
    }

    async fn persist_temp(&self, temp: &RelPath, dest: &RelPath) -> Result<(), FsError> {
        refuse_root(dest, "persist")?;
        let rel = temp.clone();
        let dest = dest.clone();
        let root = Arc::clone(&self.root);
        let dirty = Arc::clone(&self.dirty);
        let synced = Arc::clone(&self.synced);
        self.blocking(temp, move |abs| {
            let dest_abs = resolve(&root, &dest)?;
            let err = |e: io::Error| io_error(&rel, "persist", &e);
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                .open(&abs)
                .map_err(err)?;
            // Synced by its writer and untouched since (the usual case):
            // nothing to sync. Otherwise (a temporary left by an earlier
            // run) it is synced now, before it can replace anything.
            if !synced.take(&file.metadata().map_err(err)?) {
                file.sync_all().map_err(err)?;
            }
            drop(file);
            fs::rename(&abs, &dest_abs).map_err(err)?;
            // The new entry (and the temporary's removal) become durable
            // with `sync_dirs`, before the engine records the download.
            dirty.add(parent_of(&dest_abs));
            if parent_of(&abs) != parent_of(&dest_abs) {
                dirty.add(parent_of(&abs));
            }
            Ok(())
        })
        .await
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), FsError> {
        refuse_root(path, "mkdir")?;
        let rel = path.clone();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(path, move |abs| {
            let err = |e: io::Error| io_error(&rel, "mkdir", &e);
            fs::create_dir(&abs).map_err(err)?;
            dirty.add(parent_of(&abs));
            Ok(())
        })
        .await
    }

    async fn sync_dirs(&self) -> Result<(), FsError> {
        let folders = self.dirty.take();
        if folders.is_empty() {
            return Ok(());
        }
        let dirty = Arc::clone(&self.dirty);
        // One folder listing per call is typical; the blocking pool runs
        // the fsyncs off the runtime.
        self.blocking(&RelPath::root(), move |_| {
            durable::sync_folders(&folders).map_err(|(failed, e)| {
                dirty.restore(failed);
                FsError::new(
                    FsErrorKind::Other,
                    &RelPath::root(),
                    format!("syncing folders: {e}"),
                )
            })
        })
        .await
    }

    async fn remove_file(&self, path: &RelPath) -> Result<(), FsError> {
        refuse_root(path, "remove")?;
        let rel = path.clone();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(path, move |abs| {
            let err = |e: io::Error| io_error(&rel, "remove", &e);
            let meta = fs::symlink_metadata(&abs).map_err(err)?;
            if !meta.is_file() {
                return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a file"));
            }
            fs::remove_file(&abs).map_err(err)?;
            dirty.add(parent_of(&abs));
            Ok(())
        })
        .await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), FsError> {
        refuse_root(path, "rmdir")?;
        let rel = path.clone();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(path, move |abs| {
            let err = |e: io::Error| io_error(&rel, "rmdir", &e);
            let meta = fs::symlink_metadata(&abs).map_err(err)?;
            if !meta.is_dir() {
                return Err(FsError::new(FsErrorKind::WrongKind, &rel, "not a folder"));
            }
            fs::remove_dir(&abs).map_err(err)?;
            dirty.add(parent_of(&abs));
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), FsError> {
        refuse_root(from, "rename")?;
        refuse_root(to, "rename")?;
        let to_abs = self.blocking(to, Ok).await?;
        let (rel, to_rel) = (from.clone(), to.clone());
        let dirty = Arc::clone(&self.dirty);
        self.blocking(from, move |abs| {
            rename_noreplace(&abs, &to_abs).map_err(|e| {
                // The engine branches on AlreadyExists for the target.
                let on = if e.kind() == io::ErrorKind::AlreadyExists {
                    &to_rel
                } else {
                    &rel
                };
                io_error(on, &format!("rename {rel} to {to_rel}"), &e)
            })?;
            dirty.add(parent_of(&to_abs));
            dirty.add(parent_of(&abs));
            Ok(())
        })
        .await
    }

    async fn rename_entry(&self, dir: &RelPath, from: &str, to: &ItemName) -> Result<(), FsError> {
        let target = dir.join(to);
        // A raw name from `list_dir` is one component; anything else is
        // not an entry of `dir` and must not reach outside it.
        if from.is_empty() || from == "." || from == ".." || from.contains('/') {
            return Err(FsError::new(
                FsErrorKind::NotFound,
                &target,
                format!(
                    "{:?} is not an entry name",
                    stacksync_proto::printable(from)
                ),
            ));
        }
        let from = from.to_owned();
        let rel = target.clone();
        let dirty = Arc::clone(&self.dirty);
        self.blocking(&target, move |to_abs| {
            let abs = parent_of(&to_abs).join(&from);
            rename_noreplace(&abs, &to_abs)
                .map_err(|e| io_error(&rel, "rename to the composed (NFC) name", &e))?;
            dirty.add(parent_of(&to_abs));
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_rename_never_overwrites() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"A").expect("write a");
        fs::write(&b, b"B").expect("write b");
        let err = rename_fallback(&a, &b).expect_err("target exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).expect("read b"), b"B");
        let ino = fs::metadata(&a).expect("stat a").ino();
        rename_fallback(&a, &c).expect("free target");
        assert!(!a.exists());
        assert_eq!(fs::metadata(&c).expect("stat c").ino(), ino);
        let (d, e) = (dir.path().join("d"), dir.path().join("e"));
        fs::create_dir(&d).expect("mkdir d");
        fs::create_dir(&e).expect("mkdir e");
        let err = rename_fallback(&d, &e).expect_err("folder exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        rename_fallback(&d, &dir.path().join("f")).expect("free folder target");
        assert!(!d.exists());
    }
}
