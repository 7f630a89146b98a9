//! The pure planner: from the remote, synced and local trees, the list of
//! operations that brings both sides to the same state.
//!
//! It does no I/O, reads no clock and draws no random numbers: the current
//! time (for conflicted-copy names) and the device name are inputs, and new
//! items are named by [`Key::New`] placeholders to which the executor gives
//! ids. The same inputs always give the same plan.
//!
//! How it works, in three steps:
//! 1. **Claim** ([`claim`]): every local path is matched to an item id (by
//!    file id, then synced path, then remote path, then content hash) or
//!    becomes a new item. This is what turns a rename on disk into a move
//!    rather than a delete plus an upload.
//! 2. **Merge** ([`merge`]): for every item, a three-way merge of position
//!    and content against the synced state decides the final tree; fix-ups
//!    keep it a tree (parents revived, cycles broken, name clashes renamed
//!    to conflicted copies).
//! 3. **Order** ([`ops`]): local and remote differences from the final tree
//!    become operations in an order that never clobbers (parents before
//!    children, children before parents on delete, swaps through a
//!    temporary name).
//!
//! When a round's changes are known to lie at a few places, [`plan_focused`]
//! runs the same three steps on the part of the trees those changes can
//! reach ([`focus`]).
//!
//! A device that may not write to the workspace plans in read-only mode:
//! the same three steps, never a commit, local changes kept on this device
//! ([`read_only`], the one home of that rule).

mod claim;
mod focus;
mod left_out;
mod merge;
mod ops;
mod order;
mod read_only;
mod settled;

use std::collections::BTreeMap;
use std::fmt;

use stacksync_proto::{ChunkRef, ContentHash, ItemId, ItemName, Millis};

use crate::ignore::IgnoreRules;
use crate::path::RelPath;
use crate::tree::{LocalTree, Stamp, SyncState};

pub use claim::LocalItem;
pub use focus::{Focus, FocusedPlan, Lookups, SyncedHashes, plan_focused, plan_focused_with};
pub use read_only::REASON as READ_ONLY_REASON;
pub use settled::unsettled;

/// Names an item within one plan: a known item id, or the n-th new local
/// item that has no id yet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An item the server knows (or will know under this client-chosen id).
    Item(ItemId),
    /// The n-th new local item of this plan.
    New(u32),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Item(id) => write!(f, "{id}"),
            Key::New(n) => write!(f, "new#{n}"),
        }
    }
}

/// Where an item sits: its parent (`None` at the root) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    /// The containing folder; `None` at the root.
    pub parent: Option<Key>,
    /// The entry's name in that folder.
    pub name: ItemName,
}

/// The content a download must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteContent {
    /// BLAKE3 of the whole file, checked before the file is put in place.
    pub hash: ContentHash,
    /// Size in bytes.
    pub size: u64,
    /// The chunks to fetch, in order.
    pub chunks: Vec<ChunkRef>,
}

/// What to do to the server for one item.
// Variant fields are described in the variant docs.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// Commit the item at `pos`: a new item, a restore on top of a delete,
    /// a move or rename, and/or new content (`upload`: read the local file
    /// and send it first).
    Put {
        pos: Pos,
        is_folder: bool,
        upload: bool,
    },
    /// Commit a delete.
    Delete,
}

/// One step of a plan.
// Variant fields are described in the variant docs.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Forget the synced record of an item this device leaves out of sync
    /// (see [`left_out`]): neither side is touched.
    Untrack { key: Key },
    /// Record the agreement of local and remote state for an item that
    /// needs no transfer (both sides made the same change, or the local
    /// stamp changed without the content).
    Settle { key: Key },
    /// Moves the local file of `key` aside to `name` in the same folder; its
    /// bytes become the new item `copy`, to be uploaded like any new file.
    ConflictCopy { key: Key, copy: Key, name: ItemName },
    /// Creates a local folder for a remote one.
    LocalMkdir { key: Key, pos: Pos },
    /// Renames or moves a local entry (never over an existing one).
    LocalMove { key: Key, to: Pos },
    /// Deletes a local entry, only if it is unchanged since the scan.
    LocalDelete { key: Key },
    /// Downloads remote content to `pos`, through a verified temporary
    /// file; `replace` says an unchanged local file is being overwritten.
    Download {
        key: Key,
        pos: Pos,
        content: RemoteContent,
        replace: bool,
    },
    /// Changes the server's copy of an item.
    Commit { key: Key, change: RemoteChange },
}

impl Op {
    /// The item this operation is about.
    pub fn key(&self) -> Key {
        match self {
            Op::Settle { key }
            | Op::Untrack { key }
            | Op::ConflictCopy { key, .. }
            | Op::LocalMkdir { key, .. }
            | Op::LocalMove { key, .. }
            | Op::LocalDelete { key }
            | Op::Download { key, .. }
            | Op::Commit { key, .. } => *key,
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Remote tree, synced tree and refused names.
    pub state: &'a SyncState,
    /// The result of the latest scan.
    pub local: &'a LocalTree,
    /// Paths these rules cover are left out of sync in both directions.
    pub ignore: &'a IgnoreRules,
    /// Local paths holding something the scan left out (symbolic links,
    /// special files, ignored entries), with their stamp when known: a
    /// remote item there is a clash, and a synced file found there by its
    /// stamp was moved out of sync by the user.
    pub unsynced: &'a BTreeMap<RelPath, Option<Stamp>>,
    /// Shown in conflicted-copy names.
    pub device_name: &'a str,
    /// The time shown in conflicted-copy names.
    pub now: Millis,
    /// This device may not write to the workspace: the plan never commits,
    /// and local changes are kept on this device (see [`read_only`]).
    pub read_only: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Operations in a safe order.
    pub ops: Vec<Op>,
    /// Where each local entry is, by key, as the plan starts: the executor
    /// resolves keys to paths from this as operations move things.
    pub local: BTreeMap<Key, LocalItem>,
    /// Items left out of sync because of a clash on this device (a
    /// reserved name on the server, something unsynced in the way, a
    /// local-only entry in read-only mode), as `(local path, reason)`:
    /// per-file errors to report.
    pub clashes: Vec<(RelPath, String)>,
}

/// Computes the plan. Pure: see the module documentation.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let claims = claim::claim(input);
    let merged = merge::merge(input, &claims);
    let ops = ops::ops(input, &claims, &merged);
    let clashes = merged.clashes;
    Plan {
        ops,
        local: claims.local,
        clashes,
    }
}

/// The stamp the plan saw for a key's local entry, if any.
pub fn local_stamp(plan: &Plan, key: Key) -> Option<Stamp> {
    plan.local.get(&key).map(|l| l.stamp)
}

/// The path of a key in a position map, following parents.
pub fn path_in(positions: &BTreeMap<Key, LocalItem>, key: Key) -> Option<RelPath> {
    let mut names = Vec::new();
    let mut cur = key;
    for _ in 0..=positions.len() {
        let item = positions.get(&cur)?;
        names.push(item.pos.name.clone());
        match item.pos.parent {
            None => {
                let mut path = RelPath::root();
                for n in names.iter().rev() {
                    path = path.join(n);
                }
                return Some(path);
            }
            Some(p) => cur = p,
        }
    }
    None
}
