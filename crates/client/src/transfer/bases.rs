//! The base cache: the encoded bytes of chunks this device recently
//! uploaded or downloaded whole, kept on disk so that the next edit of the
//! same file can be sent as a delta against them (`stacksync_content::delta`:
//! a one-byte change inside a 1 MiB chunk then sends about 200 bytes) and a
//! delta from another device can be applied without fetching its base.
//!
//! The sender of a delta needs the base's plaintext, and an editor that
//! saves in place or by rename has already replaced the old bytes on disk
//! by the time the change is seen: hence a cache, as Dropbox keeps one.
//! It holds only what makes a delta likely to pay: chunks of at least
//! [`MIN_BASE_CHUNK`] bytes within the first [`CACHED_PREFIX`] bytes of
//! their file (documents and databases people edit, not whole videos), up
//! to a byte budget, the least recently used going first.
//!
//! It is a cache: writes are not synced, and every entry is decoded and
//! checked against its id when it is used (an entry that fails is
//! removed), so a torn or stale file costs a full upload, never a wrong
//! byte. Entries are encoded as they are stored (compressed, and encrypted
//! in encrypted workspaces), so the cache holds no more plaintext than the
//! store does. All methods block: call them from a blocking thread.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use stacksync_proto::ChunkId;

/// Smallest chunk (plaintext bytes) worth keeping as a base: a delta must
/// save at least 4 KiB and be at most a quarter of the chunk
/// (`delta::delta_pays`), which smaller chunks rarely allow.
pub const MIN_BASE_CHUNK: u32 = 64 * 1024;

/// Only chunks that start within this many bytes of their file's start
/// are kept.
pub const CACHED_PREFIX: u64 = 64 * 1024 * 1024;

/// Default budget of a cache, in encoded bytes.
pub const DEFAULT_BASE_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Whether the chunk at `offset` of its file, of `size` plaintext bytes,
/// belongs in the cache.
pub fn worth_keeping(offset: u64, size: u32) -> bool {
    size >= MIN_BASE_CHUNK && offset < CACHED_PREFIX
}

/// Encoded chunks on disk, one file per chunk named by its id, under a
/// byte budget. See the module docs.
pub struct BaseCache {
    dir: PathBuf,
    budget: u64,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Each entry's length and when it was last used (a counter).
    entries: HashMap<ChunkId, (u64, u64)>,
    total: u64,
    clock: u64,
}

impl std::fmt::Debug for BaseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseCache")
            .field("dir", &self.dir)
            .field("budget", &self.budget)
            .finish()
    }
}

impl BaseCache {
    /// Opens (creating) the cache in `dir` with a budget of `budget`
    /// encoded bytes: what an earlier run left is kept, oldest first to go,
    /// and leftovers of interrupted writes are removed.
    pub fn open(dir: &Path, budget: u64) -> io::Result<BaseCache> {
        crate::private::dir(dir)?;
        let mut found: Vec<(std::time::SystemTime, ChunkId, u64)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| ChunkId::from_hex(n).ok());
            let meta = entry.metadata()?;
            match id {
                Some(id) if meta.is_file() => {
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((used, id, meta.len()));
                }
                // A temporary of an interrupted write, or a stranger.
                _ if meta.is_file() => {
                    let _ = fs::remove_file(entry.path());
                }
                _ => {}
            }
        }
        found.sort();
        let cache = BaseCache {
            dir: dir.to_path_buf(),
            budget,
            state: Mutex::default(),
        };
        {
            let mut st = cache.lock();
            for (_, id, len) in found {
                st.clock += 1;
                let tick = st.clock;
                st.entries.insert(id, (len, tick));
                st.total += len;
            }
            cache.evict(&mut st);
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// The encoded bytes kept for `id`, if any (the caller decodes them,
    /// which checks them, and calls [`BaseCache::forget`] if that fails).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        {
            let mut st = self.lock();
            st.clock += 1;
            let tick = st.clock;
            st.entries.get_mut(id)?.1 = tick;
        }
        match fs::read(self.path(id)) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::debug!("base cache: reading {id}: {e}");
                self.forget(id);
                None
            }
        }
    }

    /// Whether an entry for `id` is kept.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// Keeps `encoded` as the bytes of chunk `id`, making room by dropping
    /// the least recently used entries. Failures are logged: the cache
    /// only saves transfer.
    pub fn put(&self, id: &ChunkId, encoded: &[u8]) {
        let len = encoded.len() as u64;
        if len > self.budget || self.contains(id) {
            return;
        }
        if let Err(e) = self.write(id, encoded) {
            tracing::debug!("base cache: writing {id}: {e}");
            return;
        }
        let mut st = self.lock();
        st.clock += 1;
        let tick = st.clock;
        if st.entries.insert(*id, (len, tick)).is_none() {
            st.total += len;
        }
        self.evict(&mut st);
    }

    /// Written under a temporary name and renamed into place, so a reader
    /// never sees half an entry (a crash can still leave a torn one, which
    /// fails its check when used).
    fn write(&self, id: &ChunkId, encoded: &[u8]) -> io::Result<()> {
        let temp = self
            .dir
            .join(format!("{}.tmp-{}", id.to_hex(), std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::private::FILE_MODE)
            .open(&temp)?;
        file.write_all(encoded)?;
        drop(file);
        fs::rename(&temp, self.path(id)).inspect_err(|_| {
            let _ = fs::remove_file(&temp);
        })
    }

    /// Drops the entry for `id` (it failed its check, or could not be read).
    pub fn forget(&self, id: &ChunkId) {
        let mut st = self.lock();
        if let Some((len, _)) = st.entries.remove(id) {
            st.total -= len;
        }
        drop(st);
        let _ = fs::remove_file(self.path(id));
    }

    /// Encoded bytes kept, and entries.
    pub fn usage(&self) -> (u64, usize) {
        let st = self.lock();
        (st.total, st.entries.len())
    }

    fn evict(&self, st: &mut CacheState) {
        if st.total <= self.budget {
            return;
        }
        let mut by_age: Vec<(u64, ChunkId, u64)> = st
            .entries
            .iter()
            .map(|(id, &(len, tick))| (tick, *id, len))
            .collect();
        by_age.sort_unstable();
        for (_, id, len) in by_age {
            if st.total <= self.budget {
                break;
            }
            st.entries.remove(&id);
            st.total -= len;
            let _ = fs::remove_file(self.path(&id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[test]
    fn keeps_within_its_budget_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BaseCache::open(dir.path(), 300).unwrap();
        cache.put(&id(1), &[1; 100]);
        cache.put(&id(2), &[2; 100]);
        cache.put(&id(3), &[3; 100]);
        assert_eq!(cache.usage(), (300, 3));
        // Using 1 makes 2 the oldest.
        assert_eq!(cache.get(&id(1)).unwrap(), vec![1; 100]);
        cache.put(&id(4), &[4; 100]);
        assert_eq!(cache.usage(), (300, 3));
        assert!(cache.get(&id(2)).is_none());
        assert!(!dir.path().join(id(2).to_hex()).exists());
        // Larger than the whole budget: not kept.
        cache.put(&id(5), &[5; 301]);
        assert!(!cache.contains(&id(5)));
        // A damaged entry is forgotten by its user.
        cache.forget(&id(3));
        assert_eq!(cache.usage(), (200, 2));
        drop(cache);

        // A restart keeps what is there and removes leftovers.
        fs::write(dir.path().join("junk.tmp-1"), b"x").unwrap();
        let again = BaseCache::open(dir.path(), 300).unwrap();
        assert_eq!(again.usage(), (200, 2));
        assert_eq!(again.get(&id(4)).unwrap(), vec![4; 100]);
        assert!(!dir.path().join("junk.tmp-1").exists());
        // A smaller budget evicts on open.
        drop(again);
        let small = BaseCache::open(dir.path(), 150).unwrap();
        assert_eq!(small.usage().1, 1);
    }

    #[test]
    fn only_large_chunks_near_the_start_are_worth_keeping() {
        assert!(worth_keeping(0, MIN_BASE_CHUNK));
        assert!(!worth_keeping(0, MIN_BASE_CHUNK - 1));
        assert!(!worth_keeping(CACHED_PREFIX, MIN_BASE_CHUNK));
    }
}
