//! An in-memory [`Fs`] with fault injection.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use stacksync_proto::ItemName;
use tokio::io::AsyncWrite;

use crate::error::{FsError, FsErrorKind};
use crate::io::{ByteReader, ByteWriter, DirEntry, EntryKind, Fs, Metadata};
use crate::path::RelPath;
use crate::tree::Stamp;

#[derive(Debug, Clone)]
enum Node {
    Dir {
        id: u64,
    },
    File {
        id: u64,
        mtime: i64,
        data: Arc<Vec<u8>>,
    },
    Symlink {
        id: u64,
    },
    Special {
        id: u64,
    },
}

impl Node {
    fn meta(&self) -> Metadata {
        let (kind, id, size, mtime) = match self {
            Node::Dir { id } => {
                return Metadata {
                    kind: EntryKind::Folder,
                    stamp: Stamp::folder(Some(*id)),
                };
            }
            Node::File { id, mtime, data } => (EntryKind::File, *id, data.len() as u64, *mtime),
            Node::Symlink { id } => (EntryKind::Symlink, *id, 0, 0),
            Node::Special { id } => (EntryKind::Special, *id, 0, 0),
        };
        Metadata {
            kind,
            stamp: Stamp {
                size,
                mtime,
                file_id: Some(id),
            },
        }
    }
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<RelPath, Node>,
    next_id: u64,
    tick: i64,
    /// Mutating calls the engine may still make before the "crash".
    crash_budget: Option<u64>,
    /// Bytes the engine may still write into files before the "crash".
    write_budget: Option<u64>,
    crashed: bool,
    /// Files that are modified right after the engine opens them for reading.
    change_on_read: BTreeSet<RelPath>,
    /// Contents replaced by that fault (the "user" overwrote them while
    /// the engine read them, so nobody can be expected to keep them).
    overwritten_by_fault: Vec<Vec<u8>>,
    /// Whether entries report a file id (set false to model platforms
    /// without stable ids).
    no_file_ids: bool,
    mutations: u64,
    /// Files the engine opened for reading.
    reads: u64,
    /// What a watcher would have reported since [`MemFs::take_watched`]:
    /// the paths of the entries the user changed.
    watched: BTreeSet<RelPath>,
    /// Changes of folder entries made by the engine since its last
    /// `sync_dirs` (which a real disk may lose in a power cut).
    unsynced: u64,
    /// Files whose names are not valid item names (a decomposed name, a
    /// control character), by folder and raw name: a path cannot name
    /// them, so only `list_dir` and `rename_entry` reach them.
    raw: BTreeMap<(RelPath, String), Node>,
}

impl State {
    fn fresh(&mut self) -> (u64, i64) {
        self.next_id += 1;
        self.tick += 1;
        (self.next_id, self.tick)
    }

    fn meta(&self, node: &Node) -> Metadata {
        let mut m = node.meta();
        if self.no_file_ids {
            m.stamp.file_id = None;
        }
        m
    }

    fn parent_is_dir(&self, path: &RelPath) -> bool {
        match path.parent() {
            None => false,
            Some(p) if p.is_root() => true,
            Some(p) => matches!(self.nodes.get(&p), Some(Node::Dir { .. })),
        }
    }
}

/// A file system in memory. Clones share the same disk. The engine's calls
/// go through the [`Fs`] trait (and are subject to faults); the `user_*`
/// methods play the user and are never faulted.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

fn err(kind: FsErrorKind, path: &RelPath, msg: &str) -> FsError {
    FsError::new(kind, path, msg)
}

fn rp(s: &str) -> RelPath {
    // Test paths are literals written by the test author.
    RelPath::parse(s)
        .unwrap_or_else(|e| panic!("test path {s:?} is not a valid relative path: {e}"))
}

impl MemFs {
    /// An empty disk.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test failure already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After `n` more mutating calls from the engine, every call fails as
    /// if the machine had crashed (the disk keeps what was done).
    pub fn crash_after(&self, n: u64) {
        self.lock().crash_budget = Some(n);
    }

    /// After `n` more bytes written by the engine into files (downloads),
    /// the machine "crashes" in the middle of the write.
    pub fn crash_after_bytes(&self, n: u64) {
        self.lock().write_budget = Some(n);
    }

    /// Whether the simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Reboots: clears the crash and any pending crash budget.
    pub fn recover(&self) {
        let mut s = self.lock();
        s.crashed = false;
        s.crash_budget = None;
        s.write_budget = None;
    }

    /// Changes of folder entries the engine made since it last called
    /// `sync_dirs` (a real disk may lose them in a power cut).
    pub fn unsynced_entries(&self) -> u64 {
        self.lock().unsynced
    }

    /// Files the engine opened for reading so far.
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }

    /// Mutating calls the engine made so far.
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// The next time the engine opens `path` for reading, the file is
    /// modified just after (a file being written while it is uploaded).
    pub fn change_on_next_read(&self, path: &str) {
        self.lock().change_on_read.insert(rp(path));
    }

    /// Paths that will change when next read (their current content is
    /// about to be overwritten, so a test cannot expect it to be kept).
    pub fn pending_changes_on_read(&self) -> Vec<String> {
        self.lock()
            .change_on_read
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// Contents that the change-on-read fault overwrote.
    pub fn overwritten_by_fault(&self) -> Vec<Vec<u8>> {
        self.lock().overwritten_by_fault.clone()
    }

    /// The paths a watcher would have reported since the last call: every
    /// entry the user (or a fault playing the user) created, changed,
    /// removed or renamed (both names).
    pub fn take_watched(&self) -> BTreeSet<RelPath> {
        std::mem::take(&mut self.lock().watched)
    }

    /// Hides file ids, as on a platform without stable ones.
    pub fn without_file_ids(&self) {
        self.lock().no_file_ids = true;
    }

    /// Creates or overwrites a file, creating parent folders. Overwriting
    /// keeps the file id, as writing in place does.
    pub fn user_write(&self, path: &str, data: &[u8]) {
        let path = rp(path);
        self.user_mkdir_p_path(&path.parent().unwrap_or_default());
        let mut s = self.lock();
        s.watched.insert(path.clone());
        let (fresh_id, mtime) = s.fresh();
        let id = match s.nodes.get(&path) {
            Some(Node::File { id, .. }) => *id,
            _ => fresh_id,
        };
        s.nodes.insert(
            path,
            Node::File {
                id,
                mtime,
                data: Arc::new(data.to_vec()),
            },
        );
    }

    /// Creates a folder and its parents.
    pub fn user_mkdir_p(&self, path: &str) {
        self.user_mkdir_p_path(&rp(path));
    }

    fn user_mkdir_p_path(&self, path: &RelPath) {
        let mut s = self.lock();
        let mut cur = RelPath::root();
        for c in path.components() {
            cur = cur.join(c);
            if !s.nodes.contains_key(&cur) {
                let (id, _) = s.fresh();
                s.watched.insert(cur.clone());
                s.nodes.insert(cur.clone(), Node::Dir { id });
            }
        }
    }

    /// Creates a symbolic link (its target does not matter: it is never
    /// followed).
    pub fn user_symlink(&self, path: &str) {
        let mut s = self.lock();
        let (id, _) = s.fresh();
        s.watched.insert(rp(path));
        s.nodes.insert(rp(path), Node::Symlink { id });
    }

    /// Creates a FIFO-like special file.
    pub fn user_special(&self, path: &str) {
        let mut s = self.lock();
        let (id, _) = s.fresh();
        s.watched.insert(rp(path));
        s.nodes.insert(rp(path), Node::Special { id });
    }

    /// Removes a file or a whole folder tree. Returns false if absent.
    pub fn user_remove(&self, path: &str) -> bool {
        let path = rp(path);
        let mut s = self.lock();
        s.watched.insert(path.clone());
        let before = s.nodes.len();
        s.nodes.retain(|p, _| !p.starts_with(&path));
        s.nodes.len() != before
    }

    /// Renames a file or folder tree (overwriting nothing). Returns false if
    /// the source is missing, the target exists or its parent does not.
    pub fn user_rename(&self, from: &str, to: &str) -> bool {
        let mut s = self.lock();
        let renamed = rename_tree(&mut s, &rp(from), &rp(to)).is_ok();
        if renamed {
            s.watched.insert(rp(from));
            s.watched.insert(rp(to));
        }
        renamed
    }

    /// A file's content.
    pub fn user_read(&self, path: &str) -> Option<Vec<u8>> {
        match self.lock().nodes.get(&rp(path)) {
            Some(Node::File { data, .. }) => Some(data.to_vec()),
            _ => None,
        }
    }

    /// Creates a file whose raw name `name` (in folder `dir`) need not be a
    /// valid item name, as another program could on a real disk.
    pub fn user_write_raw(&self, dir: &str, name: &str, data: &[u8]) {
        let dir = rp(dir);
        self.user_mkdir_p_path(&dir);
        let mut s = self.lock();
        let (id, mtime) = s.fresh();
        let data = Arc::new(data.to_vec());
        // A watcher names the folder of an entry whose name is not valid.
        s.watched.insert(dir.clone());
        s.raw
            .insert((dir, name.to_owned()), Node::File { id, mtime, data });
    }

    /// The content of a file made by [`MemFs::user_write_raw`], while it
    /// still has its raw name.
    pub fn user_read_raw(&self, dir: &str, name: &str) -> Option<Vec<u8>> {
        match self.lock().raw.get(&(rp(dir), name.to_owned())) {
            Some(Node::File { data, .. }) => Some(data.to_vec()),
            _ => None,
        }
    }

    /// Every path with its content (`None` for folders), symlinks and
    /// special files left out: what two converged devices must agree on.
    pub fn snapshot(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.lock()
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                Node::Dir { .. } => Some((p.to_string(), None)),
                Node::File { data, .. } => Some((p.to_string(), Some(data.to_vec()))),
                _ => None,
            })
            .collect()
    }

    fn check(&self, path: &RelPath, mutating: bool) -> Result<MutexGuard<'_, State>, FsError> {
        let mut s = self.lock();
        if s.crashed {
            return Err(err(FsErrorKind::Other, path, "simulated crash"));
        }
        if mutating {
            if let Some(b) = s.crash_budget {
                if b == 0 {
                    s.crashed = true;
                    return Err(err(FsErrorKind::Other, path, "simulated crash"));
                }
                s.crash_budget = Some(b - 1);
            }
            s.mutations += 1;
        }
        Ok(s)
    }
}

fn rename_tree(s: &mut State, from: &RelPath, to: &RelPath) -> Result<(), FsError> {
    if !s.nodes.contains_key(from) {
        return Err(err(FsErrorKind::NotFound, from, "no such entry"));
    }
    if s.nodes.contains_key(to) {
        return Err(err(FsErrorKind::AlreadyExists, to, "target exists"));
    }
    if !s.parent_is_dir(to) || to.starts_with(from) {
        return Err(err(FsErrorKind::NotFound, to, "target folder missing"));
    }
    let moved: Vec<RelPath> = s
        .nodes
        .keys()
        .filter(|p| p.starts_with(from))
        .cloned()
        .collect();
    for p in moved {
        let node = s
            .nodes
            .remove(&p)
            .expect("path listed from the map a moment ago");
        let mut np = to.clone();
        for c in &p.components()[from.depth()..] {
            np = np.join(c);
        }
        s.nodes.insert(np, node);
    }
    Ok(())
}

/// Bytes of a file as they were when it was opened.
struct Snapshot(Arc<Vec<u8>>);

impl AsRef<[u8]> for Snapshot {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Writes straight into the file node, so memory is the file itself.
struct NodeWriter {
    fs: MemFs,
    path: RelPath,
}

impl AsyncWrite for NodeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.fs.lock();
        if s.crashed {
            return Poll::Ready(Err(io::Error::other("simulated crash")));
        }
        let mut n = buf.len();
        if let Some(b) = s.write_budget {
            if b == 0 {
                s.crashed = true;
                return Poll::Ready(Err(io::Error::other("simulated crash")));
            }
            n = n.min(b as usize);
            s.write_budget = Some(b - n as u64);
        }
        s.tick += 1;
        let tick = s.tick;
        match s.nodes.get_mut(&self.path) {
            Some(Node::File { data, mtime, .. }) => {
                Arc::make_mut(data).extend_from_slice(&buf[..n]);
                *mtime = tick;
                Poll::Ready(Ok(n))
            }
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotFound,
                "temp file vanished",
            ))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Fs for MemFs {
    async fn list_dir(&self, path: &RelPath) -> Result<Vec<DirEntry>, FsError> {
        let s = self.check(path, false)?;
        if !path.is_root() && !matches!(s.nodes.get(path), Some(Node::Dir { .. })) {
            return Err(err(FsErrorKind::NotFound, path, "no such folder"));
        }
        Ok(s.nodes
            .range(path.clone()..)
            .skip_while(|(p, _)| *p == path)
            .take_while(|(p, _)| p.starts_with(path))
            .filter(|(p, _)| p.depth() == path.depth() + 1)
            .map(|(p, n)| {
                let m = s.meta(n);
                DirEntry {
                    name: p.name().map(|n| n.to_string()).unwrap_or_default(),
                    kind: m.kind,
                    stamp: m.stamp,
                }
            })
            .chain(
                s.raw
                    .iter()
                    .filter(|((dir, _), _)| dir == path)
                    .map(|((_, name), n)| DirEntry {
                        name: name.clone(),
                        kind: s.meta(n).kind,
                        stamp: s.meta(n).stamp,
                    }),
            )
            .collect())
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<Metadata>, FsError> {
        let s = self.check(path, false)?;
        Ok(s.nodes.get(path).map(|n| s.meta(n)))
    }

    async fn open_read(&self, path: &RelPath) -> Result<ByteReader, FsError> {
        let mut s = self.check(path, false)?;
        s.reads += 1;
        let data = match s.nodes.get(path) {
            Some(Node::File { data, .. }) => data.clone(),
            Some(_) => return Err(err(FsErrorKind::WrongKind, path, "not a file")),
            None => return Err(err(FsErrorKind::NotFound, path, "no such file")),
        };
        if s.change_on_read.remove(path) {
            s.watched.insert(path.clone());
            s.tick += 1;
            let tick = s.tick;
            let mut old = None;
            if let Some(Node::File { data, mtime, .. }) = s.nodes.get_mut(path) {
                old = Some(data.to_vec());
                Arc::make_mut(data).extend_from_slice(b" (edited while read)");
                *mtime = tick;
            }
            s.overwritten_by_fault.extend(old);
        }
        Ok(ByteReader::new(std::io::Cursor::new(Snapshot(data))))
    }

    async fn create_temp(&self, path: &RelPath) -> Result<ByteWriter, FsError> {
        let mut s = self.check(path, true)?;
        if !s.parent_is_dir(path) {
            return Err(err(FsErrorKind::NotFound, path, "folder missing"));
        }
        let (id, mtime) = s.fresh();
        s.nodes.insert(
            path.clone(),
            Node::File {
                id,
                mtime,
                data: Arc::new(Vec::new()),
            },
        );
        Ok(Box::new(NodeWriter {
            fs: self.clone(),
            path: path.clone(),
        }))
    }

    async fn resume_temp(&self, path: &RelPath, keep: u64) -> Result<ByteWriter, FsError> {
        let mut s = self.check(path, true)?;
        s.tick += 1;
        let tick = s.tick;
        match s.nodes.get_mut(path) {
            Some(Node::File { data, mtime, .. }) => {
                Arc::make_mut(data).truncate(keep as usize);
                *mtime = tick;
            }
            Some(_) => return Err(err(FsErrorKind::WrongKind, path, "not a file")),
            None => return Err(err(FsErrorKind::NotFound, path, "no temp file")),
        }
        Ok(Box::new(NodeWriter {
            fs: self.clone(),
            path: path.clone(),
        }))
    }

    async fn persist_temp(&self, temp: &RelPath, dest: &RelPath) -> Result<(), FsError> {
        let mut s = self.check(dest, true)?;
        s.unsynced += 1;
        if matches!(s.nodes.get(dest), Some(Node::Dir { .. })) {
            return Err(err(FsErrorKind::WrongKind, dest, "a folder is in the way"));
        }
        let node = s
            .nodes
            .remove(temp)
            .ok_or_else(|| err(FsErrorKind::NotFound, temp, "no temp file"))?;
        s.nodes.insert(dest.clone(), node);
        Ok(())
    }

    async fn mkdir(&self, path: &RelPath) -> Result<(), FsError> {
        let mut s = self.check(path, true)?;
        s.unsynced += 1;
        if s.nodes.contains_key(path) {
            return Err(err(FsErrorKind::AlreadyExists, path, "exists"));
        }
        if !s.parent_is_dir(path) {
            return Err(err(FsErrorKind::NotFound, path, "parent missing"));
        }
        let (id, _) = s.fresh();
        s.nodes.insert(path.clone(), Node::Dir { id });
        Ok(())
    }

    async fn sync_dirs(&self) -> Result<(), FsError> {
        let mut s = self.check(&RelPath::root(), false)?;
        s.unsynced = 0;
        Ok(())
    }

    async fn remove_file(&self, path: &RelPath) -> Result<(), FsError> {
        let mut s = self.check(path, true)?;
        s.unsynced += 1;
        match s.nodes.get(path) {
            Some(Node::Dir { .. }) => Err(err(FsErrorKind::WrongKind, path, "is a folder")),
            Some(_) => {
                s.nodes.remove(path);
                Ok(())
            }
            None => Err(err(FsErrorKind::NotFound, path, "no such file")),
        }
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<(), FsError> {
        let mut s = self.check(path, true)?;
        s.unsynced += 1;
        match s.nodes.get(path) {
            Some(Node::Dir { .. }) => {}
            Some(_) => return Err(err(FsErrorKind::WrongKind, path, "not a folder")),
            None => return Err(err(FsErrorKind::NotFound, path, "no such folder")),
        }
        if s.nodes.keys().any(|p| p != path && p.starts_with(path)) {
            return Err(err(FsErrorKind::NotEmpty, path, "folder not empty"));
        }
        s.nodes.remove(path);
        Ok(())
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), FsError> {
        let mut s = self.check(from, true)?;
        s.unsynced += 1;
        rename_tree(&mut s, from, to)
    }

    async fn rename_entry(&self, dir: &RelPath, from: &str, to: &ItemName) -> Result<(), FsError> {
        let target = dir.join(to);
        let mut s = self.check(&target, true)?;
        let raw = (dir.clone(), from.to_owned());
        s.unsynced += 1;
        if !s.raw.contains_key(&raw) {
            let from = ItemName::new(from)
                .map_err(|_| err(FsErrorKind::NotFound, dir, "no such entry"))?;
            return rename_tree(&mut s, &dir.join(&from), &target);
        }
        if s.nodes.contains_key(&target) {
            return Err(err(FsErrorKind::AlreadyExists, &target, "target exists"));
        }
        let node = s.raw.remove(&raw).expect("checked just above");
        s.nodes.insert(target, node);
        Ok(())
    }
}
