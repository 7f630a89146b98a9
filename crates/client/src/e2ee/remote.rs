//! The engine's view of an end-to-end encrypted workspace: every version
//! the engine proposes leaves as a sealed record with nothing in clear but
//! what the server must see, and every version the server lists is opened,
//! authenticated and checked against what the server claims beside it
//! before the engine sees it.
//!
//! What the server is told of a version: its item id, parent, whether it
//! is a folder, whether it is deleted, its version number, its chunk ids
//! in order with each chunk's padded length, and the record. Its name on
//! the server is its own id ([`ProposedItem::sealed_name`]), its content
//! hash a digest of the record, its modification time 0. The real name,
//! sizes, time and content hash are only in the record.
//!
//! What the engine is shown of a version the server lists is what the
//! record says, once [`Record::open`] has checked that it is authentic
//! (signed by a writing member, encrypted under a key of the verified
//! membership), filed where the server lists it (workspace, item, version)
//! and agrees with everything the server claims beside it (parent, kind,
//! deletion, chunk list and lengths); and once [`Freshness`] has checked
//! that it is not older than a version of the item already seen. Anything
//! else fails the whole read or commit with an error naming the item: the
//! engine never sees a name, a chunk list or a size the server made up.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stacksync_engine::Remote;
use stacksync_proto::{
    ChangesPage, ChunkRef, CommitOutcome, CommitResult, ContentHash, Error, ItemMeta, ItemName,
    ItemStatus, ProposedItem, WorkspaceId,
};
use stacksync_vault::record::{padded_chunk_len, record_hash};
use stacksync_vault::{
    ChunkEntry, Freshness, ItemKind, Record, RecordContext, VaultError, open_name, seal_name,
};

use super::keys::WorkspaceKeys;
use crate::connection::Connection;

/// A [`Remote`] that seals what goes to the server and opens what comes
/// back (see the module docs).
pub struct SealedRemote {
    inner: Arc<dyn Remote>,
    keys: Arc<WorkspaceKeys>,
    fresh: Mutex<Freshness>,
    /// Where to ask, before each commit, whether the key list moved on.
    current: Option<(Arc<dyn Connection>, WorkspaceId)>,
}

impl SealedRemote {
    /// The keys this remote seals and opens with.
    pub fn keys(&self) -> &WorkspaceKeys {
        &self.keys
    }

    /// Seals and opens through `keys` what `inner` sends and receives.
    pub fn new(inner: Arc<dyn Remote>, keys: Arc<WorkspaceKeys>) -> SealedRemote {
        SealedRemote {
            inner,
            keys,
            fresh: Mutex::new(Freshness::new()),
            current: None,
        }
    }

    /// The same remote, refusing to commit once the workspace's key list
    /// has a statement newer than its keys' (asked of `conn` before each
    /// commit): after a member is removed, nothing new may be written under
    /// the key they hold. The error is transient; the workspace is opened
    /// again with the new keys.
    pub fn checking_keys(
        mut self,
        conn: Arc<dyn Connection>,
        workspace: WorkspaceId,
    ) -> SealedRemote {
        self.current = Some((conn, workspace));
        self
    }

    async fn check_keys_current(&self) -> Result<(), Error> {
        let Some((conn, workspace)) = &self.current else {
            return Ok(());
        };
        let latest = super::keys::latest_epoch(conn.as_ref(), *workspace).await?;
        let held = self.keys.epoch();
        if latest != held {
            return Err(Error::unavailable(format!(
                "the workspace's key list is at epoch {latest}, these keys are of epoch {held}: \
                 nothing is written under them until the workspace is opened with the new ones"
            )));
        }
        Ok(())
    }

    /// Takes the versions this device already accepted (from its own sync
    /// state) as seen: an older one listed later is a rollback.
    pub fn seed<'a>(&self, seen: impl IntoIterator<Item = &'a ItemMeta>) -> Result<(), Error> {
        let mut fresh = self.fresh.lock().expect("freshness lock");
        for m in seen {
            fresh
                .seed(m.id, m.version)
                .map_err(|e| refused(m.id, m.version, &e))?;
        }
        Ok(())
    }

    /// The proposal as the server may see it.
    fn seal(&self, p: ProposedItem) -> Result<ProposedItem, Error> {
        let membership = &self.keys.membership;
        let ring = membership.keyring();
        let deleted = p.status == ItemStatus::Deleted;
        let failed = |e: VaultError| {
            Error::bad_request(format!(
                "item {} (version {}) cannot be sealed: {e}",
                p.id, p.version
            ))
        };
        let name = seal_name(ring, p.parent, p.id, p.name.as_str()).map_err(failed)?;
        let chunks: Vec<ChunkEntry> = if deleted {
            Vec::new()
        } else {
            p.chunks
                .iter()
                .map(|c| ChunkEntry {
                    id: c.id,
                    len: c.size,
                })
                .collect()
        };
        let record = Record {
            workspace: ring.workspace(),
            item: p.id,
            parent: p.parent,
            kind: if p.is_folder {
                ItemKind::Folder
            } else {
                ItemKind::File
            },
            deleted,
            version: p.version,
            generation: ring.current(),
            name,
            chunks,
            total_len: if deleted { 0 } else { p.size },
            modified_ms: p.client_modified,
            content_hash: p.content_hash.map_or([0; 32], |h| h.0),
            author: self.keys.identity.user(),
        };
        let sealed = record
            .seal(membership, &self.keys.identity)
            .map_err(failed)?;
        let live_file = !deleted && !p.is_folder;
        let chunks: Vec<ChunkRef> = if deleted {
            Vec::new()
        } else {
            p.chunks
                .iter()
                .map(|c| ChunkRef {
                    size: padded_chunk_len(c.size),
                    ..*c
                })
                .collect()
        };
        Ok(ProposedItem {
            id: p.id,
            parent: p.parent,
            name: ProposedItem::sealed_name(p.id),
            is_folder: p.is_folder,
            mimetype: None,
            status: if deleted {
                ItemStatus::Deleted
            } else if p.version == 1 {
                ItemStatus::New
            } else {
                ItemStatus::Changed
            },
            version: p.version,
            content_hash: live_file.then(|| ContentHash(record_hash(&sealed))),
            size: chunks.iter().map(|c| u64::from(c.size)).sum(),
            client_modified: 0,
            chunks,
            record: Some(sealed),
        })
    }

    /// The version as its record describes it, once checked (module docs).
    fn open(&self, meta: ItemMeta) -> Result<ItemMeta, Error> {
        self.open_checked(meta, true)
    }

    /// Stored versions of an item (`GetVersions`), each opened and checked
    /// like a listed one, except for freshness: a history lists older
    /// versions on purpose.
    pub fn open_history(&self, versions: Vec<ItemMeta>) -> Result<Vec<ItemMeta>, Error> {
        versions
            .into_iter()
            .map(|m| self.open_checked(m, false))
            .collect()
    }

    /// Makes the content of `old` (an opened version of the item whose
    /// latest opened version is `latest`) its latest again, at the item's
    /// current place (the old one if it is deleted): a new version sealed
    /// here, since the server cannot write a record (`Restore` is refused
    /// in these workspaces). Its chunks are stored already.
    pub async fn restore(&self, latest: &ItemMeta, old: &ItemMeta) -> Result<ItemMeta, Error> {
        let place = if latest.status == ItemStatus::Deleted {
            old
        } else {
            latest
        };
        if old.status == ItemStatus::Deleted || old.is_folder != latest.is_folder {
            return Err(Error::bad_request(format!(
                "version {} of item {} has no content to restore",
                old.version, old.id
            )));
        }
        let proposal = ProposedItem {
            id: latest.id,
            parent: place.parent,
            name: place.name.clone(),
            is_folder: old.is_folder,
            mimetype: None,
            status: ItemStatus::Changed,
            version: latest.version + 1,
            content_hash: old.content_hash,
            size: old.size,
            client_modified: old.client_modified,
            chunks: old.chunks.clone(),
            record: None,
        };
        let result = self.commit(vec![proposal]).await?;
        match result.results.into_iter().next().map(|r| r.outcome) {
            Some(CommitOutcome::Committed { meta }) => Ok(meta),
            Some(CommitOutcome::Conflict { current }) => Err(Error::conflict(current)),
            Some(CommitOutcome::Refused { error }) => Err(error),
            None => Err(Error::internal(
                "the server answered a commit of one item with none",
            )),
        }
    }

    fn open_checked(&self, meta: ItemMeta, observe: bool) -> Result<ItemMeta, Error> {
        let (id, version) = (meta.id, meta.version);
        let membership = &self.keys.membership;
        let ring = membership.keyring();
        let sealed = meta.record.as_deref().ok_or_else(|| {
            Error::internal(format!(
                "the server listed version {version} of item {id} without its record: refusing \
                 an unauthenticated version in an end-to-end encrypted workspace"
            ))
        })?;
        let deleted = meta.status == ItemStatus::Deleted;
        let live_file = !deleted && !meta.is_folder;
        // What the server lists in clear must be exactly what a writer
        // sends (see `seal`): anything else was changed on the way.
        let listed_size: u64 = meta.chunks.iter().map(|c| u64::from(c.size)).sum();
        if meta.workspace != ring.workspace()
            || meta.name != ProposedItem::sealed_name(id)
            || meta.mimetype.is_some()
            || meta.client_modified != 0
            || meta.size != listed_size
            || meta.content_hash != live_file.then(|| ContentHash(record_hash(sealed)))
        {
            return Err(Error::internal(format!(
                "the server listed version {version} of item {id} with a workspace, name, size, \
                 time or hash that its writer did not send: not used"
            )));
        }
        let ctx = RecordContext {
            workspace: meta.workspace,
            item: id,
            version,
            parent: meta.parent,
            is_folder: meta.is_folder,
            deleted,
            chunks: meta.chunks.iter().map(|c| (c.id, c.size)).collect(),
        };
        let record =
            Record::open(sealed, &ctx, membership).map_err(|e| refused(id, version, &e))?;
        let name = open_name(ring, record.parent, record.item, &record.name)
            .map_err(|e| refused(id, version, &e))?;
        let name = ItemName::new(name).map_err(|e| {
            Error::internal(format!(
                "version {version} of item {id} has a name this client refuses: {e}"
            ))
        })?;
        if observe {
            self.fresh
                .lock()
                .expect("freshness lock")
                .observe(id, version, record_hash(sealed))
                .map_err(|e| refused(id, version, &e))?;
        }
        // Record::open checked that the record's chunks are the listed
        // ones, in order: the record gives each its real length, the
        // server where it is stored.
        let chunks = meta
            .chunks
            .iter()
            .zip(&record.chunks)
            .map(|(c, e)| ChunkRef { size: e.len, ..*c })
            .collect();
        Ok(ItemMeta {
            name,
            mimetype: None,
            content_hash: live_file.then_some(ContentHash(record.content_hash)),
            size: record.total_len,
            client_modified: record.modified_ms,
            chunks,
            record: None,
            ..meta
        })
    }
}

/// The error for a version that fails verification. The vault's message
/// says what kind of failure it was and never repeats the server's bytes.
fn refused(id: stacksync_proto::ItemId, version: u64, e: &VaultError) -> Error {
    Error::internal(format!(
        "version {version} of item {id} fails end-to-end verification, so it is not used: {e}"
    ))
}

#[async_trait]
impl Remote for SealedRemote {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        let page = self.inner.get_changes(since, limit).await?;
        let items = page
            .items
            .into_iter()
            .map(|m| self.open(m))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(ChangesPage { items, ..page })
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        self.check_keys_current().await?;
        let sealed = items
            .into_iter()
            .map(|p| self.seal(p))
            .collect::<Result<Vec<_>, Error>>()?;
        let result = self.inner.commit(sealed).await?;
        let results = result
            .results
            .into_iter()
            .map(|mut r| {
                r.outcome = match r.outcome {
                    CommitOutcome::Committed { meta } => CommitOutcome::Committed {
                        meta: self.open(meta)?,
                    },
                    CommitOutcome::Conflict { current } => CommitOutcome::Conflict {
                        current: self.open(current)?,
                    },
                    CommitOutcome::Refused { mut error } => {
                        // What the server says is there is sealed too.
                        if let Some(current) = error.current.take() {
                            error.current = Some(Box::new(self.open(*current)?));
                        }
                        CommitOutcome::Refused { error }
                    }
                };
                Ok(r)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(CommitResult { results, ..result })
    }
}
