//! Scanning the local folder into a [`LocalTree`], hashing only what
//! changed since it was last hashed.

use std::collections::{BTreeSet, HashMap};

use stacksync_proto::{ContentHash, ItemName};
use tokio::io::AsyncReadExt;

use crate::error::{FsError, FsErrorKind};
use crate::ignore::{BadPattern, DOWNLOAD_TEMP_PREFIX, IGNORE_FILE, IgnoreRules};
use crate::io::{DirEntry, EntryKind, Fs};
use crate::local_name::{self, Taken};
use crate::path::RelPath;
use crate::tree::{LocalEntry, LocalTree, Stamp};

mod partial;

pub use partial::rescan;

/// Largest ignore file read; the rest is not looked at.
const MAX_IGNORE_FILE: u64 = 1 << 20;
/// Read buffer for hashing; memory stays bounded whatever the file size.
const READ_BUF: usize = 64 * 1024;

/// Hashes already known for a stamp, so that unchanged files are not read.
#[derive(Debug, Default, Clone)]
pub struct HashCache {
    by_path: HashMap<RelPath, (Stamp, ContentHash)>,
    by_file_id: HashMap<u64, (Stamp, ContentHash)>,
}

impl HashCache {
    /// Remembers that the file at `path` with `stamp` has `hash`. A stamp
    /// with a file id is found by it (the stamp holds it, so the answer is
    /// the same as by path, and a path per file cost ~20 MB at 100,000
    /// files); only stamps without one are kept by path.
    pub fn insert(&mut self, path: RelPath, stamp: Stamp, hash: ContentHash) {
        match stamp.file_id {
            Some(f) => {
                self.by_file_id.insert(f, (stamp, hash));
                // An older entry without a file id would shadow this one.
                self.by_path.remove(&path);
            }
            None => {
                self.by_path.insert(path, (stamp, hash));
            }
        }
    }

    /// Drops the entries `synced` answers alike (files since synced with
    /// the stamp they were hashed with): it holds every synced file, so
    /// the cache need only keep what is not synced yet.
    pub fn prune(&mut self, synced: &crate::planner::SyncedHashes<'_>) {
        self.by_file_id
            .retain(|_, (stamp, hash)| synced.get(stamp) != Some(*hash));
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.by_path.len() + self.by_file_id.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a scan finds the hash of a file it has seen before, so that it
/// reads only files whose stamp it does not know.
pub trait KnownHashes: Sync {
    /// The hash of the file at `path` if it was seen with `stamp`.
    fn known_hash(&self, path: &RelPath, stamp: &Stamp) -> Option<ContentHash>;
}

impl KnownHashes for HashCache {
    fn known_hash(&self, path: &RelPath, stamp: &Stamp) -> Option<ContentHash> {
        let hit = |e: Option<&(Stamp, ContentHash)>| e.filter(|(s, _)| s == stamp).map(|(_, h)| *h);
        hit(self.by_path.get(path))
            .or_else(|| stamp.file_id.and_then(|f| hit(self.by_file_id.get(&f))))
    }
}

/// Why an entry on disk is not in the local tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Matched an ignore rule.
    Ignored,
    /// A symbolic link (never followed, never synced).
    Symlink,
    /// A socket, FIFO or device.
    Special,
    /// The name cannot be a StackSync name.
    InvalidName(String),
}

/// The result of a scan.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Every synced-eligible entry.
    pub tree: LocalTree,
    /// The rules in force (defaults plus the root ignore file).
    pub ignore: IgnoreRules,
    /// Entries left out, with why (the parent path and the raw name).
    pub skipped: Vec<(RelPath, String, Skipped)>,
    /// Entries renamed on disk to the composed (NFC) form of their name
    /// (the rule is in `local_name.rs`): the new path and the old raw name.
    pub composed: Vec<(RelPath, String)>,
    /// Lines of the ignore file that are not valid patterns.
    pub bad_patterns: Vec<BadPattern>,
    /// Leftover download temporaries (from an interrupted download).
    pub stale_temps: Vec<RelPath>,
    /// Files read and hashed by this scan (not found in the cache).
    pub hashed: Vec<RelPath>,
}

/// Walks the whole folder. Files whose stamp is in `cache` keep the cached
/// hash; others are read and hashed. A file that changes while being read
/// gets no hash (it is left alone this round).
pub async fn scan(fs: &dyn Fs, cache: &dyn KnownHashes) -> Result<Scan, FsError> {
    scan_excluding(fs, cache, &BTreeSet::new()).await
}

/// [`scan`] with `excluded` paths left out as well (see
/// [`IgnoreRules::excluding`]); the scan's rules keep them, so a partial
/// rescan of it leaves them out too.
pub async fn scan_excluding(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    excluded: &BTreeSet<RelPath>,
) -> Result<Scan, FsError> {
    let (ignore, bad_patterns) = load_ignore(fs).await?;
    let ignore = ignore.excluding(excluded);
    let mut out = Scan {
        tree: LocalTree::new(),
        ignore,
        skipped: Vec::new(),
        composed: Vec::new(),
        bad_patterns,
        stale_temps: Vec::new(),
        hashed: Vec::new(),
    };
    walk(fs, cache, RelPath::root(), &mut out).await?;
    // Built again in bulk: inserted folder by folder, the tree's nodes
    // are left partly empty (a third of its memory at 100,000 files).
    out.tree = std::mem::take(&mut out.tree).into_iter().collect();
    Ok(out)
}

/// Adds `top` (a folder, or the root) and everything under it to `out`,
/// which holds nothing under `top` yet.
async fn walk(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    top: RelPath,
    out: &mut Scan,
) -> Result<(), FsError> {
    let mut pending = vec![top];
    while let Some(dir) = pending.pop() {
        let Some(entries) = list(fs, &dir).await? else {
            continue;
        };
        for e in &entries {
            if let Some(Found::Folder(path)) = take_entry(fs, cache, &dir, e, &entries, out).await?
            {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// The entries of `dir`; `None` if it was removed (the root never is: a
/// missing root is an error, never "everything deleted").
async fn list(fs: &dyn Fs, dir: &RelPath) -> Result<Option<Vec<DirEntry>>, FsError> {
    match fs.list_dir(dir).await {
        Ok(e) => Ok(Some(e)),
        // Removed while we walked: the next scan sees the new state.
        Err(e) if e.kind == FsErrorKind::NotFound && !dir.is_root() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What one listed entry became.
enum Found {
    /// A folder, now in the tree (its content is not).
    Folder(RelPath),
    /// A file (in the tree unless it vanished while being read).
    File,
}

/// Takes one entry `e` of folder `dir` (listed with its siblings
/// `entries`) into `out`: into the tree (a folder without its content, or
/// a file with its hash), or into the lists of what is left out.
async fn take_entry(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    dir: &RelPath,
    e: &DirEntry,
    entries: &[DirEntry],
    out: &mut Scan,
) -> Result<Option<Found>, FsError> {
    let name = match local_name::take(fs, dir, &e.name, entries).await {
        Taken::Valid(n) => n,
        Taken::Composed(n) => {
            out.composed.push((dir.join(&n), e.name.clone()));
            n
        }
        Taken::Refused(why) => {
            out.skipped
                .push((dir.clone(), e.name.clone(), Skipped::InvalidName(why)));
            return Ok(None);
        }
    };
    let path = dir.join(&name);
    let is_folder = match e.kind {
        EntryKind::Folder => true,
        EntryKind::File => false,
        EntryKind::Symlink => {
            out.skipped
                .push((dir.clone(), e.name.clone(), Skipped::Symlink));
            return Ok(None);
        }
        EntryKind::Special => {
            out.skipped
                .push((dir.clone(), e.name.clone(), Skipped::Special));
            return Ok(None);
        }
    };
    if out.ignore.is_ignored(&path, is_folder) {
        if !is_folder && name.as_str().starts_with(DOWNLOAD_TEMP_PREFIX) {
            out.stale_temps.push(path);
        } else {
            out.skipped
                .push((dir.clone(), e.name.clone(), Skipped::Ignored));
        }
        return Ok(None);
    }
    if is_folder {
        out.tree.insert(
            path.clone(),
            LocalEntry {
                is_folder,
                stamp: e.stamp,
                hash: None,
            },
        );
        return Ok(Some(Found::Folder(path)));
    }
    take_file(fs, cache, path, e.stamp, out).await?;
    Ok(Some(Found::File))
}

/// Puts the regular file at `path`, seen with `stamp`, into the tree with
/// its hash: from `cache` if the stamp is known, else read (and noted in
/// `out.hashed`).
async fn take_file(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    path: RelPath,
    stamp: Stamp,
    out: &mut Scan,
) -> Result<(), FsError> {
    let hash = match cache.known_hash(&path, &stamp) {
        Some(h) => Some((h, stamp)),
        None => {
            out.hashed.push(path.clone());
            fs.hash_file(&path).await?
        }
    };
    if let Some((h, stamp)) = hash {
        out.tree.insert(
            path,
            LocalEntry {
                is_folder: false,
                stamp,
                hash: Some(h),
            },
        );
    } else if let Ok(Some(m)) = fs.stat(&path).await {
        // Unstable or vanished: keep the entry without a hash so the
        // planner leaves it alone instead of thinking it deleted.
        out.tree.insert(
            path,
            LocalEntry {
                is_folder: false,
                stamp: m.stamp,
                hash: None,
            },
        );
    }
    Ok(())
}

/// [`Fs::hash_file`] through the file system's other calls: stat, stream
/// the content through BLAKE3, stat again.
pub async fn hash_file_streaming<F: Fs + ?Sized>(
    fs: &F,
    path: &RelPath,
) -> Result<Option<(ContentHash, Stamp)>, FsError> {
    let Some(before) = fs.stat(path).await? else {
        return Ok(None);
    };
    let mut reader = match fs.open_read(path).await {
        Ok(r) => r,
        Err(e) if e.kind == FsErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| FsError::new(FsErrorKind::Other, path, format!("read: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let after = fs.stat(path).await?;
    if after.map(|m| m.stamp) != Some(before.stamp) {
        return Ok(None);
    }
    Ok(Some((
        ContentHash(*hasher.finalize().as_bytes()),
        before.stamp,
    )))
}

/// The path of the ignore file (a change to it calls for a full scan).
pub fn ignore_file() -> RelPath {
    RelPath::root().join(&ItemName::new(IGNORE_FILE).expect("the ignore file name is a valid name"))
}

async fn load_ignore(fs: &dyn Fs) -> Result<(IgnoreRules, Vec<BadPattern>), FsError> {
    let path = RelPath::root()
        .join(&ItemName::new(IGNORE_FILE).expect("the ignore file name is a valid name"));
    match fs.stat(&path).await? {
        Some(m) if m.kind == EntryKind::File => {}
        _ => return Ok((IgnoreRules::defaults(), Vec::new())),
    }
    let reader = match fs.open_read(&path).await {
        Ok(r) => r,
        Err(e) if e.kind == FsErrorKind::NotFound => {
            return Ok((IgnoreRules::defaults(), Vec::new()));
        }
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_IGNORE_FILE)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| FsError::new(FsErrorKind::Other, &path, format!("read: {e}")))?;
    Ok(IgnoreRules::with_file(&String::from_utf8_lossy(&bytes)))
}
