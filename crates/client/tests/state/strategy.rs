//! Random sync states and random edits of them, for the state store's
//! round-trip property. Ids come from a small pool so that edits often hit
//! entries that already exist (a change, not only an insert).

use proptest::prelude::*;
use stacksync_engine::tree::{PendingCommit, Refusal, RemoteTree, SyncedItem};
use stacksync_engine::{RelPath, Stamp, SyncState};
use stacksync_proto::{
    ChunkId, ChunkRef, ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, PackSpan,
    WorkspaceId,
};
use uuid::Uuid;

/// How many distinct item ids the states draw from.
const IDS: u128 = 24;

pub fn item_id() -> impl Strategy<Value = ItemId> {
    (1..=IDS).prop_map(|n| ItemId(Uuid::from_u128(n)))
}

fn name() -> impl Strategy<Value = ItemName> {
    // Spaces, dots and non-ASCII: names are keys of refused paths.
    "[ab. é]{1,4}".prop_filter_map("valid names only", |s| ItemName::new(s).ok())
}

fn path() -> impl Strategy<Value = RelPath> {
    prop::collection::vec(name(), 1..=3).prop_map(|names| {
        names
            .iter()
            .fold(RelPath::root(), |path, name| path.join(name))
    })
}

fn hash() -> impl Strategy<Value = Option<ContentHash>> {
    prop::option::of(any::<u8>().prop_map(|b| ContentHash([b; 32])))
}

fn stamp() -> impl Strategy<Value = Option<Stamp>> {
    prop::option::of(
        (any::<u64>(), any::<i64>(), prop::option::of(any::<u64>())).prop_map(
            |(size, mtime, file_id)| Stamp {
                size,
                mtime,
                file_id,
            },
        ),
    )
}

fn chunk() -> impl Strategy<Value = ChunkRef> {
    // Spans the wire accepts: inside a pack of at most MAX_PACK_BYTES.
    let max = PackSpan::MAX_PACK_BYTES;
    let span = prop::option::of((any::<u8>(), 0..max, 1..=max).prop_map(
        move |(pack, offset, len)| PackSpan {
            pack: ChunkId([pack; 32]),
            offset: offset.min(max - len),
            len: u32::try_from(len).expect("MAX_PACK_BYTES fits in u32"),
            base: None,
        },
    ));
    (any::<u8>(), any::<u32>(), span).prop_map(|(id, size, span)| ChunkRef {
        id: ChunkId([id; 32]),
        size,
        span,
    })
}

fn status() -> impl Strategy<Value = ItemStatus> {
    prop::sample::select(vec![
        ItemStatus::New,
        ItemStatus::Changed,
        ItemStatus::Renamed,
        ItemStatus::Moved,
        ItemStatus::Deleted,
    ])
}

pub fn meta() -> impl Strategy<Value = ItemMeta> {
    let place = (
        item_id(),
        prop::option::of(item_id()),
        name(),
        any::<bool>(),
        prop::option::of("[a-z]{1,5}/[a-z]{1,5}"),
        status(),
    );
    let content = (
        1..6u64,
        hash(),
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        prop::collection::vec(chunk(), 0..3),
    );
    (place, content).prop_map(
        |(
            (id, parent, name, is_folder, mimetype, status),
            (version, content_hash, size, client_modified, server_modified, revision, chunks),
        )| ItemMeta {
            id,
            workspace: WorkspaceId::NIL,
            parent,
            name,
            is_folder,
            mimetype,
            status,
            version,
            content_hash,
            size,
            client_modified,
            server_modified,
            device: DeviceId::NIL,
            revision,
            chunks,
            record: None,
        },
    )
}

pub fn synced() -> impl Strategy<Value = SyncedItem> {
    (
        prop::option::of(item_id()),
        name(),
        any::<bool>(),
        1..6u64,
        hash(),
        any::<u64>(),
        stamp(),
    )
        .prop_map(
            |(parent, name, is_folder, version, content_hash, size, stamp)| SyncedItem {
                parent,
                name,
                is_folder,
                version,
                content_hash,
                size,
                stamp,
            },
        )
}

fn refusal() -> impl Strategy<Value = Refusal> {
    ("[a-z ]{0,12}", stamp(), any::<bool>()).prop_map(|(reason, stamp, clash)| Refusal {
        reason,
        stamp,
        clash,
    })
}

fn pending() -> impl Strategy<Value = PendingCommit> {
    (synced(), any::<bool>()).prop_map(|(s, deleted)| PendingCommit {
        version: s.version,
        parent: s.parent,
        name: s.name,
        is_folder: s.is_folder,
        content_hash: s.content_hash,
        size: s.size,
        deleted,
        stamp: s.stamp,
    })
}

fn remote_tree() -> impl Strategy<Value = RemoteTree> {
    prop::collection::vec(meta(), 0..12).prop_map(|metas| {
        let mut tree = RemoteTree::default();
        for m in metas {
            tree.apply(m);
        }
        tree
    })
}

pub fn state() -> impl Strategy<Value = SyncState> {
    (
        any::<u64>(),
        remote_tree(),
        prop::collection::btree_map(item_id(), synced(), 0..12),
        prop::collection::btree_map(path(), refusal(), 0..4),
        prop::collection::btree_map(item_id(), pending(), 0..4),
        prop::collection::btree_set(path(), 0..3),
    )
        .prop_map(
            |(cursor, remote, synced, refused, pending, temps)| SyncState {
                cursor,
                remote,
                synced: synced.into_iter().collect(),
                refused: refused.into_iter().collect(),
                pending: pending.into_iter().collect(),
                temps: temps.into_iter().collect(),
            },
        )
}

/// One change between two saves.
#[derive(Debug, Clone)]
pub enum Edit {
    Cursor(u64),
    /// Through `RemoteTree::apply`, as the engine records a feed entry.
    Remote(ItemMeta),
    /// The whole remote tree replaced: removes items.
    ResetRemote(RemoteTree),
    PutSynced(ItemId, SyncedItem),
    /// The synced map replaced whole (a store must notice).
    ResetSynced(Vec<(ItemId, SyncedItem)>),
    RemoveSynced(prop::sample::Index),
    PutRefused(RelPath, Refusal),
    RemoveRefused(prop::sample::Index),
    PutPending(ItemId, PendingCommit),
    ClearPending,
    /// The writer is reopened without loading, so its next save does not
    /// know what the database holds.
    Reopen,
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<u64>().prop_map(Edit::Cursor),
        3 => meta().prop_map(Edit::Remote),
        1 => remote_tree().prop_map(Edit::ResetRemote),
        3 => (item_id(), synced()).prop_map(|(id, s)| Edit::PutSynced(id, s)),
        2 => any::<prop::sample::Index>().prop_map(Edit::RemoveSynced),
        1 => prop::collection::vec((item_id(), synced()), 0..4).prop_map(Edit::ResetSynced),
        1 => (path(), refusal()).prop_map(|(p, r)| Edit::PutRefused(p, r)),
        1 => any::<prop::sample::Index>().prop_map(Edit::RemoveRefused),
        1 => (item_id(), pending()).prop_map(|(id, p)| Edit::PutPending(id, p)),
        1 => Just(Edit::ClearPending),
        1 => Just(Edit::Reopen),
    ]
}

/// Applies `edit` to `state`; `Reopen` is the caller's business.
pub fn apply(state: &mut SyncState, edit: &Edit) {
    match edit {
        Edit::Cursor(c) => state.cursor = *c,
        Edit::Remote(m) => state.remote.apply(m.clone()),
        Edit::ResetRemote(tree) => state.remote = tree.clone(),
        Edit::PutSynced(id, s) => {
            state.synced.insert(*id, s.clone());
        }
        Edit::ResetSynced(entries) => state.synced = entries.iter().cloned().collect(),
        Edit::RemoveSynced(pick) => {
            if !state.synced.is_empty() {
                let id = *pick.get(&state.synced.keys().copied().collect::<Vec<_>>());
                state.synced.remove(&id);
            }
        }
        Edit::PutRefused(p, r) => {
            state.refused.insert(p.clone(), r.clone());
        }
        Edit::RemoveRefused(pick) => {
            if !state.refused.is_empty() {
                let path = pick
                    .get(&state.refused.keys().cloned().collect::<Vec<_>>())
                    .clone();
                state.refused.remove(&path);
            }
        }
        Edit::PutPending(id, p) => {
            state.pending.insert(*id, p.clone());
        }
        Edit::ClearPending => {
            state.pending.take_all();
        }
        Edit::Reopen => {}
    }
}
