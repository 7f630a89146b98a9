//! The three trees: remote (what the server has), synced (what both sides
//! last agreed on) and local (what the disk has now), plus the persisted
//! sync state that holds the first two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stacksync_proto::{ContentHash, ItemId, ItemMeta, ItemName, Millis};

use crate::path::RelPath;
use crate::tracked::{TrackedMap, TrackedSet};

/// What the file system says about an entry without reading it. Two equal
/// stamps mean "assume the content did not change", which is how a rescan
/// avoids re-hashing every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Length in bytes (0 for folders).
    pub size: u64,
    /// Modification time in milliseconds (0 for folders: see
    /// [`Stamp::folder`]).
    pub mtime: Millis,
    /// A stable identity of the entry across renames (an inode number on
    /// Unix), when the platform has one. Used to recognise local moves.
    pub file_id: Option<u64>,
}

impl Stamp {
    /// The stamp of a folder: its identity alone. A folder's size and
    /// mtime change with its entries (every save into it, every download),
    /// which the tree tracks on their own; in its stamp they would make a
    /// folder look changed after every edit inside it, and every plan would
    /// take the whole folder in again.
    pub fn folder(file_id: Option<u64>) -> Stamp {
        Stamp {
            size: 0,
            mtime: 0,
            file_id,
        }
    }
}

/// One entry of the local tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEntry {
    /// Folder or regular file (other kinds never enter the tree).
    pub is_folder: bool,
    /// Size, mtime and file id as last seen.
    pub stamp: Stamp,
    /// BLAKE3 of the content for files; `None` for folders and for files
    /// whose content could not be read stably (they are left alone this
    /// round and retried later).
    pub hash: Option<ContentHash>,
}

/// The local tree: every synced-eligible entry under the root by path.
pub type LocalTree = BTreeMap<RelPath, LocalEntry>;

/// The last state of an item that the local disk and the server agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedItem {
    /// Containing folder; `None` at the root.
    pub parent: Option<ItemId>,
    /// Name in that folder.
    pub name: ItemName,
    /// Folder or file.
    pub is_folder: bool,
    /// The server version both sides had.
    pub version: u64,
    /// BLAKE3 of the content both sides had (files).
    pub content_hash: Option<ContentHash>,
    /// Size in bytes.
    pub size: u64,
    /// The local stamp when the agreement was recorded; `None` when the
    /// local copy must not be recognised by identity (after its bytes were
    /// moved aside into a conflicted copy).
    pub stamp: Option<Stamp>,
}

impl SyncedItem {
    /// The synced record for a remote version as it now also exists locally.
    pub fn from_meta(meta: &ItemMeta, stamp: Option<Stamp>) -> SyncedItem {
        SyncedItem {
            parent: meta.parent,
            name: meta.name.clone(),
            is_folder: meta.is_folder,
            version: meta.version,
            content_hash: meta.content_hash,
            size: meta.size,
            stamp,
        }
    }
}

/// What the server has, built from the change feed: the latest version of
/// every item seen, deleted ones included (their version is needed to
/// commit a restore on top of a delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTree {
    items: TrackedMap<ItemId, ItemMeta>,
}

impl FromIterator<ItemMeta> for RemoteTree {
    /// The tree of these records, the newest version of each item kept (as
    /// [`RemoteTree::apply`] would), built in bulk (see
    /// [`TrackedMap`]'s `FromIterator`).
    fn from_iter<I: IntoIterator<Item = ItemMeta>>(iter: I) -> Self {
        let mut all: Vec<ItemMeta> = iter.into_iter().collect();
        // Of equal ids the last is kept: the highest version.
        all.sort_by_key(|m| (m.id, m.version));
        RemoteTree {
            items: all.into_iter().map(|m| (m.id, m)).collect(),
        }
    }
}

impl RemoteTree {
    /// Records `meta` unless a newer version of the item is already known
    /// (feed pages and commit replies can arrive in either order).
    pub fn apply(&mut self, meta: ItemMeta) {
        match self.items.get(&meta.id) {
            Some(old) if old.version > meta.version => {}
            _ => {
                self.items.insert(meta.id, meta);
            }
        }
    }

    /// The latest known version, deleted or not.
    pub fn latest(&self, id: ItemId) -> Option<&ItemMeta> {
        self.items.get(&id)
    }

    /// The item if it is live and every ancestor is live: an item under a
    /// deleted folder counts as deleted.
    pub fn live(&self, id: ItemId) -> Option<&ItemMeta> {
        let meta = self.items.get(&id)?;
        let mut cur = Some(meta);
        // An ancestor chain longer than the number of items is a cycle.
        for _ in 0..=self.items.len() {
            match cur {
                None => return None,
                Some(m) if !m.status.is_live() => return None,
                Some(m) => match m.parent {
                    None => return Some(meta),
                    Some(p) => cur = self.items.get(&p),
                },
            }
        }
        None
    }

    /// Every known item, deleted ones included, by id.
    pub fn iter(&self) -> impl Iterator<Item = &ItemMeta> {
        self.items.values()
    }

    /// How many items are known, deleted ones included.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is known.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// This instance's origin (see [`crate::tracked`]).
    pub fn origin(&self) -> u64 {
        self.items.origin()
    }

    /// The items recorded since the last save (see [`SyncState::lineage`]).
    pub fn changes(&self) -> impl Iterator<Item = (&ItemId, Option<&ItemMeta>)> {
        self.items.changes()
    }

    /// The path of a live item.
    pub fn path_of(&self, id: ItemId) -> Option<RelPath> {
        let mut names = Vec::new();
        let mut cur = self.live(id)?;
        loop {
            names.push(cur.name.clone());
            match cur.parent {
                None => break,
                Some(p) => cur = self.items.get(&p)?,
            }
        }
        Some(path_from_leaf_up(&names))
    }
}

/// The path whose components are `names` listed from the leaf up.
fn path_from_leaf_up(names: &[ItemName]) -> RelPath {
    let mut path = RelPath::root();
    for n in names.iter().rev() {
        path = path.join(n);
    }
    path
}

impl RemoteTree {
    /// The path an item had at its latest version, following parents
    /// whether or not they are live (how a deleted file is found again to
    /// be restored).
    pub fn path_including_deleted(&self, id: ItemId) -> Option<RelPath> {
        let mut names = Vec::new();
        let mut cur = self.items.get(&id)?;
        // An ancestor chain longer than the number of items is a cycle.
        for _ in 0..=self.items.len() {
            names.push(cur.name.clone());
            match cur.parent {
                None => return Some(path_from_leaf_up(&names)),
                Some(p) => cur = self.items.get(&p)?,
            }
        }
        None
    }
}

/// Why a local path is not uploaded: the server refused its name, or
/// refused the file for a reason retrying cannot fix (over quota,
/// forbidden, too large).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The server's message.
    pub reason: String,
    /// The local stamp of the refused file; once the file has another
    /// stamp, it is tried again. `None` for a refused name, which is tried
    /// again only once the path goes away.
    #[serde(default)]
    pub stamp: Option<Stamp>,
    /// A name clash the planner found on this device (an item the server
    /// has under a reserved name, or where this device has something that
    /// is never synced, like a symbolic link; in read-only mode, an entry
    /// the server does not have, kept here) rather than a refusal by the
    /// server: recomputed by every plan, so it goes away with the clash.
    #[serde(default)]
    pub clash: bool,
}

/// A proposal sent to the server whose outcome is not saved yet: the intent
/// record written before a commit batch is sent and cleared in the save
/// that records the batch's outcomes. Left over after a crash (or a lost
/// reply), it lets the next run tell whether the server accepted the
/// version and, if so, record the agreement the lost outcome would have
/// recorded — so that a later local edit is an edit, not a conflict with
/// our own version, and a later local rename moves the items the server
/// already has instead of creating them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The version proposed.
    pub version: u64,
    /// The proposed parent; `None` at the root.
    pub parent: Option<ItemId>,
    /// The proposed name.
    pub name: ItemName,
    /// Folder or file.
    pub is_folder: bool,
    /// The proposed content (files; `None` for folders and deletes).
    pub content_hash: Option<ContentHash>,
    /// The proposed size in bytes.
    pub size: u64,
    /// The proposal is a delete.
    pub deleted: bool,
    /// The local stamp the proposal was made from (`None` for a delete, or
    /// when there was no local entry): recorded as the synced stamp, so the
    /// scan recognises the entry by file id even after it moved.
    pub stamp: Option<Stamp>,
}

impl PendingCommit {
    /// Whether the server's latest version of the item shows this proposal
    /// landed. Either that version is the proposed one, with the same
    /// place, kind and content (or deleted, for a delete); or the proposal
    /// created the item (version 1) and the server has any later version
    /// of it: item ids are chosen by this client and never reused, so only
    /// this proposal can have created it.
    pub fn landed(&self, latest: &ItemMeta) -> bool {
        if latest.version == self.version {
            latest.is_folder == self.is_folder
                && latest.status.is_live() != self.deleted
                && (self.deleted
                    || (latest.parent == self.parent
                        && latest.name == self.name
                        && latest.content_hash == self.content_hash))
        } else {
            self.version == 1 && latest.version > 1
        }
    }

    /// The synced record of this proposal once it landed (for a put).
    pub fn synced(&self) -> SyncedItem {
        SyncedItem {
            parent: self.parent,
            name: self.name.clone(),
            is_folder: self.is_folder,
            version: self.version,
            content_hash: self.content_hash,
            size: self.size,
            stamp: self.stamp,
        }
    }
}

/// Everything the engine persists between runs. Saved as a whole after
/// every applied operation, so a crash loses at most the operation in
/// flight, which the next plan redoes or recognises as done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Change-feed cursor matching `remote`.
    pub cursor: u64,
    /// The server's tree as of `cursor` plus our own accepted commits.
    pub remote: RemoteTree,
    /// The last agreed state of each item.
    pub synced: TrackedMap<ItemId, SyncedItem>,
    /// Local paths the server refused; not retried until the path goes
    /// away or (for a refusal with a stamp) the file changes.
    pub refused: TrackedMap<RelPath, Refusal>,
    /// Proposals of the commit batch in flight (see [`PendingCommit`]);
    /// empty except between sending a batch and saving its outcomes, or
    /// after a crash in that window until the next pull resolves them.
    #[serde(default)]
    pub pending: TrackedMap<ItemId, PendingCommit>,
    /// Download temporaries this client created, recorded before it
    /// creates them: the only `.stacksync-dl-*` files it ever removes or
    /// writes into (a user's file of that name is never touched).
    #[serde(default)]
    pub temps: TrackedSet<RelPath>,
}

/// Which instances hold a state's maps: a store that saw this lineage at
/// its last load or save may write only the changes recorded since (see
/// [`crate::tracked`]); any other lineage is written whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage([u64; 5]);

/// What resolving the pending proposals found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Proposals the server had accepted: their agreement is now recorded.
    pub landed: usize,
    /// Proposals that never landed (or were superseded): forgotten, the
    /// next plan redoes whatever is still needed.
    pub dropped: usize,
}

impl SyncState {
    /// Resolves every pending proposal against the remote tree, which must
    /// hold the change feed read to its end. A proposal that landed is
    /// recorded exactly as its committed outcome would have been: a put
    /// becomes the synced state of the item (with the stamp it was made
    /// from), a delete removes the item from the synced tree. Every other
    /// proposal is dropped. Afterwards nothing is pending.
    pub fn resolve_pending(&mut self) -> Resolved {
        let mut resolved = Resolved::default();
        for (id, p) in self.pending.take_all() {
            let landed = self.remote.latest(id).is_some_and(|m| p.landed(m));
            if !landed {
                resolved.dropped += 1;
                continue;
            }
            resolved.landed += 1;
            if p.deleted {
                self.synced.remove(&id);
            } else {
                let synced = match self.remote.latest(id) {
                    Some(m) if m.version == p.version => SyncedItem::from_meta(m, p.stamp),
                    _ => p.synced(),
                };
                self.synced.insert(id, synced);
            }
        }
        resolved
    }

    /// Which instances hold the maps (see [`Lineage`]).
    pub fn lineage(&self) -> Lineage {
        Lineage([
            self.remote.items.origin(),
            self.synced.origin(),
            self.refused.origin(),
            self.pending.origin(),
            self.temps.origin(),
        ])
    }

    /// How many entries changed since the last [`SyncState::forget_changes`].
    pub fn changes_len(&self) -> usize {
        self.remote.items.changes_len()
            + self.synced.changes_len()
            + self.refused.changes_len()
            + self.pending.changes_len()
            + self.temps.changes_len()
    }

    /// Starts a new record of changes: what was recorded is saved. Only a
    /// store calls this, after a save that wrote the changes.
    pub fn forget_changes(&mut self) {
        self.remote.items.forget_changes();
        self.synced.forget_changes();
        self.refused.forget_changes();
        self.pending.forget_changes();
        self.temps.forget_changes();
    }

    /// The path of a synced item, following synced parents.
    pub fn synced_path(&self, id: ItemId) -> Option<RelPath> {
        let mut names = Vec::new();
        let mut cur = self.synced.get(&id)?;
        for _ in 0..=self.synced.len() {
            names.push(cur.name.clone());
            match cur.parent {
                None => return Some(path_from_leaf_up(&names)),
                Some(p) => cur = self.synced.get(&p)?,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use stacksync_proto::{DeviceId, ItemStatus, WorkspaceId};
    use uuid::Uuid;

    use super::*;

    fn meta(n: u64, version: u64) -> ItemMeta {
        ItemMeta {
            id: ItemId(Uuid::from_u64_pair(0, n)),
            workspace: WorkspaceId(Uuid::from_u64_pair(1, 0)),
            parent: None,
            name: ItemName::new(format!("f{n}")).unwrap(),
            is_folder: false,
            mimetype: None,
            status: ItemStatus::Changed,
            version,
            content_hash: None,
            size: version,
            client_modified: 0,
            server_modified: 0,
            device: DeviceId(Uuid::from_u64_pair(2, 0)),
            revision: version,
            chunks: Vec::new(),
            record: None,
        }
    }

    #[test]
    fn a_tree_built_in_bulk_equals_one_applied_record_by_record() {
        // Out of order, with older and newer versions of the same items.
        let records = [
            meta(3, 1),
            meta(1, 2),
            meta(3, 4),
            meta(2, 1),
            meta(1, 1),
            meta(3, 2),
        ];
        let mut applied = RemoteTree::default();
        for m in records.iter().cloned() {
            applied.apply(m);
        }
        let bulk: RemoteTree = records.iter().cloned().collect();
        assert_eq!(bulk, applied);
        assert_eq!(
            bulk.latest(ItemId(Uuid::from_u64_pair(0, 3)))
                .map(|m| m.version),
            Some(4)
        );
        assert_eq!(
            bulk.latest(ItemId(Uuid::from_u64_pair(0, 1)))
                .map(|m| m.version),
            Some(2)
        );
        assert_eq!(
            bulk.changes().count(),
            3,
            "every item is recorded as changed"
        );
    }
}
