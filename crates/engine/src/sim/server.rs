//! An in-memory sync server and chunk store that apply the commit rules of
//! the real metadata store (reference section 4): the very same decision,
//! `stacksync_proto::commit_rules`, over an in-memory history.
//!
//! Uploads are staged the way a packing content store stages them: a
//! device's uploaded chunks become visible to the server only when that
//! device flushes, and a commit naming a chunk the server does not hold
//! fails as a whole (`Internal`), so a test fails if the engine ever
//! commits before flushing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use stacksync_proto::commit_rules::{self, AncestryWalk, Decision, Facts, Setting};
use stacksync_proto::{
    ChangesPage, ChunkId, ChunkRef, CommitOutcome, CommitResult, ContentHash, DeviceId, Error,
    ItemCommitResult, ItemId, ItemMeta, NameError, ProposedItem, WorkspaceId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::io::{ByteReader, ByteWriter, ContentStore, Remote, Uploaded};

#[derive(Debug, Default)]
struct State {
    workspace: WorkspaceId,
    revision: u64,
    /// Every version of every item, oldest first.
    items: BTreeMap<ItemId, Vec<ItemMeta>>,
    chunks: HashMap<ChunkId, Arc<Vec<u8>>>,
    chunk_uploads: u64,
    flushes: u64,
    chunk_downloads: u64,
    chunk_size: usize,
    refuse_names_containing: Option<String>,
    /// Bytes the live files may hold in total, if limited.
    quota: Option<u64>,
    commit_calls: u64,
    largest_batch: usize,
    clock: i64,
}

/// The server side of a simulation: items with full history, a change feed,
/// and a chunk store that counts uploads.
#[derive(Debug, Clone)]
pub struct FakeServer {
    state: Arc<Mutex<State>>,
}

impl Default for FakeServer {
    fn default() -> Self {
        FakeServer::new(4096)
    }
}

impl FakeServer {
    /// A server whose clients cut files into `chunk_size`-byte chunks.
    pub fn new(chunk_size: usize) -> FakeServer {
        let state = State {
            workspace: WorkspaceId(uuid::Uuid::from_u64_pair(7, 7)),
            chunk_size: chunk_size.max(1),
            ..State::default()
        };
        FakeServer {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses (as an invalid name) any name containing `s`, the way a
    /// server might refuse names some platform cannot store.
    pub fn refuse_names_containing(&self, s: &str) {
        self.lock().refuse_names_containing = Some(s.to_string());
    }

    /// Limits the bytes all live files may hold together; a version that
    /// would grow them past `bytes` is refused as over quota (as the real
    /// metadata store does).
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.lock().quota = bytes;
    }

    /// `commit` calls served so far (each batch counts once).
    pub fn commit_calls(&self) -> u64 {
        self.lock().commit_calls
    }

    /// The most items any one `commit` call carried.
    pub fn largest_batch(&self) -> usize {
        self.lock().largest_batch
    }

    /// The connection of one device. Clones of a link share its staged
    /// uploads.
    pub fn device(&self, device: DeviceId) -> DeviceLink {
        DeviceLink {
            server: self.clone(),
            device,
            lose_next_reply: Arc::new(AtomicBool::new(false)),
            fail_next_flush: Arc::new(AtomicBool::new(false)),
            staged: Arc::default(),
        }
    }

    /// Chunks stored so far (each distinct chunk counts once, when the
    /// flush that makes it visible stores it).
    pub fn chunk_uploads(&self) -> u64 {
        self.lock().chunk_uploads
    }

    /// Successful flushes of any device so far.
    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    /// Whether the server holds chunk `id` (staged chunks do not count).
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.lock().chunks.contains_key(id)
    }

    /// Chunks served to downloads so far.
    pub fn chunk_downloads(&self) -> u64 {
        self.lock().chunk_downloads
    }

    /// Every content hash any version of any file ever had: the version
    /// history a user can restore from.
    pub fn all_contents(&self) -> BTreeSet<ContentHash> {
        self.lock()
            .items
            .values()
            .flatten()
            .filter_map(|m| m.content_hash)
            .collect()
    }

    /// The latest version of every item.
    pub fn latest(&self) -> Vec<ItemMeta> {
        self.lock()
            .items
            .values()
            .filter_map(|v| v.last().cloned())
            .collect()
    }

    /// Every version of one item.
    pub fn history(&self, id: ItemId) -> Vec<ItemMeta> {
        self.lock().items.get(&id).cloned().unwrap_or_default()
    }

    /// One proposed version, decided by the commit rules every server
    /// applies (`commit_rules::decide`), with the facts they ask for looked
    /// up in memory the way the metadata store looks them up in SQL. What
    /// the decision leaves to a store is this fake's own: a refused name
    /// pattern and a quota on live bytes, both switches of engine tests.
    fn commit_one(s: &mut State, device: DeviceId, p: ProposedItem) -> CommitOutcome {
        if let Some(bad) = &s.refuse_names_containing
            && p.name.as_str().contains(bad.as_str())
        {
            return CommitOutcome::Refused {
                error: Error::invalid_name(p.name.as_str(), NameError::Slash),
            };
        }
        let history = s.items.get(&p.id);
        let current = history.and_then(|h| h.last());
        let asked = commit_rules::lookups(s.workspace, current, &p);
        let latest = |id: &ItemId| s.items.get(id).and_then(|h| h.last());
        let mut facts = Facts::default();
        if let Some(version) = asked.stored_version {
            facts.stored = history
                .and_then(|h| h.get(version.checked_sub(1)? as usize))
                .cloned();
        }
        if let Some(parent) = asked.ancestry {
            let mut walk = AncestryWalk::new(s.workspace, p.id, p.is_folder, parent);
            while let Some(id) = walk.next_lookup() {
                walk.found(latest(&id));
            }
            facts.ancestry = walk.result();
        }
        if let Some(folder) = asked.live_children {
            facts.live_children = s
                .items
                .values()
                .filter_map(|h| h.last())
                .any(|m| m.status.is_live() && m.parent == Some(folder));
        }
        if let Some((parent, name)) = &asked.name_holder {
            facts.name_holder = s
                .items
                .values()
                .filter_map(|h| h.last())
                .find(|m| commit_rules::holds_name(m, p.id, *parent, name))
                .cloned();
        }
        let at = Setting {
            workspace: s.workspace,
            device,
            now: s.clock + 1,
            revision: s.revision + 1,
        };
        let meta = match commit_rules::decide(&at, current, &p, &facts) {
            Decision::Accept(meta) => meta,
            other => return other.into_outcome(),
        };
        if let Some(limit) = s.quota
            && meta.status.is_live()
        {
            let live_size = |m: &ItemMeta| if m.status.is_live() { m.size } else { 0 };
            let used: u64 = s
                .items
                .values()
                .filter_map(|h| h.last())
                .map(live_size)
                .sum();
            let old = current.map_or(0, live_size);
            if meta.size > old && used - old + meta.size > limit {
                return CommitOutcome::Refused {
                    error: Error::quota_exceeded(format!(
                        "storing {} bytes for item {} would exceed the quota of {limit} bytes",
                        meta.size, meta.id
                    )),
                };
            }
        }
        s.revision = meta.revision;
        s.clock = meta.server_modified;
        s.items.entry(meta.id).or_default().push(meta.clone());
        CommitOutcome::Committed { meta }
    }
}

/// One device's connection: implements [`Remote`] and [`ContentStore`].
#[derive(Debug, Clone)]
pub struct DeviceLink {
    server: FakeServer,
    device: DeviceId,
    lose_next_reply: Arc<AtomicBool>,
    fail_next_flush: Arc<AtomicBool>,
    /// Uploaded chunks the server does not hold until the next flush.
    staged: Arc<Mutex<HashMap<ChunkId, Arc<Vec<u8>>>>>,
}

impl DeviceLink {
    /// The next commit is applied but its reply is lost (the transport
    /// fails), as when a client crashes right after sending.
    pub fn lose_next_reply(&self) {
        self.lose_next_reply.store(true, Ordering::SeqCst);
    }

    /// The next flush fails (`Unavailable`) and its staged chunks are
    /// forgotten, as when writing a pack fails: uploading them again
    /// stages them anew.
    pub fn fail_next_flush(&self) {
        self.fail_next_flush.store(true, Ordering::SeqCst);
    }

    /// Chunks uploaded and not flushed yet.
    pub fn staged_chunks(&self) -> usize {
        self.staged().len()
    }

    fn staged(&self) -> MutexGuard<'_, HashMap<ChunkId, Arc<Vec<u8>>>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Remote for DeviceLink {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        let s = self.server.lock();
        let mut changed: Vec<&ItemMeta> = s
            .items
            .values()
            .filter_map(|h| h.last())
            .filter(|m| m.revision > since)
            .collect();
        changed.sort_by_key(|m| m.revision);
        let limit = limit.max(1) as usize;
        let has_more = changed.len() > limit;
        let items: Vec<ItemMeta> = changed.into_iter().take(limit).cloned().collect();
        let cursor = items.last().map_or(since, |m| m.revision);
        Ok(ChangesPage {
            workspace: s.workspace,
            items,
            cursor,
            has_more,
        })
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        let mut s = self.server.lock();
        s.commit_calls += 1;
        s.largest_batch = s.largest_batch.max(items.len());
        // Not a refusal the engine could handle: a client that commits a
        // chunk it has not stored is broken, and the test must fail.
        if let Some(c) = items
            .iter()
            .flat_map(|p| &p.chunks)
            .find(|c| !s.chunks.contains_key(&c.id))
        {
            return Err(Error::internal(format!(
                "commit names chunk {} that the server does not hold (uploaded but not flushed?)",
                c.id
            )));
        }
        let results = items
            .into_iter()
            .map(|p| {
                let (id, version) = (p.id, p.version);
                ItemCommitResult {
                    id,
                    version,
                    outcome: FakeServer::commit_one(&mut s, self.device, p),
                }
            })
            .collect();
        if self.lose_next_reply.swap(false, Ordering::SeqCst) {
            return Err(Error::unavailable("reply lost (simulated)"));
        }
        Ok(CommitResult {
            workspace: s.workspace,
            device: self.device,
            results,
            revision: s.revision,
        })
    }
}

#[async_trait]
impl ContentStore for DeviceLink {
    async fn upload(&self, mut content: ByteReader) -> Result<Uploaded, Error> {
        let chunk_size = self.server.lock().chunk_size;
        let mut hasher = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; chunk_size];
        loop {
            // Fill a whole chunk (reads may return less).
            let mut n = 0;
            while n < chunk_size {
                let got = content
                    .read(&mut buf[n..])
                    .await
                    .map_err(|e| Error::internal(format!("read: {e}")))?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            hasher.update(data);
            size += n as u64;
            let id = ChunkId(*blake3::hash(data).as_bytes());
            if !self.server.has_chunk(&id) {
                self.staged()
                    .entry(id)
                    .or_insert_with(|| Arc::new(data.to_vec()));
            }
            chunks.push(ChunkRef::whole(id, n as u32));
            if n < chunk_size {
                break;
            }
        }
        Ok(Uploaded {
            hash: ContentHash(*hasher.finalize().as_bytes()),
            size,
            chunks,
        })
    }

    async fn flush(&self) -> Result<(), Error> {
        let staged = std::mem::take(&mut *self.staged());
        if self.fail_next_flush.swap(false, Ordering::SeqCst) {
            return Err(Error::unavailable(format!(
                "writing {} staged chunk(s) failed (simulated)",
                staged.len()
            )));
        }
        let mut s = self.server.lock();
        for (id, data) in staged {
            if let std::collections::hash_map::Entry::Vacant(e) = s.chunks.entry(id) {
                e.insert(data);
                s.chunk_uploads += 1;
            }
        }
        s.flushes += 1;
        Ok(())
    }

    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), Error> {
        for c in chunks {
            let data = {
                let mut s = self.server.lock();
                s.chunk_downloads += 1;
                s.chunks.get(&c.id).cloned()
            };
            let data =
                data.ok_or_else(|| Error::not_found(format!("chunk {} is not stored", c.id)))?;
            dest.write_all(&data)
                .await
                .map_err(|e| Error::internal(format!("write: {e}")))?;
        }
        Ok(())
    }
}
